"""A factorial Gaussian mixture: content clusters k (the words) crossed with style clusters s
(speakers, channels), component (k, s) with mean ``m_k + n_s`` (docs/MODELS.md, "Factorial prior").

Measured on real spoken digits: clips form tight groups per (digit, speaker), and a digit's
speakers lie apart; the speaker acts (to first order) as an additive offset shared by every
digit. A plain mixture of K components then groups clips by speaker as much as by digit; one of
K x S components with shared style offsets explains the speaker once, so that the content
clusters are free to be the digits. Fitted by EM (:func:`fit_factorial`) with a diagonal
covariance shared by all components, the style clusters initialised by K-means on order-free
clip statistics (per-band mean and spread: speaker and channel, not the word's timing), the
content clusters by K-means on the points with their style offset removed; the restart with the
highest log-likelihood wins (no label is looked at).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FACTORIAL_PCA", "FactorialMixture", "fit_factorial", "fit_projected"]

_LOG_2PI = float(np.log(2 * np.pi))
FACTORIAL_PCA = 10  # the projection the mixture is fitted on (measured on FSDD: 10 beat 20 and 40)


@dataclass(frozen=True)
class FactorialMixture:
    """weights [K, S] (sum 1), means [K, S, D] = content [K, D] + style [S, D], variances [D]."""

    weights: np.ndarray
    content: np.ndarray
    style: np.ndarray
    variances: np.ndarray
    log_likelihood: float

    @property
    def means(self) -> np.ndarray:
        return self.content[:, None, :] + self.style[None, :, :]

    def responsibilities(self, x: np.ndarray) -> np.ndarray:
        """p(k, s | x) [N, K, S]."""
        return _e_step(x, self.weights, self.means, self.variances)[0]


def _e_step(x, weights, means, var):
    ll = -0.5 * ((((x[:, None, None, :] - means[None]) ** 2) / var).sum(-1) + np.log(var).sum() + x.shape[1] * _LOG_2PI)
    ll = ll + np.log(np.maximum(weights, 1e-12))[None]
    top = ll.max(axis=(1, 2), keepdims=True)
    r = np.exp(ll - top)
    z = r.sum(axis=(1, 2), keepdims=True)
    return r / z, float((np.log(z[:, 0, 0]) + top[:, 0, 0]).sum())


def _em(x, content, style, iters: int, reg: float) -> FactorialMixture:
    n, d = x.shape
    k, s = content.shape[0], style.shape[0]
    weights = np.full((k, s), 1.0 / (k * s))
    var = x.var(0) + reg
    loglik = -np.inf
    for _ in range(iters):
        r, loglik = _e_step(x, weights, content[:, None] + style[None], var)
        weights = r.sum(0) / n
        for _ in range(2):  # coordinate ascent on the two sets of means
            rk, rs = r.sum(2), r.sum(1)
            content = (rk.T @ x - np.einsum("nks,sd->kd", r, style)) / np.maximum(rk.sum(0)[:, None], 1e-12)
            style = (rs.T @ x - np.einsum("nks,kd->sd", r, content)) / np.maximum(rs.sum(0)[:, None], 1e-12)
            style = style - style.mean(0)  # identifiable: the styles' offsets average to zero
        means = content[:, None] + style[None]
        var = np.einsum("nks,nksd->d", r, (x[:, None, None, :] - means[None]) ** 2) / n + reg
    return FactorialMixture(weights, content, style, var, loglik)


def fit_factorial(x: np.ndarray, n_content: int, n_style: int, style_features: np.ndarray, seed: int = 0, *,
                  n_init: int = 5, iters: int = 60, reg: float = 1e-4) -> FactorialMixture:
    """Fit a factorial mixture to ``x`` [N, D]: ``n_content`` x ``n_style`` components, the styles
    initialised from ``style_features`` [N, E] (clip statistics), ``n_init`` restarts (seeded)."""
    from sklearn.cluster import KMeans

    x = np.asarray(x, dtype=np.float64)
    f = np.asarray(style_features, dtype=np.float64)
    if len(x) < n_content * n_style:
        raise ValueError(f"a factorial mixture of {n_content} x {n_style} components needs at least "
                         f"{n_content * n_style} points, got {len(x)}")
    f = (f - f.mean(0)) / (f.std(0) + 1e-8)
    best = None
    for i in range(int(n_init)):
        rs = (int(seed) * 1009 + i) % (2**31)
        labels = KMeans(n_style, n_init=3, random_state=rs).fit_predict(f)
        style = np.stack([x[labels == j].mean(0) if np.any(labels == j) else x.mean(0) for j in range(n_style)])
        style = style - style.mean(0)
        content = KMeans(n_content, n_init=3, random_state=rs).fit(x - style[labels]).cluster_centers_
        fit = _em(x, content, style, iters, reg)
        if best is None or fit.log_likelihood > best.log_likelihood:
            best = fit
    return best


def fit_projected(x: np.ndarray, n_content: int, n_style: int, style_features: np.ndarray, seed: int = 0, *,
                  components: int = FACTORIAL_PCA):
    """:func:`fit_factorial` on the ``components`` principal components of ``x`` [N, D] (fewer where
    D or N allow fewer): ``(pca, mixture)``; ``mixture.responsibilities(pca.transform(x))``.
    The classical ``factorial`` baseline (trainables.baselines) and UVAC's ``prior_init input``."""
    from sklearn.decomposition import PCA

    x = np.asarray(x)
    pca = PCA(n_components=max(1, min(int(components), x.shape[1], len(x) - 1)), random_state=int(seed) % (2**31))
    return pca, fit_factorial(pca.fit(x).transform(x), n_content, n_style, style_features, seed)
