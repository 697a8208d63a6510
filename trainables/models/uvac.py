"""UVAC: convolutional-recurrent VAE with a learnable GMM prior (UVAC paper; docs/MODELS.md, "Models").

* q(z|x) = N(mu, diag exp(logvar)): :class:`~trainables.models.blocks.ConvEncoder` (``encoder="mlp"``:
  :class:`~trainables.models.mlp_blocks.MLPEncoder`) then one
  linear layer to ``2 * d_z`` (first half mu, second half the log-variance).
* z = mu + exp(logvar / 2) * eps (one Monte Carlo sample) while training; z = mu in eval mode.
* p(x|z): :class:`~trainables.models.blocks.ConvDecoder` from z; sigmoid output for ``"euc"``,
  log v of the de-normalised spectrogram for ``"is"`` / ``"kl"``.
* Prior p(z) = sum_c pi_c N(z; mu_c, diag Sigma_c), C = ``n_clusters`` components. Parameters:
  ``pi_logits`` [C] (pi = softmax(pi_logits)), ``prior_mu`` [C, d_z], ``prior_logvar`` [C, d_z].
  Init as the paper: the weight vector ~ U(0, 1) (the logits, which the softmax normalises),
  means Xavier-uniform, "variances set as zero" read as log-variances 0 (Sigma_c = 1: a zero
  variance is degenerate).
* Clusters (eq. 14): p(c|z) = softmax_c(log pi_c + log N(z; mu_c, Sigma_c)), at inference on
  z = mu.
* ``prior_init="fit"`` (not in the paper; VaDE's start): for the first ``prior_warmup_epochs``
  epochs the KL term is taken against N(0, I) (a plain VAE); before the next epoch a diagonal
  GaussianMixture is fitted on the latent means of the training split (seeded) and copied into
  pi, the means and the variances (widened by the posterior variances, see :meth:`UVAC.fit_prior`),
  and eq. 11 takes over. The paper's start puts all components
  within ~0.5 sd of each other, where they move together. ``prior_fitted`` (a buffer) records
  that the fit happened, so a resumed run does not fit twice.
* ``prior_init="input"`` (not in the paper; DEC / DeepCluster's start from a classical clustering):
  the same warm-up, then the classical ``factorial`` baseline's mixture is fitted on the clips'
  inputs (:meth:`UVAC.input_responsibilities`) and each prior component is set to the moments of
  the latent means of the clips it holds (:meth:`UVAC.prior_from_responsibilities`): training
  starts from the classical clusters and refines them in the learnt latent space.

``forward(x)`` returns a dict (what :func:`trainables.losses.uvac_loss` reads):
``recon`` (same shape as x), ``mu``, ``logvar``, ``z`` [B, d_z], and the prior tensors
``pi_logits``, ``prior_mu``, ``prior_logvar``. ``infer(x)`` returns ``probs`` [B, C] = p(c|mu),
``cluster`` [B], ``z`` = mu [B, d_z].
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from trainables.config_keys import Key, defaults_of
from trainables.losses import gaussian_kl, gaussian_kl_free_bits, gmm_kl
from trainables.models.base import Batch, TrainBatches, warmup_fit_epoch, warmup_through_fit
from trainables.models.latent import LATENT_KEYS, Blocks, LatentClusteringModel
from trainables.models.blocks import as_image, init_weights
from trainables.models.factorial import fit_factorial, fit_projected
from trainables.models.style import StyleFactor
from trainables.schedules import kl_weight_at

__all__ = ["UVAC", "gmm_log_likelihoods"]

_LOG_2PI = math.log(2.0 * math.pi)
PRIOR_INITS = ("paper", "fit", "input", "aligned")

# UVAC's own config keys (UVAC.config_keys)
UVAC_KEYS = (
    Key("prior_init", "paper", "the GMM prior: paper (random, IV-B), fit (N(0, I) prior for prior_warmup_epochs, "
        "then a GaussianMixture fitted on the latent means) or input (the same warm-up, then each component set to "
        "the moments of the latent means of the clips that a factorial mixture fitted on the inputs, the classical "
        "factorial baseline's, gives it) or aligned (the same, from the clusters of the classical aligned_kmeans "
        "baseline: K-means within each speaker, matched across speakers; uses speaker ids, so only on a front end "
        "normalised per speaker)", choices=PRIOR_INITS),
    Key("prior_warmup_epochs", 5, "epochs before the prior is fitted (prior_init fit, input or aligned)", low=0),
    Key("prior_styles", 0, "makes the GMM prior factorial (trainables.models.factorial): n_clusters content x "
        "prior_styles style components, means content + style, fitted after the warm-up (prior_init fit, input or "
        "aligned: there the speaker index modulo prior_styles); clusters sum over the styles", low=0,
        zero_means="a plain mixture", structural=True),
)
_D = defaults_of((*LATENT_KEYS, *UVAC_KEYS))  # the constructor's defaults: the config's


def gmm_log_likelihoods(z: torch.Tensor, prior_mu: torch.Tensor, prior_logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu_c, diag exp(logvar_c)) for every component: z [B, D] -> [B, C] (fp32)."""
    z = z.float()[:, None, :]
    mu = prior_mu.float()[None]
    lv = prior_logvar.float()[None]
    return -0.5 * ((z - mu) ** 2 * torch.exp(-lv) + lv + _LOG_2PI).sum(-1)


