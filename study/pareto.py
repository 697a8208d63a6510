"""Pareto fronts and hypervolumes of study results (pure numpy; no MLflow, no plotting).

Conventions
-----------
* ``values`` is an ``[N, M]`` array: one row per trial, one column per objective.
* ``directions`` is a list of ``"max"`` / ``"min"`` of length ``M``. Internally every
  objective is turned into a loss (``max`` columns are negated), so "better" always means
  "smaller".
* A row with NaN or +-inf in any objective is never on the front and adds nothing to a
  hypervolume (a collapsed clustering reports NaN silhouette: that is a result, not a
  point of the trade-off).
* Ties: a point dominates another only if it is no worse in every objective and strictly
  better in at least one; identical points therefore do not dominate each other and are
  all on the front. A duplicate of a dominated point stays dominated.
* Which trials enter is decided upstream on the run table: only ``trial.status ==
  complete`` rows are passed here (pruned, diverged and failed trials are excluded, see
  :func:`analysis.runs.completed`).

Hypervolume
-----------
The hypervolume of a front is the measure of the region it dominates that is bounded by
a *reference point* ``r`` (in the original units, one value per objective). Only points
strictly better than ``r`` in every objective contribute. It is computed exactly:

* 2 objectives: sort by the first loss and sum the rectangles of the staircase;
* M > 2 objectives: "hypervolume by slicing objectives" (HSO, While et al. 2006): sort
  by the last loss, and sum over the slabs between consecutive values of the last loss
  the (M-1)-dimensional hypervolume of the points that reach into the slab (recursion
  down to the exact 2-D case). Exponential in M in the worst case, fine for the front
  sizes of a study (tens to hundreds of points, 2-4 objectives). The tests check it
  against Optuna's WFG implementation.

Reference point (:func:`reference_point`): FIXED per objective, from the metric's known
bound on its worse side, so that a study's hypervolume depends on its own trials only (never
on the other studies in a report, nor on a margin around the data):

==========================  =========  ================================================
metric family               direction  reference (worst end)
==========================  =========  ================================================
acc, nmi                    max        0 (both lie in [0, 1])
ari                         max        -1 (ARI lies in [-0.5, 1]; -1 is a safe bound)
silhouette                  max        -1 (silhouette lies in [-1, 1])
chi (Calinski-Harabasz)     max        0 (CHI >= 0; unbounded above, which is the good side)
dbi (Davies-Bouldin)        min        5, a fixed choice: DBI >= 0 is unbounded above;
                                       a DBI of 5 means clusters spread five times more
                                       than they are apart, so worse trials add no volume
occupancy_max               min        1 (share of the largest cluster, in [0, 1])
occupancy_entropy           max        0 (entropy >= 0)
==========================  =========  ================================================

A metric without a row here (e.g. a time or a loss) has no fixed reference: the report
refuses it as an objective with that message. The same reference serves every value that
is compared (a study's whole hypervolume history, every study of a report).

:func:`staircase` gives the vertices of a 2-D front drawn as the boundary of the region it
dominates (steps, never diagonals between points: a diagonal would show trade-offs that no
trial achieved).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from trainables.metrics import metric_family

# Worst end of each metric family (module docstring): the fixed hypervolume reference.
REFERENCE: dict[str, float] = {"acc": 0.0, "nmi": 0.0, "ari": -1.0, "silhouette": -1.0, "chi": 0.0,
                               "dbi": 5.0, "occupancy_max": 1.0, "occupancy_entropy": 0.0}

__all__ = [
    "as_losses",
    "finite_rows",
    "pareto_front",
    "REFERENCE",
    "reference_point",
    "staircase",
    "hypervolume",
    "hypervolume_history",
]


def _check_directions(directions: Sequence[str], m: int) -> list[str]:
    dirs = [str(d).lower() for d in directions]
    if len(dirs) != m:
        raise ValueError(f"{m} objectives but {len(dirs)} directions: {list(directions)}")
    bad = [d for d in dirs if d not in ("max", "min")]
    if bad:
        raise ValueError(f"directions must be 'max' or 'min', got {bad}")
    return dirs


def _as_2d(values) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1) if arr.size else arr.reshape(0, 1)
    if arr.ndim != 2:
        raise ValueError(f"values must be [N, M], got shape {arr.shape}")
    return arr


def as_losses(values, directions: Sequence[str]) -> np.ndarray:
    """``values`` [N, M] turned into losses (``max`` columns negated), as float64."""
    arr = _as_2d(values)
    dirs = _check_directions(directions, arr.shape[1])
    sign = np.array([-1.0 if d == "max" else 1.0 for d in dirs])
    return arr * sign


def finite_rows(values) -> np.ndarray:
    """Boolean mask of the rows whose objectives are all finite."""
    arr = _as_2d(values)
    return np.isfinite(arr).all(axis=1)


def _nondominated_losses(losses: np.ndarray) -> np.ndarray:
    """Mask of non-dominated rows of a finite loss array (minimisation)."""
    n = losses.shape[0]
    keep = np.ones(n, dtype=bool)
    # Chunked O(N^2 M) comparison: dominated[i] = any_j (all(l_j <= l_i) and any(l_j < l_i)).
    chunk = max(1, 2_000_000 // max(1, n * losses.shape[1]))
    for start in range(0, n, chunk):
        block = losses[start:start + chunk]                      # [b, M]
        le = (losses[None, :, :] <= block[:, None, :]).all(axis=2)  # [b, N]: j no worse than i
        lt = (losses[None, :, :] < block[:, None, :]).any(axis=2)   # [b, N]: j better somewhere
        keep[start:start + chunk] = ~(le & lt).any(axis=1)
    return keep


def pareto_front(values, directions: Sequence[str]) -> np.ndarray:
    """Boolean mask [N]: True for the rows that are Pareto-optimal.

    Rows with a non-finite objective are False. Equal points are all non-dominated.
    """
    losses = as_losses(values, directions)
    mask = np.zeros(losses.shape[0], dtype=bool)
    ok = np.isfinite(losses).all(axis=1)
    if ok.any():
        mask[np.flatnonzero(ok)] = _nondominated_losses(losses[ok])
    return mask


def reference_point(metrics: Sequence[str]) -> np.ndarray:
    """The fixed hypervolume reference of each metric (original units; table above).
    ValueError for a metric without a known bound."""
    ref = []
    for m in metrics:
        family = metric_family(m)
        if family not in REFERENCE:
            raise ValueError(f"no fixed hypervolume reference for {m!r}: objectives must be among the metric "
                             f"families {', '.join(sorted(REFERENCE))} (study.pareto.REFERENCE)")
        ref.append(REFERENCE[family])
    return np.array(ref, dtype=float)


def staircase(values, directions: Sequence[str], reference=None) -> np.ndarray:
    """Vertices [K, 2] of the 2-D front of ``values`` [N, 2] drawn as steps: the boundary of
    the region the front dominates. With ``reference`` the steps start and end on the
    reference's lines (the region whose area is the hypervolume)."""
    losses = as_losses(values, directions)
    sign = np.array([-1.0 if d == "max" else 1.0 for d in _check_directions(directions, 2)])
    front = losses[pareto_front(values, directions)]
    if front.shape[0] == 0:
        return np.zeros((0, 2))
    front = np.unique(front, axis=0)                       # sorted by the first loss
    verts = []
    for i, (x, y) in enumerate(front):
        verts.append((x, y))
        if i + 1 < len(front):
            verts.append((front[i + 1, 0], y))             # along x at this height, then down
    if reference is not None:
        ref = np.asarray(reference, float) * sign
        verts = [(front[0, 0], ref[1])] + verts + [(ref[0], front[-1, 1])]
    return np.array(verts) * sign


