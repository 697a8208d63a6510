"""Categorical UVAC (M2-style, categorical UVAC paper, SPEC.md section 2).

* q(y|x): encoder h (:class:`~trainables.models.blocks.ConvEncoder`) -> linear -> K logits.
  Training sample: Gumbel-Softmax ``y = softmax((logits + g) / tau)``, g ~ Gumbel(0, 1),
  computed in fp32 even under autocast, with ``tau`` clamped to ``tau_floor`` (default 0.05).
* q(z|x, y): encoder f on ``[x, y]`` (y [B, K] broadcast to [B, K, F, T] and concatenated to x
  along channels) -> linear -> (mu, logvar), d_z each.
* p(x|y, z): decoder g on ``[y, z]`` (vectors, concatenated) -> [B, 1, F, T]; sigmoid output
  for ``"euc"``, log v for ``"is"`` / ``"kl"``.
* Cluster = argmax of the logits (no noise).

Sampling: ``forward(x, tau)`` samples (Gumbel noise, reparametrised z) when the module is in
training mode (or ``sample=True``); otherwise y = softmax(logits / tau) (no noise) and z = mu.
At inference (:meth:`infer`) encoder f receives y = softmax(logits) (``eval_y="softmax"``,
default: the probabilities of q(y|x), deterministic) or the one-hot of the argmax
(``eval_y="onehot"``, the tau -> 0 limit).

``forward`` returns a dict: ``logits`` [B, K] (fp32), ``y`` [B, K] (fp32), ``mu``, ``logvar``,
``z`` [B, d_z], ``recon`` (same shape as x), ``tau`` (the temperature actually used, a float).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from trainables.models.blocks import (
    ConvDecoder,
    ConvEncoder,
    as_image,
    broadcast_cat,
    final_activation_for,
    init_weights,
)

__all__ = ["CatUVAC", "gumbel_softmax_fp32"]


def gumbel_softmax_fp32(
    logits: torch.Tensor, tau: float, *, floor: float = 0.05, noise: bool = True, generator=None
) -> torch.Tensor:
    """Relaxed one-hot sample ``softmax((logits + g) / max(tau, floor))`` in fp32 (autocast off).

    logits [B, K]; returns [B, K] float32 rows summing to 1. ``noise=False`` drops g.
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
        return torch.softmax(lf / t, dim=-1)


class CatUVAC(nn.Module):
    """CatUVAC(n_freq, n_frames, n_clusters=10, d_z=10, divergence="euc", channels, gru_hidden).

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
        tau_floor: float = 0.05,
        eval_y: str = "softmax",
        pool: str = "last",
    ):
        super().__init__()
        if int(n_clusters) < 1 or int(d_z) < 1:
            raise ValueError(f"n_clusters and d_z must be >= 1, got {n_clusters}, {d_z}")
        if eval_y not in ("softmax", "onehot"):
            raise ValueError(f"eval_y: expected 'softmax' or 'onehot', got {eval_y!r}")
        self.n_freq, self.n_frames = int(n_freq), int(n_frames)
        self.n_clusters, self.d_z = int(n_clusters), int(d_z)
        self.divergence = divergence
        self.tau_floor = float(tau_floor)
        self.eval_y = eval_y
        act = final_activation_for(divergence)
        self.enc_y = ConvEncoder(1, n_freq, n_frames, channels, gru_hidden, pool=pool)  # h
        self.to_logits = nn.Linear(self.enc_y.out_features, self.n_clusters)
        self.enc_z = ConvEncoder(1 + self.n_clusters, n_freq, n_frames, channels, gru_hidden, pool=pool)  # f
        self.to_latent = nn.Linear(self.enc_z.out_features, 2 * self.d_z)
        self.decoder = ConvDecoder(self.n_clusters + self.d_z, n_freq, n_frames, channels, final_activation=act)  # g
        init_weights(self.to_logits)
        init_weights(self.to_latent)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """q(y|x) logits [B, K] (fp32)."""
        img, _ = as_image(x, self.n_freq, self.n_frames)
        return self.to_logits(self.enc_y(img)).float()

    def encode_z(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x, y): (mu, logvar) [B, d_z] from x and y [B, K]."""
        img, _ = as_image(x, self.n_freq, self.n_frames)
        h = self.to_latent(self.enc_z(broadcast_cat(img, y)))
        return h[:, : self.d_z], h[:, self.d_z:]

    def decode(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """p(x|y, z): [B, 1, F, T]."""
        return self.decoder(torch.cat([y.to(z.dtype), z], dim=1))

    def forward(self, x: torch.Tensor, tau: float = 1.0, sample: bool | None = None) -> dict:
        img, had_channel = as_image(x, self.n_freq, self.n_frames)
        do_sample = self.training if sample is None else bool(sample)
        logits = self.logits(img)
        t = max(float(tau), self.tau_floor)
        y = gumbel_softmax_fp32(logits, t, floor=self.tau_floor, noise=do_sample)
        mu, logvar = self.encode_z(img, y)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if do_sample else mu
        recon = self.decode(y, z)
        if not had_channel:
            recon = recon.squeeze(1)
        return {"logits": logits, "y": y, "mu": mu, "logvar": logvar, "z": z, "recon": recon, "tau": t}

    def _eval_y(self, logits: torch.Tensor) -> torch.Tensor:
        if self.eval_y == "onehot":
            return F.one_hot(logits.argmax(dim=1), self.n_clusters).float()
        return torch.softmax(logits.float(), dim=1)

    @torch.no_grad()
    def infer(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """probs = softmax(logits) [B, K], cluster = argmax logits [B], z = mu of q(z|x, y_eval)."""
        logits = self.logits(x)
        mu, _ = self.encode_z(x, self._eval_y(logits))
        probs = torch.softmax(logits, dim=1)
        return {"probs": probs, "cluster": logits.argmax(dim=1), "z": mu, "logits": logits}

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Cluster index [B] = argmax of the logits (no noise)."""
        return self.logits(x).argmax(dim=1)

    def inference_parameters(self) -> int:
        """Parameters used by :meth:`infer` (encoders h and f and their heads; no decoder)."""
        mods = [self.enc_y, self.to_logits, self.enc_z, self.to_latent]
        return sum(p.numel() for m in mods for p in m.parameters())
