"""Restarts (trainables.restarts): several initialisations, the best separated kept, no labels used."""
from __future__ import annotations

import math

import numpy as np
import pytest

from trainables.config import ConfigError
from trainables.loop import train
from trainables.models import MODELS
from trainables.restarts import RESTART_STRIDE, Candidate, choose, restart_epochs, restart_metrics, restart_seed


def test_restart_seed_keeps_the_plain_run_first_and_stays_clear_of_small_seeds():
    assert restart_seed(3, 0) == 3
    seeds = {restart_seed(s, r) for s in range(5) for r in range(4)}
    assert len(seeds) == 20  # the candidates of seeds 0..4 never coincide
    assert restart_seed(0, 1) == RESTART_STRIDE
    with pytest.raises(ValueError):
        restart_seed(0, -1)


def test_choose_takes_the_highest_finite_score_and_skips_failures():
    cands = [Candidate(0, 0, 0.2), Candidate(1, 1, 0.5, "non-finite loss"), Candidate(2, 2, math.nan),
             Candidate(3, 3, 0.4)]
    assert choose(cands).index == 3
    assert choose([Candidate(0, 0, math.nan), Candidate(1, 1, 0.9, "diverged")]) is None
    m = restart_metrics(cands, cands[3])
    assert m["train/restart"] == 3.0 and m["train/restart_silhouette"] == 0.4
    assert m["train/restart_silhouette_mean"] == pytest.approx(0.3)


def test_restart_epochs_zero_is_the_whole_run():
    assert restart_epochs({"restart_epochs": 0, "epochs": 7}) == 7
    assert restart_epochs({"restart_epochs": 3, "epochs": 7}) == 3
    assert restart_epochs({"restart_epochs": 30, "epochs": 7}) == 7


def test_restarts_chosen_inside_the_warm_up_are_refused(tiny_config):
    with pytest.raises(ConfigError, match="warm-up"):
        tiny_config(model="uvac", epochs=10, restarts=3, restart_epochs=1, prior_init="fit", prior_warmup_epochs=5)
    tiny_config(model="uvac", epochs=10, restarts=3, restart_epochs=7, prior_init="fit", prior_warmup_epochs=5)


def _silhouette_of(res):
    return res.metrics["train/restart_silhouette"]


@pytest.mark.parametrize("model", sorted(MODELS))
def test_the_kept_restart_is_the_best_separated_candidate(tiny_table, tiny_config, model):
    """Each candidate is the plain run of its seed; the kept one is the best separated of them, and
    restarts 1 is the plain run itself."""
    base = dict(model=model, epochs=2, checkpoint_every=0)
    plain = [train(tiny_config(**base, seed=restart_seed(0, r)), tiny_table) for r in range(3)]
    res = train(tiny_config(**base, restarts=3), tiny_table)
    assert res.status == "complete", res.reason
    kept = int(res.metrics["train/restart"])
    assert len(res.history) == 2 and res.epochs_done == 2
    # the kept run is the plain run of its candidate seed, epoch by epoch
    for h, p in zip(res.history, plain[kept].history):
        assert h["train/loss"] == pytest.approx(p["train/loss"], rel=1e-6)
    assert res.metrics["test/acc"] == pytest.approx(plain[kept].metrics["test/acc"])
    # and no candidate separates its clusters better on the train split
    assert math.isfinite(_silhouette_of(res))
    assert _silhouette_of(res) >= res.metrics["train/restart_silhouette_mean"] - 1e-12
    # the config recorded is the one asked for (seed 0), not the candidate's
    assert res.config["seed"] == 0 and res.config["restarts"] == 3
    one = train(tiny_config(**base, restarts=1), tiny_table)
    assert "train/restart" not in one.metrics
    assert one.metrics["test/acc"] == pytest.approx(plain[0].metrics["test/acc"])


def test_restarts_then_continue_reports_every_epoch_once(tiny_table, tiny_config):
    seen = []
    res = train(tiny_config(model="uvac", epochs=3, restarts=2, restart_epochs=2, prior_init="paper",
                            checkpoint_every=0), tiny_table, on_epoch=lambda e, m, fn: seen.append((e, "train/restart" in m)))
    assert res.status == "complete", res.reason
    assert [e for e, _ in seen] == [1, 2, 3]
    assert [flag for _, flag in seen] == [False, True, False]  # the choice is logged in the epoch it was made
    assert "train/restart" in res.metrics  # and kept among the final metrics


def test_restarts_that_all_diverge_give_a_diverged_run(tiny_table, tiny_config):
    """Every candidate diverging gives a diverged run that says why, not an exception (a single
    diverged candidate is skipped: test_choose_takes_the_highest_finite_score_and_skips_failures)."""
    res = train(tiny_config(model="uvac", epochs=2, restarts=2, lr_start=1e30, lr_end=1e29, checkpoint_every=0),
                tiny_table)
    assert res.status == "diverged"
    assert "non-finite" in res.reason


def test_restarts_write_the_kept_state_and_resume_continues_it(tiny_table, tiny_config, tmp_path):
    cfg = tiny_config(model="uvac", epochs=3, restarts=2, restart_epochs=2, prior_init="paper", checkpoint_every=1)
    full = train(cfg, tiny_table)
    ck = tmp_path / "ck"
    stopped = train(cfg, tiny_table, checkpoint_dir=str(ck), on_epoch=lambda e, m, fn: e >= 2)
    assert stopped.status == "stopped" and stopped.epochs_done == 2
    resumed = train(cfg, tiny_table, resume_from=str(ck))
    assert resumed.status == "complete" and resumed.epochs_done == 3
    np.testing.assert_allclose(resumed.history[-1]["train/loss"], full.history[-1]["train/loss"], rtol=1e-6)
