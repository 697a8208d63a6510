"""Classical baselines of both papers' Table I, scored with the models' metric names.

Every method sees the *flattened input features*: ``spectrogram.float() * mask`` of each clip,
reshaped to ``[N, F*T]`` float32 (padding frames are zero). It is fitted on the ``train``
split only (no labels), then predicts every row; ``val`` and ``test`` are scored with
:func:`trainables.metrics.clustering_metrics` under ``val/...`` and ``test/...`` with the
single representation ``"x"`` (``val/silhouette_x``, ``val/dbi_x``, ``val/chi_x``), so the
key set is the same for every method here.

Methods
-------
``kmeans``  scikit-learn ``KMeans`` (k-means++ init, Lloyd iterations), ``n_init=10``
            restarts (the classic default; sklearn's ``"auto"`` would give 1 with k-means++),
            ``random_state=seed``; the restart with the lowest inertia wins.
``gmm``     scikit-learn ``GaussianMixture`` fitted by EM, k-means initialisation,
            ``covariance_type="diag"`` by default: a full covariance on flattened
            spectrograms (D = F*T, 12,672 for AudioMNIST) would need K*D^2 floats (about 13 GB
            for K=10 in float64) and be singular with fewer clips than dimensions.
            ``reg_covar=1e-3`` is added to every variance: features live in [0, 1] and many
            bins (silence, padding) are constant within a cluster, whose variance would
            otherwise collapse to zero and make the likelihood degenerate. ``probabilities``
            holds the posterior responsibilities.
            PCA (``pca_components``): ``"auto"`` (default) projects onto
            ``min(64, n_train - 1, D)`` principal components (randomized SVD,
            ``random_state=seed``) only for ``full``/``tied`` covariances when D > 256, where
            it is needed for memory and time; ``diag``/``spherical`` run on the raw features
            as in the papers (the UVAC paper reports that dimensionality reduction did not
            help). An int forces that many components, ``0``/``None`` disables it.
            Measured (2 CPU threads, 1,000 synthetic clips, D = 12,672, K = 10): diag EM
            0.8 s on the raw features vs 1.6 s with PCA to 64 (the SVD costs more than it
            saves), full + auto PCA 1.4 s; k-means 5.2 s with n_init=10 (0.5 s per restart).
``fair_kmeans``  K-means whose clusters are kept independent of the speaker (``table.speaker_ids``: speaker
            ids, side information), the classical counterpart of the models' ``speaker_independence``
            (:mod:`trainables.fair_kmeans`).
``aligned_kmeans``  K-means within each speaker, the speakers' clusters matched by the Hungarian
            method (``table.speaker_ids``; :mod:`trainables.aligned_kmeans`); a clip is
            assigned with its speaker's centroids.
``*_vote``  the vote of 3 fits of a baseline from different seeds (:func:`run_vote`), the classical
            counterpart of the networks' voting restarts (``restart_combine vote``): registered
            for the two strongest, ``factorial_vote`` and ``fair_kmeans_vote``.
``labels``  "labels as clusters": the true class of each clip is its cluster (no fitting);
            the geometric metrics then say how well the classes themselves cluster.

``standardise=True`` first standardises every flattened dimension with the train rows' mean and
standard deviation (the classical acoustic-word-embedding pipeline's last step, Kamper et al.
2016). :data:`BASELINES` registers the named variants (``kmeans``, ``gmm``, ``kmeans_std``,
``gmm_std``: PCA to 20 components then a full-covariance GMM, ``labels``);
:mod:`trainables.baseline_suite` runs them on a model's table and on the reference front ends and
names the strongest.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from trainables.config_keys import Key
from trainables.metrics import clustering_metrics
from trainables.standardise import Standardiser

log = logging.getLogger(__name__)

__all__ = ["METHODS", "BASELINES", "BASELINE_KEYS", "FITTED_BASELINES", "REPRESENTATION", "Baseline",
           "BaselineResult", "Standardiser", "get_baseline", "flatten_features", "run_baseline", "fit_kmeans",
           "fit_gmm", "labels_as_clusters"]

METHODS = ("kmeans", "gmm", "factorial", "fair_kmeans", "aligned_kmeans", "labels")
GROUP_METHODS = ("fair_kmeans", "aligned_kmeans")  # fitted with the speaker ids (table.speaker_ids)
FACTORIAL_STYLES = 6
KMEANS_N_INIT = 10
GMM_REG_COVAR = 1e-3
GMM_MAX_ITER = 200
# refits with 10x, then 100x reg_covar (at least the default) when a component's covariance is ill-defined
GMM_REG_RETRIES = 2
PCA_AUTO_MIN_DIM = 256
PCA_AUTO_COMPONENTS = 64
COVARIANCE_TYPES = ("diag", "spherical", "full", "tied")
AWE_PCA_COMPONENTS = 20  # the classical pipeline's PCA before its full-covariance GMM (SPEC section 8)
REPRESENTATION = "x"  # what every baseline clusters and is scored on: the flattened input features

# the baselines' config keys (trainables.config_keys)
BASELINE_KEYS = (
    Key("gmm_covariance", "diag", "covariance type of the GMM-EM baseline", choices=COVARIANCE_TYPES),
)


@dataclass
class BaselineResult:
    """What :func:`run_baseline` returns.

    metrics        ``val/...`` and ``test/...`` floats, the models' names
    ids, split     [N] of every row of the input table, in table order
    clusters       [N] int64 cluster of every row (train rows included)
    probabilities  [N, K] float32 posterior (``gmm``) or None
    info           how the fit went: method, n_clusters, dim, pca_components, n_iter,
                   converged, fit_s
    """

    method: str
    metrics: dict[str, float]
    ids: np.ndarray
    split: np.ndarray
    clusters: np.ndarray
    probabilities: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def assignments(self, splits: tuple[str, ...] = ("val", "test")) -> dict[str, np.ndarray]:
        """Per-clip columns ``id``, ``split``, ``cluster`` for the rows of ``splits``."""
        rows = np.isin(self.split, list(splits))
        return {"id": np.asarray(self.ids)[rows].astype(str),
                "split": np.asarray(self.split)[rows].astype(str),
                "cluster": np.asarray(self.clusters)[rows].astype(np.int64)}


def flatten_features(table) -> np.ndarray:
    """``spectrogram * mask`` of every clip of a FeatureTable, flattened: [N, F*T] float32."""
    spec = table.spectrogram.float() * table.mask.float()[:, None, :]
    return spec.reshape(spec.shape[0], spec.shape[1] * spec.shape[2]).cpu().numpy().astype(np.float32, copy=False)


def check_n_clusters(table, n_clusters) -> int:
    """The number of clusters K (0 or None: the number of classes), refused the same way for
    every model, neural or classical: below 1, or above the clips of the train split (at most
    one cluster per training clip; K-means cannot fit more)."""
    k = int(n_clusters) if n_clusters else len(table.classes)
    if k < 1:
        raise ValueError(f"n_clusters must be >= 1, got {k}")
    n_train = len(_rows(table, "train"))
    if k > n_train:
        raise ValueError(f"n_clusters={k} is more than the {n_train} clips of the train split "
                         "(at most one cluster per training clip); lower --n-clusters")
    return k


def _rows(table, split: str) -> np.ndarray:
    return np.flatnonzero(np.asarray(table.split) == split)


def fit_kmeans(x_train: np.ndarray, n_clusters: int, seed: int = 0, *, n_init: int = KMEANS_N_INIT):
    """KMeans fitted on ``x_train`` (see the module docstring for the choices)."""
    from sklearn.cluster import KMeans

    if len(x_train) < n_clusters:
        raise ValueError(f"kmeans: {len(x_train)} training clips for {n_clusters} clusters")
    return KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed).fit(x_train)


def _resolve_pca(pca_components, covariance_type: str, n_train: int, dim: int) -> int:
    if pca_components in (None, 0, False):
        return 0
    if pca_components == "auto":
        if covariance_type in ("full", "tied") and dim > PCA_AUTO_MIN_DIM:
            return max(1, min(PCA_AUTO_COMPONENTS, n_train - 1, dim))
        return 0
    k = int(pca_components)
    if k < 0:
        raise ValueError(f"pca_components must be >= 0, got {k}")
    return min(k, dim, max(1, n_train - 1))


def fit_gmm(x_train: np.ndarray, n_clusters: int, seed: int = 0, *, covariance_type: str = "diag",
            reg_covar: float = GMM_REG_COVAR, max_iter: int = GMM_MAX_ITER, pca_components="auto"):
    """GaussianMixture fitted by EM on ``x_train``, optionally after PCA.

    Returns ``(gmm, pca)`` where ``pca`` is a fitted ``sklearn.decomposition.PCA`` or None;
    predict with ``gmm.predict(pca.transform(x) if pca else x)``."""
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}")
    if len(x_train) < n_clusters:
        raise ValueError(f"gmm: {len(x_train)} training clips for {n_clusters} clusters")
    n_pca = _resolve_pca(pca_components, covariance_type, len(x_train), x_train.shape[1])
    pca = None
    if n_pca:
        pca = PCA(n_components=n_pca, svd_solver="randomized", random_state=seed).fit(x_train)
        x_train = pca.transform(x_train).astype(np.float32, copy=False)
    for attempt in range(GMM_REG_RETRIES + 1):
        try:
            gmm = GaussianMixture(n_components=n_clusters, covariance_type=covariance_type,
                                  reg_covar=reg_covar, max_iter=max_iter, init_params="kmeans",
                                  random_state=seed).fit(x_train)
            return gmm, pca
        except ValueError as exc:  # a component on too few (or collapsed) points: sklearn's advice
            if "ill-defined empirical covariance" not in str(exc) or attempt == GMM_REG_RETRIES:
                raise
            log.warning("gmm (%s, seed %d): a component's covariance is ill-defined at reg_covar=%g; "
                        "refitting with reg_covar=%g", covariance_type, seed, reg_covar, _more(reg_covar))
            reg_covar = _more(reg_covar)


def _more(reg_covar: float) -> float:
    """The next regularisation to try: 10x, and at least the default."""
    return max(10.0 * reg_covar, GMM_REG_COVAR)


def labels_as_clusters(table) -> np.ndarray:
    """The true class index of every row, as a clustering."""
    return np.asarray(table.label_index.cpu().numpy() if isinstance(table.label_index, torch.Tensor)
                      else table.label_index, dtype=np.int64)


def _fit_factorial(x_train: np.ndarray, style_train: np.ndarray, k: int, seed: int, info: dict):
    """A factorial mixture (content x style, trainables.models.factorial) on the PCA-10 projection."""
    from trainables.models.factorial import fit_projected

    # as many styles as the train split can hold (FACTORIAL_STYLES on real data; fewer on a tiny split)
    styles = max(1, min(FACTORIAL_STYLES, len(x_train) // max(k, 1)))
    pca, fm = fit_projected(x_train, k, styles, style_train, seed)
    info.update(pca_components=int(pca.n_components_), styles=styles, log_likelihood=fm.log_likelihood)

    def proba(x):
        return fm.responsibilities(pca.transform(x)).sum(2).astype(np.float32)
    return (lambda x: proba(x).argmax(1)), proba


def _fit(method: str, x_train: np.ndarray, k: int, seed: int, info: dict, *, covariance_type, reg_covar,
         pca_components, n_init, style_train=None, groups_train=None):
    """Fit ``method`` on the train rows; returns (predict(x), predict_proba(x) or None); for
    ``aligned_kmeans`` predict(x, groups): a clip is assigned with its speaker's centroids."""
    if method == "factorial":
        return _fit_factorial(x_train, style_train, k, seed, info)
    if method == "fair_kmeans":
        from trainables.fair_kmeans import FAIR_WEIGHT, fit_fair_kmeans

        model = fit_fair_kmeans(x_train, groups_train, k, seed)
        info.update(pca_components=int(model.pca.n_components_), speaker_independence=FAIR_WEIGHT,
                    speakers=int(len(np.unique(groups_train))))
        return model.predict, model.proba
    if method == "aligned_kmeans":
        from trainables.aligned_kmeans import fit_aligned_kmeans

        aligned = fit_aligned_kmeans(x_train, groups_train, k, seed)
        info.update(pca_components=int(aligned.pca.n_components_), reference_speaker=aligned.reference,
                    speakers=len(aligned.centroids))
        return aligned.predict, None
    if method == "kmeans":
        model = fit_kmeans(x_train, k, seed, n_init=n_init)
        info.update(n_iter=int(model.n_iter_), inertia=float(model.inertia_), converged=True)
        return model.predict, None
    model, pca = fit_gmm(x_train, k, seed, covariance_type=covariance_type, reg_covar=reg_covar,
                         pca_components=pca_components)
    info.update(n_iter=int(model.n_iter_), converged=bool(model.converged_), covariance_type=covariance_type,
                reg_covar=float(model.reg_covar), pca_components=int(pca.n_components_) if pca is not None else 0)
    if pca is None:
        return model.predict, model.predict_proba

    def project(x):
        return pca.transform(x).astype(np.float32, copy=False)
    return (lambda x: model.predict(project(x))), (lambda x: model.predict_proba(project(x)))


