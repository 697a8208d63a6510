"""Clustering metrics (docs/MODELS.md, "Metrics"; both papers, section "Metrics").

numpy in, plain ``float`` out; nothing here knows of torch training, Ray or MLflow.

* :func:`unsupervised_accuracy`: Hungarian matching (``scipy.optimize.linear_sum_assignment``)
  of clusters to classes on the contingency matrix, one-to-one; works for any number of
  clusters and classes (unmatched clusters count as errors).
* :func:`nmi`: normalised mutual information with the **arithmetic** mean of the two entropies
  in the denominator (scikit-learn's default, passed explicitly).
* :func:`ari`: adjusted Rand index.
* :func:`cluster_quality`: silhouette (Euclidean), Davies-Bouldin (DBI) and Calinski-Harabasz
  (CHI) from scikit-learn on one representation. Silhouette is O(N^2): on more than
  ``sample_size`` rows it is computed on ``sample_size`` rows drawn without replacement with
  ``random_state=seed`` (scikit-learn's ``sample_size``/``random_state``), so the same data and
  seed give the same value. DBI and CHI always use every row. All three are undefined for fewer
  than two clusters (or as many clusters as rows): a collapse is a result, reported as NaN,
  never an exception.
* :func:`clustering_metrics`: one flat, namespaced dict (``val/acc``, ``val/silhouette_z``, ...)
  with the representation each geometric metric was computed on in its name: ``z`` (latent
  mean), ``y`` (categorical probabilities; near one-hot ``y`` drives silhouette towards 1 by
  construction), ``x`` (flattened input features).

:data:`DIRECTIONS` maps each metric family (the name without split prefix and representation
suffix, :func:`metric_family`) to ``"max"`` or ``"min"``; :func:`metric_direction` reads it. It
is the one table of directions: the study's objectives and the analysis use it.
"""
from __future__ import annotations

import math
import warnings
from typing import Mapping

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import (
    adjusted_rand_score,
    calinski_harabasz_score,
    davies_bouldin_score,
    normalized_mutual_info_score,
    silhouette_score,
)

__all__ = [
    "DIRECTIONS",
    "metric_family",
    "metric_direction",
    "NMI_AVERAGE_METHOD",
    "QUALITY_METRICS",
    "unsupervised_accuracy",
    "nmi",
    "ari",
    "cluster_occupancy",
    "cluster_quality",
    "clustering_metrics",
]

DIRECTIONS: dict[str, str] = {
    "acc": "max",
    "nmi": "max",
    "ari": "max",
    "silhouette": "max",
    "dbi": "min",
    "chi": "max",
    "occupancy_max": "min",
    "occupancy_entropy": "max",
    "loss": "min",
    "time_s": "min",
}


def metric_family(name: str) -> str:
    """``"val/dbi_z"`` -> ``"dbi"``; ``"test/occupancy_max"`` -> ``"occupancy_max"``: the name
    without split prefix and representation suffix (the key of :data:`DIRECTIONS`); the base
    name itself when no family matches."""
    base = name.split("/")[-1]
    for key in (base, base.rsplit("_", 1)[0]):
        if key in DIRECTIONS:
            return key
    return base


def metric_direction(name: str) -> str:
    """``"max"`` or ``"min"`` for a metric name (``val/silhouette_z``, ``acc``, ...); ValueError
    for a metric without a known direction."""
    family = metric_family(name)
    if family not in DIRECTIONS:
        raise ValueError(f"no known direction for {name!r}; write it as {name}:max or {name}:min")
    return DIRECTIONS[family]

NMI_AVERAGE_METHOD = "arithmetic"
QUALITY_METRICS = ("silhouette", "dbi", "chi")


def _labels(a, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if len(t) != len(p):
        raise ValueError(f"y_true has {len(t)} rows, y_pred has {len(p)}")
    return t, p


def unsupervised_accuracy(y_true, y_pred) -> float:
    """Fraction of rows whose cluster, mapped one-to-one to a class by the Hungarian algorithm
    on the (cluster x class) contingency matrix, equals the true class.

    Labels and clusters may be any hashable values (strings, ints). With more clusters than
    classes only ``n_classes`` clusters get a class and the rest count as errors (and vice
    versa), so the result is in [0, 1] and 1.0 only for a perfect relabelling. Empty -> NaN.
    """
    t, p = _pair(y_true, y_pred)
    if len(t) == 0:
        return math.nan
    _, ti = np.unique(t, return_inverse=True)
    _, pi = np.unique(p, return_inverse=True)
    cont = np.zeros((pi.max() + 1, ti.max() + 1), dtype=np.int64)
    np.add.at(cont, (pi, ti), 1)
    rows, cols = linear_sum_assignment(cont, maximize=True)
    return float(cont[rows, cols].sum() / len(t))


def nmi(y_true, y_pred) -> float:
    """Normalised mutual information, ``average_method="arithmetic"`` (sklearn's default):
    I(T; P) / mean(H(T), H(P)). In [0, 1]; empty -> NaN."""
    t, p = _pair(y_true, y_pred)
    if len(t) == 0:
        return math.nan
    return float(normalized_mutual_info_score(t, p, average_method=NMI_AVERAGE_METHOD))


def ari(y_true, y_pred) -> float:
    """Adjusted Rand index (1 = identical partitions, ~0 = chance). Empty -> NaN."""
    t, p = _pair(y_true, y_pred)
    if len(t) == 0:
        return math.nan
    return float(adjusted_rand_score(t, p))


def cluster_occupancy(y_pred, n_clusters: int | None = None) -> np.ndarray:
    """Fraction of rows in each cluster 0..n_clusters-1 (sums to 1; zeros for empty clusters).

    ``y_pred`` must hold integer cluster indices; ``n_clusters`` defaults to ``max + 1``."""
    p = _labels(y_pred, "y_pred")
    if len(p) and not np.issubdtype(p.dtype, np.integer):
        if not np.all(np.equal(np.mod(p, 1), 0)):
            raise ValueError("cluster_occupancy needs integer cluster indices")
        p = p.astype(np.int64)
    if len(p) and p.min() < 0:
        raise ValueError(f"negative cluster index {int(p.min())}")
    k = int(n_clusters) if n_clusters else (int(p.max()) + 1 if len(p) else 0)
    if len(p) and p.max() >= k:
        raise ValueError(f"cluster index {int(p.max())} >= n_clusters={k}")
    counts = np.bincount(p.astype(np.int64), minlength=k).astype(np.float64)
    return counts / len(p) if len(p) else counts


def _as_features(features, n: int | None = None) -> np.ndarray:
    x = np.asarray(features)
    if x.ndim == 1:
        x = x.reshape(-1, 1)
    elif x.ndim > 2:
        x = x.reshape(x.shape[0], -1)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float32 if x.dtype == np.float16 else np.float64)
    if n is not None and x.shape[0] != n:
        raise ValueError(f"features have {x.shape[0]} rows, assignments have {n}")
    return x


