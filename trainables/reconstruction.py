"""The reconstruction term p(x | latents): a divergence under a likelihood, as one small module.

A model owns one :class:`Reconstruction` (built from the config keys ``divergence`` and
``likelihood``); it tells the decoder which final activation to use, gives the value the
decoder's output bias starts from (``dec_bias_init``), and computes the masked negative
log-likelihood of a batch (per clip: the sum over the real time-frequency bins; then the mean
over the batch; the same reduction for every divergence, see :mod:`trainables.losses`).

=====================  ===========  ==================================================  =================
likelihood             divergence   per-bin term (x: target, o: decoder output)         decoder output
=====================  ===========  ==================================================  =================
gaussian               euc          (x - o)^2  (Gaussian, fixed variance 1/2: papers)   sigmoid
gaussian               is | kl      Itakura-Saito / generalised KL on linear values     log v
bernoulli              euc          BCE(x, sigmoid(o))  (VaDE / GMVAE convention)       logit
gaussian_learned       euc          (x - o)^2 / (2 s^2) + log(s^2) / 2, one s^2         sigmoid
gaussian_learned_freq  euc          the same with one s^2 per frequency row             sigmoid
=====================  ===========  ==================================================  =================

Real-valued features (``band`` / ``speaker`` normalisation, ``bounded=False``; the model
standardises them per row) take the Gaussian likelihoods only, with an identity output (no
sigmoid): the fixed variance 1/2 or a learned one.

Why the alternatives exist (docs/MODELS.md, "training failures"): with sparse
linear-magnitude inputs the fixed-variance Gaussian is ~170x too wide for the real residuals,
so the reconstruction is worth a few nats only and the models learn to ignore their latent
categories. The Bernoulli likelihood and a learned variance put the reconstruction back on the
scale of the residuals. ``bernoulli`` and the learned variances are defined on the normalised
[0, 1] targets, so they pair with ``divergence="euc"`` only (the config refuses other pairs).

The learned log-variance starts at log(1/2) (the papers' fixed Gaussian) and is floored at
log(1e-4) so that a near-perfect reconstruction cannot drive the likelihood to -inf.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from trainables.losses import DIVERGENCES, reconstruction

__all__ = ["LIKELIHOODS", "REAL_VALUED_LIKELIHOODS", "Reconstruction"]

LIKELIHOODS = ("gaussian", "bernoulli", "gaussian_learned", "gaussian_learned_freq")
# the likelihoods defined on real-valued targets (Bernoulli needs [0, 1])
REAL_VALUED_LIKELIHOODS = tuple(name for name in LIKELIHOODS if name != "bernoulli")
LOG_VAR_FLOOR = math.log(1e-4)

ToLinear = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Reconstruction(nn.Module):
    """Reconstruction(divergence, likelihood, n_freq, to_linear=None).

    ``forward(x01 [B, F, T], out [B, 1, F, T] or [B, F, T], mask [B, T], stats [B, 4]) -> scalar``,
    the batch mean of the per-clip negative log-likelihood (up to constants).
    ``to_linear(x01, stats)`` de-normalises targets for ``is`` / ``kl``.
    """

    def __init__(self, divergence: str, likelihood: str, n_freq: int, to_linear: ToLinear | None = None, *,
                 bounded: bool = True):
        super().__init__()
        if divergence not in DIVERGENCES:
            raise ValueError(f"divergence: expected one of {DIVERGENCES}, got {divergence!r}")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood: expected one of {LIKELIHOODS}, got {likelihood!r}")
        if likelihood != "gaussian" and divergence != "euc":
            raise ValueError(f"likelihood {likelihood!r} is defined on normalised targets: use divergence 'euc'")
        if not bounded and (likelihood == "bernoulli" or divergence != "euc"):
            raise ValueError(f"real-valued features (band or speaker normalisation) need divergence 'euc' with a "
                             f"gaussian likelihood, got divergence {divergence!r}, likelihood {likelihood!r}")
        self.divergence, self.likelihood = divergence, likelihood
        self.bounded = bool(bounded)
        self.to_linear = to_linear
        if likelihood == "gaussian_learned":
            self.log_var = nn.Parameter(torch.full((1,), math.log(0.5)))
        elif likelihood == "gaussian_learned_freq":
            self.log_var = nn.Parameter(torch.full((int(n_freq),), math.log(0.5)))
        else:
            self.register_parameter("log_var", None)

    @property
    def final_activation(self) -> str | None:
        """What the decoder applies last: ``"sigmoid"`` (a mean in [0, 1]) or None (logit / log v /
        a real-valued mean)."""
        if self.divergence == "euc" and self.likelihood != "bernoulli" and self.bounded:
            return "sigmoid"
        return None

    def output_bias(self, x01: torch.Tensor, mask: torch.Tensor, stats: torch.Tensor) -> float:
        """The pre-activation value whose output equals the data mean over real bins.

        sigmoid / Bernoulli: logit(mean x01); IS: log(mean power); generalised KL: log(mean magnitude).
        """
        keep = (mask > 0)[:, None, :].expand_as(x01)
        if not self.bounded:  # identity output: the mean itself
            return float(x01[keep].float().mean())
        if self.divergence == "euc":
            m = float(x01[keep].float().mean().clamp(1e-4, 1 - 1e-4))
            return math.log(m / (1 - m))
        if self.to_linear is None:
            raise ValueError(f"divergence {self.divergence!r} needs to_linear to compute the output bias")
        mag = self.to_linear(x01.float(), stats.float()).clamp_min(0)
        v = mag * mag if self.divergence == "is" else mag
        return math.log(float(v[keep].mean().clamp_min(1e-12)))

    def forward(self, x01: torch.Tensor, out: torch.Tensor, mask: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        if self.likelihood == "gaussian":
            return reconstruction(x01, out, mask, self.divergence, stats, to_linear=self.to_linear)
        x = x01.float()
        o = (out[:, 0] if out.ndim == 4 else out).float()
        if o.shape != x.shape:
            raise ValueError(f"target {tuple(x.shape)} and decoder output {tuple(o.shape)} differ in shape")
        keep = (mask > 0)[:, None, :].expand_as(x)
        if self.likelihood == "bernoulli":
            d = F.binary_cross_entropy_with_logits(o, x, reduction="none")
        else:
            lv = self.log_var.float().clamp_min(LOG_VAR_FLOOR)
            lv = lv.view(1, -1, 1) if lv.numel() > 1 else lv.view(1, 1, 1)
            d = 0.5 * (x - o) ** 2 * torch.exp(-lv) + 0.5 * lv
        return torch.where(keep, d, torch.zeros_like(d)).sum(dim=(1, 2)).mean()
