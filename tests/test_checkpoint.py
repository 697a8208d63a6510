"""Checkpoints: atomic, weights_only, and resuming equals an uninterrupted run (CPU)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainables.checkpoint import (
    STATE_FILE,
    load_checkpoint,
    numpy_generator_state,
    save_checkpoint,
    set_numpy_generator_state,
)
from trainables.loop import train

TIMING = ("train/epoch_time_s", "train/samples_per_s", "val/time_s")


def _strip(d):
    return {k: v for k, v in d.items() if k not in TIMING}


def _assert_same_metrics(a: dict, b: dict):
    a, b = _strip(a), _strip(b)
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], float) and math.isnan(a[k]):
            assert isinstance(b[k], float) and math.isnan(b[k]), k
        else:
            assert a[k] == b[k], (k, a[k], b[k])


def test_roundtrip_weights_only_and_atomic(tmp_path):
    gen = np.random.default_rng(7)
    gen.random(3)
    state = {"model": {"w": torch.arange(4.0)}, "epoch": 2, "config": {"model": "uvac", "lam": 1.0},
             "rng": {"numpy": numpy_generator_state(gen)}}
    f = save_checkpoint(tmp_path / "ck", state)
    assert f.name == STATE_FILE and (tmp_path / "ck" / "config.json").exists()
    assert not list((tmp_path / "ck").glob("*.tmp"))  # no temporary file left behind
    back = torch.load(f, weights_only=True)  # must load under weights_only
    assert torch.equal(back["model"]["w"], torch.arange(4.0)) and back["epoch"] == 2
    g2 = np.random.default_rng(0)
    set_numpy_generator_state(g2, load_checkpoint(tmp_path / "ck")["rng"]["numpy"])
    assert g2.random() == gen.random()


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing")
    bad = tmp_path / "bad" / STATE_FILE
    bad.parent.mkdir()
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read"):
        load_checkpoint(bad.parent)


@pytest.mark.parametrize("model,epochs,extra", [
    ("uvac", 4, {"prior_warmup_epochs": 1}),  # recommended: prior fitted before the interruption
    ("uvac", 4, {"prior_warmup_epochs": 3}),  # ... and after it
    ("uvac", 3, {"recipe": "paper"}),
    ("cat_uvac", 3, {}),
    ("cat_uvac", 3, {"neighbours": 3, "consistency": "mi", "augment": "shift"}),  # neighbour draws resume too
    ("uvac", 3, {"prior_warmup_epochs": 1, "augment": "shift", "contrastive": 2.0}),  # the projection head too
], ids=["uvac-fit-before", "uvac-fit-after", "uvac-paper", "cat_uvac", "cat_uvac-neighbours", "uvac-contrastive"])
def test_resume_equals_uninterrupted(tiny_table, tiny_config, tmp_path, model, epochs, extra):
    """epochs straight == 2 epochs, stop, resume to the end (same seed): identical everything,
    including the warm-up hooks (prior fit) and BatchNorm re-estimation of the recipe."""
    cfg = tiny_config(model=model, epochs=epochs, seed=11, **extra)
    straight = train(cfg, tiny_table, checkpoint_dir=str(tmp_path / "a"))
    assert straight.status == "complete"

    ck = tmp_path / "b"
    first = train(cfg, tiny_table, checkpoint_dir=str(ck), on_epoch=lambda e, m, c: e >= 2)
    assert first.status == "stopped" and first.epochs_done == 2
    assert load_checkpoint(ck)["epoch"] == 2
    resumed = train(cfg, tiny_table, checkpoint_dir=str(ck), resume_from=str(ck))
    assert resumed.status == "complete" and resumed.epochs_done == epochs

    assert len(resumed.history) == epochs
    for h1, h2 in zip(straight.history, resumed.history):
        _assert_same_metrics(h1, h2)
    _assert_same_metrics(straight.metrics, resumed.metrics)
    pa = load_checkpoint(tmp_path / "a")["model"]
    pb = load_checkpoint(ck)["model"]
    assert pa.keys() == pb.keys()
    for k in pa:
        assert torch.equal(pa[k], pb[k]), k
    assert np.array_equal(straight.assignments["cluster"], resumed.assignments["cluster"])


def test_checkpoint_fn_writes_loadable_state(tiny_table, tiny_config, tmp_path):
    written = []

    def on_epoch(epoch, metrics, checkpoint_fn):
        d = tmp_path / f"e{epoch}"
        checkpoint_fn(str(d))
        written.append(d)

    train(tiny_config(epochs=2), tiny_table, on_epoch=on_epoch)
    assert [load_checkpoint(d)["epoch"] for d in written] == [1, 2]
    st = load_checkpoint(written[-1])
    assert st["config"]["n_clusters"] == len(tiny_table.classes)
    assert {"torch", "numpy", "shuffle"} <= set(st["rng"])


def test_resume_refuses_a_different_architecture(tiny_table, tiny_config, tmp_path):
    ck = tmp_path / "ck"
    train(tiny_config(epochs=1, d_z=4), tiny_table, checkpoint_dir=str(ck))
    with pytest.raises(ValueError, match="d_z"):
        train(tiny_config(epochs=2, d_z=6), tiny_table, resume_from=str(ck))


def test_resume_refuses_a_changed_feature_cache(tiny_table, tiny_config, tmp_path):
    """A cache rebuilt since the checkpoint (clips may have moved between splits) is refused."""
    from dataclasses import replace

    ck = tmp_path / "ck"
    train(tiny_config(epochs=1), tiny_table, checkpoint_dir=str(ck))
    rebuilt = replace(tiny_table, cache_key=tiny_table.cache_key + "-rebuilt")
    with pytest.raises(ValueError, match="feature cache"):
        train(tiny_config(epochs=2), rebuilt, resume_from=str(ck))
    # the same cache resumes
    assert train(tiny_config(epochs=2), tiny_table, resume_from=str(ck)).epochs_done == 2
