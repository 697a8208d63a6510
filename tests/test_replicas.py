"""Replicas (trainables.replicas): one config trained from several seeds in lockstep, reported as
their mean, each replica the plain run of its seed."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainables.checkpoint import load_checkpoint
from trainables.config import ConfigError
from trainables.loop import train
from trainables.models import MODELS
from trainables.replicas import OwnedRng, mean_metrics, replica_seed
from trainables.restarts import restart_seed


def test_mean_metrics_averages_numbers_and_reports_the_spread_of_accuracy():
    per = [{"epoch": 3, "val/acc": 0.5, "val/nmi": 0.2, "tag": "a", "flag": True},
           {"epoch": 3, "val/acc": 0.7, "val/nmi": 0.4, "tag": "b", "flag": True}]
    out = mean_metrics(per)
    assert out["epoch"] == 3 and isinstance(out["epoch"], int)
    assert out["val/acc"] == pytest.approx(0.6) and out["val/nmi"] == pytest.approx(0.3)
    assert out["val/acc_replica_sd"] == pytest.approx(0.1)
    assert "val/nmi_replica_sd" not in out  # the spread only for the accuracy
    assert out["tag"] == "a" and out["flag"] is True  # not numbers: the first replica's
    assert mean_metrics(per[:1]) == per[0]  # one replica: unchanged, no spread
    assert "val/acc_replica_sd" not in mean_metrics(per[:1])
    partial = mean_metrics([{"val/acc": 0.5, "train/prior_fitted_at": 4.0}, {"val/acc": 0.7}])
    assert "train/prior_fitted_at" not in partial  # a metric one replica lacks is no mean
    with pytest.raises(ValueError):
        mean_metrics([])


def test_replica_seeds_are_the_restarts_seeds():
    assert [replica_seed(5, r) for r in range(3)] == [restart_seed(5, r) for r in range(3)]
    assert replica_seed(5, 0) == 5


def test_an_owned_random_state_resumes_where_its_owner_left_it():
    a, b = OwnedRng(), OwnedRng()
    with a.owned():
        torch.manual_seed(1)
        np.random.seed(1)
        first = torch.rand(2), np.random.rand()
    with b.owned():
        torch.manual_seed(2)
        np.random.seed(2)
        torch.rand(5)
    with a.owned():
        second = torch.rand(2), np.random.rand()
    torch.manual_seed(1)
    np.random.seed(1)
    expected = torch.rand(4), [np.random.rand(), np.random.rand()]
    assert torch.equal(torch.cat([first[0], second[0]]), expected[0])
    assert [first[1], second[1]] == expected[1]


@pytest.mark.parametrize("model", sorted(MODELS))
def test_replicas_report_the_mean_of_the_plain_runs_of_their_seeds(tiny_table, tiny_config, model):
    """Each replica is exactly the plain run of its seed (lockstep does not mix their random
    streams); every epoch reported and the final metrics are the replicas' means; the model kept
    (assignments) is the first replica's."""
    base = dict(model=model, epochs=2, checkpoint_every=0)
    plain = [train(tiny_config(**base, seed=replica_seed(0, r)), tiny_table) for r in range(2)]
    seen = []
    res = train(tiny_config(**base, replicas=2), tiny_table, on_epoch=lambda e, m, fn: seen.append((e, m)))
    assert res.status == "complete", res.reason
    assert [e for e, _ in seen] == [1, 2] and res.epochs_done == 2 and len(res.history) == 2
    for (_, m), h, *ps in zip(seen, res.history, *(p.history for p in plain)):
        assert m["train/loss"] == pytest.approx(np.mean([p["train/loss"] for p in ps]), rel=1e-6)
        assert m["val/acc"] == pytest.approx(np.mean([p["val/acc"] for p in ps]))
        assert m["val/acc_replica_sd"] == pytest.approx(np.std([p["val/acc"] for p in ps]))
        assert h["val/acc"] == m["val/acc"]
    assert res.metrics["test/acc"] == pytest.approx(np.mean([p.metrics["test/acc"] for p in plain]))
    assert math.isfinite(res.metrics["test/acc_replica_sd"])
    np.testing.assert_array_equal(res.assignments["cluster"], plain[0].assignments["cluster"])
    assert res.config["seed"] == 0 and res.config["replicas"] == 2


