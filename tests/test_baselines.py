"""trainables.baselines on a tiny FeatureTable of separable synthetic spectrograms."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from features.table import FeatureTable
from trainables.baselines import BaselineResult, flatten_features, run_baseline

F, T = 6, 5
CLASSES = ["a", "b", "c"]


def _table(n_per: int = 12, seed: int = 0, noise: float = 0.05) -> FeatureTable:
    """Three classes, each a distinct random spectro-temporal pattern plus small noise; the
    last frame of every other clip is padding (mask 0, spectrogram 0)."""
    rng = np.random.default_rng(seed)
    patterns = rng.random((len(CLASSES), F, T))
    label_index = np.repeat(np.arange(len(CLASSES)), n_per)
    n = len(label_index)
    spec = np.clip(patterns[label_index] + noise * rng.normal(size=(n, F, T)), 0, 1)
    mask = np.ones((n, T), dtype=np.float32)
    mask[::2, -1] = 0
    spec = spec * mask[:, None, :]
    # per class: half train, a quarter val, a quarter test
    pos = np.tile(np.arange(n_per), len(CLASSES))
    split = np.where(pos < n_per // 2, "train", np.where(pos < 3 * n_per // 4, "val", "test"))
    order = rng.permutation(n)  # rows not grouped by class
    ids = np.array([f"clip{i:03d}" for i in range(n)])
    return FeatureTable(
        ids=ids[order],
        spectrogram=torch.tensor(spec[order], dtype=torch.float16),
        mask=torch.tensor(mask[order]),
        norm_stats=torch.zeros(n, 4),
        labels=np.array(CLASSES)[label_index][order],
        label_index=torch.tensor(label_index[order], dtype=torch.int64),
        classes=list(CLASSES),
        groups=np.array(["g"] * n),
        split=split[order],
        preset=None,
        cache_key="test",
    )


def test_flatten_features_applies_mask():
    table = _table()
    table.spectrogram[:, :, -1] = 1.0  # values in the last frame, padding or not
    x = flatten_features(table)
    assert x.shape == (len(table), F * T) and x.dtype == np.float32
    last = x.reshape(-1, F, T)[:, :, -1]
    pad = table.mask[:, -1].numpy() == 0
    assert pad.any() and (~pad).any()
    assert np.all(last[pad] == 0) and np.all(last[~pad] == 1)
    np.testing.assert_allclose(x[~pad], table.spectrogram[torch.tensor(~pad)].float().reshape(-1, F * T).numpy())
    assert flatten_features(table.take(np.array([], dtype=int))).shape == (0, F * T)


@pytest.mark.parametrize("method", ["kmeans", "gmm", "labels"])
def test_baselines_cluster_separable_blobs(method):
    table = _table()
    res = run_baseline(method, table, n_clusters=3, seed=0)
    assert isinstance(res, BaselineResult)
    m = res.metrics
    for split in ("val", "test"):
        if method == "labels":
            assert m[f"{split}/acc"] == 1.0 and m[f"{split}/nmi"] == pytest.approx(1.0)
        else:
            assert m[f"{split}/acc"] >= 0.9
        assert m[f"{split}/collapsed"] == 0.0
        assert m[f"{split}/silhouette_x"] > 0.5  # the classes are well separated in x
        assert math.isfinite(m[f"{split}/dbi_x"]) and m[f"{split}/chi_x"] > 0
    # one cluster per row of the table, in table order
    assert res.clusters.shape == (len(table),)
    np.testing.assert_array_equal(res.ids, table.ids)
    a = res.assignments()
    assert set(a["split"]) == {"val", "test"}
    assert len(a["id"]) == int(np.isin(table.split, ["val", "test"]).sum())
    if method == "labels":
        np.testing.assert_array_equal(res.clusters, table.label_index.numpy())
    if method == "gmm":
        assert res.probabilities.shape == (len(table), 3)
        np.testing.assert_allclose(res.probabilities.sum(1), 1.0, atol=1e-4)
        np.testing.assert_array_equal(res.probabilities.argmax(1), res.clusters)
    else:
        assert res.probabilities is None


def test_metric_keys_identical_across_methods_and_seeded():
    table = _table(seed=1)
    results = {m: run_baseline(m, table, n_clusters=3, seed=3) for m in ("kmeans", "gmm", "labels")}
    keysets = {m: set(r.metrics) for m, r in results.items()}
    assert keysets["kmeans"] == keysets["gmm"] == keysets["labels"]
    assert {"val/acc", "test/acc", "val/silhouette_x", "test/dbi_x", "val/chi_x"} <= keysets["kmeans"]
    again = run_baseline("kmeans", table, n_clusters=3, seed=3)
    np.testing.assert_array_equal(again.clusters, results["kmeans"].clusters)
    assert again.metrics == results["kmeans"].metrics


def test_baseline_options_and_errors():
    table = _table(seed=2)
    # more clusters than classes: accuracy is bounded by the one-to-one matching
    res = run_baseline("kmeans", table, n_clusters=5, seed=0)
    assert res.metrics["val/acc"] <= 1.0 and res.info["n_clusters"] == 5
    assert res.clusters.max() < 5
    # n_clusters None -> number of classes
    assert run_baseline("kmeans", table, seed=0).info["n_clusters"] == 3
    # full covariance with forced PCA
    full = run_baseline("gmm", table, n_clusters=3, covariance_type="full", pca_components=4)
    assert full.info["pca_components"] == 4 and full.metrics["val/acc"] >= 0.9
    with pytest.raises(ValueError):
        run_baseline("dbscan", table, n_clusters=3)
    with pytest.raises(ValueError):
        run_baseline("gmm", table, n_clusters=3, covariance_type="banana")
    with pytest.raises(ValueError):
        run_baseline("kmeans", table.take(np.flatnonzero(table.split != "train")), n_clusters=3)


def _two_scales_table(n_per: int = 20, seed: int = 0) -> FeatureTable:
    """Two classes told apart by one small-scale dimension, next to a large-scale noise dimension:
    K-means on the raw values follows the noise, on standardised values the classes."""
    rng = np.random.default_rng(seed)
    label_index = np.repeat([0, 1], n_per)
    n = len(label_index)
    spec = np.zeros((n, 2, 1), dtype=np.float32)
    spec[:, 0, 0] = 0.01 * (2 * label_index - 1) + 0.001 * rng.normal(size=n)  # the classes, tiny scale
    spec[:, 1, 0] = rng.normal(size=n)  # unimodal noise, large scale
    split = np.array(["train", "val", "test", "train"] * (n // 4))
    return FeatureTable(ids=np.array([f"c{i:03d}" for i in range(n)]),
                        spectrogram=torch.tensor(spec, dtype=torch.float32),
                        mask=torch.ones(n, 1), norm_stats=torch.zeros(n, 4), labels=np.array(["a", "b"])[label_index],
                        label_index=torch.tensor(label_index), classes=["a", "b"], groups=np.array(["g"] * n),
                        split=split, preset=None, cache_key="t")


def test_standardising_every_dimension_reproduces_a_known_case():
    from trainables.baselines import BASELINES

    table = _two_scales_table()
    raw = BASELINES["kmeans"].run(table, 2, 0).metrics
    std = BASELINES["kmeans_std"].run(table, 2, 0).metrics
    assert std["test/acc"] == 1.0 and std["val/acc"] == 1.0  # the classes, once scales are equal
    assert raw["test/acc"] < 0.8  # the raw values split along the noise
    gmm = BASELINES["gmm_std"].run(table, 2, 0)
    assert gmm.metrics["test/acc"] == 1.0 and gmm.info["covariance_type"] == "full"
    assert gmm.info["pca_components"] == 2  # PCA-20 capped at the dimension


def test_suite_names_the_strongest_and_keeps_side_information_apart():
    from study.baselines import baseline_metrics, suite_rows
    from trainables.baseline_suite import SuiteResult, strongest

    rows = [SuiteResult("kmeans", "K", "p", False, {"val/acc": 0.4, "test/acc": 0.9}),
            SuiteResult("awe_gmm", "G", "awe", False, {"val/acc": 0.6, "test/acc": 0.5}),
            SuiteResult("awe_speaker_gmm", "S", "awe_speaker", True, {"val/acc": 0.8, "test/acc": 0.7})]
    assert strongest(rows).name == "awe_gmm"  # chosen on validation, not test
    assert strongest(rows, side_information=True).name == "awe_speaker_gmm"
    m = baseline_metrics(suite_rows(rows))
    assert m["baseline/awe_gmm_val_acc"] == 0.6 and m["baseline/kmeans_test_acc"] == 0.9


def test_reference_rows_are_matched_by_id_and_take_the_model_split():
    from trainables.baseline_suite import align_to

    table = _table()
    ref = table.take(np.arange(len(table))[::-1])  # same clips, other order
    ref.split = np.array(["train"] * len(ref))
    ref = ref.take(np.arange(1, len(ref)))  # one clip missing
    out = align_to(ref, table)
    keep = np.isin(table.ids, ref.ids)
    assert list(out.ids) == list(table.ids[keep]) and list(out.split) == list(table.split[keep])
    assert torch.equal(out.spectrogram, table.spectrogram[torch.as_tensor(keep)])


def test_factorial_mixture_recovers_content_under_a_style_offset():
    """Three words said by two 'speakers' whose offset is larger than the words' differences:
    K-means with 3 clusters splits by speaker; the factorial mixture (3 content x 2 styles),
    its styles started from the clips' per-row statistics, recovers the words."""
    from trainables.models.factorial import fit_factorial

    rng = np.random.default_rng(0)
    n, f, t = 60, 4, 3
    word, speaker = np.arange(n) % 3, (np.arange(n) // 3) % 2
    words = rng.normal(size=(3, f, t))
    offset = np.stack([np.zeros((f, t)), np.full((f, t), 6.0)])
    x = words[word] + offset[speaker] + 0.05 * rng.normal(size=(n, f, t))
    flat = x.reshape(n, -1)
    stats = np.concatenate([x.mean(2), x.std(2)], axis=1)
    fm = fit_factorial(flat, 3, 2, stats, seed=0)
    content = fm.responsibilities(flat).sum(2).argmax(1)
    from trainables.metrics import unsupervised_accuracy
    assert unsupervised_accuracy(word, content) == 1.0
    style = fm.responsibilities(flat).sum(1).argmax(1)
    assert unsupervised_accuracy(speaker, style) == 1.0
    from sklearn.cluster import KMeans
    assert unsupervised_accuracy(word, KMeans(3, n_init=10, random_state=0).fit_predict(flat)) < 0.9
    np.testing.assert_allclose(fm.weights.sum(), 1.0, atol=1e-9)
    assert np.abs(fm.style.mean(0)).max() < 1e-9  # the style offsets are centred


def test_baseline_names_are_unique_whatever_front_ends_a_study_trains_on():
    from features.presets import PRESETS
    from trainables.baseline_suite import OWN_BASELINES, REFERENCE_BASELINES, own_name

    references = {f"{ref}_{short}" for ref, kinds in REFERENCE_BASELINES.items() for short in kinds}
    own = [own_name(p, b) for p in PRESETS for b in OWN_BASELINES]
    assert len(set(own)) == len(own) and not (set(own) & references) and not (set(OWN_BASELINES) & references)


def test_gmm_refits_with_more_regularisation_when_a_component_collapses():
    """sklearn refuses a full-covariance component on collapsed points (an ill-defined covariance);
    fit_gmm refits with 10x reg_covar instead of failing the whole baseline suite (seen on FSDD's
    speaker-disjoint split)."""
    from trainables.baselines import fit_gmm
    rng = np.random.default_rng(0)
    # 3 distinct points repeated, in 6 dimensions: 4 full-covariance components cannot all be regular
    x = np.repeat(rng.normal(size=(3, 6)).astype(np.float32), 20, axis=0)
    from sklearn.mixture import GaussianMixture
    with pytest.raises(ValueError, match="ill-defined empirical covariance"):
        GaussianMixture(4, covariance_type="full", reg_covar=0.0, init_params="kmeans", random_state=0).fit(x)
    gmm, _ = fit_gmm(x, 4, 0, covariance_type="full", reg_covar=0.0, pca_components=0)
    assert gmm.reg_covar > 0.0 and np.isfinite(gmm.covariances_).all()
