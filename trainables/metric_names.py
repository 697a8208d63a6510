"""The metric names the trainer reports for a model, so that a study can refuse a misspelt
objective (or ASHA metric) before any trial starts instead of failing every trial.

:func:`declared_metrics` lists exactly what ``trainables.loop.train`` reports (through the
trainable's per-epoch and final reports, hence MLflow):

* ``train/*`` -- neural models, every epoch: ``loss``, the loss terms (``recon``, ``kl_z``;
  categorical UVAC adds ``kl_y``), ``grad_norm``, ``lr``, ``kl_weight``, ``epoch_time_s``,
  ``samples_per_s`` (categorical UVAC adds ``tau``); some only under some configs
  (:data:`CONDITIONAL_TRAIN`: ``kl_ybar`` with a marginal-entropy weight, UVAC's
  ``prior_fitted_at`` in the epoch its GMM prior is fitted); baselines: ``time_s`` only.
* ``val/*`` and ``test/*`` -- :func:`trainables.metrics.clustering_metrics` of the split
  (``acc``, ``nmi``, ``ari``, ``n_clusters_used``, ``collapsed``, ``occupancy_max``,
  ``occupancy_entropy``) plus ``silhouette_r``, ``dbi_r``, ``chi_r`` for each representation
  ``r`` of the model (:data:`REPRESENTATIONS`); neural models add ``val/time_s``.

tests/test_study_failfast.py trains each model for one tiny epoch and checks that what is
reported is declared here and that every declared val/ and test/ metric is reported, so a
renamed loss term or metric shows up there.
"""
from __future__ import annotations

from trainables.config import BASELINES
from trainables.metrics import QUALITY_METRICS
from trainables.models import MODELS

__all__ = ["REPRESENTATIONS", "SPLIT_METRICS", "CONDITIONAL_TRAIN", "declared_metrics", "known_models"]

# Representations the clustering-quality metrics are computed on, per model: what each
# registered network declares (z latent mean, y categorical posterior); the baselines cluster
# x, the flattened input features (trainables.baselines).
REPRESENTATIONS: dict[str, tuple[str, ...]] = {
    **{name: tuple(cls.representations) for name, cls in MODELS.items()},
    **{name: ("x",) for name in BASELINES},
}

# Keys of trainables.metrics.clustering_metrics that do not depend on a representation.
SPLIT_METRICS = ("acc", "nmi", "ari", "n_clusters_used", "collapsed", "occupancy_max", "occupancy_entropy")

# train/* of a neural model's epoch (trainables.loop._train_neural); loss terms from trainables.losses.
_NEURAL_TRAIN = ("loss", "recon", "kl_z", "grad_norm", "lr", "kl_weight", "epoch_time_s", "samples_per_s")
_TRAIN_EXTRA = {"cat_uvac": ("kl_y", "tau")}
# Reported only under some configs or in some epochs (still valid names).
_INVARIANCE = ("consistency", "consistency_over", "kl_s", "kl_sbar")  # consistency, overcluster, style factor
CONDITIONAL_TRAIN: dict[str, tuple[str, ...]] = {"cat_uvac": ("kl_ybar", *_INVARIANCE),
                                                 "uvac": ("prior_fitted_at", *_INVARIANCE)}
_BASELINE_TRAIN = ("time_s",)
_NEURAL = tuple(MODELS)


def known_models() -> list[str]:
    return sorted(REPRESENTATIONS)


def _split(prefix: str, model: str) -> list[str]:
    names = [f"{prefix}{m}" for m in SPLIT_METRICS]
    for r in REPRESENTATIONS[model]:
        names += [f"{prefix}{q}_{r}" for q in QUALITY_METRICS]
    return names


def declared_metrics(model: str) -> list[str]:
    """Every metric name the trainer reports for ``model`` (train/*, val/*, test/*), sorted.

    Raises ValueError for an unknown model."""
    if model not in REPRESENTATIONS:
        raise ValueError(f"unknown model {model!r}; known: {', '.join(known_models())}")
    if model in _NEURAL:
        train = list(_NEURAL_TRAIN) + list(_TRAIN_EXTRA.get(model, ())) + list(CONDITIONAL_TRAIN.get(model, ()))
        val_extra = ["val/time_s"]
    else:
        train = list(_BASELINE_TRAIN)
        val_extra = []
    names = [f"train/{t}" for t in train] + _split("val/", model) + val_extra + _split("test/", model)
    return sorted(set(names))
