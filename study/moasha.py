"""The ranking rule of multi-objective asynchronous successive halving (MOASHA), pure numpy.

Schmucker et al. 2021, "Multi-objective multi-fidelity hyperparameter optimization with
application to fairness": ASHA's rungs, with the single metric's quantile replaced by a
multi-objective ranking. The Ray glue (which rung a result reaches, what is recorded) is
``study.schedulers.MOASHAScheduler``; everything here is a function of the objective vectors
recorded at one rung, so that it can be tested without Ray.

Conventions: ``losses`` is an ``[N, M]`` array, one row per trial recorded at the rung, every
objective turned into a loss (``max`` objectives negated, :func:`study.pareto.as_losses`), all finite (a
result with a missing or non-finite objective is never recorded).

The rule (:func:`continue_at_rung`): the rows are ordered by non-dominated sorting (front 0
first), and inside a front by crowding distance (larger first). A trial continues when it is
on the rung's first front (never stopped), or when fewer than ``ceil(N / eta)`` rows are
strictly ahead of it in that order.

Why crowding distance, not an epsilon-net, to break ties inside the cut front: crowding
distance (NSGA-II) is a closed-form function of the *set* of recorded vectors, so the decision
does not depend on the order in which the trials reported; the epsilon-net (Syne Tune's
default) is a greedy farthest-first selection that needs a starting point and breaks its own
ties by position. Both spread the survivors along the front; at the rung sizes of a study
(tens of trials, 2-3 objectives) the difference in spread is small, the reproducibility is not.
Identical vectors share one crowding distance, hence one position (none is ahead of the other).

What "order-invariant" means for an asynchronous rule: a trial is judged against the records
present when it reaches the rung, which depend on timing. What is guaranteed: the decision is
a function of the recorded set (not of its order), so (a) the decision for the *last* trial to
reach a rung is the same whatever order the others reached it in, and (b) the synchronous
evaluation (:func:`stopped_at_rung`: every trial judged against the full set) stops the same
trials for any permutation.
"""
from __future__ import annotations

import math

import numpy as np

from study.pareto import pareto_front

__all__ = ["nondominated_ranks", "crowding_distances", "rung_order_keys",
           "continue_at_rung", "stopped_at_rung"]


def _as_losses(losses) -> np.ndarray:
    arr = np.asarray(losses, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"losses must be [N, M], got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("losses must be finite (non-finite results are never recorded)")
    return arr


def nondominated_ranks(losses) -> np.ndarray:
    """Front index of every row (0 = non-dominated), by repeated peeling of the front
    (:func:`study.pareto.pareto_front` on the rows left).

    Row a dominates row b when it is no worse in every column and better in one; identical
    rows do not dominate each other (they share a front)."""
    arr = _as_losses(losses)
    minimise = ["min"] * arr.shape[1]
    ranks = np.full(len(arr), -1, dtype=int)
    left = np.flatnonzero(np.ones(len(arr), dtype=bool))
    front = 0
    while left.size:
        on_front = pareto_front(arr[left], minimise)
        ranks[left[on_front]] = front
        left = left[~on_front]
        front += 1
    return ranks


def crowding_distances(losses) -> np.ndarray:
    """NSGA-II crowding distance of every row within the given set (one front): per column,
    the gap between its neighbours divided by the column's range, summed; the extremes of
    each column get +inf. Identical rows are one point (same distance, whatever their order)."""
    arr = _as_losses(losses)
    uniq, inverse = np.unique(arr, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    dist = np.zeros(len(uniq))
    if len(uniq) <= 2:
        return np.full(len(arr), math.inf)
    for j in range(uniq.shape[1]):
        order = np.argsort(uniq[:, j], kind="stable")  # uniq is sorted: ties broken canonically
        col = uniq[order, j]
        span = col[-1] - col[0]
        dist[order[0]] = dist[order[-1]] = math.inf
        if span > 0:
            dist[order[1:-1]] += (col[2:] - col[:-2]) / span
    return dist[inverse]


def rung_order_keys(losses) -> list[tuple]:
    """Sort key of every row: (front, -crowding distance within the front); smaller is
    better. Rows with equal keys (e.g. the two extremes of a front, both at +inf) share a
    position: neither is ahead of the other, so no objective is favoured over another."""
    arr = _as_losses(losses)
    ranks = nondominated_ranks(arr)
    crowd = np.zeros(len(arr))
    for f in np.unique(ranks):
        members = np.flatnonzero(ranks == f)
        crowd[members] = crowding_distances(arr[members])
    return [(int(ranks[i]), -float(crowd[i])) for i in range(len(arr))]


def _keep_count(n: int, eta: float) -> int:
    return max(1, math.ceil(n / eta))


def _continues(keys: list[tuple], index: int, eta: float) -> bool:
    if eta <= 1:
        raise ValueError(f"reduction factor eta must be > 1, got {eta}")
    mine = keys[index]
    if mine[0] == 0:
        return True
    ahead = sum(1 for k in keys if k < mine)
    return ahead < _keep_count(len(keys), eta)


def continue_at_rung(losses, index: int, eta: float) -> bool:
    """Whether row ``index`` of the rung's records continues: it is on the first front, or
    fewer than ``ceil(N / eta)`` rows are strictly ahead of it (:func:`rung_order_keys`)."""
    return _continues(rung_order_keys(losses), index, eta)


def stopped_at_rung(losses, eta: float) -> set[int]:
    """The synchronous evaluation: the rows stopped when every trial is judged against the
    full set of records (a set independent of the rows' order, up to renumbering)."""
    keys = rung_order_keys(losses)
    return {i for i in range(len(keys)) if not _continues(keys, i, eta)}
