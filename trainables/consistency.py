"""Consistency between the cluster posteriors of two views of the same clips (docs/MODELS.md, "Invariance").

Both terms take log-probabilities ``[B, K]`` of the same clips under two views (the clean batch and
an augmented one, :mod:`trainables.augment`) and are >= 0:

* ``mi`` (IIC, Ji et al. 2019): ``log K - I(y; y')``, the mutual information of the joint
  ``P = mean_b p_b p'_b^T`` (symmetrised). It is zero exactly when both views put every clip in
  the same cluster with certainty and the clusters are used equally; it rises when the views
  disagree, when posteriors are unsure, and when clusters are unbalanced (IIC's own reason for
  working without collapse).
* ``skl``: the symmetric KL ``(KL(p || p') + KL(p' || p)) / 2`` per clip, batch mean: zero for
  identical views whatever they say, with no balance pressure of its own (pair it with
  ``marginal_entropy_weight``).

:func:`consistency` dispatches on the config's ``consistency`` key; "none" is not a term.

:func:`self_label` (SCAN's self-labelling, Van Gansbeke et al. 2020) is not symmetric: the clean
batch's confident clips (posterior max >= a threshold) label themselves with their cluster, and the
view is trained by cross-entropy to give that cluster; the clean posterior is not trained by it
(detached). Zero where no clip is confident; config keys ``self_label`` and ``self_label_threshold``.
"""
from __future__ import annotations

import math

import torch

__all__ = ["CONSISTENCIES", "consistency", "mutual_information_gap", "self_label", "symmetric_kl"]

CONSISTENCIES = ("none", "mi", "skl")
_EPS = 1e-8


def _check(log_p: torch.Tensor, log_q: torch.Tensor) -> None:
    if log_p.ndim != 2 or log_p.shape != log_q.shape:
        raise ValueError(f"consistency expects two [B, K] log-probabilities, got {tuple(log_p.shape)}, "
                         f"{tuple(log_q.shape)}")


def mutual_information_gap(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """``log K - I(y; y')`` of the symmetrised joint of two views (IIC), >= 0 (fp32 scalar)."""
    _check(log_p, log_q)
    p, q = log_p.float().exp(), log_q.float().exp()
    joint = (p[:, :, None] * q[:, None, :]).mean(0)
    joint = ((joint + joint.T) / 2).clamp_min(_EPS)
    joint = joint / joint.sum()
    pi, pj = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)
    mi = (joint * (joint.log() - pi.log() - pj.log())).sum()
    return (math.log(log_p.shape[1]) - mi).clamp_min(0.0)


def symmetric_kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Batch mean of ``(KL(p || q) + KL(q || p)) / 2`` per clip (fp32 scalar)."""
    _check(log_p, log_q)
    lp, lq = log_p.float(), log_q.float()
    return (0.5 * ((lp.exp() - lq.exp()) * (lp - lq)).sum(1)).mean()


def consistency(kind: str, log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """The ``kind`` term (``mi`` or ``skl``) between two views' log-probabilities [B, K]."""
    if kind == "mi":
        return mutual_information_gap(log_p, log_q)
    if kind == "skl":
        return symmetric_kl(log_p, log_q)
    raise ValueError(f"consistency: expected one of {', '.join(c for c in CONSISTENCIES if c != 'none')}, got {kind!r}")


def self_label(log_p: torch.Tensor, log_q: torch.Tensor, threshold: float) -> torch.Tensor:
    """Mean cross-entropy ``-log q(c_b)`` of the view ``log_q`` at the clean clips' clusters
    ``c_b = argmax p_b``, over the clips whose clean posterior ``max p_b >= threshold``; the clean
    ``log_p`` is a target only (detached). 0 (keeping the graph) when no clip is confident."""
    _check(log_p, log_q)
    if not 0 <= threshold <= 1:
        raise ValueError(f"self_label: the threshold is a probability in [0, 1], got {threshold}")
    conf, target = log_p.detach().float().max(1)
    confident = conf.exp() >= threshold
    picked = log_q.float().gather(1, target[:, None])[:, 0]
    if not bool(confident.any()):
        return picked.sum() * 0.0
    return -picked[confident].mean()
