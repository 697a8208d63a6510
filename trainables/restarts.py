"""Restarts: several initialisations of one config, the best-separated one kept (K-means' ``n_init``
for the networks).

A clustering network's accuracy moves with its initialisation alone by as much as any setting:
UVAC on FSDD with one split and one config reaches 61.5-84.5 % validation accuracy over six seeds
(README, "Quality on real speech"). K-means meets the same problem with ``n_init`` restarts kept by
their inertia. ``restarts`` R does it for the networks, without labels:

* R candidates are trained from seeds :func:`restart_seed` (``seed`` itself first, so ``restarts``
  1 is the plain run) for ``restart_epochs`` epochs each (0 = the whole run);
* each candidate is scored by :func:`separation`: the silhouette of its clusters on its reported
  representation (``ClusteringModel.reported_representation``: UVAC's z, categorical UVAC's y) over
  the **training** split, so neither labels nor the validation split are used;
* the best-scoring candidate is continued to ``epochs`` (:func:`choose`); a diverged candidate
  scores nothing, and where every candidate diverged the run is reported as diverged.

The silhouette is scale-free (a candidate's latent scale does not decide), and on FSDD it was the
internal index that ranked six UVAC initialisations closest to their accuracy at the end of the
run; at the end of the warm-up it ranked them no better than chance on one front end
(``restart_epochs`` is therefore a knob, the whole run the default). The choice is recorded in the
run's metrics (:func:`restart_metrics`, :data:`RESTART_METRICS`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from trainables.metrics import cluster_quality

__all__ = ["RESTART_STRIDE", "RESTART_METRICS", "Candidate", "restart_seed", "restart_epochs", "separation", "choose",
           "restart_metrics"]

# Seeds of candidates r > 0 are seed + r * RESTART_STRIDE: far from the small seeds benchmarks and
# replications use, so the candidates of seed 0 are never the runs of seeds 1 and 2.
RESTART_STRIDE = 1_000_003


@dataclass(frozen=True)
class Candidate:
    """One initialisation: its index r, seed, separation score (NaN: none) and failure ("" if none)."""

    index: int
    seed: int
    score: float
    failure: str = ""


def restart_seed(seed: int, r: int) -> int:
    """The seed of candidate ``r`` (0-based) of a run seeded ``seed``: ``seed`` for r = 0."""
    if r < 0:
        raise ValueError(f"restart index must be >= 0, got {r}")
    return int(seed) + int(r) * RESTART_STRIDE


def restart_epochs(cfg: Mapping) -> int:
    """Epochs each candidate trains before the choice: ``restart_epochs``, 0 = ``epochs`` (the whole
    run), never more than ``epochs``."""
    e = int(cfg["restart_epochs"])
    return int(cfg["epochs"]) if e <= 0 else min(e, int(cfg["epochs"]))


def separation(representation: np.ndarray, clusters: np.ndarray, *, sample_size: int | None, seed: int) -> float:
    """Silhouette of ``clusters`` [N] on ``representation`` [N, D] (NaN where undefined: one cluster,
    non-finite values)."""
    return float(cluster_quality(representation, clusters, sample_size=sample_size, seed=seed)["silhouette"])


def choose(candidates: Sequence[Candidate]) -> Candidate | None:
    """The candidate with the highest finite score (the first on ties); None when none has one."""
    scored = [c for c in candidates if not c.failure and math.isfinite(c.score)]
    return max(scored, key=lambda c: c.score) if scored else None


RESTART_METRICS = ("restart", "restart_silhouette", "restart_silhouette_mean")


def restart_metrics(candidates: Sequence[Candidate], chosen: Candidate) -> dict[str, float]:
    """``train/restart`` (the kept candidate's index), ``train/restart_silhouette`` (its score) and
    ``train/restart_silhouette_mean`` (the mean over the candidates that have one: what the choice
    gained over a random pick)."""
    scores = [c.score for c in candidates if not c.failure and math.isfinite(c.score)]
    return {"train/restart": float(chosen.index), "train/restart_silhouette": float(chosen.score),
            "train/restart_silhouette_mean": float(np.mean(scores)) if scores else math.nan}