def cluster_quality(features, assignments, *, sample_size: int | None = 2000, seed: int = 0) -> dict[str, float]:
    """Silhouette, Davies-Bouldin and Calinski-Harabasz of ``assignments`` on ``features``.

    features     [N, D] (1-D is taken as D=1; more dimensions are flattened per row)
    assignments  [N] cluster of each row
    sample_size  silhouette on at most this many rows, drawn with ``random_state=seed`` when
                 N > sample_size; ``None`` or 0 = every row. DBI and CHI use every row.

    Returns ``{"silhouette", "dbi", "chi"}``; each is NaN where undefined: fewer than two
    clusters used, as many clusters as rows, a silhouette sample that hit fewer than two
    clusters, or non-finite features (e.g. a diverged model). Never raises for those.
    """
    a = _labels(assignments, "assignments")
    x = _as_features(features, len(a))
    out = {m: math.nan for m in QUALITY_METRICS}
    n = len(a)
    k = len(np.unique(a)) if n else 0
    if k < 2 or k >= n or not np.all(np.isfinite(x)):
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if sample_size and n > int(sample_size):
                s = silhouette_score(x, a, sample_size=int(sample_size), random_state=int(seed))
            else:
                s = silhouette_score(x, a)
            out["silhouette"] = float(s)
        except ValueError:  # the sample drew fewer than two clusters (or one per row)
            pass
        try:
            out["dbi"] = float(davies_bouldin_score(x, a))
        except ValueError:
            pass
        try:
            out["chi"] = float(calinski_harabasz_score(x, a))
        except ValueError:
            pass
    return out


def clustering_metrics(
    y_true,
    y_pred,
    representations: Mapping[str, np.ndarray] | None = None,
    *,
    prefix: str = "val/",
    n_clusters: int | None = None,
    sample_size: int | None = 2000,
    seed: int = 0,
) -> dict[str, float]:
    """All clustering metrics of one split in one flat dict of floats.

    y_true           [N] true labels (evaluation only; any hashable values)
    y_pred           [N] integer cluster of each row
    representations  name -> [N, ...] array; ``"z"`` latent mean, ``"y"`` categorical
                     probabilities, ``"x"`` flattened input features (any names work)
    prefix           namespace, e.g. ``"val/"`` or ``"test/"``
    n_clusters       clusters the model could use (for occupancy); default ``max(y_pred) + 1``
    sample_size      silhouette sample size (see :func:`cluster_quality`; the config key
                     ``silhouette_sample``); None/0 = all rows

    Keys: ``{prefix}acc``, ``nmi``, ``ari``, ``n_clusters_used``, ``collapsed`` (1.0 when fewer
    than two clusters are used, else 0.0), ``occupancy_max`` (largest cluster's fraction),
    ``occupancy_entropy`` (entropy of the occupancy divided by log(n_clusters): 1 = uniform,
    0 = everything in one cluster), and per representation ``r``: ``silhouette_r``, ``dbi_r``,
    ``chi_r`` (NaN on a collapse). An empty split gives NaN everywhere and n_clusters_used 0.
    """
    t, p = _pair(y_true, y_pred)
    reps = dict(representations or {})
    m: dict[str, float] = {}
    m[f"{prefix}acc"] = unsupervised_accuracy(t, p)
    m[f"{prefix}nmi"] = nmi(t, p)
    m[f"{prefix}ari"] = ari(t, p)
    used = int(len(np.unique(p))) if len(p) else 0
    m[f"{prefix}n_clusters_used"] = float(used)
    m[f"{prefix}collapsed"] = 1.0 if used < 2 else 0.0
    if len(p):
        occ = cluster_occupancy(p, n_clusters)
        k = len(occ)
        nz = occ[occ > 0]
        ent = float(-(nz * np.log(nz)).sum())
        m[f"{prefix}occupancy_max"] = float(occ.max())
        m[f"{prefix}occupancy_entropy"] = ent / math.log(k) if k > 1 else 0.0
    else:
        m[f"{prefix}occupancy_max"] = math.nan
        m[f"{prefix}occupancy_entropy"] = math.nan
    for r, feats in reps.items():
        q = cluster_quality(feats, p, sample_size=sample_size, seed=seed)
        for name in QUALITY_METRICS:
            m[f"{prefix}{name}_{r}"] = q[name]
    return m