def run_baseline(
    method: str,
    table,
    n_clusters: int | None = None,
    seed: int = 0,
    *,
    sample_size: int | None = 2000,
    covariance_type: str = "diag",
    reg_covar: float = GMM_REG_COVAR,
    pca_components="auto",
    n_init: int = KMEANS_N_INIT,
    standardise: bool = False,
) -> BaselineResult:
    """Fit ``method`` on the train split of ``table`` and score val and test.

    method       ``kmeans`` | ``gmm`` | ``factorial`` | ``fair_kmeans`` | ``aligned_kmeans`` (both use
                 ``table.speaker_ids``) | ``labels``
    table        a :class:`features.table.FeatureTable` with train/val/test rows
    n_clusters   clusters K; None/0 = the number of classes (``labels`` always uses the classes)
    seed         seeds the fit (``random_state``) and the silhouette sample
    sample_size  silhouette sample size (see :func:`trainables.metrics.cluster_quality`)
    covariance_type, reg_covar, pca_components   GMM options; n_init   KMeans restarts
    standardise  standardise every flattened dimension with the train rows' mean and std first (the
                 classical pipeline's last step); the geometric metrics are then on the standardised x
    """
    if method not in METHODS:
        raise ValueError(f"unknown baseline {method!r}; choose one of {METHODS}")
    k = len(table.classes) if method == "labels" else check_n_clusters(table, n_clusters)
    n = len(table)
    clusters = np.zeros(n, dtype=np.int64)
    probs = None
    info: dict[str, Any] = {"method": method, "n_clusters": k, "dim": int(np.prod(table.shape)),
                            "pca_components": 0, "standardise": bool(standardise)}
    t0 = time.perf_counter()
    x_all = flatten_features(table)
    if standardise and method != "labels":
        train = _rows(table, "train")
        if len(train) == 0:
            raise ValueError(f"{method}: the table has no train rows to fit on")
        x_all = Standardiser.fit(x_all[train])(x_all)
    if method == "labels":
        clusters = labels_as_clusters(table)
    else:
        train_rows = _rows(table, "train")
        if len(train_rows) == 0:
            raise ValueError(f"{method}: the table has no train rows to fit on")
        style_train = None
        if method == "factorial":  # order-free clip statistics: what the styles start from
            from trainables.models.style import StyleFactor
            tab = table.take(train_rows)
            style_train = StyleFactor.statistics(tab.spectrogram.float(), tab.mask.float()).numpy()
        groups = _speaker_ids(table, method) if method in GROUP_METHODS else None
        groups_train = groups[train_rows] if groups is not None else None
        predict, proba = _fit(method, x_all[train_rows], k, seed, info, covariance_type=covariance_type,
                              reg_covar=reg_covar, pca_components=pca_components, n_init=n_init,
                              style_train=style_train, groups_train=groups_train)
        if proba is not None:
            probs = np.zeros((n, k), dtype=np.float32)
        for split in ("train", "val", "test"):
            rows = _rows(table, split)
            if len(rows) == 0:
                continue
            clusters[rows] = predict(x_all[rows], groups[rows]) if method == "aligned_kmeans" else predict(x_all[rows])
            if proba is not None:
                probs[rows] = proba(x_all[rows])
    info["fit_s"] = time.perf_counter() - t0

    metrics = _score(table, clusters, x_all, k, sample_size, seed)
    return BaselineResult(method, metrics, np.asarray(table.ids), np.asarray(table.split),
                          clusters, probs, info)


