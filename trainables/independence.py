"""Independence of the clusters from a nuisance the data name: the speaker (fair clustering).

With few speakers, spoken digits form tight (digit, speaker) groups, and a 10-way clustering
that follows speakers for a few digits loses 10-30 points (README, "Quality on real speech").
The digit partition is the one in which every cluster holds every speaker in the proportion
the data hold them: the cluster y is independent of the speaker g. The measure is the mutual
information of the joint ``P(y, g) = mean_n q(y | x_n) 1[g_n = g]`` over the training clips::

    I(y; g) = sum_{y,g} P(y, g) log(P(y, g) / (P(y) P(g)))  >= 0

zero when every speaker uses the clusters alike, at most min(log K, log G).

:func:`group_dependence` computes it on one batch. A mini-batch holds only a few clips per
speaker (16 clips, 4 speakers: 4 each, for 10 clusters), and that estimate is far from zero
even for a perfect digit clustering, so minimising it makes the posteriors vague instead of
speaker-independent. :class:`RunningGroupDependence` keeps a running estimate of the joint over
the recent batches (exponential moving average, no gradient) and gives the batch the gradient of
the whole-data I(y; g) at that estimate: ``dI / dP(y, g) = log P(y | g) / P(y)`` (+ a constant
per speaker, which a posterior summing to one does not feel), so the loss is
``mean_b sum_y q(y | x_b) log(P(y | g_b) / P(y))``: each clip is pushed away from the clusters
its speaker over-uses. It needs the speaker of every clip: side information, like per-speaker
normalisation, so the config key ``speaker_independence`` (its weight) is allowed only on a front
end normalised per speaker (``trainables.config.check_frontend``) and its results are compared
with the baselines that use speaker ids.

Measured before building it (scratch K-means with soft assignments on the whole FSDD table,
3 seeds): on ``awe_speaker`` the exact term took K-means from 65.8 % to 78.0 % ACC; with
speakers guessed by K-means on clip statistics instead of the ids it was fragile (-17 to +5
points), hence the ids.
"""
from __future__ import annotations

import torch

__all__ = ["RunningGroupDependence", "group_dependence"]

_EPS = 1e-10


def _check(log_p: torch.Tensor, group: torch.Tensor) -> None:
    if log_p.ndim != 2 or group.ndim != 1 or group.shape[0] != log_p.shape[0]:
        raise ValueError(f"expected log_p [B, K] and group [B], got {tuple(log_p.shape)}, {tuple(group.shape)}")
    if group.numel() and int(group.min()) < 0:
        raise ValueError("group indices must be >= 0")


def _batch_joint(p: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``mean_b p_b w_b^T`` [K, G] of posteriors p [B, K] and group memberships w [B, G] (one-hot or soft)."""
    return p.T @ weights.to(p.dtype) / p.shape[0]


def _mutual_information(joint: torch.Tensor) -> torch.Tensor:
    joint = joint / joint.sum().clamp_min(_EPS)
    p_y, p_g = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)
    ratio = joint.clamp_min(_EPS).log() - p_y.clamp_min(_EPS).log() - p_g.clamp_min(_EPS).log()
    return (joint * ratio).sum().clamp_min(0.0)


def group_dependence(log_p: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """``I(y; g)`` of one batch (module docstring), fp32 scalar >= 0, differentiable in ``log_p``.

    log_p  [B, K] log cluster posteriors
    group  [B] integer group (speaker) index of each clip, >= 0
    """
    _check(log_p, group)
    _, g = torch.unique(group, return_inverse=True)  # 0..G-1 over the groups present
    return _mutual_information(_batch_joint(log_p.float().exp(), torch.nn.functional.one_hot(g)))


class RunningGroupDependence:
    """The whole-data ``I(y; g)`` tracked over batches (module docstring).

    ``momentum`` m: the running joint is ``m * joint + (1 - m) * batch joint`` after each call
    (0.99: about the last 100 batches). Group indices are global (the same speaker, the same index,
    in every batch); the joint grows as new indices appear. The model saves it in checkpoints
    (``ClusteringModel.training_state``), so a resumed run continues with it.
    """

    def __init__(self, momentum: float = 0.99):
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = float(momentum)
        self.joint: torch.Tensor | None = None  # [K, G], sums to 1, no gradient

    def __call__(self, log_p: torch.Tensor, group: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss with the whole-data gradient, the running ``I(y; g)`` estimate), fp32 scalars.

        ``group``: [B] integer indices, or [B, G] probabilities of each clip's group (a soft
        assignment, e.g. a style posterior; treated as given: no gradient flows into it).
        The running joint is updated with this batch first (so the first call is the batch's own
        estimate); the loss is ``mean_b sum_y q(y|x_b) sum_g P(g|b) log(P(y|g) / P(y))`` at that joint.
        """
        if group.ndim == 2:
            if group.shape[0] != log_p.shape[0] or log_p.ndim != 2:
                raise ValueError(f"expected log_p [B, K] and group [B] or [B, G], got {tuple(log_p.shape)}, "
                                 f"{tuple(group.shape)}")
            weights = group.detach().float()
        else:
            _check(log_p, group)
            weights = torch.nn.functional.one_hot(group.long()).float()
        p = log_p.float().exp()
        if weights.shape[1] < self._groups():  # groups seen before but not in this batch
            weights = torch.nn.functional.pad(weights, (0, self._groups() - weights.shape[1]))
        with torch.no_grad():
            batch = _batch_joint(p.detach(), weights)
            if self.joint is None:
                self.joint = batch
            else:
                if batch.shape != self.joint.shape:
                    grown = torch.zeros_like(batch)
                    grown[: self.joint.shape[0], : self.joint.shape[1]] = self.joint
                    self.joint = grown
                self.joint = self.momentum * self.joint.to(batch) + (1.0 - self.momentum) * batch
            joint = self.joint / self.joint.sum().clamp_min(_EPS)
            p_y = joint.sum(1, keepdim=True)  # [K, 1]
            p_y_given_g = joint / joint.sum(0, keepdim=True).clamp_min(_EPS)  # [K, G]
            pmi = (p_y_given_g.clamp_min(_EPS).log() - p_y.clamp_min(_EPS).log()).T  # [G, K]
        loss = (p * (weights @ pmi)).sum(1).mean()
        return loss, _mutual_information(joint)

    def _groups(self) -> int:
        return 0 if self.joint is None else int(self.joint.shape[1])
