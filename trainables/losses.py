"""Losses: masked reconstruction divergences and the KL terms of UVAC and categorical UVAC.

Everything here is computed in fp32 (inputs are cast), so it is safe after a bf16 autocast
forward pass.

Reconstruction (docs/MODELS.md, "Reconstruction"; the divergence paper, "Notes on the use of
variational autoencoders for speech and audio spectrogram modeling"):

* ``"euc"``: squared error ``(x01 - out)**2`` on the normalised [0, 1] values (sigmoid output).
* ``"is"``: Itakura-Saito on the de-normalised **power** ``x = to_linear(x01, stats)**2``, the
  decoder output being ``log v``: ``d = x * exp(-log v) + log v - log x - 1``. ``x = 0`` gives
  ``d = +inf`` (the Gamma model has no mass at 0), so ``x`` is floored at ``is_eps`` times the
  clip's mean power over its real bins (relative, so the divergence stays scale-invariant;
  default 1e-6, i.e. 60 dB below the clip's mean power).
* ``"kl"``: generalised KL on the de-normalised **magnitude** ``x = to_linear(x01, stats)``:
  ``d = x log(x / v) - x + v = xlogy(x, x) - x log v - x + exp(log v)``, with the exact limit
  ``0 log 0 = 0`` (``torch.xlogy``): no epsilon is needed for ``x = 0``.
* ``log v`` is clamped to [-80, 80] before the exponential (fp32 overflows beyond ~88).

Reduction, the same for every divergence so that lambda means the same thing: per clip, the
**sum over the real time-frequency bins** (bins of frames with mask 1; the negative
log-likelihood of the clip up to constants, the papers' eq. 11 of the divergence paper),
then the **mean over the batch**. Masked (padding) frames are excluded with ``torch.where`` on
the inputs as well as on the result, so that they affect neither the value nor the gradient,
even where ``log x`` would be infinite there. ``reduction="mean_bins"`` divides each clip's sum
by its number of real bins instead (an option, not the default).

KL terms (per clip, mean over the batch):

* :func:`gaussian_kl`: KL(N(mu, diag e^logvar) || N(0, I)).
* :func:`gmm_kl`: UVAC paper eq. 11, ``-logsumexp_c(log_softmax(pi)_c - KL(N(mu, S) || N(mu_c, S_c)))``.
* :func:`categorical_kl_uniform`: KL(q(y|x) || uniform K) from ``log_softmax(logits)`` (not the
  relaxed sample).

How a model combines these terms (UVAC ``recon + lam * kl_weight * kl_z``; categorical UVAC
``recon + lam * kl_weight * (kl_z + kl_y)``, eq. 7) lives with the model, in its
``training_step`` (:mod:`trainables.models`); the likelihoods other than the papers' fixed
Gaussian are in :mod:`trainables.reconstruction`.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch

__all__ = [
    "DIVERGENCES",
    "euc_divergence",
    "is_divergence",
    "gkl_divergence",
    "reconstruction",
    "gaussian_kl",
    "gaussian_kl_diag",
    "gaussian_kl_free_bits",
    "gmm_kl",
    "categorical_kl_uniform",
]

DIVERGENCES = ("euc", "is", "kl")
LOGV_CLAMP = 80.0
IS_EPS = 1e-6

ToLinear = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------------------------------
# element-wise divergences
# ---------------------------------------------------------------------------------------------
def euc_divergence(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(x - v)**2, element-wise."""
    return (x - v) ** 2


def is_divergence(x: torch.Tensor, log_v: torch.Tensor) -> torch.Tensor:
    """Itakura-Saito d(x|v) = x/v - log(x/v) - 1 with v = exp(log_v), element-wise (x > 0)."""
    log_v = log_v.clamp(-LOGV_CLAMP, LOGV_CLAMP)
    return x * torch.exp(-log_v) + log_v - torch.log(x) - 1.0


