"""Speaker-independent K-means: the classical counterpart of ``speaker_independence``.

A model trained with ``speaker_independence`` (trainables.independence) uses the speaker ids in
its objective, not only in its per-speaker normalisation; a classical method given the same side
information in the same way is the fair comparison. This one: K-means (10 restarts) on the
standardised features projected to 20 principal components, then the centres refined by gradient
descent on

    mean_n sum_k q_nk ||x_n - c_k||^2  +  weight * I(cluster; speaker)  -  H(mean_n q_n)

with soft assignments ``q_n = softmax_k(-||x_n - c_k||^2 / 2)`` (in units of the projection's
overall standard deviation), the exact mutual information over the training split
(:func:`trainables.independence.group_dependence`) and the entropy of the cluster sizes keeping
all clusters in use; clips are then assigned to their nearest centre. It refines K-means' start:
where K-means' clusters are the speakers and lie so far apart that the soft assignments are hard
(no clip between two centres), the term has no gradient left and nothing moves. Measured on FSDD's
``awe_speaker`` (whole table, 3 seeds, weight 30): 65.8 % ACC for K-means, 78.0 % with the term.
"""
from __future__ import annotations

import numpy as np
import torch

from trainables.independence import group_dependence

__all__ = ["FAIR_WEIGHT", "FairKMeans", "fit_fair_kmeans"]

FAIR_WEIGHT = 30.0
FAIR_PCA = 20
_STEPS, _LR, _TEMP = 400, 0.01, 2.0


class FairKMeans:
    """Fitted centres in the projection: ``predict(x)`` [N] nearest centre, ``proba(x)`` [N, K]."""

    def __init__(self, pca, centres: np.ndarray, scale: float):
        self.pca, self.centres, self.scale = pca, centres, float(scale)

    def _d2(self, x: np.ndarray) -> np.ndarray:
        z = self.pca.transform(x) / self.scale
        return ((z[:, None, :] - self.centres[None]) ** 2).sum(-1)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self._d2(x).argmin(1)

    def proba(self, x: np.ndarray) -> np.ndarray:
        logits = -self._d2(x) / _TEMP
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits)
        return (p / p.sum(1, keepdims=True)).astype(np.float32)


def fit_fair_kmeans(x_train: np.ndarray, groups_train: np.ndarray, k: int, seed: int,
                    weight: float = FAIR_WEIGHT) -> FairKMeans:
    """Fit on standardised ``x_train`` [N, D] with each row's speaker ``groups_train`` [N] (module doc)."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    if len(groups_train) != len(x_train):
        raise ValueError(f"fair K-means: {len(groups_train)} speaker ids for {len(x_train)} rows")
    pca = PCA(n_components=min(FAIR_PCA, x_train.shape[1], len(x_train) - 1), random_state=seed).fit(x_train)
    z = pca.transform(x_train)
    scale = float(z.std()) or 1.0
    z = z / scale
    km = KMeans(int(k), n_init=10, random_state=int(seed) % (2**31)).fit(z)
    group = torch.as_tensor(np.unique(np.asarray(groups_train).astype(str), return_inverse=True)[1].reshape(-1))
    zt = torch.as_tensor(z, dtype=torch.float32)
    centres = torch.tensor(km.cluster_centers_, dtype=torch.float32, requires_grad=True)
    opt = torch.optim.Adam([centres], lr=_LR)
    for _ in range(_STEPS):
        d2 = ((zt[:, None, :] - centres[None]) ** 2).sum(-1)
        log_q = torch.log_softmax(-d2 / _TEMP, dim=1)
        q = log_q.exp()
        q_bar = q.mean(0)
        neg_entropy = (q_bar * q_bar.clamp_min(1e-10).log()).sum()
        loss = (q * d2).sum(1).mean() + weight * group_dependence(log_q, group) + neg_entropy
        opt.zero_grad()
        loss.backward()
        opt.step()
    return FairKMeans(pca, centres.detach().numpy().astype(np.float64), scale)
