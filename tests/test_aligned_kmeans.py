"""K-means within each speaker with the speakers' clusters matched (trainables.aligned_kmeans, the
suite's ``awe_speaker_aligned``): a known case where K-means over all clips finds the speakers, clips
of a speaker unseen in training, the baseline run on a feature table, and clear errors."""
from __future__ import annotations

import numpy as np
import pytest

from trainables.aligned_kmeans import fit_aligned_kmeans
from trainables.baselines import BASELINES, fit_kmeans, run_baseline
from trainables.baseline_suite import REFERENCE_BASELINES
from trainables.metrics import unsupervised_accuracy

from tests.test_baselines import _table

WORDS = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])  # three words in two dimensions
OFFSETS = {"ann": np.array([0.0, 0.0]), "bob": np.array([9.0, 1.0]), "cid": np.array([-2.0, 9.0])}


def _clips(speakers, n_per=40, seed=0):
    """Each speaker says each word n_per times: the word's point plus the speaker's offset, plus noise."""
    rng = np.random.default_rng(seed)
    x, word, who = [], [], []
    for s in speakers:
        for w, centre in enumerate(WORDS):
            x.append(centre + OFFSETS[s] + rng.normal(scale=0.4, size=(n_per, 2)))
            word += [w] * n_per
            who += [s] * n_per
    x = np.concatenate(x)
    return np.hstack([x, rng.normal(scale=0.1, size=(len(x), 2))]), np.array(word), np.array(who)


def test_aligned_kmeans_finds_the_words_where_kmeans_finds_the_speakers():
    x, word, who = _clips(["ann", "bob", "cid"])
    km = fit_kmeans(x, 3, seed=0).labels_
    assert unsupervised_accuracy(word, km) < 0.5  # the speakers are further apart than the words
    aligned = fit_aligned_kmeans(x, who, 3, seed=0)
    assert unsupervised_accuracy(word, aligned.predict(x, who)) > 0.98
    assert set(aligned.centroids) == {"ann", "bob", "cid"} and aligned.reference in aligned.centroids
    # each cluster holds the same word for every speaker: the matching, not only the per-speaker fits
    pred = aligned.predict(x, who)
    for w in range(3):
        assert len({int(np.bincount(pred[(word == w) & (who == s)]).argmax()) for s in OFFSETS}) == 1


def test_a_speaker_not_seen_in_training_takes_the_consensus_centroids():
    x, word, who = _clips(["ann", "bob"])
    aligned = fit_aligned_kmeans(x, who, 3, seed=0)
    # a new speaker half way between the two: nearest to the consensus of each word
    new = np.hstack([WORDS + (OFFSETS["ann"] + OFFSETS["bob"]) / 2, np.zeros((3, 2))])
    got = aligned.predict(new, ["dan"] * 3)
    train_pred = aligned.predict(x, who)
    expected = [int(np.bincount(train_pred[word == w]).argmax()) for w in range(3)]
    assert list(got) == expected


def test_aligned_kmeans_runs_as_a_baseline_on_a_feature_table():
    table = _table()
    table.groups = np.where(np.arange(len(table)) % 2 == 0, "ann", "bob")
    res = run_baseline("aligned_kmeans", table, n_clusters=3, seed=0)
    assert res.metrics["val/acc"] >= 0.9 and res.metrics["test/acc"] >= 0.9
    assert res.info["speakers"] == 2 and res.info["reference_speaker"] in ("ann", "bob")
    assert res.clusters.shape == (len(table),) and res.probabilities is None
    again = run_baseline("aligned_kmeans", table, n_clusters=3, seed=0)
    np.testing.assert_array_equal(again.clusters, res.clusters)
    # registered, and run by the suite on the per-speaker front end
    assert BASELINES["aligned_kmeans"].standardise
    assert REFERENCE_BASELINES["awe_speaker"]["aligned"] == "aligned_kmeans"


def test_aligned_kmeans_errors_are_clear():
    x, word, who = _clips(["ann", "bob"])
    with pytest.raises(ValueError, match="speaker ids for"):
        fit_aligned_kmeans(x, who[:10], 3, seed=0)
    few = fit_aligned_kmeans(x[:122], who[:122], 3, seed=0)  # bob has 2 clips: assigned as an unseen speaker
    assert set(few.centroids) == {"ann"} and len(few.predict(x[:122], who[:122])) == 122
    with pytest.raises(ValueError, match="no speaker has 3 training clips"):
        fit_aligned_kmeans(x[:2], who[:2], 3, seed=0)
    table = _table()
    table.groups = None
    with pytest.raises(ValueError, match="needs the speaker of every clip"):
        run_baseline("aligned_kmeans", table, n_clusters=3, seed=0)
