"""UVAC: convolutional-recurrent VAE with a learnable GMM prior (UVAC paper, SPEC.md section 2).

* q(z|x) = N(mu, diag exp(logvar)): :class:`~trainables.models.blocks.ConvEncoder` then one
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

``forward(x)`` returns a dict (what :func:`trainables.losses.uvac_loss` reads):
``recon`` (same shape as x), ``mu``, ``logvar``, ``z`` [B, d_z], and the prior tensors
``pi_logits``, ``prior_mu``, ``prior_logvar``. ``infer(x)`` returns ``probs`` [B, C] = p(c|mu),
``cluster`` [B], ``z`` = mu [B, d_z].
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from trainables.models.blocks import ConvDecoder, ConvEncoder, as_image, final_activation_for, init_weights

__all__ = ["UVAC", "gmm_log_likelihoods"]

_LOG_2PI = math.log(2.0 * math.pi)


def gmm_log_likelihoods(z: torch.Tensor, prior_mu: torch.Tensor, prior_logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu_c, diag exp(logvar_c)) for every component: z [B, D] -> [B, C] (fp32)."""
    z = z.float()[:, None, :]
    mu = prior_mu.float()[None]
    lv = prior_logvar.float()[None]
    return -0.5 * ((z - mu) ** 2 * torch.exp(-lv) + lv + _LOG_2PI).sum(-1)


class UVAC(nn.Module):
    """UVAC(n_freq, n_frames, n_clusters=10, d_z=10, divergence="euc", channels, gru_hidden).

    Input x: ``[B, F, T]`` or ``[B, 1, F, T]`` with F = n_freq, T = n_frames (both >= 2**L).
    """

    def __init__(
        self,
        n_freq: int,
        n_frames: int,
        n_clusters: int = 10,
        d_z: int = 10,
        divergence: str = "euc",
        channels: Sequence[int] = (16, 32, 64, 128),
        gru_hidden: int = 128,
        pool: str = "last",
    ):
        super().__init__()
        if int(n_clusters) < 1 or int(d_z) < 1:
            raise ValueError(f"n_clusters and d_z must be >= 1, got {n_clusters}, {d_z}")
        self.n_freq, self.n_frames = int(n_freq), int(n_frames)
        self.n_clusters, self.d_z = int(n_clusters), int(d_z)
        self.divergence = divergence
        act = final_activation_for(divergence)
        self.encoder = ConvEncoder(1, n_freq, n_frames, channels, gru_hidden, pool=pool)
        self.to_latent = nn.Linear(self.encoder.out_features, 2 * self.d_z)
        self.decoder = ConvDecoder(self.d_z, n_freq, n_frames, channels, final_activation=act)
        init_weights(self.to_latent)
        # GMM prior (paper IV-B initialisation)
        self.pi_logits = nn.Parameter(torch.rand(self.n_clusters))
        self.prior_mu = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_clusters, self.d_z)))
        self.prior_logvar = nn.Parameter(torch.zeros(self.n_clusters, self.d_z))

    # -- pieces -------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x -> (mu, logvar), each [B, d_z]."""
        img, _ = as_image(x, self.n_freq, self.n_frames)
        h = self.to_latent(self.encoder(img))
        return h[:, : self.d_z], h[:, self.d_z:]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, d_z] -> [B, 1, F, T]."""
        return self.decoder(z)

    def cluster_log_probs(self, z: torch.Tensor) -> torch.Tensor:
        """log p(c|z) [B, C] (eq. 14), in fp32."""
        log_pi = torch.log_softmax(self.pi_logits.float(), dim=0)
        joint = log_pi[None] + gmm_log_likelihoods(z, self.prior_mu, self.prior_logvar)
        return torch.log_softmax(joint, dim=1)

    def cluster_probs(self, mu: torch.Tensor) -> torch.Tensor:
        """p(c|z = mu) [B, C] (eq. 14)."""
        return self.cluster_log_probs(mu).exp()

    # -- API ------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, sample: bool | None = None) -> dict[str, torch.Tensor]:
        """One pass; ``sample`` (default: ``self.training``) draws z by reparametrisation, else z = mu."""
        img, had_channel = as_image(x, self.n_freq, self.n_frames)
        mu, logvar = self.encode(img)
        do_sample = self.training if sample is None else bool(sample)
        if do_sample:
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        else:
            z = mu
        recon = self.decode(z)
        if not had_channel:
            recon = recon.squeeze(1)
        return {
            "recon": recon,
            "mu": mu,
            "logvar": logvar,
            "z": z,
            "pi_logits": self.pi_logits,
            "prior_mu": self.prior_mu,
            "prior_logvar": self.prior_logvar,
        }

    @torch.no_grad()
    def infer(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Inference (encoder + prior only): probs = p(c|mu) [B, C], cluster [B], z = mu [B, d_z]."""
        mu, _ = self.encode(x)
        probs = self.cluster_probs(mu)
        return {"probs": probs, "cluster": probs.argmax(dim=1), "z": mu}

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Cluster index [B] = argmax_c p(c|mu) (eq. 14)."""
        return self.infer(x)["cluster"]

    def inference_parameters(self) -> int:
        """Parameters needed to cluster: encoder + latent layer + GMM prior (no decoder)."""
        mods = [self.encoder, self.to_latent]
        n = sum(p.numel() for m in mods for p in m.parameters())
        return n + self.pi_logits.numel() + self.prior_mu.numel() + self.prior_logvar.numel()
