"""K-means within each speaker, its clusters matched across speakers (speaker ids: side information).

With few speakers, the clips of one speaker cluster into the words far better than the clips of
all speakers do: on FSDD's ``awe_speaker`` (per-speaker CMVN, standardised, PCA-20), K-means within
each speaker finds the digits with 81-100 % accuracy (mean 92 %), against 61 % over all clips.
What the speakers cost is *matching* one speaker's clusters to another's. This baseline does
both steps the classical way:

1. PCA (``ALIGNED_PCA`` components) fitted on every training clip, then K-means (10 restarts) on
   each training speaker's clips alone;
2. every speaker's K centroids matched one-to-one to a reference speaker's by the Hungarian method
   on squared Euclidean distance; the reference is the speaker whose matchings cost least in
   total (no labels involved). The matched centroids' mean is the consensus of each cluster.

A clip of a training speaker takes the matched cluster of its speaker's nearest centroid; a clip
of a speaker not seen in training (a speaker-disjoint split), or seen with fewer than K training
clips, takes the nearest consensus centroid.
This is the classical counterpart of the per-speaker targets, with ``fair_kmeans`` (one K-means
whose clusters every speaker uses alike) as the other.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["ALIGNED_PCA", "AlignedKMeans", "fit_aligned_kmeans"]

ALIGNED_PCA = 20


class AlignedKMeans:
    """Per-speaker centroids in one PCA space, each speaker's clusters renamed onto the reference's."""

    def __init__(self, pca, centroids: dict[str, np.ndarray], reference: str):
        self.pca, self.centroids, self.reference = pca, centroids, reference
        self.consensus = np.mean([c for c in centroids.values()], axis=0)  # [K, D]: already matched

    def predict(self, x: np.ndarray, groups: Sequence) -> np.ndarray:
        """The cluster [N] of each row of ``x`` [N, D] spoken by ``groups`` [N] (speaker ids)."""
        groups = np.asarray(groups).astype(str)
        if len(groups) != len(x):
            raise ValueError(f"aligned K-means: {len(groups)} speaker ids for {len(x)} rows")
        z = self.pca.transform(x)
        out = np.empty(len(x), dtype=np.int64)
        for g in np.unique(groups):
            rows = groups == g
            centres = self.centroids.get(g, self.consensus)
            out[rows] = ((z[rows, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
        return out


def _match(centres: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, float]:
    """(``perm``, cost): ``centres[i]`` is matched to ``reference[perm[i]]`` at the least total cost."""
    from scipy.optimize import linear_sum_assignment

    d2 = ((centres[:, None, :] - reference[None]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(d2)
    perm = np.empty(len(centres), dtype=np.int64)
    perm[rows] = cols
    return perm, float(d2[rows, cols].sum())


def fit_aligned_kmeans(x_train: np.ndarray, groups_train: Sequence, k: int, seed: int) -> AlignedKMeans:
    """Fit on standardised ``x_train`` [N, D] with each row's speaker ``groups_train`` [N] (module doc)."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    groups = np.asarray(groups_train).astype(str)
    if len(groups) != len(x_train):
        raise ValueError(f"aligned K-means: {len(groups)} speaker ids for {len(x_train)} rows")
    # a speaker with fewer training clips than clusters cannot be clustered alone: its clips are
    # assigned like an unseen speaker's (the consensus centroids)
    speakers = sorted(s for s in np.unique(groups) if int((groups == s).sum()) >= int(k))
    if not speakers:
        raise ValueError(f"aligned K-means: no speaker has {k} training clips to cluster into {k} "
                         f"({len(np.unique(groups))} speakers, {len(groups)} clips)")
    pca = PCA(n_components=min(ALIGNED_PCA, x_train.shape[1], len(x_train) - 1), random_state=seed).fit(x_train)
    z = pca.transform(x_train)
    own = {s: KMeans(int(k), n_init=10, random_state=int(seed) % (2**31)).fit(z[groups == s]).cluster_centers_
           for s in speakers}
    costs = {ref: sum(_match(own[s], own[ref])[1] for s in speakers if s != ref) for ref in speakers}
    reference = min(speakers, key=lambda s: (costs[s], s))
    matched = {}
    for s in speakers:
        perm = _match(own[s], own[reference])[0]
        renamed = np.empty_like(own[s])
        renamed[perm] = own[s]  # row j: the centroid matched to the reference's cluster j
        matched[s] = renamed
    return AlignedKMeans(pca, matched, reference)
