"""The one interface every clustering network implements, so the training loop never asks which
model it runs (in the spirit of Asteroid's ``System`` and Optuna's ``BaseSampler``).

A model is built from a resolved config (:meth:`ClusteringModel.from_config`), and from then on
the loop only calls:

* :meth:`on_train_start` once, with the training split (data-dependent initialisation such as
  the decoder's output bias);
* :meth:`on_epoch_start` before every epoch (warm-up hooks such as fitting the GMM prior);
  returns numbers to log;
* :meth:`training_step` per batch: ``(total loss, {term: scalar})`` at a fractional epoch
  (schedules such as the Gumbel-Softmax temperature or the KL warm-up live in the model);
* :meth:`infer` for evaluation and prediction: cluster, probabilities and the representations
  named in :attr:`representations` (``z``: latent mean; ``y``: categorical posterior).

Shapes: ``x`` [B, F, T] (or [B, 1, F, T]), in [0, 1] or real-valued (the front end's ``bounded``);
``mask`` [B, T] (1 = real frame); ``stats`` [B, 4] per-clip normalisation statistics.

What UVAC and categorical UVAC share beyond this protocol lives in :mod:`trainables.models.latent`.
"""
from __future__ import annotations

import abc
import contextlib
from dataclasses import dataclass, replace
from typing import Any, Callable, ClassVar, Iterable, Mapping

import torch
from torch import nn

from trainables.config_keys import TRAINING_KEYS, Key, defaults_of

__all__ = ["BATCHNORMS", "Batch", "ClusteringModel", "TrainBatches", "warmup_fit_epoch", "warmup_through_fit"]


# every BatchNorm layer torch has, by its public classes (torch.nn.modules.batchnorm.__all__;
# tests/test_compat.py checks the list against the installed torch)
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LazyBatchNorm1d, nn.LazyBatchNorm2d,
              nn.LazyBatchNorm3d, nn.SyncBatchNorm)


@dataclass(frozen=True)
class Batch:
    """One mini-batch: ``x`` [B, F, T] (in [0, 1], or real-valued), ``mask`` [B, T], ``stats`` [B, 4];
    ``view``: an augmented view of the same clips (trainables.augment), or None; ``group`` [B] (int64):
    each clip's speaker index, only where the config uses speaker ids in training
    (``speaker_independence``), else None."""

    x: torch.Tensor
    mask: torch.Tensor
    stats: torch.Tensor
    view: "Batch | None" = None
    group: torch.Tensor | None = None

    def with_view(self, x: torch.Tensor, mask: torch.Tensor) -> "Batch":
        return replace(self, view=Batch(x, mask, self.stats))


# A callable returning a fresh pass over the training split in fixed order (no shuffling).
TrainBatches = Callable[[], Iterable[Batch]]


