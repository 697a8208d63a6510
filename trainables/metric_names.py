"""The metric names the trainer reports for a model, so that a study can refuse a misspelt
objective (or ASHA metric) before any trial starts instead of failing every trial.

:func:`declared_metrics` lists exactly what ``trainables.loop.train`` reports (through the
trainable's per-epoch and final reports, hence MLflow):

* ``train/*`` -- neural models, every epoch: the loop's ``loss``, ``grad_norm``, ``lr``,
  ``epoch_time_s``, ``samples_per_s`` (:data:`LOOP_TRAIN`; with ``restarts`` > 1 also
  ``restart``, ``restart_silhouette``, ``restart_silhouette_mean``: :data:`LOOP_CONDITIONAL`) and
  what the model class declares:
  its ``loss_terms`` (``recon``, ``kl_z``; categorical UVAC adds ``kl_y``), its ``logged`` step
  logs (``kl_weight``; categorical UVAC adds ``tau``) and, reported only under some configs,
  its ``conditional_terms`` (:data:`CONDITIONAL_TRAIN`: ``kl_ybar`` with a marginal-entropy
  weight, UVAC's ``prior_fitted_at`` in the epoch its GMM prior is fitted); baselines:
  ``time_s`` only.
* ``val/*`` and ``test/*`` -- :func:`trainables.metrics.clustering_metrics` of the split
  (``acc``, ``nmi``, ``ari``, ``n_clusters_used``, ``collapsed``, ``occupancy_max``,
  ``occupancy_entropy``) plus ``silhouette_r``, ``dbi_r``, ``chi_r`` for each representation
  ``r`` of the model (:data:`REPRESENTATIONS`: a class's ``representations``; the baselines'
  ``x``); neural models add ``val/time_s``.

A model registered later (trainables.models.register_model) is in every table here.

tests/test_study_failfast.py trains each model for one tiny epoch and checks that what is
reported is declared here and that every declared val/ and test/ metric is reported, so a
renamed loss term or metric shows up there.
"""
from __future__ import annotations

from typing import Mapping

from trainables.baselines import BASELINES, FITTED_BASELINES, REPRESENTATION
from trainables.metrics import QUALITY_METRICS
from trainables.models import RegistryView, model_class, registered_models
from trainables.restarts import RESTART_METRICS

__all__ = ["REPRESENTATIONS", "SPLIT_METRICS", "CONDITIONAL_TRAIN", "LOOP_TRAIN", "LOOP_CONDITIONAL",
           "declared_metrics", "known_models", "reported_representation"]


# Representations the clustering-quality metrics are computed on, per model: what each
# registered network declares (z latent mean, y categorical posterior); the baselines cluster
# x, the flattened input features (trainables.baselines).
REPRESENTATIONS: Mapping[str, tuple[str, ...]] = RegistryView(lambda: {
    **{name: tuple(cls.representations) for name, cls in registered_models().items()},
    **{name: (REPRESENTATION,) for name in FITTED_BASELINES},
})

# Keys of trainables.metrics.clustering_metrics that do not depend on a representation.
SPLIT_METRICS = ("acc", "nmi", "ari", "n_clusters_used", "collapsed", "occupancy_max", "occupancy_entropy")

# train/* of every network's epoch (trainables.run.train_epoch); the rest the model declares.
LOOP_TRAIN = ("loss", "grad_norm", "lr", "epoch_time_s", "samples_per_s")
# ... and with restarts > 1, once, in the epoch the kept restart was chosen (trainables.restarts).
LOOP_CONDITIONAL = RESTART_METRICS
# Reported only under some configs or in some epochs (still valid names), per network.
CONDITIONAL_TRAIN: Mapping[str, tuple[str, ...]] = RegistryView(
    lambda: {name: tuple(cls.conditional_terms) for name, cls in registered_models().items()})
_BASELINE_TRAIN = ("time_s",)


def known_models() -> list[str]:
    return sorted(REPRESENTATIONS)


def reported_representation(model: str) -> str:
    """The representation a model's tables report (``ClusteringModel.reported_representation``;
    the baselines': x); "" for an unknown model."""
    cls = model_class(model)
    if cls is not None:
        return cls.reported_representation
    return REPRESENTATION if model in BASELINES else ""


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
    cls = model_class(model)
    if cls is not None:
        train = [*LOOP_TRAIN, *LOOP_CONDITIONAL, *cls.loss_terms, *cls.logged, *cls.conditional_terms]
        val_extra = ["val/time_s"]
    else:
        train = list(_BASELINE_TRAIN)
        val_extra = []
    names = [f"train/{t}" for t in train] + _split("val/", model) + val_extra + _split("test/", model)
    return sorted(set(names))
