"""Instance contrast between two views of the same clips (docs/MODELS.md, "Invariance").

SimCLR's NT-Xent (Chen et al. 2020), the pretext task SCAN (Van Gansbeke et al. 2020) clusters on:
each clip's features under one view must pick out the same clip's features under the other view
among the ``2B - 2`` other clips of the batch. Where the consistency term
(:mod:`trainables.consistency`) asks two views to agree on the *clusters*, this term shapes the
*features* the clusters are read from, before there are clusters at all (UVAC's prior is fitted on
them). The features pass through a small :class:`ProjectionHead` first, as in SimCLR, so the
invariance is imposed on the projection and the encoder keeps what the decoder needs.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ProjectionHead", "nt_xent"]


class ProjectionHead(nn.Module):
    """``[B, in_features] -> [B, out_features]``: Linear, ReLU, Linear (SimCLR's g)."""

    def __init__(self, in_features: int, hidden: int = 128, out_features: int = 64):
        super().__init__()
        if min(int(in_features), int(hidden), int(out_features)) < 1:
            raise ValueError(f"ProjectionHead: sizes must be >= 1, got {in_features}, {hidden}, {out_features}")
        self.net = nn.Sequential(nn.Linear(int(in_features), int(hidden)), nn.ReLU(),
                                 nn.Linear(int(hidden), int(out_features)))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """The normalised-temperature cross entropy of two views' features ``a``, ``b`` [B, D] (row i of
    both is clip i), averaged over the ``2B`` anchors (fp32 scalar, >= 0).

    Anchor ``i`` of one view scores every other row of both views by cosine similarity over
    ``temperature``; the loss is the cross entropy of picking its own clip in the other view. With
    identical, mutually orthogonal rows it is ``log(1 + (2B - 2) exp(-1 / temperature))``."""
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"nt_xent expects two [B, D] feature matrices, got {tuple(a.shape)}, {tuple(b.shape)}")
    if a.shape[0] < 2:
        raise ValueError(f"nt_xent needs at least 2 clips per batch (the others are the negatives), got {a.shape[0]}")
    if not temperature > 0:
        raise ValueError(f"nt_xent: temperature must be > 0, got {temperature}")
    n = a.shape[0]
    feats = F.normalize(torch.cat([a, b]).float(), dim=1)
    sim = feats @ feats.T / float(temperature)
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=sim.device), -math.inf)
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(sim.device)
    return F.cross_entropy(sim, targets)
