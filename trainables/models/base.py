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

Shapes: ``x`` [B, F, T] (or [B, 1, F, T]) normalised to [0, 1]; ``mask`` [B, T] (1 = real
frame); ``stats`` [B, 4] per-clip normalisation statistics.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, fields, replace
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence

import torch
from torch import nn

from trainables.consistency import CONSISTENCIES, consistency
from trainables.models.blocks import fit_depth, parse_channels
from trainables.models.style import StyleFactor

__all__ = ["Batch", "Blocks", "ClusteringModel", "DEC_BIAS_INITS", "LatentClusteringModel", "TrainBatches"]

# the decoder output bias at construction: zero, or the data mean (logit of it on [0, 1] inputs)
DEC_BIAS_INITS = ("zero", "data_mean")


# every BatchNorm layer torch has, by its public classes (torch.nn.modules.batchnorm.__all__;
# tests/test_compat.py checks the list against the installed torch)
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LazyBatchNorm1d, nn.LazyBatchNorm2d,
              nn.LazyBatchNorm3d, nn.SyncBatchNorm)


@dataclass(frozen=True)
class Batch:
    """One mini-batch: ``x`` [B, F, T] (in [0, 1], or real-valued), ``mask`` [B, T], ``stats`` [B, 4];
    ``view``: an augmented view of the same clips (trainables.augment), or None."""

    x: torch.Tensor
    mask: torch.Tensor
    stats: torch.Tensor
    view: "Batch | None" = None

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
    representations: ClassVar[tuple[str, ...]] = ("z",)

    @classmethod
    @abc.abstractmethod
    def from_config(cls, cfg: Mapping[str, Any], n_freq: int, n_frames: int, to_linear=None) -> "ClusteringModel":
        """The model of a resolved config for ``n_freq`` x ``n_frames`` inputs."""

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

    # -- inference --------------------------------------------------------------------------------
    @abc.abstractmethod
    def infer(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``cluster`` [B], ``probs`` [B, K] and each of :attr:`representations` [B, D], without
        gradients (implementations are ``@torch.no_grad()``)."""

    @abc.abstractmethod
    def inference_parameters(self) -> int:
        """Parameters that :meth:`infer` uses (no decoder)."""

    # -- shared machinery -------------------------------------------------------------------------
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


@dataclass(frozen=True)
class Blocks:
    """Construction options both networks share (defaults: the papers'). Passed to a model's
    constructor as keyword arguments (``UVAC(128, 99, channels=(8, 16, 32, 64), pool="mean")``)."""

    divergence: str = "euc"
    likelihood: str = "gaussian"
    channels: Sequence[int] = (16, 32, 64, 128)
    gru_hidden: int = 128
    pool: str = "last"
    dec_bias_init: str = "zero"
    to_linear: Any = None  # to_linear(x01, stats) -> linear magnitude, for the is / kl divergences
    bounded: bool = True  # inputs in [0, 1] (clip normalisation); False: real-valued (CMN, CMVN)
    consistency: str = "none"  # between the cluster posteriors of a batch and its view: none | mi | skl
    consistency_weight: float = 1.0
    overcluster: int = 0  # > 0: an auxiliary head of overcluster * K clusters, trained by consistency alone
    free_bits: float = 0.0  # nats per latent dimension below which KL_z is not penalised
    style_clusters: int = 0  # > 0: a style factor of that many classes (trainables.models.style)
    style_balance: float = 1.0  # weight of the style factor's batch-marginal balance term

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], to_linear=None, bounded: bool = True) -> dict[str, Any]:
        return dict(divergence=cfg["divergence"], likelihood=cfg["likelihood"], channels=parse_channels(cfg["channels"]),
                    gru_hidden=int(cfg["gru_hidden"]), pool=cfg["pool"], dec_bias_init=cfg["dec_bias_init"],
                    to_linear=to_linear, bounded=bool(bounded), consistency=cfg["consistency"],
                    consistency_weight=float(cfg["consistency_weight"]), overcluster=int(cfg["overcluster"]),
                    free_bits=float(cfg["free_bits"]), style_clusters=int(cfg["style_clusters"]),
                    style_balance=float(cfg["style_balance"]))


class LatentClusteringModel(ClusteringModel):
    """What UVAC and categorical UVAC share: input checks, the reconstruction term, the
    decoder's output-bias initialisation and the construction options (:class:`Blocks`)."""

    def _setup(self, n_freq: int, n_frames: int, n_clusters: int, d_z: int, blocks: Mapping[str, Any]) -> Blocks:
        """Validate and store the shared options; returns them for building the networks."""
        from trainables.reconstruction import Reconstruction

        unknown = set(blocks) - {f.name for f in fields(Blocks)}
        if unknown:
            raise TypeError(f"{type(self).__name__}: unexpected argument(s) {', '.join(sorted(unknown))}")
        b = Blocks(**blocks)
        b = replace(b, channels=fit_depth(b.channels, n_freq, n_frames))  # the depth follows the input size
        if int(n_clusters) < 1 or int(d_z) < 1:
            raise ValueError(f"n_clusters and d_z must be >= 1, got {n_clusters}, {d_z}")
        if b.dec_bias_init not in DEC_BIAS_INITS:
            raise ValueError(f"dec_bias_init: expected 'zero' or 'data_mean', got {b.dec_bias_init!r}")
        self.n_freq, self.n_frames = int(n_freq), int(n_frames)
        self.n_clusters, self.d_z = int(n_clusters), int(d_z)
        self.divergence, self.likelihood = b.divergence, b.likelihood
        self.recon = Reconstruction(b.divergence, b.likelihood, self.n_freq, b.to_linear, bounded=b.bounded)
        self.dec_bias_init = b.dec_bias_init
        self.channels_used = tuple(b.channels)
        if b.consistency not in CONSISTENCIES:
            raise ValueError(f"consistency: expected one of {', '.join(CONSISTENCIES)}, got {b.consistency!r}")
        if int(b.overcluster) < 0 or float(b.free_bits) < 0 or float(b.consistency_weight) < 0:
            raise ValueError("overcluster, free_bits and consistency_weight must be >= 0")
        self.consistency, self.consistency_weight = b.consistency, float(b.consistency_weight)
        self.free_bits = float(b.free_bits)
        self._overcluster = int(b.overcluster)
        self.over_head: nn.Module | None = None
        self.style: StyleFactor | None = None
        if int(b.style_clusters) > 0:
            if b.bounded:
                raise ValueError("style_clusters: the style offsets are added to a real-valued output; use a front end "
                                 "with normalisation none, band or speaker")
            self.style = StyleFactor(self.n_freq, self.n_frames, int(b.style_clusters), float(b.style_balance))
        # real-valued inputs are standardised per row with the train split's statistics (on_train_start)
        self.standardise_input = not b.bounded
        self.register_buffer("input_shift", torch.zeros(self.n_freq))
        self.register_buffer("input_scale", torch.ones(self.n_freq))
        return b

    # -- invariance (docs/MODELS.md, "Invariance") ----------------------------------------------
    def _make_overcluster_head(self, in_features: int) -> None:
        """The auxiliary overclustering head (IIC): ``overcluster * K`` logits from the features the
        cluster posterior is computed from; called by a model once its encoder exists."""
        if self._overcluster > 0:
            self.over_head = nn.Linear(int(in_features), self._overcluster * self.n_clusters)
            nn.init.kaiming_uniform_(self.over_head.weight)
            nn.init.zeros_(self.over_head.bias)

    @abc.abstractmethod
    def posterior(self, x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(log q(cluster | x) [B, K] as training sees it, or None while it is not defined yet;
        the features [B, H] it is computed from). ``x`` is prepared (:meth:`prepare`)."""

    def invariance_terms(self, batch: Batch, log_p: torch.Tensor | None, h: torch.Tensor
                         ) -> tuple[torch.Tensor | float, dict[str, torch.Tensor]]:
        """The weighted consistency between ``batch`` and its view (``batch.view``): on the cluster
        posteriors ``log_p`` / the view's, and on the overclustering head; (0, {}) without a view."""
        if batch.view is None or self.consistency == "none":
            return 0.0, {}
        log_pv, hv = self.posterior(self.prepare(batch.view.x, batch.view.mask), batch.view.mask)
        terms: dict[str, torch.Tensor] = {}
        if log_p is not None and log_pv is not None:
            terms["consistency"] = consistency(self.consistency, log_p, log_pv)
        if self.over_head is not None:
            terms["consistency_over"] = consistency(self.consistency, torch.log_softmax(self.over_head(h).float(), 1),
                                                    torch.log_softmax(self.over_head(hv).float(), 1))
        return (self.consistency_weight * sum(terms.values()) if terms else 0.0), terms

    def styled(self, out: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, kl_weight: float
               ) -> tuple[torch.Tensor, torch.Tensor | float, dict[str, torch.Tensor]]:
        """The decoder output ``out`` [B, 1, F, T] plus the style offset of standardised ``x`` (identity
        without a style factor), the style loss and its terms."""
        if self.style is None:
            return out, 0.0, {}
        log_q = self.style.log_probs(x.reshape(x.shape[0], self.n_freq, self.n_frames), mask)
        terms = self.style.loss_terms(log_q)
        offset = self.style.offset(log_q).reshape(out.shape).to(out.dtype)
        return out + offset, kl_weight * terms["kl_s"] + self.style.balance * terms["kl_sbar"], terms

    def prepare(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """What the encoders see: :meth:`standardise` d x, less its style offset when the model has
        a style factor (a learned, unsupervised speaker normalisation); x [B, F, T] or [B, 1, F, T]."""
        xt = self.standardise(x)
        if self.style is None:
            return xt
        flat = xt.reshape(xt.shape[0], self.n_freq, self.n_frames)
        m = mask if mask is not None else torch.ones(flat.shape[0], self.n_frames, device=flat.device)
        return xt - self.style.offset(self.style.log_probs(flat, m)).reshape(xt.shape).to(xt.dtype)

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        """What the decoder reconstructs: x itself, or (x - shift) / scale per row (real-valued
        inputs); x [B, F, T] or [B, 1, F, T]."""
        if not self.standardise_input:
            return x
        shape = (1, -1, 1) if x.ndim == 3 else (1, 1, -1, 1)
        return (x - self.input_shift.view(shape).to(x.dtype)) / self.input_scale.view(shape).to(x.dtype)

    @torch.no_grad()
    def fit_input_standardisation(self, batches: TrainBatches) -> None:
        """Per-row mean and standard deviation over the real frames of the training split."""
        total = torch.zeros(self.n_freq, dtype=torch.float64)
        sq = torch.zeros(self.n_freq, dtype=torch.float64)
        count = 0.0
        for b in batches():
            m = (b.mask > 0).to(torch.float64)[:, None, :].cpu()
            x = b.x.to(torch.float64).cpu()
            total += (x * m).sum(dim=(0, 2))
            sq += (x * x * m).sum(dim=(0, 2))
            count += float(m.sum())
        mean = total / max(count, 1.0)
        std = (sq / max(count, 1.0) - mean * mean).clamp_min(0).sqrt()
        self.input_shift.copy_(mean.to(self.input_shift))
        self.input_scale.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)).to(self.input_scale))

    @staticmethod
    def size_kwargs(cfg: Mapping[str, Any], n_freq: int, n_frames: int) -> dict[str, int]:
        return dict(n_freq=int(n_freq), n_frames=int(n_frames), n_clusters=int(cfg["n_clusters"]), d_z=int(cfg["d_z"]))

    def on_train_start(self, batches: TrainBatches, seed: int) -> None:
        if self.standardise_input:
            self.fit_input_standardisation(batches)
        if self.style is not None:
            self.style.fit(batches, self.standardise, seed)
        if self.dec_bias_init != "data_mean":
            return
        xs, ms, ss = [], [], []
        for b in batches():
            xs.append(self.standardise(b.x)), ms.append(b.mask), ss.append(b.stats)
        self.decoder.set_output_bias(self.recon.output_bias(torch.cat(xs), torch.cat(ms), torch.cat(ss)))
