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
import contextlib
from dataclasses import dataclass, fields, replace
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence

import torch
from torch import nn

from trainables.config_keys import TRAINING_KEYS, ConfigError, Key, defaults_of
from trainables.consistency import CONSISTENCIES, consistency
from trainables.independence import RunningGroupDependence
from trainables.losses import DIVERGENCES
from trainables.models.blocks import ENCODERS, POOLS, ConvDecoder, ConvEncoder, fit_depth, parse_channels
from trainables.models.mlp_blocks import MLPDecoder, MLPEncoder, parse_hidden
from trainables.models.style import StyleFactor
from trainables.reconstruction import LIKELIHOODS

__all__ = ["Batch", "Blocks", "ClusteringModel", "DEC_BIAS_INITS", "INVARIANCE_TERMS", "LATENT_KEYS",
           "LatentClusteringModel", "TrainBatches", "warmup_fit_epoch",
           "warmup_through_fit"]

# the decoder output bias at construction: zero, or the data mean (logit of it on [0, 1] inputs)
DEC_BIAS_INITS = ("zero", "data_mean")
# loss terms of the invariance machinery, reported only when it is switched on (consistency, the
# overclustering head, the style factor)
INVARIANCE_TERMS = ("consistency", "consistency_over", "kl_s", "kl_sbar", "speaker_mi", "style_mi")


def _channels(spec: str) -> str:
    parse_channels(spec)  # ValueError naming the key
    return spec


def _hidden(spec: str) -> str:
    parse_hidden(spec)  # ValueError naming the key
    return spec


# The keys UVAC and categorical UVAC share (LatentClusteringModel.config_keys): the construction
# options of Blocks and the KL schedule. Their defaults are the papers'.
LATENT_KEYS: tuple[Key, ...] = (
    Key("d_z", 10, "latent size", positive=True, structural=True),
    Key("divergence", "euc", "reconstruction divergence (is / kl on de-normalised values)", choices=DIVERGENCES,
        structural=True),
    Key("lam", 0.5, "weight of the KL terms (categorical paper's lambda; UVAC paper: 1)", low=0),
    Key("kl_warmup_epochs", 0, "linear warm-up of the KL weight from 0 to lam; 0 = off", low=0),
    Key("channels", "16,32,64,128", "encoder channels, comma separated (decoder mirrors them)", sequence=True,
        normalise=_channels, structural=True),
    Key("gru_hidden", 128, "units of the two GRU layers", positive=True, structural=True),
    Key("encoder", "conv", "the encoders and the decoder: conv (papers: convolutions + GRU; channels, gru_hidden, "
        "pool) or mlp (fully connected, for small fixed-size inputs such as awe; mlp_hidden)", choices=ENCODERS,
        structural=True),
    Key("mlp_hidden", "256,128", "widths of the mlp encoder's hidden layers, comma separated (the decoder mirrors "
        "them; encoder mlp)", sequence=True, normalise=_hidden, structural=True),
    Key("likelihood", "gaussian", "reconstruction likelihood: gaussian (papers); bernoulli, gaussian_learned and "
        "gaussian_learned_freq need divergence euc", choices=LIKELIHOODS, structural=True),
    Key("dec_bias_init", "zero", "decoder output bias: zero (papers) or data_mean (output = mean input at init)",
        choices=DEC_BIAS_INITS),
    Key("pool", "last", "GRU summary of a clip: last (last step) or mean (over real frames)", choices=POOLS),
    Key("consistency", "none", "between the cluster posteriors of a batch and its augmented view: mi (IIC: log K "
        "- mutual information) or skl (symmetric KL); categorical UVAC: q(y|x); UVAC: the GMM responsibilities "
        "(once fitted)", choices=CONSISTENCIES),
    Key("consistency_weight", 1.0, "weight of the consistency terms", low=0),
    Key("overcluster", 0, "> 0: an auxiliary head of overcluster x n_clusters clusters trained by the consistency "
        "term alone (IIC's overclustering); 0 = off", low=0, structural=True),
    Key("free_bits", 0.0, "KL_z counts at least this many nats per latent dimension (Kingma et al. 2016); 0 = off",
        low=0),
    Key("style_clusters", 0, "a style factor (trainables.models.style): that many style classes q(s|x) from the "
        "clip's per-row statistics, each an additive offset of the decoder output (speaker / channel); "
        "real-valued front ends only", low=0, zero_means="off", structural=True),
    Key("style_balance", 1.0, "weight of KL(batch-mean q(s) || uniform), the style factor's balance term", low=0),
    Key("speaker_independence", 0.0, "weight of I(cluster; speaker) over the training data, tracked over batches "
        "(trainables.independence: clusters used alike by every speaker); uses speaker ids, so only on a front end "
        "normalised per speaker; 0 = off", low=0),
    Key("style_independence", 0.0, "weight of I(cluster; style) over the training data, the style factor's q(s|x) "
        "standing in for the speaker (no speaker ids; needs style_clusters); 0 = off", low=0),
)
_LATENT = defaults_of(LATENT_KEYS)


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