def test_a_replica_that_diverges_ends_the_run_as_diverged_and_says_which(tiny_table, tiny_config):
    res = train(tiny_config(model="uvac", epochs=2, replicas=2, lr_start=1e30, lr_end=1e29, checkpoint_every=0),
                tiny_table)
    assert res.status == "diverged"
    assert res.reason.startswith("replica 0 (seed 0): non-finite")
    assert res.epochs_done == len(res.history)


_TIMES = ("train/epoch_time_s", "train/samples_per_s", "val/time_s")


def _same(a: dict, b: dict) -> None:
    a, b = ({k: v for k, v in d.items() if k not in _TIMES} for d in (a, b))
    assert a.keys() == b.keys()
    for k in a:
        same = (isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k]
        assert same, (k, a[k], b[k])


@pytest.mark.parametrize("model,extra", [("uvac", {"prior_warmup_epochs": 2}), ("cat_uvac", {})])
def test_a_stopped_run_with_replicas_resumes_exactly(tiny_table, tiny_config, tmp_path, model, extra):
    """Stopped after epoch 1 of 3 and resumed: every epoch's mean, the final metrics, the clips'
    clusters and every replica's weights equal the run trained straight through (UVAC's prior is
    fitted after the interruption)."""
    cfg = tiny_config(model=model, epochs=3, replicas=2, checkpoint_every=1, **extra)
    straight = train(cfg, tiny_table, checkpoint_dir=str(tmp_path / "a"))
    ck = tmp_path / "b"
    stopped = train(cfg, tiny_table, checkpoint_dir=str(ck), on_epoch=lambda e, m, fn: e >= 1)
    assert stopped.status == "stopped" and stopped.epochs_done == 1
    assert len(load_checkpoint(ck)["replicas"]) == 1  # the second replica rides along
    resumed = train(cfg, tiny_table, checkpoint_dir=str(ck), resume_from=str(ck))
    assert resumed.status == "complete" and len(resumed.history) == 3
    for h1, h2 in zip(straight.history, resumed.history):
        _same(h1, h2)
    _same(straight.metrics, resumed.metrics)
    assert np.array_equal(straight.assignments["cluster"], resumed.assignments["cluster"])
    a, b = load_checkpoint(tmp_path / "a"), load_checkpoint(ck)
    for sa, sb in zip([a, *a["replicas"]], [b, *b["replicas"]]):
        assert sa["epoch"] == sb["epoch"] == 3
        for k in sa["model"]:
            assert torch.equal(sa["model"][k], sb["model"][k]), k


def test_a_checkpoint_resumes_only_with_its_own_number_of_replicas(tiny_table, tiny_config, tmp_path):
    cfg = tiny_config(model="cat_uvac", epochs=2, replicas=2, checkpoint_every=1)
    ck = tmp_path / "ck"
    train(cfg, tiny_table, checkpoint_dir=str(ck), on_epoch=lambda e, m, fn: e >= 1)
    with pytest.raises(ValueError, match="holds 2 replica.*asks for 3"):
        train({**cfg, "replicas": 3}, tiny_table, resume_from=str(ck))
    with pytest.raises(ValueError, match="holds 2 replicas.*asks for one"):
        train({**cfg, "replicas": 1}, tiny_table, resume_from=str(ck))


def test_replicas_and_restarts_are_not_combined(tiny_config):
    with pytest.raises(ConfigError, match="restarts .* and replicas"):
        tiny_config(model="uvac", epochs=2, replicas=2, restarts=2)
    with pytest.raises(ConfigError, match="replicas"):
        tiny_config(model="uvac", epochs=2, replicas=0)
