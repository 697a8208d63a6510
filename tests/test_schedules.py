"""Schedules: endpoints, monotonicity, floor, hold after annealing, the config functions, resume-consistency."""
from __future__ import annotations

import math

import pytest

from trainables.schedules import TAU_KINDS, kl_warmup_factor, kl_weight_at, lr_at, lr_curve, tau_at, tau_curve


@pytest.mark.parametrize("kind", ["linear", "exponential", "cosine"])
def test_tau_hits_start_and_end_and_is_monotone(kind):
    ts = [tau_curve(kind, 1.0, 0.5, 20, e / 4) for e in range(0, 4 * 30 + 1)]
    assert ts[0] == pytest.approx(1.0)
    assert tau_curve(kind, 1.0, 0.5, 20, 20.0) == pytest.approx(0.5)
    assert all(b <= a + 1e-12 for a, b in zip(ts, ts[1:]))  # non-increasing
    assert ts[4 * 10] < 1.0 and ts[4 * 10] > 0.5  # strictly between mid-way
    assert all(t == pytest.approx(0.5) for t in ts[4 * 20:])  # held at end after annealing


def test_tau_shapes_midpoint():
    assert tau_curve("linear", 1.0, 0.5, 10, 5) == pytest.approx(0.75)
    assert tau_curve("exponential", 1.0, 0.25, 10, 5) == pytest.approx(0.5)
    assert tau_curve("cosine", 1.0, 0.5, 10, 5) == pytest.approx(0.75)
    assert tau_curve("cosine", 1.0, 0.5, 10, 2.5) > tau_curve("linear", 1.0, 0.5, 10, 2.5)
    assert tau_curve("constant", 0.8, 0.1, 10, 7) == pytest.approx(0.8)


def test_tau_floor_and_errors():
    assert tau_curve("linear", 1.0, 0.01, 10, 10, floor=0.05) == pytest.approx(0.05)
    assert tau_curve("exponential", 1.0, 0.01, 10, 9.9, 0.2) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="kind"):
        tau_curve("step", 1.0, 0.5, 10, 1)
    assert set(TAU_KINDS) == {"constant", "linear", "exponential", "cosine"}


def _cfg(**kw):
    from trainables.config import resolve_config

    return resolve_config({"model": "cat_uvac", "epochs": 10, **kw})


def test_tau_at_whole_run_and_fraction():
    cfg = _cfg(tau_kind="linear", tau_start=1.0, tau_end=0.5, tau_anneal_epochs=0)
    assert tau_at(cfg, 0, 0.0) == pytest.approx(1.0)
    assert tau_at(cfg, 9, 1.0) == pytest.approx(0.5)  # end of the last epoch
    assert tau_at(cfg, 4, 0.5) == pytest.approx(tau_curve("linear", 1.0, 0.5, 10, 4.5))
    cfg4 = _cfg(tau_kind="cosine", tau_anneal_epochs=4)
    assert tau_at(cfg4, 4, 0.0) == pytest.approx(cfg4["tau_end"])
    assert tau_at(cfg4, 8, 0.3) == pytest.approx(cfg4["tau_end"])


def test_lr_endpoints_and_exponential_decay():
    assert lr_curve(5e-3, 5e-4, 500, 0) == pytest.approx(5e-3)
    assert lr_curve(5e-3, 5e-4, 500, 499) == pytest.approx(5e-4)
    mid = lr_curve(5e-4, 5e-5, 101, 50)
    assert mid == pytest.approx(math.sqrt(5e-4 * 5e-5))  # geometric midpoint
    lrs = [lr_curve(5e-3, 5e-4, 20, e) for e in range(20)]
    ratios = [b / a for a, b in zip(lrs, lrs[1:])]
    assert all(r == pytest.approx(ratios[0]) for r in ratios) and ratios[0] < 1
    assert lr_curve(1e-3, 1e-4, 1, 0) == pytest.approx(1e-3)
    assert lr_curve(1e-3, 1e-4, 10, 50) == pytest.approx(1e-4)  # clamped past the end


def test_lr_at():
    cfg = _cfg(model="uvac")
    assert lr_at(cfg, 0) == pytest.approx(cfg["lr_start"])
    assert lr_at(cfg, cfg["epochs"] - 1) == pytest.approx(cfg["lr_end"])


def test_kl_weight_warmup():
    assert kl_warmup_factor(0, 0) == 1.0 and kl_warmup_factor(0, 100) == 1.0
    assert kl_warmup_factor(10, 0) == 0.0
    assert kl_warmup_factor(10, 5) == pytest.approx(0.5)
    assert kl_warmup_factor(10, 10) == 1.0 and kl_warmup_factor(10, 30) == 1.0
    cfg = _cfg(lam=2.0, kl_warmup_epochs=4)
    assert kl_weight_at(cfg, 2) == pytest.approx(1.0)  # lam * 0.5
    assert kl_weight_at(cfg, 9) == pytest.approx(2.0)
    assert kl_weight_at(_cfg(lam=0.5), 0) == pytest.approx(0.5)  # warm-up off


def test_schedules_are_pure_functions_of_the_epoch():
    """A resumed run (fresh call at epoch k) continues the same curve as an uninterrupted one."""
    cfg = _cfg(tau_kind="exponential")
    run = [(tau_at(cfg, e, 0.5), lr_at(cfg, e), kl_weight_at(cfg, e)) for e in range(10)]
    resumed = run[:4] + [(tau_at(cfg, e, 0.5), lr_at(cfg, e), kl_weight_at(cfg, e)) for e in range(4, 10)]
    assert run == resumed