def gkl_divergence(x: torch.Tensor, log_v: torch.Tensor) -> torch.Tensor:
    """Generalised KL d(x|v) = x log(x/v) - x + v with v = exp(log_v), element-wise (x >= 0)."""
    log_v = log_v.clamp(-LOGV_CLAMP, LOGV_CLAMP)
    return torch.xlogy(x, x) - x * log_v - x + torch.exp(log_v)


# ---------------------------------------------------------------------------------------------
# masked reconstruction
# ---------------------------------------------------------------------------------------------
def _as_bft(t: torch.Tensor, name: str) -> torch.Tensor:
    if t.ndim == 4 and t.shape[1] == 1:
        return t[:, 0]
    if t.ndim == 3:
        return t
    raise ValueError(f"{name}: expected [B, F, T] or [B, 1, F, T], got {tuple(t.shape)}")


def _resolve_to_linear(to_linear, preset) -> ToLinear:
    if to_linear is not None:
        return to_linear
    if preset is not None:
        from features.frontend import denormalise as _den

        return lambda x01, stats: _den(x01, stats, preset)
    raise ValueError("divergences 'is' and 'kl' need to_linear (or preset) and norm_stats to de-normalise targets")


def reconstruction(
    target01: torch.Tensor,
    decoder_out: torch.Tensor,
    mask: torch.Tensor | None,
    divergence: str = "euc",
    norm_stats: torch.Tensor | None = None,
    preset: Any = None,
    *,
    to_linear: ToLinear | None = None,
    reduction: str = "sum",
    is_eps: float = IS_EPS,
    per_clip: bool = False,
) -> torch.Tensor:
    """Masked reconstruction loss (scalar, or [B] with ``per_clip=True``).

    target01     [B, F, T] (or [B, 1, F, T]) normalised [0, 1] input
    decoder_out  same shape: sigmoid output (``"euc"``) or log v (``"is"``, ``"kl"``)
    mask         [B, T], 1 = real frame, 0 = padding (None = all real)
    norm_stats   [B, 4] per-clip (mean, std, min, max), for ``"is"`` / ``"kl"``
    to_linear    ``to_linear(x01, norm_stats) -> linear magnitude`` (e.g. a closure over
                 ``features.frontend.denormalise``); without it, ``preset`` is used with
                 ``features.frontend.denormalise``
    reduction    ``"sum"`` (per-clip sum over real bins; default) or ``"mean_bins"``
    """
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence: expected one of {DIVERGENCES}, got {divergence!r}")
    if reduction not in ("sum", "mean_bins"):
        raise ValueError(f"reduction: expected 'sum' or 'mean_bins', got {reduction!r}")
    x01 = _as_bft(target01, "target01").float()
    out = _as_bft(decoder_out, "decoder_out").float()
    if x01.shape != out.shape:
        raise ValueError(f"target {tuple(x01.shape)} and decoder output {tuple(out.shape)} differ in shape")
    b, f, t = x01.shape
    if mask is None:
        mask = torch.ones(b, t, device=x01.device)
    if mask.shape != (b, t):
        raise ValueError(f"mask: expected [B={b}, T={t}], got {tuple(mask.shape)}")
    keep = (mask.to(x01.device) > 0)[:, None, :].expand(b, f, t)  # [B, F, T] bool

    if divergence == "euc":
        d = euc_divergence(x01, out)
    else:
        if norm_stats is None:
            raise ValueError(f"divergence {divergence!r} needs norm_stats to de-normalise the targets")
        fn = _resolve_to_linear(to_linear, preset)
        mag = fn(x01, norm_stats.float()).float().clamp_min(0.0)
        if mag.shape != x01.shape:
            raise ValueError(f"to_linear returned {tuple(mag.shape)}, expected {tuple(x01.shape)}")
        log_v = torch.where(keep, out, torch.zeros_like(out))
        if divergence == "is":
            power = mag * mag
            n_real = keep.sum(dim=(1, 2)).clamp_min(1)
            mean_pow = (torch.where(keep, power, torch.zeros_like(power)).sum(dim=(1, 2)) / n_real)
            floor = (is_eps * mean_pow).clamp_min(torch.finfo(torch.float32).tiny)[:, None, None]
            x = torch.where(keep, torch.maximum(power, floor), torch.ones_like(power))
            d = is_divergence(x, log_v)
        else:
            x = torch.where(keep, mag, torch.zeros_like(mag))
            d = gkl_divergence(x, log_v)
    d = torch.where(keep, d, torch.zeros_like(d))
    per = d.sum(dim=(1, 2))
    if reduction == "mean_bins":
        per = per / keep.sum(dim=(1, 2)).clamp_min(1)
    return per if per_clip else per.mean()


