"""Categorical UVAC (M2-style, categorical UVAC paper; docs/MODELS.md, "Models").

* q(y|x): encoder h (:class:`~trainables.models.blocks.ConvEncoder`; ``encoder="mlp"``:
  :class:`~trainables.models.mlp_blocks.MLPEncoder`) -> linear -> K logits.
  Training sample: Gumbel-Softmax ``y = softmax((logits + g) / tau)``, g ~ Gumbel(0, 1),
  computed in fp32 even under autocast, with ``tau`` clamped to ``tau_floor`` (default 0.05).
* q(z|x, y): encoder f on ``[x, y]`` (y [B, K] broadcast to [B, K, F, T] and concatenated to x
  along channels) -> linear -> (mu, logvar), d_z each.
* p(x|y, z): decoder g on ``[y, z]`` (vectors, concatenated) -> [B, 1, F, T]; sigmoid output
  for ``"euc"``, log v for ``"is"`` / ``"kl"``.
* Cluster = argmax of the logits (no noise).
* ``gumbel_hard=True``: the straight-through estimator (forward pass one-hot of the relaxed
  sample, gradient of the relaxed sample).
* ``marginal_entropy_weight`` w > 0 adds ``w * KL(q_bar(y) || uniform K)``, where q_bar is the
  batch mean of q(y|x): zero when the batch uses every category equally, log K when it uses
  one. Nothing in eq. 7 rewards using all K categories; this term does (not in the paper).
* ``kl_z_weight`` scales KL_z inside the lambda bracket (1 = eq. 7): above 1 it limits how much
  z may carry, so that the category y has to carry what distinguishes the clips.
* ``head_init="fit"`` (not in the paper; VaDE's start, the categorical counterpart of UVAC's
  ``prior_init="fit"``): before epoch ``head_warmup_epochs`` the features of encoder h over the
  training split (BatchNorm as training sees them) are clustered by K-means into K clusters and
  the head q(y|x) is set to that clustering's nearest-centroid rule
  (:func:`~trainables.models.centroids.nearest_centroid_head`). A random head starts every clip
  near the uniform q(y|x), and the categories then form from whatever the reconstruction finds
  first; the fit starts them from the clusters encoder h's features already hold.
  ``head_init="aligned"`` sets the head at the same moment to a linear classifier of h's features
  trained on the classical ``aligned_kmeans`` clusters of the inputs (K-means within each speaker,
  matched across speakers; :func:`~trainables.models.centroids.classifier_head`); it reads the
  speaker ids, so it is allowed only on a front end normalised per speaker. The ``head_fitted`` buffer (present only
  with a fitted head) records the fit, so a resumed run does not fit twice.

Sampling: ``forward(x, tau)`` samples (Gumbel noise, reparametrised z) when the module is in
training mode (or ``sample=True``); otherwise y = softmax(logits / tau) (no noise) and z = mu.
At inference (:meth:`infer`) encoder f receives y = softmax(logits) (``eval_y="softmax"``,
default: the probabilities of q(y|x), deterministic) or the one-hot of the argmax
(``eval_y="onehot"``, the tau -> 0 limit).

``forward`` returns a dict: ``logits`` [B, K] (fp32), ``y`` [B, K] (fp32), ``mu``, ``logvar``,
``z`` [B, d_z], ``recon`` (same shape as x), ``tau`` (the temperature actually used, a float).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from trainables.config_keys import ConfigError, Key, defaults_of
from trainables.losses import categorical_kl_uniform, gaussian_kl, gaussian_kl_free_bits
from trainables.models.base import Batch, TrainBatches, warmup_fit_epoch, warmup_through_fit
from trainables.models.latent import LATENT_KEYS, Blocks, LatentClusteringModel
from trainables.models.blocks import as_image, broadcast_cat, init_weights
from trainables.models.centroids import classifier_head, nearest_centroid_head
from trainables.schedules import TAU_KINDS, kl_weight_at, tau_at

__all__ = ["CatUVAC", "CAT_UVAC_KEYS", "HEAD_INITS", "PAPER_LAM", "gumbel_softmax_fp32", "marginal_kl_uniform"]

HEAD_INITS = ("random", "fit", "aligned")
FITTED_HEADS = ("fit", "aligned")

# Categorical UVAC's own config keys (CatUVAC.config_keys)
CAT_UVAC_KEYS = (
    Key("tau_kind", "linear", "Gumbel-Softmax temperature schedule (trainables.schedules)", choices=TAU_KINDS),
    Key("tau_start", 1.0, "temperature at the first epoch", positive=True),
    Key("tau_end", 0.5, "temperature at the end of the anneal", positive=True),
    Key("tau_anneal_epochs", 0, "length of the anneal in epochs; 0 = the whole run", low=0),
    Key("tau_floor", 0.05, "the temperature never goes below this (numerical safety)", positive=True),
    Key("marginal_entropy_weight", 0.0, "weight of KL(batch-mean q(y) || uniform); 0 = off", low=0),
    Key("kl_z_weight", 1.0, "scale of KL_z inside the lambda bracket (1 = eq. 7)", low=0),
    Key("gumbel_hard", False, "straight-through (one-hot forward) Gumbel-Softmax"),
    Key("head_init", "random", "q(y|x)'s head: random, fit (K-means on encoder h's features after "
        "head_warmup_epochs, the head set to its nearest-centroid rule) or aligned (at the same epoch, a linear "
        "classifier of h's features trained on the clusters of the classical aligned_kmeans baseline on the inputs; "
        "uses speaker ids, so only on a front end normalised per speaker)", choices=HEAD_INITS, structural=True),
    Key("head_warmup_epochs", 5, "epochs before the head is fitted (head_init fit or aligned)", low=0),
)
_D = defaults_of((*LATENT_KEYS, *CAT_UVAC_KEYS))  # the constructor's defaults: the config's

# lambda per dataset (the paper's Table I), applied under the paper recipes (CatUVAC.paper_defaults). Keys
# are dataset adapter names (features.datasets.DATASETS), as in the cache manifest and FeatureTable.dataset.
PAPER_LAM: dict[str, float] = {
    "audiomnist": 0.5,
    "fsdd": 0.5,
    "synthetic": 0.5,
    "urbansound8k": 2.0,
    "tau2019": 2.0,
}


def gumbel_softmax_fp32(
    logits: torch.Tensor, tau: float, *, floor: float = 0.05, noise: bool = True, generator=None, hard: bool = False
) -> torch.Tensor:
    """Relaxed one-hot sample ``softmax((logits + g) / max(tau, floor))`` in fp32 (autocast off).

    logits [B, K]; returns [B, K] float32 rows summing to 1. ``noise=False`` drops g.
    ``hard=True``: one-hot in the forward pass, the relaxed sample's gradient (straight-through).
    """
    t = max(float(tau), float(floor))
    if not t > 0:
        raise ValueError(f"tau must be > 0, got {tau!r} (floor {floor!r})")
    dev_type = logits.device.type if logits.device.type in ("cuda", "cpu") else "cpu"
    with torch.autocast(device_type=dev_type, enabled=False):
        lf = logits.float()
        if noise:
            u = torch.rand(lf.shape, device=lf.device, dtype=torch.float32, generator=generator)
            tiny = torch.finfo(torch.float32).tiny
            g = -torch.log(-torch.log(u.clamp(min=tiny, max=1.0 - 1e-7)))
            lf = lf + g
        soft = torch.softmax(lf / t, dim=-1)
        if not hard:
            return soft
        one_hot = F.one_hot(soft.argmax(dim=-1), soft.shape[-1]).to(soft.dtype)
        return one_hot - soft.detach() + soft


def marginal_kl_uniform(logits: torch.Tensor) -> torch.Tensor:
    """KL(q_bar || uniform K) = log K - H(q_bar), q_bar = batch mean of softmax(logits) [B, K]."""
    q_bar = torch.softmax(logits.float(), dim=-1).mean(dim=0)
    return (torch.xlogy(q_bar, q_bar)).sum() + math.log(logits.shape[-1])


class CatUVAC(LatentClusteringModel):
    """CatUVAC(n_freq, n_frames, n_clusters=10, d_z=10, *, tau_floor, eval_y, gumbel_hard,
    marginal_entropy_weight, kl_z_weight, hparams, **blocks).

    Input x: ``[B, F, T]`` or ``[B, 1, F, T]`` with F = n_freq, T = n_frames (both >= 2**L).
    ``hparams`` holds the schedule keys of the config (lam, kl_warmup_epochs, epochs, tau_*);
    ``blocks`` are the shared construction options (:class:`~trainables.models.latent.Blocks`).
    Every default is the config's (:meth:`defaults`); ``n_clusters`` 10 stands for the config's 0
    (the number of classes), which only the data can tell.
    """

    name = "cat_uvac"
    representations = ("z", "y")
    reported_representation = "y"
    config_keys = CAT_UVAC_KEYS
    key_defaults = {"lr_start": 5e-4, "lr_end": 5e-5, "lam": 0.5}  # lam per dataset: paper_defaults
    loss_terms = ("recon", "kl_z", "kl_y")
    logged = ("kl_weight", "tau")
    conditional_terms = ("kl_ybar", "head_fitted_at", *LatentClusteringModel.conditional_terms)
    _SCHEDULE_KEYS = ("lam", "kl_warmup_epochs", "epochs", "tau_kind", "tau_start", "tau_end",
                      "tau_anneal_epochs", "tau_floor")

    @classmethod
    def paper_defaults(cls, dataset: str | None) -> dict[str, Any]:
        lam = PAPER_LAM.get(str(dataset).lower()) if dataset else None
        return {} if lam is None else {"lam": lam}

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        if cfg["tau_kind"] != "constant" and cfg["tau_end"] > cfg["tau_start"]:
            raise ConfigError(f"tau_end ({cfg['tau_end']:g}) > tau_start ({cfg['tau_start']:g}): the temperature "
                              f"is annealed downwards")
        if cfg["tau_floor"] > cfg["tau_start"]:
            raise ConfigError(f"tau_floor ({cfg['tau_floor']:g}) > tau_start ({cfg['tau_start']:g})")

    def __init__(self, n_freq: int, n_frames: int, n_clusters: int = 10, d_z: int = _D["d_z"], *,
                 tau_floor: float = _D["tau_floor"], eval_y: str = "softmax", gumbel_hard: bool = _D["gumbel_hard"],
                 marginal_entropy_weight: float = _D["marginal_entropy_weight"],
                 kl_z_weight: float = _D["kl_z_weight"], head_init: str = _D["head_init"],
                 head_warmup_epochs: int = _D["head_warmup_epochs"], hparams: Mapping[str, Any] | None = None,
                 **blocks: Any):
        super().__init__()
        b = self._setup(n_freq, n_frames, n_clusters, d_z, blocks)
        if eval_y not in ("softmax", "onehot"):
            raise ValueError(f"eval_y: expected 'softmax' or 'onehot', got {eval_y!r}")
        if head_init not in HEAD_INITS:
            raise ValueError(f"head_init: expected one of {', '.join(HEAD_INITS)}, got {head_init!r}")
        self.head_init, self.head_warmup_epochs = head_init, int(head_warmup_epochs)
        self.tau_floor = float(tau_floor)
        self.eval_y = eval_y
        self.gumbel_hard = bool(gumbel_hard)
        self.marginal_entropy_weight = float(marginal_entropy_weight)
        self.kl_z_weight = float(kl_z_weight)
        defaults = {**self.defaults(), "tau_floor": self.tau_floor}
        self.hparams = {**{k: defaults[k] for k in self._SCHEDULE_KEYS}, **dict(hparams or {})}
        self.enc_y = self.make_encoder(b, 1)  # h
        self.to_logits = nn.Linear(self.enc_y.out_features, self.n_clusters)
        self.enc_z = self.make_encoder(b, 1 + self.n_clusters)  # f
        self.to_latent = nn.Linear(self.enc_z.out_features, 2 * self.d_z)
        self.decoder = self.make_decoder(b, self.n_clusters + self.d_z)  # g
        init_weights(self.to_logits)
        init_weights(self.to_latent)
        self._make_heads(self.enc_y.out_features)
        if head_init in FITTED_HEADS:  # only then: checkpoints of random-head models keep their keys
            self.register_buffer("head_fitted", torch.tensor(False))

    @classmethod
    def from_config(cls, cfg, n_freq, n_frames, to_linear=None, bounded: bool = True) -> "CatUVAC":
        return cls(**cls.size_kwargs(cfg, n_freq, n_frames), **Blocks.from_config(cfg, to_linear, bounded),
                   tau_floor=float(cfg["tau_floor"]),
                   gumbel_hard=bool(cfg["gumbel_hard"]),
                   marginal_entropy_weight=float(cfg["marginal_entropy_weight"]),
                   kl_z_weight=float(cfg["kl_z_weight"]),
                   head_init=str(cfg["head_init"]),
                   head_warmup_epochs=int(cfg["head_warmup_epochs"]),
                   hparams={k: cfg[k] for k in cls._SCHEDULE_KEYS})

    # -- warm-up: fitting the head ----------------------------------------------------------------
    @classmethod
    def warmup_epochs(cls, cfg) -> int:
        """The KL warm-up, and with a fitted head (``head_init`` fit or aligned) one epoch trained from it."""
        base = super().warmup_epochs(cfg)
        if cfg["head_init"] not in FITTED_HEADS:
            return base
        return max(base, warmup_through_fit(cfg["head_warmup_epochs"], cfg["epochs"]))

    @classmethod
    def speaker_id_settings(cls, cfg) -> tuple[str, ...]:
        return super().speaker_id_settings(cfg) + (("head_init aligned",) if cfg["head_init"] == "aligned" else ())

    def on_epoch_start(self, epoch: int, batches: TrainBatches, seed: int) -> dict[str, float]:
        if self.head_init not in FITTED_HEADS or bool(self.head_fitted):
            return {}
        if epoch < warmup_fit_epoch(self.head_warmup_epochs, self.hparams["epochs"]):
            return {}
        features = self.head_features(batches)
        if self.head_init == "aligned":
            self.fit_head_to(features, self.aligned_input_clusters(batches, seed)[0], seed)
        else:
            self.fit_head(features, seed)
        return {"train/head_fitted_at": float(epoch)}

    @torch.no_grad()
    def head_features(self, batches: TrainBatches) -> np.ndarray:
        """The features of encoder h [N, H] over ``batches``, as training sees them (BatchNorm on
        batch statistics; running statistics left untouched)."""
        with self.batch_statistics():
            h = [self.enc_y(as_image(self.prepare(b.x, b.mask), self.n_freq, self.n_frames)[0], b.mask).float().cpu()
                 for b in batches()]
        return torch.cat(h).numpy().astype(np.float64)

    @torch.no_grad()
    def fit_head(self, features: np.ndarray, seed: int) -> np.ndarray:
        """Set q(y|x)'s head to the nearest-centroid rule of a K-means clustering (seeded) of
        ``features`` [N, H]; returns the clusters [N]."""
        w, b, labels = nearest_centroid_head(features, self.n_clusters, seed)
        self._set_head(w, b)
        return labels

    @torch.no_grad()
    def fit_head_to(self, features: np.ndarray, labels: np.ndarray, seed: int) -> None:
        """Set q(y|x)'s head to a linear classifier of ``features`` [N, H] trained on the clusters
        ``labels`` [N] made elsewhere (:func:`~trainables.models.centroids.classifier_head`)."""
        self._set_head(*classifier_head(features, labels, self.n_clusters, seed))

    def _set_head(self, w: np.ndarray, b: np.ndarray) -> None:
        self.to_logits.weight.copy_(torch.as_tensor(w, dtype=self.to_logits.weight.dtype))
        self.to_logits.bias.copy_(torch.as_tensor(b, dtype=self.to_logits.bias.dtype))
        if hasattr(self, "head_fitted"):
            self.head_fitted.fill_(True)

    # -- pieces -------------------------------------------------------------------------------
    def logits(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """q(y|x) logits [B, K] (fp32)."""
        img, _ = as_image(x, self.n_freq, self.n_frames)
        return self.to_logits(self.enc_y(img, mask)).float()

    def encode_z(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None):
        """q(z|x, y): (mu, logvar) [B, d_z] from x and y [B, K]."""
        img, _ = as_image(x, self.n_freq, self.n_frames)
        h = self.to_latent(self.enc_z(broadcast_cat(img, y), mask))
        return h[:, : self.d_z], h[:, self.d_z:]

    def decode(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """p(x|y, z): [B, 1, F, T]."""
        return self.decoder(torch.cat([y.to(z.dtype), z], dim=1))

    def tau_at(self, epoch_float: float) -> float:
        return float(tau_at(self.hparams, int(epoch_float), epoch_float - int(epoch_float)))

    # -- ClusteringModel ------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, tau: float = 1.0, sample: bool | None = None,
                mask: torch.Tensor | None = None) -> dict:
        """logits, y [B, K]; mu, logvar, z [B, d_z]; recon (shape of x); tau (the one used); h, the
        features of encoder h [B, H]."""
        img, had_channel = as_image(x, self.n_freq, self.n_frames)
        do_sample = self.training if sample is None else bool(sample)
        h = self.enc_y(img, mask)
        logits = self.to_logits(h).float()
        t = max(float(tau), self.tau_floor)
        y = gumbel_softmax_fp32(logits, t, floor=self.tau_floor, noise=do_sample, hard=self.gumbel_hard)
        mu, logvar = self.encode_z(img, y, mask)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if do_sample else mu
        recon = self.decode(y, z)
        if not had_channel:
            recon = recon.squeeze(1)
        return {"logits": logits, "y": y, "mu": mu, "logvar": logvar, "z": z, "recon": recon, "tau": t, "h": h}

    def posterior(self, x: torch.Tensor, mask: torch.Tensor | None):
        """(log q(y|x) [B, K], the features of encoder h [B, H])."""
        img, _ = as_image(x, self.n_freq, self.n_frames)
        h = self.enc_y(img, mask)
        return torch.log_softmax(self.to_logits(h).float(), dim=1), h

    def training_step(self, batch: Batch, epoch_float: float):
        xt = self.standardise(batch.x)
        out = self(self.prepare(batch.x, batch.mask), tau=self.tau_at(epoch_float), mask=batch.mask)
        klw = kl_weight_at(self.hparams, int(epoch_float))
        decoded, style_loss, style_terms = self.styled(out["recon"], xt, batch.mask, klw)
        recon = self.recon(xt, decoded, batch.mask, batch.stats)
        kl_z = gaussian_kl(out["mu"], out["logvar"])
        kl_z_loss = gaussian_kl_free_bits(out["mu"], out["logvar"], self.free_bits) if self.free_bits > 0 else kl_z
        kl_y = categorical_kl_uniform(out["logits"])
        total = recon + klw * (self.kl_z_weight * kl_z_loss + kl_y) + style_loss
        terms = {"recon": recon, "kl_z": kl_z, "kl_y": kl_y, **style_terms}
        if self.marginal_entropy_weight > 0:
            terms["kl_ybar"] = marginal_kl_uniform(out["logits"])
            total = total + self.marginal_entropy_weight * terms["kl_ybar"]
        extra, inv = self.invariance_terms(batch, torch.log_softmax(out["logits"], dim=1), out["h"])
        return total + extra, {**terms, **inv}

    def step_logs(self, epoch_float: float) -> dict[str, float]:
        return {"train/kl_weight": float(kl_weight_at(self.hparams, int(epoch_float))),
                "train/tau": self.tau_at(epoch_float)}

    def _eval_y(self, logits: torch.Tensor) -> torch.Tensor:
        if self.eval_y == "onehot":
            return F.one_hot(logits.argmax(dim=1), self.n_clusters).float()
        return torch.softmax(logits.float(), dim=1)

    @torch.no_grad()
    def infer(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """probs = y = softmax(logits) [B, K], cluster = argmax logits [B], z = mu of q(z|x, y_eval)."""
        x = self.prepare(x, mask)
        logits = self.logits(x, mask)
        mu, _ = self.encode_z(x, self._eval_y(logits), mask)
        probs = torch.softmax(logits, dim=1)
        return {"probs": probs, "cluster": logits.argmax(dim=1), "z": mu, "y": probs, "logits": logits}

    @torch.no_grad()
    def predict(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Cluster index [B] = argmax of the logits (no noise)."""
        return self.logits(self.prepare(x, mask), mask).argmax(dim=1)

    def inference_parameters(self) -> int:
        """Parameters used by :meth:`infer` (encoders h and f and their heads; no decoder)."""
        mods = [self.enc_y, self.to_logits, self.enc_z, self.to_latent]
        return sum(p.numel() for m in mods for p in m.parameters())
