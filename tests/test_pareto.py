"""Pareto front and hypervolume on hand-made cases, checked against brute force and Optuna."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from study.pareto import (REFERENCE, as_losses, hypervolume, hypervolume_history, pareto_front,
                             reference_point, staircase)


def brute_front(values, directions):
    """Independent O(N^2) definition, written out loop by loop."""
    losses = as_losses(values, directions)
    n = len(losses)
    out = []
    for i in range(n):
        if not np.isfinite(losses[i]).all():
            out.append(False)
            continue
        dominated = False
        for j in range(n):
            if j == i or not np.isfinite(losses[j]).all():
                continue
            if all(losses[j] <= losses[i]) and any(losses[j] < losses[i]):
                dominated = True
                break
        out.append(not dominated)
    return np.array(out)


def test_front_max_max_simple():
    v = [[1, 5], [2, 4], [3, 3], [2, 2], [0, 0], [3, 5]]
    mask = pareto_front(v, ["max", "max"])
    # (3,5) dominates everything else
    assert mask.tolist() == [False, False, False, False, False, True]


def test_front_mixed_directions_dbi_min():
    # columns: accuracy (max), DBI (min)
    v = [[0.7, 1.6], [0.76, 0.07], [0.18, 2.04], [0.8, 3.0], [0.76, 0.5]]
    mask = pareto_front(v, ["max", "min"])
    assert mask.tolist() == [False, True, False, True, False]
    # the same data read with both maximised gives a different front
    mask2 = pareto_front(v, ["max", "max"])
    assert mask2.tolist() == [False, False, False, True, False]


def test_ties_all_kept_and_dominated_duplicates_dropped():
    v = [[1.0, 1.0], [1.0, 1.0], [0.5, 0.5], [0.5, 0.5], [1.0, 0.2]]
    mask = pareto_front(v, ["max", "max"])
    assert mask.tolist() == [True, True, False, False, False]
    # weak domination: equal in one objective, better in the other -> dominated
    v2 = [[1.0, 2.0], [1.0, 1.0]]
    assert pareto_front(v2, ["max", "max"]).tolist() == [True, False]


def test_nan_and_inf_rows_excluded():
    v = [[np.nan, 10.0], [1.0, 1.0], [np.inf, 0.0], [0.0, 2.0], [5.0, -np.inf]]
    mask = pareto_front(v, ["max", "max"])
    assert mask.tolist() == [False, True, False, True, False]
    assert not pareto_front([[np.nan, np.nan]], ["max", "min"]).any()


def test_three_objectives_against_brute_force():
    rng = np.random.default_rng(0)
    for trial in range(20):
        v = rng.integers(0, 5, size=(30, 3)).astype(float)  # many ties
        v[rng.random(30) < 0.1, rng.integers(0, 3)] = np.nan
        dirs = [["max", "min", "max"], ["min", "min", "min"], ["max", "max", "min"]][trial % 3]
        assert pareto_front(v, dirs).tolist() == brute_front(v, dirs).tolist()


def test_bad_directions_raise():
    with pytest.raises(ValueError):
        pareto_front([[1, 2]], ["max"])
    with pytest.raises(ValueError):
        pareto_front([[1, 2]], ["max", "up"])


def test_hypervolume_2d_by_hand():
    # maximise both, reference (0, 0): union of rectangles [0,1]x[0,3], [0,2]x[0,2], [0,3]x[0,1]
    front = [[1, 3], [2, 2], [3, 1]]
    assert hypervolume(front, ["max", "max"], [0, 0]) == pytest.approx(3 + 2 + 1)
    # dominated and duplicate points add nothing; NaN ignored
    more = front + [[1, 1], [2, 2], [np.nan, 9]]
    assert hypervolume(more, ["max", "max"], [0, 0]) == pytest.approx(6)
    # min/max mix: acc max, dbi min, ref (0, 4): rectangles 0.5*(4-1) + (0.8-0.5)*(4-2)
    hv = hypervolume([[0.5, 1.0], [0.8, 2.0]], ["max", "min"], [0.0, 4.0])
    assert hv == pytest.approx(0.5 * 3 + 0.3 * 2)
    # points not strictly better than the reference contribute nothing
    assert hypervolume([[0, 5]], ["max", "max"], [0, 0]) == 0.0
    assert hypervolume(np.zeros((0, 2)), ["max", "max"], [0, 0]) == 0.0


def test_hypervolume_3d_by_hand_and_against_optuna():
    # one box 2x3x4 and a second box 1x1x5 overlapping it in 1x1x4
    front = [[2, 3, 4], [1, 1, 5]]
    assert hypervolume(front, ["max"] * 3, [0, 0, 0]) == pytest.approx(24 + 1)
    from optuna._hypervolume import compute_hypervolume

    rng = np.random.default_rng(1)
    for m in (3, 4):
        for _ in range(5):
            v = rng.random((25, m))
            dirs = ["max" if i % 2 == 0 else "min" for i in range(m)]
            ref = np.where(np.array(dirs) == "max", -0.1, 1.1)  # beyond the data's [0, 1)
            ours = hypervolume(v[pareto_front(v, dirs)], dirs, ref)
            losses = as_losses(v, dirs)
            theirs = compute_hypervolume(losses, as_losses(ref[None, :], dirs)[0])
            assert ours == pytest.approx(theirs, rel=1e-9)
            assert ours > 0


def test_reference_point_is_fixed_by_the_metric_bounds():
    # worst end of each metric's range, whatever the data
    assert reference_point(["val/acc", "val/silhouette_z", "val/dbi_y", "test/nmi"]).tolist() == [0.0, -1.0, 5.0, 0.0]
    assert reference_point(["val/chi_x", "val/ari"]).tolist() == [0.0, -1.0]
    # every family with a reference is a family with a direction, and the reference lies at the worse end
    from trainables.metrics import DIRECTIONS
    assert set(REFERENCE) <= set(DIRECTIONS)
    with pytest.raises(ValueError, match="no fixed hypervolume reference for 'val/time_s'"):
        reference_point(["val/acc", "val/time_s"])


def test_staircase_steps_along_the_dominated_region():
    # max/max: from the reference's x-line up to the best-y point, steps only (no diagonal)
    v = [[1, 3], [2, 2], [3, 1], [1, 1]]
    st = staircase(v, ["max", "max"], [0, 0])
    assert st.tolist() == [[3, 0], [3, 1], [2, 1], [2, 2], [1, 2], [1, 3], [0, 3]]
    assert all(a[0] == b[0] or a[1] == b[1] for a, b in zip(st[:-1], st[1:]))
    # the area under the steps is the hypervolume
    xs, ys = st[:, 0], st[:, 1]
    area = sum((xs[i] - xs[i + 1]) * ys[i] for i in range(len(st) - 1) if ys[i] == ys[i + 1])
    assert area == pytest.approx(hypervolume(v, ["max", "max"], [0, 0]))
    # max/min (accuracy up, DBI down): the corner lies at the worse value of each pair
    st = staircase([[0.5, 1.0], [0.8, 2.0], [0.4, 3.0]], ["max", "min"], [0.0, 5.0])
    assert st.tolist() == [[0.8, 5.0], [0.8, 2.0], [0.5, 2.0], [0.5, 1.0], [0.0, 1.0]]
    assert staircase([[np.nan, 1.0]], ["max", "max"]).shape == (0, 2)


def test_hypervolume_history_monotone_and_matches_final():
    rng = np.random.default_rng(3)
    v = rng.random((15, 2))
    v[4] = [np.nan, 0.5]
    dirs = ["max", "min"]
    ref = [0.0, 1.0]
    hist = hypervolume_history(v, dirs, ref)
    assert hist.shape == (15,)
    assert np.all(np.diff(hist) >= -1e-12)
    assert hist[4] == hist[3]  # the NaN trial changes nothing
    assert hist[-1] == pytest.approx(hypervolume(v[pareto_front(v, dirs)], dirs, ref))
    # the first value is the box of the first point alone
    first = v[0]
    assert hist[0] == pytest.approx((first[0] - ref[0]) * (ref[1] - first[1]))


def test_hypervolume_2d_matches_grid_count():
    """Independent check: count grid cells dominated by the front."""
    pts = np.array([[3, 7], [5, 5], [8, 2], [6, 1]])
    ref = np.array([0, 0])
    grid = 0
    for x, y in itertools.product(range(10), range(10)):
        cx, cy = x + 0.5, y + 0.5
        if any(cx < px and cy < py for px, py in pts):
            grid += 1
    assert hypervolume(pts, ["max", "max"], ref) == pytest.approx(grid)


def test_one_direction_table_for_study_and_analysis():
    from study.objectives import parse_objective
    from trainables.metrics import DIRECTIONS, metric_direction, metric_family

    assert metric_family("val/dbi_z") == "dbi" and metric_family("test/occupancy_max") == "occupancy_max"
    assert [metric_direction(m) for m in ("val/dbi_y", "val/silhouette_x", "val/acc", "train/loss")] == \
        ["min", "max", "max", "min"]
    # the study's parser takes its default direction from the same table
    for family, direction in DIRECTIONS.items():
        assert parse_objective(f"val/{family}").mode == direction
    with pytest.raises(ValueError, match="no known direction for 'val/n_clusters_used'"):
        metric_direction("val/n_clusters_used")