def _speaker_ids(table, method: str) -> np.ndarray:
    """The table's speaker ids [N] (``table.speaker_ids``: the groups, or under ``voice`` normalisation
    the inferred speakers), which ``method`` is fitted with."""
    groups = getattr(table, "speaker_ids", getattr(table, "groups", None))
    if groups is None or len(groups) != len(table):
        raise ValueError(f"{method}: needs the speaker of every clip (the table's groups); this table has none")
    return np.asarray(groups)


def _score(table, clusters: np.ndarray, x_all: np.ndarray, k: int, sample_size, seed: int) -> dict[str, float]:
    """val/* and test/* clustering metrics of ``clusters`` [N] (every row of ``table``) on ``x_all``."""
    metrics: dict[str, float] = {}
    label_index = labels_as_clusters(table)
    for split in ("val", "test"):
        rows = _rows(table, split)
        metrics.update(clustering_metrics(label_index[rows], clusters[rows], {REPRESENTATION: x_all[rows]},
                                          prefix=f"{split}/", n_clusters=k,
                                          sample_size=sample_size, seed=seed))
    return metrics


def run_vote(runs: list["BaselineResult"], table, k: int, *, sample_size: int | None, seed: int,
             standardise: bool) -> "BaselineResult":
    """The vote of several fits of one baseline (``runs``, every row of ``table`` assigned): the
    consensus of :func:`trainables.restarts.vote_maps` fitted on the train rows, started from the
    most agreeing fit, applied to every row; scored as :func:`run_baseline` scores one fit."""
    from trainables.restarts import most_agreeing, vote_maps, vote_probs

    train = _rows(table, "train")
    onehots = [np.eye(k)[np.asarray(r.clusters)] for r in runs]
    ref = most_agreeing([np.asarray(r.clusters)[train] for r in runs])
    probs = vote_probs(onehots, vote_maps([o[train] for o in onehots], ref))
    clusters = probs.argmax(axis=1).astype(np.int64)
    x_all = flatten_features(table)
    if standardise:
        x_all = Standardiser.fit(x_all[train])(x_all)
    info = {**runs[ref].info, "votes": len(runs), "reference": int(ref)}
    return BaselineResult(runs[ref].method, _score(table, clusters, x_all, k, sample_size, seed),
                          np.asarray(table.ids), np.asarray(table.split), clusters, probs.astype(np.float32), info)


