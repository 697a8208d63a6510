"""Replicas: one config trained from R seeds side by side and judged by their mean.

A clustering network's accuracy moves with its seed alone by as much as any setting (UVAC on FSDD,
one config: 54-69 % test accuracy over three seeds; README, "Quality on real speech"). A study
that judges each trial by one seed therefore ranks seeds as much as settings, and its best trial
is chosen for its luck: the study's best trials lost their margin when repeated over seeds. With
``replicas`` R > 1 a run trains R copies of its config from the seeds
:func:`~trainables.restarts.restart_seed` (``seed`` itself first) in lockstep, one epoch of each
in turn, and everything it reports (every epoch's ``train/`` and ``val/`` metrics through
``on_epoch``, the final ``test/`` metrics) is their mean, with the spread over the replicas of
the accuracy beside it (:data:`SPREAD_METRICS` -> ``<name>_replica_sd``). A scheduler then judges
the config by R seeds at every rung, and the Pareto front is a front of configs, not of seeds.

Each replica owns the process-wide random state (torch's, CUDA's, numpy's legacy global) while
it trains (:class:`OwnedRng`), so replica r reproduces the plain run seeded ``restart_seed(seed,
r)`` exactly. The run's model and per-clip assignments are the first replica's (the
plain run of ``seed``). A replica that diverges ends the run as diverged (a config that diverges
on one seed in R is not a config to recommend), its reason naming the replica. A checkpoint is
the first replica's state (what ``predict`` reads) with the other replicas' states beside it
(key ``replicas``), each with its random state, so a stopped run resumes exactly where it was.
Not combined with ``restarts`` (each restart would be replicated).
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from trainables.checkpoint import global_rng_state, set_global_rng_state
from trainables.restarts import restart_seed

__all__ = ["SPREAD_METRICS", "OwnedRng", "replica_seed", "mean_metrics"]

# the metrics whose spread over the replicas is reported beside their mean
SPREAD_METRICS = ("val/acc", "test/acc")


def replica_seed(seed: int, r: int) -> int:
    """The seed of replica ``r`` (0-based) of a run seeded ``seed``: ``seed`` for r = 0, then the
    restarts' seeds (far from the small seeds benchmarks use)."""
    return restart_seed(seed, r)


class OwnedRng:
    """The process-wide random state of one replica: while :meth:`owned` is entered the process's
    torch, CUDA and numpy legacy generators are the replica's (as it left them the time before);
    on exit the replica's state is saved. The first entry takes the process's state as it is
    (the replica's setup then seeds it)."""

    def __init__(self) -> None:
        self._state: dict[str, Any] | None = None

    @contextlib.contextmanager
    def owned(self) -> Iterator[None]:
        if self._state is not None:
            set_global_rng_state(self._state)
        try:
            yield
        finally:
            self._state = global_rng_state()


def mean_metrics(per_replica: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The mean over replicas of every numeric metric all of them report (a non-numeric value is
    taken from the first), and ``<name>_replica_sd`` (population sd) beside each of
    :data:`SPREAD_METRICS` present. One replica: its metrics unchanged."""
    if not per_replica:
        raise ValueError("mean_metrics: no replica metrics")
    first = per_replica[0]
    if len(per_replica) == 1:
        return dict(first)
    out: dict[str, Any] = {}
    for k, v in first.items():
        values = [m.get(k) for m in per_replica]
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in values):
            mean = float(np.mean(values))
            out[k] = int(v) if k == "epoch" else mean
            if k in SPREAD_METRICS:
                out[f"{k}_replica_sd"] = float(np.std(values)) if all(math.isfinite(x) for x in values) else math.nan
        elif all(k in m for m in per_replica):
            out[k] = v
    return out
