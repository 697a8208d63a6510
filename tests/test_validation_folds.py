"""Validation folds (config key ``val_fold``): the random split's validation moved over the non-test
clips, test never moved, honoured by every loader and refused where it cannot apply."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from features.splits import random_split, rotate_validation, validation_folds


def _split(n: int = 2000, seed: int = 0):
    ids = np.array([f"clip{i:05d}" for i in range(n)])
    return ids, random_split(ids, seed)


def test_the_folds_are_disjoint_validation_splits_of_one_size_and_test_never_moves():
    ids, split = _split()
    k = validation_folds(split)
    assert k == 9  # 1,600 training clips hold 8 folds of the 200 validation clips, plus the stored one
    folds = [rotate_validation(split, ids, f, seed=0) for f in range(k)]
    assert np.array_equal(folds[0], split)  # fold 0 is the split as stored
    vals = [set(ids[f == "val"]) for f in folds]
    assert all(len(v) == 200 for v in vals)
    assert all(a.isdisjoint(b) for a, b in itertools.combinations(vals, 2))
    assert set().union(*vals) == set(ids[split != "test"])  # 9 x 200 = every non-test clip
    for f in folds:
        assert np.array_equal(f == "test", split == "test")
        assert (f == "train").sum() == 1600


def test_a_fold_is_a_pure_function_of_the_ids_and_seed_not_their_order():
    ids, split = _split(500)
    a = rotate_validation(split, ids, 2, seed=7)
    perm = np.random.default_rng(1).permutation(len(ids))
    b = rotate_validation(split[perm], ids[perm], 2, seed=7)
    assert np.array_equal(a[perm], b)
    assert not np.array_equal(a, rotate_validation(split, ids, 2, seed=8))


def test_a_fold_the_split_does_not_offer_is_refused_with_the_folds_it_has():
    ids, split = _split(100)
    with pytest.raises(ValueError, match=r"val_fold=9: this split offers 9 validation fold\(s\), 0-8"):
        rotate_validation(split, ids, 9, seed=0)
    no_val = np.where(split == "val", "train", split)
    assert validation_folds(no_val) == 1
    with pytest.raises(ValueError, match="offers 1 validation fold"):
        rotate_validation(no_val, ids, 1, seed=0)


def test_load_table_applies_the_fold_and_refuses_it_on_the_group_split(tiny_cache):
    from features.cache import load_table

    base = tiny_cache.table
    t = load_table(tiny_cache.dir, val_fold=2)
    assert t.val_fold == 2 and base.val_fold == 0
    assert np.array_equal(t.split == "test", base.split == "test")
    assert (t.split == "val").sum() == (base.split == "val").sum()
    assert set(t.ids[t.split == "val"]).isdisjoint(set(base.ids[base.split == "val"]))
    with pytest.raises(ValueError, match="rotate the random split only"):
        load_table(tiny_cache.dir, split_scheme="group", val_fold=1)


def test_training_refuses_a_table_loaded_with_another_fold(tiny_table, tiny_config):
    from trainables.config_keys import ConfigError
    from trainables.loop import train

    with pytest.raises(ConfigError, match="val_fold=1: the table was loaded with validation fold 0"):
        train(tiny_config(model="kmeans", val_fold=1), tiny_table)


def test_the_train_command_validates_and_records_on_the_fold(tiny_cache, tmp_path, capsys):
    from trainables.train import main

    run = tmp_path / "run"
    rc = main(["--model", "kmeans", "--features", str(tiny_cache.dir), "--val-fold", "3", "--out", str(run),
               "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    assert json.loads((run / "config.json").read_text())["val_fold"] == 3
    tab = pq.read_table(run / "assignments.parquet").to_pandas()
    base = tiny_cache.table
    val_ids = set(tab.loc[tab["split"] == "val", "id"])
    assert val_ids and val_ids.isdisjoint(set(base.ids[base.split == "val"]))
    assert set(tab.loc[tab["split"] == "test", "id"]) == set(base.ids[base.split == "test"])
    assert main(["--model", "kmeans", "--features", str(tiny_cache.dir), "--val-fold", "99", "--out",
                 str(tmp_path / "bad"), "--device", "cpu"]) == 2
    assert "val_fold=99" in capsys.readouterr().err


def _args(*flags):
    from benchmarks.quality import parser

    a = parser().parse_args(["--seeds", "4", "--ablation-seeds", "0", "--no-speaker", "--models", "cat_uvac", *flags])
    a.splits, a.models, a.recipes, a.candidates = ["random", "group"], ["cat_uvac"], ["recommended"], []
    a.frontend_default, a.model_frontends = "audiomnist", ["awe_voice"]
    return a


def test_the_benchmark_rotates_validation_over_seeds_on_the_random_split_only():
    from benchmarks.quality import plan_jobs

    a = _args("--rotate-val")
    a.val_folds = 3
    folds = {(j.kind, j.split, j.seed): j.config.get("val_fold", 0) for j in plan_jobs(a)}
    for kind in ("labels", "suite", "neural"):  # a seed's baselines are fitted on the seed's split
        assert [folds[(kind, "random", s)] for s in range(4)] == [0, 1, 2, 0]
        assert [folds[(kind, "group", s)] for s in range(4)] == [0, 0, 0, 0]
    seed0 = [j for j in plan_jobs(a) if j.seed == 0]
    assert all("val_fold" not in j.config for j in seed0)  # fold 0: the same job as without rotation
    assert all("val_fold" not in j.config for j in plan_jobs(_args()))


def test_a_candidate_cannot_set_the_fold():
    from benchmarks.quality import parse_candidates
    from trainables.config_keys import ConfigError

    with pytest.raises(ConfigError, match="val_fold is set by the benchmark itself"):
        parse_candidates(["val_fold=2"], ["cat_uvac"])
