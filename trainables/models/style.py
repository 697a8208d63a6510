"""A style factor: a categorical nuisance s (speaker, channel) whose effect is an additive offset.

Measured on real speech (docs/MODELS.md, "Style factor"): spoken digits form tight clusters per
(digit, speaker); what a clustering of digits fails on is that one digit's speakers lie apart.
Per-speaker normalisation removes a speaker's offset from every clip and is worth 15-20 points
to K-means, but needs speaker ids. A factorial mixture ``x ~ N(mu_y + nu_s, diag)`` with a
content cluster y and a style cluster s learns the offsets nu_s without them.

:class:`StyleFactor` gives a model the same: q(s|x), S style classes, read from the clip's
per-row mean and standard deviation over its real frames (order-free statistics: they hold the
speaker and channel, not the word's timing), and one offset image nu_s [F, T] per style
(centred over the styles), added to the decoder's output as ``sum_s q(s|x) nu_s`` and removed
from what the encoders see (``LatentClusteringModel.prepare``: a learned, unsupervised speaker
normalisation). The content (y, or z and the GMM prior) then has less reason to encode the speaker. The loss adds
``KL(q(s|x) || uniform S)`` (with the KL weight) and ``balance * KL(mean_batch q(s) || uniform)``.

Initialisation (:meth:`StyleFactor.fit`, before the first epoch): K-means on the train split's
style statistics; q(s|x) starts as the nearest-centroid rule of that clustering, nu_s as each
style's mean input minus the overall mean. Real-valued (standardised) inputs only.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch import nn

from trainables.models.centroids import nearest_centroid_head

__all__ = ["StyleFactor"]


class StyleFactor(nn.Module):
    """StyleFactor(n_freq, n_frames, n_styles, balance=1.0): q(s|x) and the per-style offsets."""

    def __init__(self, n_freq: int, n_frames: int, n_styles: int, balance: float = 1.0):
        super().__init__()
        if int(n_styles) < 2:
            raise ValueError(f"a style factor needs >= 2 styles, got {n_styles}")
        self.n_freq, self.n_frames, self.n_styles = int(n_freq), int(n_frames), int(n_styles)
        self.balance = float(balance)
        self.head = nn.Linear(2 * self.n_freq, self.n_styles)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.offsets = nn.Parameter(torch.zeros(self.n_styles, self.n_freq, self.n_frames))

    @staticmethod
    def statistics(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-row mean and standard deviation over the real frames: x [B, F, T], mask [B, T] -> [B, 2F]."""
        m = (mask > 0).to(x.dtype)[:, None, :]
        n = m.sum(2).clamp_min(1.0)
        mean = (x * m).sum(2) / n
        var = (((x - mean[:, :, None]) ** 2) * m).sum(2) / n
        return torch.cat([mean, (var + 1e-6).sqrt()], dim=1)

    def log_probs(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log q(s|x) [B, S] (fp32)."""
        return torch.log_softmax(self.head(self.statistics(x, mask)).float(), dim=1)

    def offset(self, log_q: torch.Tensor) -> torch.Tensor:
        """The expected offset ``sum_s q(s|x) nu_s`` [B, F, T] (offsets centred over the styles)."""
        nu = self.offsets - self.offsets.mean(0, keepdim=True)
        return torch.einsum("bs,sft->bft", log_q.exp().to(nu.dtype), nu)

    def loss_terms(self, log_q: torch.Tensor) -> dict[str, torch.Tensor]:
        """``kl_s`` = KL(q(s|x) || uniform) (batch mean) and ``kl_sbar`` = KL(batch-mean q(s) || uniform)."""
        log_s = math.log(self.n_styles)
        q = log_q.exp()
        kl_s = (q * (log_q + log_s)).sum(1).mean()
        q_bar = q.mean(0)
        kl_sbar = torch.xlogy(q_bar, q_bar).sum() + log_s
        return {"kl_s": kl_s, "kl_sbar": kl_sbar}

    @torch.no_grad()
    def fit(self, batches: Callable[[], Iterable], prepare: Callable[[torch.Tensor], torch.Tensor], seed: int) -> None:
        """K-means initialisation on the training split (see the module docstring)."""
        feats, xs = [], []
        for b in batches():
            x = prepare(b.x).float()
            feats.append(self.statistics(x, b.mask).cpu())
            xs.append((x * (b.mask > 0)[:, None, :]).cpu())
        w, b0, labels = nearest_centroid_head(torch.cat(feats).double().numpy(), self.n_styles, seed)
        x = torch.cat(xs).double()
        self.head.weight.copy_(torch.as_tensor(w, dtype=self.head.weight.dtype))
        self.head.bias.copy_(torch.as_tensor(b0, dtype=self.head.bias.dtype))
        labels = torch.as_tensor(labels)
        overall = x.mean(0)
        for s in range(self.n_styles):
            rows = labels == s
            if rows.any():
                self.offsets[s].copy_((x[rows].mean(0) - overall).to(self.offsets))