@dataclass(frozen=True)
class Baseline:
    """A registered baseline: a method with its options, fitted on a feature table's flattened x."""

    name: str
    method: str  # kmeans | gmm | labels
    label: str  # how tables name it
    standardise: bool = False
    covariance_type: str = "diag"
    pca_components: Any = "auto"
    config_covariance: bool = False  # the config's gmm_covariance chooses the covariance
    votes: int = 1  # > 1: that many fits (seeds trainables.restarts.restart_seed) vote, as the networks' restarts

    def run(self, table, n_clusters: int | None = None, seed: int = 0, *,
            sample_size: int | None = 2000, covariance_type: str | None = None) -> BaselineResult:
        """Fit on the train split of ``table`` and score val and test (``covariance_type``, the
        config's ``gmm_covariance``, is used where ``config_covariance`` says so)."""
        from trainables.restarts import restart_seed

        cov = covariance_type if (self.config_covariance and covariance_type) else self.covariance_type
        runs = [run_baseline(self.method, table, n_clusters, restart_seed(seed, r), sample_size=sample_size,
                             covariance_type=cov, pca_components=self.pca_components, standardise=self.standardise)
                for r in range(max(1, self.votes))]
        res = runs[0] if len(runs) == 1 else run_vote(runs, table, int(runs[0].info["n_clusters"]),
                                                      sample_size=sample_size, seed=seed, standardise=self.standardise)
        res.info["baseline"] = self.name
        return res