# ---------------------------------------------------------------------------------------------
# KL terms
# ---------------------------------------------------------------------------------------------
def gaussian_kl_diag(
    mu: torch.Tensor, logvar: torch.Tensor, mu_p: torch.Tensor, logvar_p: torch.Tensor
) -> torch.Tensor:
    """KL(N(mu, e^logvar) || N(mu_p, e^logvar_p)) summed over the last axis (broadcasting)."""
    return 0.5 * (
        (mu - mu_p) ** 2 * torch.exp(-logvar_p) + logvar_p - logvar + torch.exp(logvar - logvar_p) - 1.0
    ).sum(-1)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor, per_clip: bool = False) -> torch.Tensor:
    """KL(N(mu, diag e^logvar) || N(0, I)); mu, logvar [B, D] -> scalar (batch mean) or [B]."""
    mu, logvar = mu.float(), logvar.float()
    per = 0.5 * (mu**2 + torch.exp(logvar) - 1.0 - logvar).sum(-1)
    return per if per_clip else per.mean()


def gaussian_kl_free_bits(mu: torch.Tensor, logvar: torch.Tensor, free_bits: float) -> torch.Tensor:
    """KL(N(mu, diag e^logvar) || N(0, I)) with free bits (Kingma et al. 2016): per latent dimension,
    the batch-mean KL counts as at least ``free_bits`` nats (no gradient below it); summed. With
    ``free_bits`` 0 it equals :func:`gaussian_kl`."""
    mu, logvar = mu.float(), logvar.float()
    per_dim = (0.5 * (mu**2 + torch.exp(logvar) - 1.0 - logvar)).mean(0)  # [D]
    return per_dim.clamp_min(float(free_bits)).sum()


def gmm_kl(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    pi_logits: torch.Tensor,
    prior_mu: torch.Tensor,
    prior_logvar: torch.Tensor,
    per_clip: bool = False,
) -> torch.Tensor:
    """UVAC eq. 11: ``-logsumexp_c(log pi_c - KL(N(mu, S) || N(mu_c, S_c)))``.

    mu, logvar [B, D]; pi_logits [C] (pi = softmax); prior_mu, prior_logvar [C, D].
    Returns the batch mean (or [B] with ``per_clip``). With C = 1 it equals the closed-form KL.
    """
    mu, logvar = mu.float()[:, None, :], logvar.float()[:, None, :]
    kl_c = gaussian_kl_diag(mu, logvar, prior_mu.float()[None], prior_logvar.float()[None])  # [B, C]
    log_pi = torch.log_softmax(pi_logits.float(), dim=-1)[None]
    per = -torch.logsumexp(log_pi - kl_c, dim=1)
    return per if per_clip else per.mean()


def categorical_kl_uniform(logits: torch.Tensor, per_clip: bool = False) -> torch.Tensor:
    """KL(q(y|x) || uniform over K) = sum_k q_k (log q_k + log K), from log_softmax(logits)."""
    logits = logits.float()
    log_q = torch.log_softmax(logits, dim=-1)
    per = (log_q.exp() * (log_q + math.log(logits.shape[-1]))).sum(-1)
    return per if per_clip else per.mean()
