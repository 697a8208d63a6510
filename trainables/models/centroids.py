"""A linear head started as the nearest-centroid rule of a K-means clustering of its input.

Used where a model's categorical posterior is a linear layer on some features and a clustering
of those features is a better start than random weights: the style factor's q(s|x) on a clip's
order-free statistics (:class:`~trainables.models.style.StyleFactor`), and categorical UVAC's
q(y|x) on encoder h's features after a warm-up (``head_init="fit"``, VaDE's start for a
categorical posterior; :class:`~trainables.models.cat_uvac.CatUVAC`). :func:`classifier_head`
is the head for clusters made elsewhere (``head_init="aligned"``).

With features f standardised per dimension (fz = (f - m) / s) and K-means centres c_k in those
units, the logits ``-||fz - c_k||^2 / (2 temp)`` equal, up to a constant per row,
``w_k . f + b_k`` with ``w_k = c_k / s / temp`` and ``b_k = -(c_k . m / s) / temp - ||c_k||^2 / (2 temp)``.
``temp`` is half the mean squared distance of a point to its centre: a point at the typical
distance from its own centre and twice that from the next one gets odds of about e : 1.
"""
from __future__ import annotations

import numpy as np

__all__ = ["classifier_head", "nearest_centroid_head"]


def nearest_centroid_head(features: np.ndarray, k: int, seed: int, *, n_init: int = 10
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """K-means (``k`` clusters, seeded) on ``features`` [N, D] standardised per dimension.

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
    km = KMeans(int(k), n_init=n_init, random_state=int(seed) % (2**31)).fit(fz)
    c = km.cluster_centers_  # [k, D] in standardised units
    spread = float(np.mean((fz - c[km.labels_]) ** 2)) * fz.shape[1]  # mean squared distance to its centre
    temp = max(spread, 1e-3) / 2.0
    weight = c / sd[None, :] / temp
    bias = (-(c * (mu / sd)[None, :]).sum(1) - 0.5 * (c * c).sum(1)) / temp
    return weight, bias, km.labels_


def classifier_head(features: np.ndarray, labels: np.ndarray, k: int, seed: int, *, c: float = 1.0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """A linear head trained to give the clusters ``labels`` [N] in [0, k) of rows ``features``
    [N, D]: multinomial logistic regression (scikit-learn, L2 strength 1 / ``c``, seeded) on the
    features standardised per dimension, folded back into ``(weight [k, D], bias [k])`` on the raw
    features. Where the clusters were made elsewhere (on the inputs), the nearest-centroid rule in
    these features can disagree with them; a trained classifier reproduces what is linearly
    separable. A cluster without rows gets zero weight and a bias below every other."""
    from sklearn.linear_model import LogisticRegression

    f = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if f.ndim != 2 or labels.shape != (len(f),) or len(f) == 0:
        raise ValueError(f"classifier_head: need [N, D] features and [N] labels, got {f.shape}, {labels.shape}")
    if labels.min() < 0 or labels.max() >= int(k) or len(np.unique(labels)) < 2:
        raise ValueError(f"classifier_head: labels must lie in [0, {k}) and hold at least 2 clusters")
    if not np.isfinite(f).all():
        raise ValueError("classifier_head: the features hold NaN or inf (a diverged encoder?)")
    mu, sd = f.mean(0), f.std(0) + 1e-6
    clf = LogisticRegression(C=float(c), max_iter=500, random_state=int(seed) % (2**31)).fit((f - mu) / sd, labels)
    weight, bias = np.zeros((int(k), f.shape[1])), np.zeros(int(k))
    if len(clf.classes_) == 2:  # binary: one row of coefficients for the second class
        coef = np.vstack([-clf.coef_[0] / 2, clf.coef_[0] / 2])
        icpt = np.array([-clf.intercept_[0] / 2, clf.intercept_[0] / 2])
    else:
        coef, icpt = clf.coef_, clf.intercept_
    weight[clf.classes_] = coef / sd[None, :]
    bias[clf.classes_] = icpt - (coef * (mu / sd)[None, :]).sum(1)
    missing = np.setdiff1d(np.arange(int(k)), clf.classes_)
    bias[missing] = bias[clf.classes_].min() - 10.0
    return weight, bias