# The registry: config ``model`` names of the baselines (trainables.config), the rows of every
# benchmark and of the study's summary. ``*_std`` are the classical pipeline's clustering step
# (every dimension standardised; PCA to 20 then a full-covariance GMM), run by the suite on the
# model's own table and on the acoustic-word-embedding table (trainables.baseline_suite).
BASELINES: dict[str, Baseline] = {b.name: b for b in (
    Baseline("kmeans", "kmeans", "K-means"),
    Baseline("gmm", "gmm", "GMM-EM", config_covariance=True),
    Baseline("kmeans_std", "kmeans", "K-means, standardised", standardise=True),
    Baseline("gmm_std", "gmm", "GMM full cov., PCA-20, standardised", standardise=True,
             covariance_type="full", pca_components=AWE_PCA_COMPONENTS),
    Baseline("factorial", "factorial", "factorial GMM (10 content x 6 styles), PCA-10, standardised",
             standardise=True),
    Baseline("fair_kmeans", "fair_kmeans", "K-means, speaker-independent clusters (speaker ids), PCA-20, "
             "standardised", standardise=True),
    Baseline("aligned_kmeans", "aligned_kmeans", "K-means per speaker, clusters matched across speakers (speaker "
             "ids), PCA-20, standardised", standardise=True),
    Baseline("factorial_vote", "factorial", "factorial GMM (10 content x 6 styles), PCA-10, standardised, "
             "vote of 3 fits", standardise=True, votes=3),
    Baseline("fair_kmeans_vote", "fair_kmeans", "K-means, speaker-independent clusters (speaker ids), PCA-20, "
             "standardised, vote of 3 fits", standardise=True, votes=3),
    Baseline("labels", "labels", "labels as clusters"),
)}
FITTED_BASELINES = tuple(n for n, b in BASELINES.items() if b.method != "labels")


def get_baseline(name: str) -> Baseline:
    try:
        return BASELINES[name]
    except KeyError:
        raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}") from None