def _hv2d(points: np.ndarray, ref: np.ndarray) -> float:
    """Exact 2-D hypervolume of loss points that are all strictly better than ``ref``."""
    order = np.lexsort((points[:, 1], points[:, 0]))  # by x, then y
    hv = 0.0
    best_y = ref[1]
    for x, y in points[order]:
        if y < best_y:
            hv += (ref[0] - x) * (best_y - y)
            best_y = y
    return float(hv)


def _hv(points: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume (HSO) of loss points that are all strictly better than ``ref``."""
    n, m = points.shape
    if n == 0:
        return 0.0
    if m == 1:
        return float(ref[0] - points[:, 0].min())
    if m == 2:
        return _hv2d(points, ref)
    points = points[_nondominated_losses(points)]
    order = np.argsort(points[:, -1], kind="stable")
    points = points[order]
    hv = 0.0
    for i in range(points.shape[0]):
        upper = points[i + 1, -1] if i + 1 < points.shape[0] else ref[-1]
        depth = upper - points[i, -1]
        if depth <= 0:
            continue
        hv += depth * _hv(points[: i + 1, :-1], ref[:-1])
    return float(hv)


def hypervolume(front, directions: Sequence[str], reference) -> float:
    """Exact hypervolume dominated by ``front`` [N, M] (original units) and bounded by
    ``reference`` (original units, see :func:`reference_point`).

    Any set of points may be passed (dominated ones add nothing); non-finite rows and
    points not strictly better than the reference in every objective are ignored.
    """
    losses = as_losses(front, directions)
    ref = as_losses(np.asarray(reference, dtype=float).reshape(1, -1), directions)[0]
    if not np.isfinite(ref).all():
        raise ValueError(f"reference point must be finite, got {reference}")
    losses = losses[np.isfinite(losses).all(axis=1)]
    losses = losses[(losses < ref).all(axis=1)]
    if losses.shape[0] == 0:
        return 0.0
    return _hv(losses, ref)


def hypervolume_history(values, directions: Sequence[str], reference: Sequence[float]) -> np.ndarray:
    """Hypervolume of the front of the first k rows, for k = 1..N (``values`` in the order
    the trials completed), all against one ``reference``. Non-finite rows leave the
    hypervolume unchanged."""
    arr = _as_2d(values)
    out = np.zeros(arr.shape[0], dtype=float)
    ok = finite_rows(arr)
    current = 0.0
    for k in range(arr.shape[0]):
        if ok[k]:
            upto = arr[: k + 1][ok[: k + 1]]
            current = hypervolume(upto[pareto_front(upto, directions)], directions, reference)
        out[k] = current
    return out