class UVAC(LatentClusteringModel):
    """UVAC(n_freq, n_frames, n_clusters=10, d_z=10, *, prior_init, prior_warmup_epochs, hparams, **blocks).

    Input x: ``[B, F, T]`` or ``[B, 1, F, T]`` with F = n_freq, T = n_frames (both >= 2**L).
    ``hparams`` holds the schedule keys of the config (lam, kl_warmup_epochs, epochs);
    ``blocks`` are the shared construction options (:class:`~trainables.models.latent.Blocks`).
    Every default is the config's (:meth:`defaults`); ``n_clusters`` 10 stands for the config's 0
    (the number of classes), which only the data can tell.
    """

    name = "uvac"
    representations = ("z",)
    reported_representation = "z"
    config_keys = UVAC_KEYS
    # the categorical paper's 5e-4 -> 5e-5 (section III-D) as for categorical UVAC: at the UVAC paper's
    # 5e-3 its decoder saturates and the run collapses to one cluster (recipe "paper-lr5e-3")
    key_defaults = {"lr_start": 5e-4, "lr_end": 5e-5, "lam": 1.0}
    loss_terms = ("recon", "kl_z")
    logged = ("kl_weight",)
    conditional_terms = ("prior_fitted_at", *LatentClusteringModel.conditional_terms)
    _SCHEDULE_KEYS = ("lam", "kl_warmup_epochs", "epochs")

    def __init__(self, n_freq: int, n_frames: int, n_clusters: int = 10, d_z: int = _D["d_z"], *,
                 prior_init: str = _D["prior_init"], prior_warmup_epochs: int = _D["prior_warmup_epochs"],
                 prior_styles: int = _D["prior_styles"], hparams: Mapping[str, Any] | None = None, **blocks: Any):
        super().__init__()
        b = self._setup(n_freq, n_frames, n_clusters, d_z, blocks)
        if prior_init not in PRIOR_INITS:
            raise ValueError(f"prior_init: expected one of {PRIOR_INITS}, got {prior_init!r}")
        self.prior_init, self.prior_warmup_epochs = prior_init, int(prior_warmup_epochs)
        if int(prior_styles) < 0 or int(prior_styles) == 1:
            raise ValueError(f"prior_styles: expected 0 (a plain mixture) or >= 2, got {prior_styles}")
        self.prior_styles = max(1, int(prior_styles))  # K x S components; S = 1: the paper's mixture
        n_components = self.n_clusters * self.prior_styles
        defaults = self.defaults()
        self.hparams = {**{k: defaults[k] for k in self._SCHEDULE_KEYS}, **dict(hparams or {})}
        self.encoder = self.make_encoder(b, 1)
        self.to_latent = nn.Linear(self.encoder.out_features, 2 * self.d_z)
        self.decoder = self.make_decoder(b, self.d_z)
        init_weights(self.to_latent)
        self._make_heads(self.encoder.out_features)
        # GMM prior (paper IV-B initialisation)
        self.pi_logits = nn.Parameter(torch.rand(n_components))
        self.prior_mu = nn.Parameter(nn.init.xavier_uniform_(torch.empty(n_components, self.d_z)))
        self.prior_logvar = nn.Parameter(torch.zeros(n_components, self.d_z))
        self.register_buffer("prior_fitted", torch.tensor(prior_init == "paper"))

    @classmethod
    def from_config(cls, cfg, n_freq, n_frames, to_linear=None, bounded: bool = True) -> "UVAC":
        return cls(**cls.size_kwargs(cfg, n_freq, n_frames), **Blocks.from_config(cfg, to_linear, bounded),
                   prior_init=cfg["prior_init"], prior_styles=int(cfg["prior_styles"]),
                   prior_warmup_epochs=int(cfg["prior_warmup_epochs"]),
                   hparams={k: cfg[k] for k in cls._SCHEDULE_KEYS})

    # -- pieces -------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x -> (mu, logvar), each [B, d_z]."""
        img, _ = as_image(x, self.n_freq, self.n_frames)
        h = self.to_latent(self.encoder(img, mask))
        return h[:, : self.d_z], h[:, self.d_z:]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, d_z] -> [B, 1, F, T]."""
        return self.decoder(z)

    def cluster_log_probs(self, z: torch.Tensor) -> torch.Tensor:
        """log p(c|z) [B, C] (eq. 14), in fp32. With a factorial prior (``prior_styles`` S), the
        K x S components (index k * S + s) are summed over the styles: p(k|z) = sum_s p(k, s|z)."""
        log_pi = torch.log_softmax(self.pi_logits.float(), dim=0)
        joint = log_pi[None] + gmm_log_likelihoods(z, self.prior_mu, self.prior_logvar)
        if self.prior_styles > 1:
            joint = torch.logsumexp(joint.view(joint.shape[0], self.n_clusters, self.prior_styles), dim=2)
        return torch.log_softmax(joint, dim=1)

    def cluster_probs(self, mu: torch.Tensor) -> torch.Tensor:
        """p(c|z = mu) [B, C] (eq. 14)."""
        return self.cluster_log_probs(mu).exp()

    # -- ClusteringModel ------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, sample: bool | None = None) -> dict:
        """One pass; ``sample`` (default: ``self.training``) draws z by reparametrisation, else z = mu.

        Returns recon (shape of x), mu, logvar, z [B, d_z] and the prior tensors.
        """
        img, had_channel = as_image(x, self.n_freq, self.n_frames)
        mu, logvar = self.encode(img, mask)
        do_sample = self.training if sample is None else bool(sample)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if do_sample else mu
        recon = self.decode(z)
        if not had_channel:
            recon = recon.squeeze(1)
        return {"recon": recon, "mu": mu, "logvar": logvar, "z": z, "pi_logits": self.pi_logits,
                "prior_mu": self.prior_mu, "prior_logvar": self.prior_logvar}

    def kl_term(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Eq. 11 against the GMM prior; N(0, I) while a fitted prior is still warming up."""
        if not bool(self.prior_fitted):
            return gaussian_kl(mu, logvar)
        return gmm_kl(mu, logvar, self.pi_logits, self.prior_mu, self.prior_logvar)

    def penalised_kl(self, mu: torch.Tensor, logvar: torch.Tensor, kl_z: torch.Tensor) -> torch.Tensor:
        """KL_z as the loss counts it: with free bits, at least ``free_bits`` nats per dimension
        (per dimension against N(0, I) during the warm-up; in total against the GMM prior)."""
        if self.free_bits <= 0:
            return kl_z
        if not bool(self.prior_fitted):
            return gaussian_kl_free_bits(mu, logvar, self.free_bits)
        return kl_z.clamp_min(self.free_bits * self.d_z)

    def posterior(self, x: torch.Tensor, mask: torch.Tensor | None):
        """(log p(c | z = mu) [B, C], or None before the prior is fitted; encoder features [B, H])."""
        img, _ = as_image(x, self.n_freq, self.n_frames)
        h = self.encoder(img, mask)
        mu = self.to_latent(h)[:, : self.d_z]
        return (self.cluster_log_probs(mu) if bool(self.prior_fitted) else None), h

    def training_step(self, batch: Batch, epoch_float: float):
        xt = self.standardise(batch.x)
        img, _ = as_image(self.prepare(batch.x, batch.mask), self.n_freq, self.n_frames)
        h = self.encoder(img, batch.mask)
        mu, logvar = self.to_latent(h).split(self.d_z, dim=1)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        klw = kl_weight_at(self.hparams, int(epoch_float))
        out, style_loss, style_terms = self.styled(self.decode(z), xt, batch.mask, klw)
        recon = self.recon(xt, out, batch.mask, batch.stats)
        kl_z = self.kl_term(mu, logvar)
        total = recon + klw * self.penalised_kl(mu, logvar, kl_z) + style_loss
        log_p = self.cluster_log_probs(mu) if bool(self.prior_fitted) else None
        extra, terms = self.invariance_terms(batch, log_p, h)
        return total + extra, {"recon": recon, "kl_z": kl_z, **style_terms, **terms}

    def step_logs(self, epoch_float: float) -> dict[str, float]:
        return {"train/kl_weight": float(kl_weight_at(self.hparams, int(epoch_float)))}

    @staticmethod
    def prior_fit_epoch(prior_warmup_epochs: int, epochs: int) -> int:
        """The 0-based epoch before which the prior is fitted (:func:`~trainables.models.base.warmup_fit_epoch`)."""
        return warmup_fit_epoch(prior_warmup_epochs, epochs)

    @classmethod
    def speaker_id_settings(cls, cfg) -> tuple[str, ...]:
        return super().speaker_id_settings(cfg) + (("prior_init aligned",) if cfg["prior_init"] == "aligned" else ())

    @classmethod
    def warmup_epochs(cls, cfg) -> int:
        """The KL warm-up, and with a fitted prior (``prior_init`` fit, input or aligned) one epoch
        trained against it."""
        base = super().warmup_epochs(cfg)
        if cfg["prior_init"] == "paper":
            return base
        return max(base, warmup_through_fit(cfg["prior_warmup_epochs"], cfg["epochs"]))

    def on_epoch_start(self, epoch: int, batches: TrainBatches, seed: int) -> dict[str, float]:
        fit_at = self.prior_fit_epoch(self.prior_warmup_epochs, self.hparams["epochs"])
        if bool(self.prior_fitted) or epoch < fit_at:
            return {}
        style = self.input_statistics(batches) if self.prior_styles > 1 or self.prior_init == "input" else None
        mu, var = self.latent_posteriors(batches)
        if self.prior_init == "input":
            self.prior_from_responsibilities(self.input_responsibilities(batches, style, seed), mu, var)
        elif self.prior_init == "aligned":
            self.prior_from_responsibilities(self.aligned_responsibilities(batches, seed), mu, var)
        else:
            self.fit_prior(mu, var, seed, style_features=style)
        return {"train/prior_fitted_at": float(epoch)}

    @torch.no_grad()
    def input_responsibilities(self, batches: TrainBatches, style_features: np.ndarray, seed: int) -> np.ndarray:
        """p(component | clip) [N, C * S] of a factorial mixture (C content x S = ``prior_styles``
        styles, one style for a plain prior) fitted on the clips' inputs as the classical ``factorial``
        baseline fits it: the (row-standardised) input flattened, each dimension standardised, its
        principal components (trainables.models.factorial.fit_projected); component k * S + s holds
        (content k, style s), the prior's order."""
        x = self.input_rows(batches)
        pca, fm = fit_projected(x, self.n_clusters, self.prior_styles, style_features, seed)
        return fm.responsibilities(pca.transform(x)).reshape(len(x), -1)

    @torch.no_grad()
    def aligned_responsibilities(self, batches: TrainBatches, seed: int) -> np.ndarray:
        """One-hot memberships [N, C * S] from :meth:`aligned_input_clusters`: clip n's content is its
        matched cluster, its style (S = ``prior_styles``) its speaker index modulo S, so with S
        speakers each component is one speaker's cluster."""
        content, group = self.aligned_input_clusters(batches, seed)
        resp = np.zeros((len(content), self.n_clusters * self.prior_styles))
        resp[np.arange(len(content)), content * self.prior_styles + group % self.prior_styles] = 1.0
        return resp

    @torch.no_grad()
    def prior_from_responsibilities(self, resp: np.ndarray, mu: np.ndarray, var: np.ndarray) -> None:
        """Set the prior from the clips' memberships ``resp`` [N, C'] (C' = the prior's components):
        each component's weight, and the mean and variance of the latent means ``mu`` [N, d_z] of the
        clips it holds, the variance widened by their mean posterior variance ``var`` [N, d_z] as in
        :meth:`fit_prior`. A component that holds no clip starts at the latents' overall moments."""
        mass = resp.sum(0)
        held = mass > 1e-6 * len(mu)
        denom = np.maximum(mass, 1e-12)[:, None]
        means = np.where(held[:, None], (resp.T @ mu) / denom, mu.mean(0))
        spread = np.where(held[:, None], (resp.T @ mu ** 2) / denom - means ** 2, mu.var(0))
        self._set_prior(mass / mass.sum(), means, np.maximum(spread, 1e-4), resp, var)

    @torch.no_grad()
    def input_statistics(self, batches: TrainBatches) -> np.ndarray:
        """Per-row mean and spread of every clip's (standardised) input [N, 2F]: what the factorial
        prior's styles start from (trainables.models.factorial)."""
        return torch.cat([StyleFactor.statistics(self.standardise(b.x).float(), b.mask).cpu()
                          for b in batches()]).numpy().astype(np.float64)

    @torch.no_grad()
    def latent_posteriors(self, batches: TrainBatches) -> tuple[np.ndarray, np.ndarray]:
        """(mu, variance) of q(z|x), each [N, d_z], over ``batches`` as training sees them
        (BatchNorm on batch statistics; running statistics left untouched)."""
        with self.batch_statistics():
            stats = [tuple(t.float().cpu() for t in self.encode(self.prepare(b.x, b.mask), b.mask)) for b in batches()]
        mu = torch.cat([m for m, _ in stats]).numpy().astype(np.float64)
        var = torch.cat([torch.exp(lv) for _, lv in stats]).numpy().astype(np.float64)
        return mu, var

    @torch.no_grad()
    def fit_prior(self, mu: np.ndarray, var: np.ndarray, seed: int, style_features: np.ndarray | None = None):
        """Fit a diagonal GaussianMixture (C components, seeded) on the latent means ``mu``
        [N, d_z] and copy it into the prior, each component's variance widened by the mean
        posterior variance ``var`` [N, d_z] of the clips it holds (moment matching of the
        aggregate posterior). Fitted on the means alone, the variances shrink to the spread of
        the means (tiny after a warm-up against N(0, I)), and eq. 11 then starts in the
        thousands of nats and collapses the run (measured on FSDD). Returns the mixture.

        With ``prior_styles`` S > 1 the mixture is factorial (K content x S styles, means
        content + style, trainables.models.factorial), its styles started from ``style_features``
        (:meth:`input_statistics`); the component k * S + s holds (content k, style s)."""
        if self.prior_styles > 1:
            if style_features is None:
                raise ValueError("a factorial prior needs the clips' style features to start from")
            fm = fit_factorial(mu, self.n_clusters, self.prior_styles, style_features, seed)
            weights = fm.weights.reshape(-1)
            means = fm.means.reshape(-1, self.d_z)
            resp = fm.responsibilities(mu).reshape(len(mu), -1)
            covariances = np.broadcast_to(fm.variances, means.shape)
            fitted = fm
        else:
            from sklearn.mixture import GaussianMixture

            gm = GaussianMixture(self.n_clusters, covariance_type="diag", random_state=int(seed) % (2**31),
                                 reg_covar=1e-4, max_iter=200).fit(mu)
            weights, means, covariances, resp = gm.weights_, gm.means_, gm.covariances_, gm.predict_proba(mu)
            fitted = gm
        self._set_prior(weights, means, covariances, resp, var)
        return fitted

    def _set_prior(self, weights, means, covariances, resp, var) -> None:
        """Copy a mixture (weights [C], means and covariances [C, d_z]) into the prior, each
        component's variance widened by the mean posterior variance of the clips it holds (``resp``
        [N, C] over ``var`` [N, d_z]), and mark the prior fitted."""
        post_var = (resp.T @ var) / np.maximum(resp.sum(0)[:, None], 1e-12)  # [C, d_z]
        dev = self.prior_mu.device
        self.pi_logits.copy_(torch.as_tensor(np.log(np.maximum(weights, 1e-8)), dtype=torch.float32, device=dev))
        self.prior_mu.copy_(torch.as_tensor(means, dtype=torch.float32, device=dev))
        self.prior_logvar.copy_(torch.as_tensor(np.log(covariances + post_var), dtype=torch.float32, device=dev))
        self.prior_fitted.fill_(True)

    @torch.no_grad()
    def infer(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Inference (encoder + prior only): probs = p(c|mu) [B, C], cluster [B], z = mu [B, d_z]."""
        mu, _ = self.encode(self.prepare(x, mask), mask)
        probs = self.cluster_probs(mu)
        return {"probs": probs, "cluster": probs.argmax(dim=1), "z": mu}

    @torch.no_grad()
    def predict(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Cluster index [B] = argmax_c p(c|mu) (eq. 14)."""
        return self.infer(x, mask)["cluster"]

    def inference_parameters(self) -> int:
        """Parameters needed to cluster: encoder + latent layer + GMM prior (no decoder)."""
        mods = [self.encoder, self.to_latent]
        n = sum(p.numel() for m in mods for p in m.parameters())
        return n + self.pi_logits.numel() + self.prior_mu.numel() + self.prior_logvar.numel()