class ClusteringModel(nn.Module, abc.ABC):
    """Base class of the registered networks (:data:`trainables.models.MODELS`).

    The contract the training loop, the trainable and predict rely on, and nothing more: a model
    is built from a resolved config (:meth:`from_config`), trained one batch at a time
    (:meth:`training_step`, with the optional hooks around it) and read by :meth:`infer`. Its
    ``forward`` is its own business (the loop never calls it). The abstract methods must be
    implemented (instantiating a model that lacks one is a TypeError); the hooks have defaults.
    ``tests/test_model_contract.py`` runs one contract test class over every registered model.
    """

    name: ClassVar[str]
    # What the model owns, declared here so that nothing else names it (trainables.config,
    # trainables.metric_names, the loop, and through MLflow tags the analysis read these):
    representations: ClassVar[tuple[str, ...]] = ("z",)  # what infer returns besides probs and cluster
    reported_representation: ClassVar[str] = "z"  # the one Table I reports (analysis.tables)
    config_keys: ClassVar[tuple[Key, ...]] = ()  # the keys this class adds to the config (subclasses add theirs)
    key_defaults: ClassVar[Mapping[str, Any]] = {}  # this class's defaults of keys declared elsewhere
    loss_terms: ClassVar[tuple[str, ...]] = ()  # the terms training_step always returns (train/<term>)
    logged: ClassVar[tuple[str, ...]] = ()  # what step_logs returns every epoch (train/<name>)
    conditional_terms: ClassVar[tuple[str, ...]] = ()  # terms and logs reported only under some configs / epochs

    @classmethod
    def own_keys(cls) -> tuple[Key, ...]:
        """Every key the model's classes declare, base classes first."""
        seen: dict[str, Key] = {}
        for klass in reversed(cls.__mro__):
            for key in vars(klass).get("config_keys", ()):
                seen.setdefault(key.name, key)
        return tuple(seen.values())

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The model's config defaults (the training keys', its own keys', its ``key_defaults``):
        what ``trainables.config.resolve_config`` gives it under a recipe that sets nothing
        (``paper``), and what its constructor falls back on (one source)."""
        return {**defaults_of((*TRAINING_KEYS, *cls.own_keys())), **cls.shared_key_defaults(), "model": cls.name}

    @classmethod
    def shared_key_defaults(cls) -> dict[str, Any]:
        """The ``key_defaults`` of the model's classes, base classes first (``MODEL_DEFAULTS``)."""
        out: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            out.update(vars(klass).get("key_defaults", {}))
        return out

    @classmethod
    def paper_defaults(cls, dataset: str | None) -> dict[str, Any]:
        """Values the papers give per dataset (``dataset``: an adapter name), applied under the paper
        recipes to the keys the caller did not give. Default: none."""
        return {}

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """Raise ConfigError when values of this class's keys do not go together (checked on every
        config, as every config holds every registered model's keys). Default: nothing to check."""

    @classmethod
    @abc.abstractmethod
    def from_config(cls, cfg: Mapping[str, Any], n_freq: int, n_frames: int, to_linear=None) -> "ClusteringModel":
        """The model of a resolved config for ``n_freq`` x ``n_frames`` inputs."""

    @classmethod
    def speaker_id_settings(cls, cfg: Mapping[str, Any]) -> tuple[str, ...]:
        """The settings of ``cfg`` under which training reads each clip's speaker (``Batch.group``),
        e.g. ``("speaker_independence",)``; empty when none does. Speaker ids are side information,
        allowed only on a front end normalised per speaker (trainables.config.check_frontend).
        Default: none."""
        return ()

    @classmethod
    def warmup_epochs(cls, cfg: Mapping[str, Any]) -> int:
        """Epochs before this model's validation metrics say what it will become: an early-stopping
        scheduler must not judge a trial before the end of this epoch. Default: the KL warm-up."""
        return min(int(cfg["epochs"]), int(cfg.get("kl_warmup_epochs", 0)))

    # -- training hooks ---------------------------------------------------------------------------
    def on_train_start(self, batches: TrainBatches, seed: int) -> None:
        """Data-dependent initialisation before the first epoch (not called on resume)."""

    def on_epoch_start(self, epoch: int, batches: TrainBatches, seed: int) -> dict[str, float]:
        """Called before 0-based ``epoch``; returns numbers to log (``train/...`` keys)."""
        return {}

    @abc.abstractmethod
    def training_step(self, batch: Batch, epoch_float: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(total loss, named scalar terms) of one batch at ``epoch + fraction done``."""

    def step_logs(self, epoch_float: float) -> dict[str, float]:
        """Scheduled values to log for an epoch (e.g. ``train/tau``, ``train/kl_weight``)."""
        return {}

    def training_state(self) -> dict[str, Any]:
        """What training tracks outside the weights and buffers (running estimates a loss term
        reads), saved in checkpoints beside the weights so that a resumed run continues exactly."""
        return {}

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`training_state` (a checkpoint without it leaves the estimates to rebuild)."""

    # -- inference --------------------------------------------------------------------------------
    @abc.abstractmethod
    def infer(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``cluster`` [B], ``probs`` [B, K] and each of :attr:`representations` [B, D], without
        gradients (implementations are ``@torch.no_grad()``)."""

    @abc.abstractmethod
    def inference_parameters(self) -> int:
        """Parameters that :meth:`infer` uses (no decoder)."""

    @abc.abstractmethod
    def representation_sizes(self) -> dict[str, int]:
        """The width of each of :attr:`representations` (what an empty split's arrays are shaped as)."""

    # -- shared machinery -------------------------------------------------------------------------
    @contextlib.contextmanager
    def batch_statistics(self):
        """Run the body in training mode (BatchNorm on batch statistics, as training sees the data)
        and restore every BatchNorm's running statistics and the train/eval mode afterwards."""
        bns = [m for m in self.modules() if isinstance(m, BATCHNORMS)]  # as reestimate_batchnorm selects them
        saved = [{k: v.clone() for k, v in m.named_buffers(recurse=False)} for m in bns]
        was_training = self.training
        self.train()
        try:
            yield self
        finally:
            with torch.no_grad():
                for m, buffers in zip(bns, saved):
                    for k, v in m.named_buffers(recurse=False):
                        v.copy_(buffers[k])
            self.train(was_training)

    @torch.no_grad()
    def reestimate_batchnorm(self, batches: TrainBatches) -> int:
        """Recompute every BatchNorm's running statistics as exact averages over ``batches``.

        Weights are untouched; only ``running_mean`` / ``running_var`` / ``num_batches_tracked``
        change. The pass runs the inference path (:meth:`infer`) with the BatchNorm layers in
        training mode, so the statistics are those of the inputs evaluation will see.
        Returns the number of BatchNorm layers re-estimated.
        """
        bns = [m for m in self.modules() if isinstance(m, BATCHNORMS)]
        if not bns:
            return 0
        was_training = self.training
        saved = [(m.momentum, m.training) for m in bns]
        self.eval()
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average = exact mean over the batches
            m.train()
        seen = 0
        for b in batches():
            if b.x.shape[0] < 2:
                continue
            self.infer(b.x, b.mask)
            seen += 1
        for m, (momentum, _) in zip(bns, saved):
            m.momentum = momentum
        self.train(was_training)
        return len(bns) if seen else 0


def warmup_fit_epoch(warmup_epochs: int, epochs: int) -> int:
    """The 0-based epoch before which a warm-up fit happens (UVAC's prior, categorical UVAC's
    head): after ``warmup_epochs``, but never later than the start of the last epoch (a run
    shorter than its warm-up still ends fitted, hence with all its clusters)."""
    return max(0, min(int(warmup_epochs), int(epochs) - 1))


def warmup_through_fit(warmup_epochs: int, epochs: int) -> int:
    """The epochs an early-stopping scheduler waits out for a warm-up fit: up to the fit
    (:func:`warmup_fit_epoch`) and one epoch trained from it, never more than ``epochs``."""
    return min(int(epochs), warmup_fit_epoch(warmup_epochs, epochs) + 1)
