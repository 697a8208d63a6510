"""What UVAC and categorical UVAC share behind the :class:`~trainables.models.base.ClusteringModel`
protocol: their config keys (:data:`LATENT_KEYS`), their construction options (:class:`Blocks`),
and :class:`LatentClusteringModel` (input checks and standardisation, the reconstruction term, the
networks of either family, the invariance terms, the style factor).

Shapes as in :mod:`trainables.models.base`: ``x`` [B, F, T] (or [B, 1, F, T]), ``mask`` [B, T].
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, fields, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from trainables.config_keys import ConfigError, Key, defaults_of
from trainables.consistency import CONSISTENCIES, consistency, self_label
from trainables.contrastive import ProjectionHead, nt_xent
from trainables.independence import RunningGroupDependence
from trainables.losses import DIVERGENCES
from trainables.models.base import Batch, ClusteringModel, TrainBatches
from trainables.models.blocks import ENCODERS, POOLS, ConvDecoder, ConvEncoder, fit_depth, parse_channels
from trainables.models.mlp_blocks import MLPDecoder, MLPEncoder, parse_hidden
from trainables.models.style import StyleFactor
from trainables.reconstruction import LIKELIHOODS
from trainables.standardise import Standardiser

__all__ = ["Blocks", "DEC_BIAS_INITS", "INVARIANCE_TERMS", "LATENT_KEYS", "LatentClusteringModel"]

# the decoder output bias at construction: zero, or the data mean (logit of it on [0, 1] inputs)
DEC_BIAS_INITS = ("zero", "data_mean")
# loss terms of the invariance machinery, reported only when it is switched on (consistency, the
# overclustering head, the instance contrast, the style factor)
INVARIANCE_TERMS = ("consistency", "consistency_over", "self_label", "contrastive", "kl_s", "kl_sbar", "speaker_mi",
                    "style_mi")


def _checked(parse: Callable[[str], Any]) -> Callable[[str], str]:
    """A key's ``normalise``: the spec unchanged once ``parse`` accepts it (ValueError naming the key)."""
    def check(spec: str) -> str:
        parse(spec)
        return spec
    return check


