"""A linear head started as the nearest-centroid rule of a K-means clustering of its input.

Used where a model's categorical posterior is a linear layer on some features and a clustering
of those features is a better start than random weights: the style factor's q(s|x) on a clip's
order-free statistics (:class:`~trainables.models.style.StyleFactor`), and categorical UVAC's
q(y|x) on encoder h's features after a warm-up (``head_init="fit"``, VaDE's start for a
categorical posterior; :class:`~trainables.models.cat_uvac.CatUVAC`).

With features f standardised per dimension (fz = (f - m) / s) and K-means centres c_k in those
units, the logits ``-||fz - c_k||^2 / (2 temp)`` equal, up to a constant per row,
``w_k . f + b_k`` with ``w_k = c_k / s / temp`` and ``b_k = -(c_k . m / s) / temp - ||c_k||^2 / (2 temp)``.
``temp`` is half the mean squared distance of a point to its centre: a point at the typical
distance from its own centre and twice that from the next one gets odds of about e : 1.
"""
from __future__ import annotations

import numpy as np

__all__ = ["nearest_centroid_head"]


def nearest_centroid_head(features: np.ndarray, k: int, seed: int, *, n_init: int = 10,
                          labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """K-means (``k`` clusters, seeded) on ``features`` [N, D] standardised per dimension, or, given
    ``labels`` [N] in [0, k), the mean of each labelled cluster's standardised features as its centre
    (a clustering made elsewhere, e.g. on the inputs).

    Returns ``(weight [k, D], bias [k], labels [N])``: the linear layer whose logits are the
    nearest-centroid rule of the clustering (module docstring), and each row's cluster.
    """
    from sklearn.cluster import KMeans

    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < int(k):
        raise ValueError(f"nearest_centroid_head: need [N, D] features with N >= k = {k}, got shape {f.shape}")
    if not np.isfinite(f).all():
        raise ValueError("nearest_centroid_head: the features hold NaN or inf (a diverged encoder?)")
    mu, sd = f.mean(0), f.std(0) + 1e-6
    fz = (f - mu) / sd
    if labels is None:
        km = KMeans(int(k), n_init=n_init, random_state=int(seed) % (2**31)).fit(fz)
        c, labels = km.cluster_centers_, km.labels_  # [k, D] in standardised units
    else:
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != (len(f),) or labels.min() < 0 or labels.max() >= int(k):
            raise ValueError(f"nearest_centroid_head: labels must be [N] = [{len(f)}] in [0, {k}), got shape "
                             f"{labels.shape}")
        counts = np.bincount(labels, minlength=int(k))[:, None]
        sums = np.zeros((int(k), f.shape[1]))
        np.add.at(sums, labels, fz)
        c = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)  # an empty cluster sits at the mean
    spread = float(np.mean((fz - c[labels]) ** 2)) * fz.shape[1]  # mean squared distance to its centre
    temp = max(spread, 1e-3) / 2.0
    weight = c / sd[None, :] / temp
    bias = (-(c * (mu / sd)[None, :]).sum(1) - 0.5 * (c * c).sum(1)) / temp
    return weight, bias, labels
