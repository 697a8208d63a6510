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

``restart_combine="vote"`` keeps every candidate instead (trained for the whole run) and lets them
vote (:class:`VotingEnsemble`): the candidates of a network find different partitions (a
classical method's restarts mostly find the same one), and a clip's cluster is the one its
candidates agree on. The vote (:func:`vote_maps`) starts from the candidate that agrees most with
the others (:func:`most_agreeing`, mean NMI over the train split) and alternates, on the train
split, between the consensus clusters and each candidate's map M_r: a one-to-one renaming of the
candidate's clusters onto the consensus clusters (a permutation matrix, the Hungarian method on
their co-occurrence); a clip's ensemble probabilities are the mean over candidates of q_r(j|x) M_r.
The maps are one-to-one so that every consensus cluster receives one whole cluster of every
candidate: soft maps (M_r[j, k] = P(consensus k | candidate cluster j)) let two clusters of a
candidate pour into one consensus cluster, and the consensus lost clusters (UVAC votes on FSDD used
7-9 of 10). The maps are fitted once, on the train split, so the ensemble predicts any clip
(validation, test, new audio: :func:`load_ensemble`) without refitting; no labels are used.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from trainables.metrics import cluster_quality

__all__ = ["RESTART_STRIDE", "RESTART_METRICS", "COMBINES", "Candidate", "restart_seed", "restart_epochs",
           "separation", "choose", "restart_metrics", "most_agreeing", "vote_maps", "vote_probs", "VotingEnsemble",
           "load_ensemble"]

COMBINES = ("best", "vote")  # restart_combine: keep the best separated, or let every candidate vote

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


# -- voting -----------------------------------------------------------------------------------
def most_agreeing(clusters: Sequence[np.ndarray]) -> int:
    """The index of the partition [N] with the highest mean NMI to the others (the first on ties)."""
    from sklearn.metrics import normalized_mutual_info_score

    if len(clusters) < 2:
        return 0
    agree = [np.mean([normalized_mutual_info_score(a, b) for j, b in enumerate(clusters) if j != i])
             for i, a in enumerate(clusters)]
    return int(np.argmax(agree))


def _maps(probs: Sequence[np.ndarray], consensus: np.ndarray, k: int) -> np.ndarray:
    """[R, K, K]: map r is the permutation matrix that renames candidate r's clusters onto the
    consensus clusters with the most co-occurring mass over the rows (soft counts q_r(j|x); the
    Hungarian method, so each consensus cluster receives exactly one cluster of each candidate)."""
    from scipy.optimize import linear_sum_assignment

    onehot = np.eye(k)[consensus]
    out = []
    for p in probs:
        counts = np.asarray(p, dtype=np.float64).T @ onehot  # [K, K]: candidate cluster j x consensus k
        rows, cols = linear_sum_assignment(counts, maximize=True)
        m = np.zeros((k, k))
        m[rows, cols] = 1.0
        out.append(m)
    return np.stack(out)


def vote_probs(probs: Sequence[np.ndarray], maps: np.ndarray) -> np.ndarray:
    """The vote [N, K]: the mean over candidates of ``probs[r]`` [N, K_r] mapped by ``maps[r]``
    (rows sum to 1 where the candidates' do); :class:`VotingEnsemble` computes the same in torch."""
    return sum(np.asarray(p) @ m for p, m in zip(probs, maps)) / len(probs)


def vote_maps(probs: Sequence[np.ndarray], reference: int, *, max_iter: int = 50) -> np.ndarray:
    """The candidates' one-to-one maps [R, K, K] (permutation matrices) fitted on ``probs`` (each
    [N, K], rows summing to 1: the train split's q_r(j|x)), starting from candidate ``reference``'s
    clusters: the consensus of the rows and the maps are updated in turn until the consensus stops
    changing."""
    if not probs:
        raise ValueError("vote_maps needs at least one candidate")
    k = probs[0].shape[1]
    if any(np.shape(p)[1] != k for p in probs):
        sizes = [np.shape(p)[1] for p in probs]
        raise ValueError(f"vote_maps needs candidates with one number of clusters, got {sizes}")
    consensus = np.asarray(probs[reference]).argmax(axis=1)
    maps = _maps(probs, consensus, k)
    for _ in range(max_iter):
        new = vote_probs(probs, maps).argmax(axis=1)
        if np.array_equal(new, consensus):
            break
        consensus = new
        maps = _maps(probs, consensus, k)
    return maps


class VotingEnsemble(nn.Module):
    """Candidates of one config voting for each clip's cluster (``restart_combine="vote"``).

    ``members``: the trained networks (one class); ``maps`` [R, K, K] from :func:`vote_maps`;
    ``reference``: the member whose representations are reported (the most agreeing one).
    :meth:`infer` returns ``probs`` [B, K] = mean over members of q_r(j|x) M_r, ``cluster`` its
    argmax, and the reference member's representations (``z``, ``y``): what the loop, the metrics
    and the assignments read from any :class:`~trainables.models.base.ClusteringModel`.
    """

    def __init__(self, members: Sequence[nn.Module], maps, reference: int):
        super().__init__()
        if len(members) != len(maps):
            raise ValueError(f"{len(members)} members but {len(maps)} maps")
        self.members = nn.ModuleList(members)
        self.register_buffer("maps", torch.as_tensor(np.asarray(maps), dtype=torch.float32))
        self.register_buffer("reference", torch.tensor(int(reference)))
        ref = members[int(reference)]
        self.representations = tuple(ref.representations)
        self.reported_representation = type(ref).reported_representation

    def representation_sizes(self) -> dict[str, int]:
        return self.members[int(self.reference)].representation_sizes()

    @torch.no_grad()
    def infer(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        outs = [m.infer(x, mask) for m in self.members]
        probs = sum(o["probs"].float() @ self.maps[r] for r, o in enumerate(outs)) / len(outs)
        ref = outs[int(self.reference)]
        return {**{k: ref[k] for k in self.representations}, "probs": probs, "cluster": probs.argmax(dim=1)}

    @torch.no_grad()
    def predict(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.infer(x, mask)["cluster"]

    def inference_parameters(self) -> int:
        return sum(int(m.inference_parameters()) for m in self.members)


def load_ensemble(state: dict, build) -> VotingEnsemble:
    """The :class:`VotingEnsemble` of a checkpoint's model state (``members.<r>.`` keys, ``maps``,
    ``reference``); ``build()`` makes one untrained member."""
    n = int(state["maps"].shape[0])
    ens = VotingEnsemble([build() for _ in range(n)], state["maps"].numpy(), int(state["reference"]))
    ens.load_state_dict(state)
    return ens