# The keys UVAC and categorical UVAC share (LatentClusteringModel.config_keys): the construction
# options of Blocks and the KL schedule. Their defaults are the papers'.
LATENT_KEYS: tuple[Key, ...] = (
    Key("d_z", 10, "latent size", positive=True, structural=True),
    Key("divergence", "euc", "reconstruction divergence (is / kl on de-normalised values)", choices=DIVERGENCES,
        structural=True),
    Key("lam", 0.5, "weight of the KL terms (categorical paper's lambda; UVAC paper: 1)", low=0),
    Key("kl_warmup_epochs", 0, "linear warm-up of the KL weight from 0 to lam; 0 = off", low=0),
    Key("channels", "16,32,64,128", "encoder channels, comma separated (decoder mirrors them)", sequence=True,
        normalise=_checked(parse_channels), structural=True, applies_when=("encoder", "conv")),
    Key("gru_hidden", 128, "units of the two GRU layers", positive=True, structural=True,
        applies_when=("encoder", "conv")),
    Key("encoder", "conv", "the encoders and the decoder: conv (papers: convolutions + GRU; channels, gru_hidden, "
        "pool) or mlp (fully connected, for small fixed-size inputs such as awe; mlp_hidden)", choices=ENCODERS,
        structural=True),
    Key("mlp_hidden", "256,128", "widths of the mlp encoder's hidden layers, comma separated (the decoder mirrors "
        "them)", sequence=True, normalise=_checked(parse_hidden), structural=True, applies_when=("encoder", "mlp")),
    Key("likelihood", "gaussian", "reconstruction likelihood: gaussian (papers); bernoulli, gaussian_learned and "
        "gaussian_learned_freq need divergence euc", choices=LIKELIHOODS, structural=True),
    Key("dec_bias_init", "zero", "decoder output bias: zero (papers) or data_mean (output = mean input at init)",
        choices=DEC_BIAS_INITS),
    Key("pool", "last", "GRU summary of a clip: last (last step) or mean (over real frames)", choices=POOLS,
        applies_when=("encoder", "conv")),
    Key("consistency", "none", "between the cluster posteriors of a batch and its augmented view: mi (IIC: log K "
        "- mutual information) or skl (symmetric KL); categorical UVAC: q(y|x); UVAC: the GMM responsibilities "
        "(once fitted)", choices=CONSISTENCIES),
    Key("consistency_weight", 1.0, "weight of the consistency terms", low=0),
    Key("overcluster", 0, "> 0: an auxiliary head of overcluster x n_clusters clusters trained by the consistency "
        "term alone (IIC's overclustering); 0 = off", low=0, structural=True),
    Key("self_label", 0.0, "weight of self-labelling (SCAN): the view's cluster posterior trained by cross-entropy "
        "towards the clean clip's cluster wherever the clean posterior is at least self_label_threshold "
        "(trainables.consistency; needs augment or neighbours); 0 = off", low=0),
    Key("self_label_threshold", 0.99, "how sure the clean posterior must be for a clip to label itself "
        "(SCAN: 0.99; 0: every clip)", low=0, high=1.0),
    Key("contrastive", 0.0, "weight of the instance contrast between a batch's and its view's encoder features "
        "(SimCLR's NT-Xent through a projection head, trainables.contrastive; needs augment or neighbours); 0 = off",
        low=0, structural=True),
    Key("contrastive_temperature", 0.5, "temperature of the instance contrast (SimCLR: 0.5, SCAN: 0.1)",
        positive=True),
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
    self_label: float = _LATENT["self_label"]
    self_label_threshold: float = _LATENT["self_label_threshold"]
    contrastive: float = _LATENT["contrastive"]
    contrastive_temperature: float = _LATENT["contrastive_temperature"]
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
        # the terms that read a batch's view (augmented or neighbour): each needs one, and a neighbour view
        # needs one of them
        view_readers = (
            (cfg["consistency"] != "none", f"consistency {cfg['consistency']!r} compares a batch with its view"),
            (cfg["self_label"] > 0, "self_label: self-labelling trains a batch's view towards the batch's own "
                                    "confident clusters"),
            (cfg["contrastive"] > 0, "contrastive: the instance contrast compares a batch with its view"),
        )
        if cfg["augment"] == "none" and cfg["neighbours"] == 0:
            for on, what in view_readers:
                if on:
                    raise ConfigError(f"{what}: set augment (e.g. augment=speed,warp) or neighbours "
                                      f"(e.g. neighbours=10)")
        if cfg["neighbours"] > 0 and not any(on for on, _ in view_readers):
            raise ConfigError("neighbours: the neighbour view is read by the consistency term, self-labelling and "
                              "the instance contrast alone: set consistency to mi or skl, self_label > 0 or "
                              "contrastive > 0")
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

    @classmethod
    def speaker_id_settings(cls, cfg: Mapping[str, Any]) -> tuple[str, ...]:
        return ("speaker_independence",) if float(cfg["speaker_independence"]) > 0 else ()

    def representation_sizes(self) -> dict[str, int]:
        return {r: {"z": self.d_z, "y": self.n_clusters}[r] for r in self.representations}

    def _setup(self, n_freq: int, n_frames: int, n_clusters: int, d_z: int, blocks: Mapping[str, Any]) -> Blocks:
        """Validate and store the shared options; returns them for building the networks."""
        from trainables.reconstruction import Reconstruction

        unknown = set(blocks) - {f.name for f in fields(Blocks)}
        if unknown:
            raise TypeError(f"{type(self).__name__}: unexpected argument(s) {', '.join(sorted(unknown))}")
        b = Blocks(**blocks)
        if int(n_clusters) < 1 or int(d_z) < 1:
            raise ValueError(f"n_clusters and d_z must be >= 1, got {n_clusters}, {d_z}")
        if b.encoder not in ENCODERS:
            raise ValueError(f"encoder: expected one of {', '.join(ENCODERS)}, got {b.encoder!r}")
        if b.encoder == "conv":  # the depth follows the input size; the fully connected networks take any F x T
            b = replace(b, channels=fit_depth(b.channels, n_freq, n_frames))
        else:
            b = replace(b, channels=())
        if b.dec_bias_init not in DEC_BIAS_INITS:
            raise ValueError(f"dec_bias_init: expected 'zero' or 'data_mean', got {b.dec_bias_init!r}")
        self.n_freq, self.n_frames = int(n_freq), int(n_frames)
        self.n_clusters, self.d_z = int(n_clusters), int(d_z)
        self.divergence, self.likelihood = b.divergence, b.likelihood
        self.recon = Reconstruction(b.divergence, b.likelihood, self.n_freq, b.to_linear, bounded=b.bounded)
        self.dec_bias_init = b.dec_bias_init
        self.channels_used = tuple(b.channels)  # () with the fully connected networks
        if b.consistency not in CONSISTENCIES:
            raise ValueError(f"consistency: expected one of {', '.join(CONSISTENCIES)}, got {b.consistency!r}")
        if int(b.overcluster) < 0 or float(b.free_bits) < 0 or float(b.consistency_weight) < 0:
            raise ValueError("overcluster, free_bits and consistency_weight must be >= 0")
        self.consistency, self.consistency_weight = b.consistency, float(b.consistency_weight)
        if float(b.self_label) < 0 or not 0 <= float(b.self_label_threshold) <= 1:
            raise ValueError(f"self_label must be >= 0 and self_label_threshold in [0, 1], got {b.self_label}, "
                             f"{b.self_label_threshold}")
        self.self_label, self.self_label_threshold = float(b.self_label), float(b.self_label_threshold)
        if float(b.contrastive) < 0 or not float(b.contrastive_temperature) > 0:
            raise ValueError(f"contrastive must be >= 0 and contrastive_temperature > 0, got {b.contrastive}, "
                             f"{b.contrastive_temperature}")
        self.contrastive, self.contrastive_temperature = float(b.contrastive), float(b.contrastive_temperature)
        self.projection: nn.Module | None = None
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
    def _make_heads(self, in_features: int) -> None:
        """The auxiliary heads on the features the cluster posterior is computed from, called by a
        model once its encoder exists: the overclustering head (IIC: ``overcluster * K`` logits) and
        the instance contrast's projection head (SimCLR)."""
        if self.contrastive > 0:
            self.projection = ProjectionHead(int(in_features))
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
        the overclustering head, the instance contrast of their features ``h`` / the view's, and the
        clusters' dependence on the speaker (``speaker_mi``: the running I(y; speaker), where the batch
        carries speakers, :mod:`trainables.independence`) or on the style factor's q(s|x) standing in
        for it (``style_mi``); (0, {}) when none applies."""
        total, terms = self._consistency_terms(batch, log_p, h)
        if self._speaker_dependence is not None and batch.group is not None and log_p is not None:
            loss, terms["speaker_mi"] = self._speaker_dependence(log_p, batch.group)
            total = total + self.speaker_independence * loss
        if self._style_dependence is not None and self.style is not None and log_p is not None:
            xt = self.standardise(batch.x).reshape(batch.x.shape[0], self.n_freq, self.n_frames)
            loss, terms["style_mi"] = self._style_dependence(log_p, self.style.log_probs(xt, batch.mask).exp())
            total = total + self.style_independence * loss
        return total, terms

    def _dependences(self) -> dict[str, RunningGroupDependence]:
        return {name: dep for name, dep in (("speaker_dependence", self._speaker_dependence),
                                            ("style_dependence", self._style_dependence)) if dep is not None}

    def training_state(self) -> dict[str, Any]:
        """The running joints of the independence terms (trainables.independence), once estimated."""
        return {name: dep.joint.detach().cpu().clone() for name, dep in self._dependences().items()
                if dep.joint is not None}

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        deps = self._dependences()
        for name, joint in state.items():
            if name not in deps:
                raise ValueError(f"training state {name!r} does not belong to this model (it tracks "
                                 f"{', '.join(deps) or 'none'})")
            deps[name].joint = joint.clone()

    def _consistency_terms(self, batch: Batch, log_p: torch.Tensor | None, h: torch.Tensor
                           ) -> tuple[torch.Tensor | float, dict[str, torch.Tensor]]:
        if batch.view is None or (self.consistency == "none" and self.projection is None and self.self_label == 0):
            return 0.0, {}
        log_pv, hv = self.posterior(self.prepare(batch.view.x, batch.view.mask), batch.view.mask)
        terms: dict[str, torch.Tensor] = {}
        total: torch.Tensor | float = 0.0
        if self.consistency != "none":
            if log_p is not None and log_pv is not None:
                terms["consistency"] = consistency(self.consistency, log_p, log_pv)
            if self.over_head is not None:
                terms["consistency_over"] = consistency(
                    self.consistency, torch.log_softmax(self.over_head(h).float(), 1),
                    torch.log_softmax(self.over_head(hv).float(), 1))
            total = self.consistency_weight * sum(terms.values()) if terms else 0.0
        if self.self_label > 0 and log_p is not None and log_pv is not None:
            terms["self_label"] = self_label(log_p, log_pv, self.self_label_threshold)
            total = total + self.self_label * terms["self_label"]
        if self.projection is not None:
            terms["contrastive"] = nt_xent(self.projection(h), self.projection(hv), self.contrastive_temperature)
            total = total + self.contrastive * terms["contrastive"]
        return total, terms

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
    def aligned_input_clusters(self, batches: TrainBatches, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(clusters [N], speaker index [N]) of the training clips from the classical ``aligned_kmeans``
        baseline (trainables.aligned_kmeans: K-means within each speaker, the speakers' clusters
        matched) fitted on the inputs as the baselines see them (standardised per row, flattened,
        standardised per dimension), with the speakers the batches carry (``Batch.group``): the
        start of UVAC's ``prior_init aligned`` and categorical UVAC's ``head_init aligned``."""
        from trainables.aligned_kmeans import fit_aligned_kmeans

        groups = [b.group for b in batches()]
        if any(g is None for g in groups):
            raise ValueError("an aligned start needs the speaker ids: the training batches carry none (Batch.group)")
        group = torch.cat(groups).cpu().numpy()
        x = self.input_rows(batches)
        return fit_aligned_kmeans(x, group, self.n_clusters, seed).predict(x, group), group

    @torch.no_grad()
    def input_rows(self, batches: TrainBatches) -> np.ndarray:
        """The training clips' inputs as the classical baselines see them [N, F*T]: standardised per
        row (:meth:`standardise`), flattened, each dimension standardised (trainables.standardise)."""
        x = torch.cat([self.standardise(b.x).float().reshape(len(b.x), -1).cpu() for b in batches()]).numpy()
        return Standardiser.fit(x)(x)

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
