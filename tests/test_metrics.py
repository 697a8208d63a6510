"""trainables.metrics: Hungarian accuracy, NMI/ARI, cluster quality, collapse handling."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from sklearn.metrics import silhouette_score

from trainables.metrics import (
    DIRECTIONS,
    ari,
    cluster_occupancy,
    cluster_quality,
    clustering_metrics,
    nmi,
    unsupervised_accuracy,
)


def _brute_force_accuracy(t: np.ndarray, p: np.ndarray) -> float:
    """Best one-to-one cluster -> class mapping by exhaustive search."""
    classes, clusters = list(np.unique(t)), list(np.unique(p))
    best = 0
    if len(clusters) <= len(classes):
        for image in itertools.permutations(classes, len(clusters)):
            mapping = dict(zip(clusters, image))
            best = max(best, sum(mapping[c] == y for c, y in zip(p, t)))
    else:
        for chosen in itertools.permutations(clusters, len(classes)):
            mapping = dict(zip(chosen, classes))
            best = max(best, sum(mapping.get(c, object()) == y for c, y in zip(p, t)))
    return best / len(t)


def _blobs(rng, n_per: int, k: int, d: int, spread: float, sep: float):
    centres = rng.normal(size=(k, d)) * sep
    x = np.concatenate([c + spread * rng.normal(size=(n_per, d)) for c in centres])
    y = np.repeat(np.arange(k), n_per)
    return x, y


def test_permuted_labelling_is_perfect():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, size=200)
    perm = rng.permutation(5) + 10  # different ids, not even starting at 0
    pred = perm[y]
    assert unsupervised_accuracy(y, pred) == 1.0
    assert nmi(y, pred) == pytest.approx(1.0)
    assert ari(y, pred) == pytest.approx(1.0)
    # string labels work too
    names = np.array(list("abcde"))[y]
    assert unsupervised_accuracy(names, pred) == 1.0


@pytest.mark.parametrize("n_classes,n_clusters", [(3, 5), (4, 2), (3, 3), (2, 6)])
def test_accuracy_matches_brute_force(n_classes, n_clusters):
    rng = np.random.default_rng(n_classes * 10 + n_clusters)
    for _ in range(5):
        t = rng.integers(0, n_classes, size=40)
        p = rng.integers(0, n_clusters, size=40)
        acc = unsupervised_accuracy(t, p)
        assert 0.0 <= acc <= 1.0
        assert acc == pytest.approx(_brute_force_accuracy(t, p))


def test_more_clusters_than_classes_counts_unmatched_as_errors():
    t = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0, 0, 1, 1, 2, 2, 3, 3])  # each class split over two pure clusters
    # one-to-one matching: only one cluster per class is credited
    assert unsupervised_accuracy(t, p) == pytest.approx(0.5)
    assert unsupervised_accuracy(t, p) == pytest.approx(_brute_force_accuracy(t, p))


def test_nmi_uses_arithmetic_mean_and_random_is_near_zero():
    rng = np.random.default_rng(1)
    t = rng.integers(0, 4, size=60)
    p = np.where(rng.random(60) < 0.7, t, rng.integers(0, 3, size=60))
    cont = np.zeros((4, 4))
    np.add.at(cont, (t, p), 1)
    pxy = cont / cont.sum()
    px, py = pxy.sum(1), pxy.sum(0)
    nzm = pxy > 0
    mi = (pxy[nzm] * np.log(pxy[nzm] / np.outer(px, py)[nzm])).sum()
    hx = -(px[px > 0] * np.log(px[px > 0])).sum()
    hy = -(py[py > 0] * np.log(py[py > 0])).sum()
    assert nmi(t, p) == pytest.approx(mi / ((hx + hy) / 2))
    assert nmi(t, p) != pytest.approx(mi / math.sqrt(hx * hy))  # not the geometric mean

    big_t = rng.integers(0, 5, size=5000)
    big_p = rng.integers(0, 5, size=5000)
    assert nmi(big_t, big_p) < 0.01
    assert abs(ari(big_t, big_p)) < 0.01
    assert unsupervised_accuracy(big_t, big_p) < 0.3


def test_cluster_occupancy():
    occ = cluster_occupancy(np.array([0, 0, 2, 2, 2, 0, 0, 0]), 4)
    np.testing.assert_allclose(occ, [5 / 8, 0, 3 / 8, 0])
    assert occ.sum() == pytest.approx(1.0)
    assert len(cluster_occupancy(np.array([1, 1, 3]))) == 4
    with pytest.raises(ValueError):
        cluster_occupancy(np.array([0, 5]), 3)


def test_collapse_gives_nan_and_flag_without_raising():
    rng = np.random.default_rng(2)
    n = 50
    y = rng.integers(0, 3, size=n)
    pred = np.full(n, 4)
    reps = {"z": rng.normal(size=(n, 3)), "y": np.eye(5)[pred]}
    m = clustering_metrics(y, pred, reps, prefix="val/", n_clusters=5)
    assert m["val/collapsed"] == 1.0
    assert m["val/n_clusters_used"] == 1.0
    assert m["val/occupancy_max"] == 1.0
    assert m["val/occupancy_entropy"] == 0.0
    for r in ("z", "y"):
        for name in ("silhouette", "dbi", "chi"):
            assert math.isnan(m[f"val/{name}_{r}"])
    assert m["val/nmi"] == pytest.approx(0.0)
    assert m["val/ari"] == pytest.approx(0.0)
    assert m["val/acc"] == pytest.approx(np.bincount(y).max() / n)

    # as many clusters as rows: sklearn raises there, we return NaN
    q = cluster_quality(rng.normal(size=(6, 2)), np.arange(6))
    assert all(math.isnan(v) for v in q.values())


def test_non_finite_features_give_nan():
    rng = np.random.default_rng(3)
    x, y = _blobs(rng, 10, 3, 2, 0.1, 5.0)
    x[4, 1] = np.nan
    q = cluster_quality(x, y)
    assert all(math.isnan(v) for v in q.values())


def test_keys_and_namespaces():
    rng = np.random.default_rng(4)
    x, y = _blobs(rng, 20, 3, 4, 0.2, 4.0)
    m = clustering_metrics(y, y, {"z": x, "x": x.reshape(-1, 2, 2)}, prefix="test/", n_clusters=4)
    expected = {f"test/{k}" for k in ("acc", "nmi", "ari", "n_clusters_used", "collapsed",
                                      "occupancy_max", "occupancy_entropy")}
    expected |= {f"test/{q}_{r}" for q in ("silhouette", "dbi", "chi") for r in ("z", "x")}
    assert set(m) == expected
    assert all(isinstance(v, float) for v in m.values())
    assert m["test/collapsed"] == 0.0 and m["test/n_clusters_used"] == 3.0
    assert m["test/acc"] == 1.0
    # 3 equal clusters out of 4 possible
    assert m["test/occupancy_entropy"] == pytest.approx(math.log(3) / math.log(4))
    assert m["test/silhouette_z"] == pytest.approx(m["test/silhouette_x"])  # same data, reshaped
    # every emitted metric family has a direction the study can resolve
    for key in m:
        base = key.split("/")[-1]
        if base in ("n_clusters_used", "collapsed"):
            continue
        fam = base if base in DIRECTIONS else base.split("_")[0]
        assert DIRECTIONS[fam] in ("max", "min")
    assert DIRECTIONS["dbi"] == "min" and DIRECTIONS["silhouette"] == "max"


def test_silhouette_sampling_reproducible_and_used_above_threshold():
    rng = np.random.default_rng(5)
    x, y = _blobs(rng, 100, 3, 3, 1.5, 2.0)  # 300 rows, overlapping so values vary by sample
    a = cluster_quality(x, y, sample_size=80, seed=7)
    b = cluster_quality(x, y, sample_size=80, seed=7)
    c = cluster_quality(x, y, sample_size=80, seed=8)
    full = cluster_quality(x, y, sample_size=None)
    assert a["silhouette"] == b["silhouette"]
    assert a["silhouette"] != c["silhouette"]
    assert a["silhouette"] != full["silhouette"]
    # sampled: the value on the rows drawn by random_state=seed
    idx = np.random.RandomState(7).permutation(len(y))[:80]
    assert a["silhouette"] == pytest.approx(silhouette_score(x[idx], y[idx]))
    # DBI and CHI always use every row
    assert a["dbi"] == full["dbi"] and a["chi"] == full["chi"]
    # below the threshold: every row
    below = cluster_quality(x, y, sample_size=1000, seed=7)
    assert below["silhouette"] == pytest.approx(silhouette_score(x, y))
    # the sample size reaches cluster_quality
    m = clustering_metrics(y, y, {"z": x}, sample_size=80, seed=7)
    assert m["val/silhouette_z"] == a["silhouette"]


def test_quality_direction_separated_vs_overlapping():
    rng = np.random.default_rng(6)
    sep_x, y = _blobs(rng, 40, 3, 2, 0.2, 6.0)
    centres = np.array([sep_x[y == k].mean(0) for k in range(3)])
    # same labels and centres, points pulled far from their centres
    ovl_x = centres[y] + 8.0 * (sep_x - centres[y])
    sep, ovl = cluster_quality(sep_x, y), cluster_quality(ovl_x, y)
    assert sep["dbi"] < ovl["dbi"]
    assert sep["silhouette"] > ovl["silhouette"]
    assert sep["chi"] > ovl["chi"]


def test_empty_split_is_nan_not_error():
    m = clustering_metrics(np.array([], dtype=int), np.array([], dtype=int), {"z": np.zeros((0, 2))})
    assert math.isnan(m["val/acc"]) and math.isnan(m["val/silhouette_z"])
    assert m["val/n_clusters_used"] == 0.0 and m["val/collapsed"] == 1.0