@dataclass(frozen=True)
class Blocks:
    """Construction options both networks share, passed to a model's constructor as keyword
    arguments (``UVAC(128, 99, channels=(8, 16, 32, 64), pool="mean")``). Each is the config key of
    its name (:data:`LATENT_KEYS`, where its meaning and default are), except ``to_linear`` and
    ``bounded``, which the features decide."""

    divergence: str = _LATENT["divergence"]
    likelihood: str = _LATENT["likelihood"]
    channels: Sequence[int] = parse_channels(_LATENT["channels"])
    gru_hidden: int = _LATENT["gru_hidden"]
    pool: str = _LATENT["pool"]
    encoder: str = _LATENT["encoder"]
    mlp_hidden: Sequence[int] = parse_hidden(_LATENT["mlp_hidden"])
    dec_bias_init: str = _LATENT["dec_bias_init"]
    to_linear: Any = None  # to_linear(x01, stats) -> linear magnitude, for the is / kl divergences
    bounded: bool = True  # inputs in [0, 1] (clip normalisation); False: real-valued (CMN, CMVN)
    consistency: str = _LATENT["consistency"]
    consistency_weight: float = _LATENT["consistency_weight"]
    overcluster: int = _LATENT["overcluster"]
    free_bits: float = _LATENT["free_bits"]
    style_clusters: int = _LATENT["style_clusters"]
    style_balance: float = _LATENT["style_balance"]
    speaker_independence: float = _LATENT["speaker_independence"]
    style_independence: float = _LATENT["style_independence"]

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], to_linear=None, bounded: bool = True) -> dict[str, Any]:
        keys = {f.name: type(_LATENT[f.name]) for f in fields(cls) if f.name in _LATENT}
        options = {name: kind(cfg[name]) for name, kind in keys.items()}
        return {**options, "channels": parse_channels(cfg["channels"]), "mlp_hidden": parse_hidden(cfg["mlp_hidden"]),
                "to_linear": to_linear, "bounded": bool(bounded)}


class LatentClusteringModel(ClusteringModel):
    """What UVAC and categorical UVAC share: input checks, the reconstruction term, the
    decoder's output-bias initialisation and the construction options (:class:`Blocks`), with
    their config keys (:data:`LATENT_KEYS`)."""

    config_keys = LATENT_KEYS
    conditional_terms = INVARIANCE_TERMS

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        if cfg["consistency"] != "none" and cfg["augment"] == "none":
            raise ConfigError(f"consistency {cfg['consistency']!r} compares a batch with its augmented view: "
                              f"set augment (e.g. augment=speed,warp)")
        if cfg["style_independence"] > 0 and cfg["style_clusters"] < 2:
            raise ConfigError("style_independence: the clusters are kept independent of the style factor's q(s|x): "
                              "set style_clusters (>= 2)")
        if cfg["overcluster"] > 0 and cfg["consistency"] == "none":
            raise ConfigError("overcluster: the overclustering head is trained by the consistency term alone: "
                              "set consistency to mi or skl")
        if cfg["likelihood"] != "gaussian" and cfg["divergence"] != "euc":
            raise ConfigError(
                f"likelihood {cfg['likelihood']!r} is defined on the normalised [0, 1] spectrogram: it needs "
                f"divergence 'euc', got {cfg['divergence']!r} (use likelihood 'gaussian' with 'is' / 'kl')"
            )

    def representation_sizes(self) -> dict[str, int]:
        return {r: {"z": self.d_z, "y": self.n_clusters}[r] for r in self.representations}

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
        if b.encoder not in ENCODERS:
            raise ValueError(f"encoder: expected one of {', '.join(ENCODERS)}, got {b.encoder!r}")
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
        if float(b.speaker_independence) < 0:
            raise ValueError(f"speaker_independence must be >= 0, got {b.speaker_independence}")
        self.speaker_independence = float(b.speaker_independence)
        self._speaker_dependence = RunningGroupDependence() if self.speaker_independence > 0 else None
        if float(b.style_independence) < 0 or (float(b.style_independence) > 0 and int(b.style_clusters) < 2):
            raise ValueError(f"style_independence ({b.style_independence}) must be >= 0, and > 0 only with a style "
                             f"factor (style_clusters >= 2, got {b.style_clusters})")
        self.style_independence = float(b.style_independence)
        self._style_dependence = RunningGroupDependence() if self.style_independence > 0 else None
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

    def make_encoder(self, b: Blocks, in_channels: int) -> nn.Module:
        """An encoder ``[B, in_channels, F, T] -> [B, out_features]`` of the configured family
        (``encoder``: the papers' convolutions + GRU, or fully connected)."""
        if b.encoder == "mlp":
            return MLPEncoder(in_channels, self.n_freq, self.n_frames, b.mlp_hidden)
        return ConvEncoder(in_channels, self.n_freq, self.n_frames, b.channels, b.gru_hidden, pool=b.pool)

    def make_decoder(self, b: Blocks, in_features: int) -> nn.Module:
        """The decoder ``[B, in_features] -> [B, 1, F, T]`` mirroring :meth:`make_encoder`."""
        if b.encoder == "mlp":
            return MLPDecoder(in_features, self.n_freq, self.n_frames, b.mlp_hidden,
                              final_activation=self.recon.final_activation)
        return ConvDecoder(in_features, self.n_freq, self.n_frames, b.channels,
                           final_activation=self.recon.final_activation)

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
        """The weighted invariance terms of a batch and the terms themselves: the consistency between
        ``batch`` and its view (``batch.view``), on the cluster posteriors ``log_p`` / the view's and on
        the overclustering head, and the clusters' dependence on the speaker (``speaker_mi``: the running
        I(y; speaker), where the batch carries speakers, :mod:`trainables.independence`) or on the style
        factor's q(s|x) standing in for it (``style_mi``); (0, {}) when none applies."""
        total, terms = self._consistency_terms(batch, log_p, h)
        if self._speaker_dependence is not None and batch.group is not None and log_p is not None:
            loss, terms["speaker_mi"] = self._speaker_dependence(log_p, batch.group)
            total = total + self.speaker_independence * loss
        if self._style_dependence is not None and self.style is not None and log_p is not None:
            xt = self.standardise(batch.x).reshape(batch.x.shape[0], self.n_freq, self.n_frames)
            loss, terms["style_mi"] = self._style_dependence(log_p, self.style.log_probs(xt, batch.mask).exp())
            total = total + self.style_independence * loss
        return total, terms

    def _consistency_terms(self, batch: Batch, log_p: torch.Tensor | None, h: torch.Tensor
                           ) -> tuple[torch.Tensor | float, dict[str, torch.Tensor]]:
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
