"""Restarts (trainables.restarts): several initialisations, the best separated kept, no labels used."""
from __future__ import annotations

import math

import numpy as np
import pytest

from trainables.config import ConfigError
from trainables.loop import train
from trainables.models import MODELS
from trainables.restarts import (RESTART_STRIDE, Candidate, VotingEnsemble, choose, most_agreeing, restart_epochs,
                                 restart_metrics, restart_seed, vote_maps)


def test_restart_seed_keeps_the_plain_run_first_and_stays_clear_of_small_seeds():
    assert restart_seed(3, 0) == 3
    seeds = {restart_seed(s, r) for s in range(5) for r in range(4)}
    assert len(seeds) == 20  # the candidates of seeds 0..4 never coincide
    assert restart_seed(0, 1) == RESTART_STRIDE
    with pytest.raises(ValueError):
        restart_seed(0, -1)


def test_choose_takes_the_highest_finite_score_and_skips_failures():
    cands = [Candidate(0, 0, 0.2), Candidate(1, 1, 0.5, "non-finite loss"), Candidate(2, 2, math.nan),
             Candidate(3, 3, 0.4)]
    assert choose(cands).index == 3
    assert choose([Candidate(0, 0, math.nan), Candidate(1, 1, 0.9, "diverged")]) is None
    m = restart_metrics(cands, cands[3])
    assert m["train/restart"] == 3.0 and m["train/restart_silhouette"] == 0.4
    assert m["train/restart_silhouette_mean"] == pytest.approx(0.3)


def test_restart_epochs_zero_is_the_whole_run():
    assert restart_epochs({"restart_epochs": 0, "epochs": 7}) == 7
    assert restart_epochs({"restart_epochs": 3, "epochs": 7}) == 3
    assert restart_epochs({"restart_epochs": 30, "epochs": 7}) == 7


def test_restarts_chosen_inside_the_warm_up_are_refused(tiny_config):
    with pytest.raises(ConfigError, match="warm-up"):
        tiny_config(model="uvac", epochs=10, restarts=3, restart_epochs=1, prior_init="fit", prior_warmup_epochs=5)
    tiny_config(model="uvac", epochs=10, restarts=3, restart_epochs=7, prior_init="fit", prior_warmup_epochs=5)


def _silhouette_of(res):
    return res.metrics["train/restart_silhouette"]


@pytest.mark.parametrize("model", sorted(MODELS))
def test_the_kept_restart_is_the_best_separated_candidate(tiny_table, tiny_config, model):
    """Each candidate is the plain run of its seed; the kept one is the best separated of them, and
    restarts 1 is the plain run itself."""
    base = dict(model=model, epochs=2, checkpoint_every=0)
    plain = [train(tiny_config(**base, seed=restart_seed(0, r)), tiny_table) for r in range(3)]
    res = train(tiny_config(**base, restarts=3), tiny_table)
    assert res.status == "complete", res.reason
    kept = int(res.metrics["train/restart"])
    assert len(res.history) == 2 and res.epochs_done == 2
    # the kept run is the plain run of its candidate seed, epoch by epoch
    for h, p in zip(res.history, plain[kept].history):
        assert h["train/loss"] == pytest.approx(p["train/loss"], rel=1e-6)
    assert res.metrics["test/acc"] == pytest.approx(plain[kept].metrics["test/acc"])
    # and no candidate separates its clusters better on the train split
    assert math.isfinite(_silhouette_of(res))
    assert _silhouette_of(res) >= res.metrics["train/restart_silhouette_mean"] - 1e-12
    # the config recorded is the one asked for (seed 0), not the candidate's
    assert res.config["seed"] == 0 and res.config["restarts"] == 3
    one = train(tiny_config(**base, restarts=1), tiny_table)
    assert "train/restart" not in one.metrics
    assert one.metrics["test/acc"] == pytest.approx(plain[0].metrics["test/acc"])


def test_restarts_then_continue_reports_every_epoch_once(tiny_table, tiny_config):
    seen = []
    cfg = tiny_config(model="uvac", epochs=3, restarts=2, restart_epochs=2, prior_init="paper", checkpoint_every=0)
    res = train(cfg, tiny_table, on_epoch=lambda e, m, fn: seen.append((e, "train/restart" in m)))
    assert res.status == "complete", res.reason
    assert [e for e, _ in seen] == [1, 2, 3]
    assert [flag for _, flag in seen] == [False, True, False]  # the choice is logged in the epoch it was made
    assert "train/restart" in res.metrics  # and kept among the final metrics


def test_restarts_that_all_diverge_give_a_diverged_run(tiny_table, tiny_config):
    """Every candidate diverging gives a diverged run that says why, not an exception (a single
    diverged candidate is skipped: test_choose_takes_the_highest_finite_score_and_skips_failures)."""
    res = train(tiny_config(model="uvac", epochs=2, restarts=2, lr_start=1e30, lr_end=1e29, checkpoint_every=0),
                tiny_table)
    assert res.status == "diverged"
    assert "non-finite" in res.reason


def test_restarts_write_the_kept_state_and_resume_continues_it(tiny_table, tiny_config, tmp_path):
    cfg = tiny_config(model="uvac", epochs=3, restarts=2, restart_epochs=2, prior_init="paper", checkpoint_every=1)
    full = train(cfg, tiny_table)
    ck = tmp_path / "ck"
    stopped = train(cfg, tiny_table, checkpoint_dir=str(ck), on_epoch=lambda e, m, fn: e >= 2)
    assert stopped.status == "stopped" and stopped.epochs_done == 2
    resumed = train(cfg, tiny_table, resume_from=str(ck))
    assert resumed.status == "complete" and resumed.epochs_done == 3
    np.testing.assert_allclose(resumed.history[-1]["train/loss"], full.history[-1]["train/loss"], rtol=1e-6)


def _onehot(c, k):
    return np.eye(k)[np.asarray(c)]


def test_the_vote_recovers_the_partition_the_candidates_share_under_any_naming():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, 200)
    perms = [np.arange(4), np.array([2, 0, 3, 1]), np.array([3, 2, 1, 0])]
    members = [perm[truth] for perm in perms]
    members[1][:30] = rng.integers(0, 4, 30)  # one candidate errs on 30 rows, the others outvote it
    probs = [_onehot(m, 4) for m in members]
    ref = most_agreeing(members)
    assert ref != 1  # the noisy candidate agrees least
    maps = vote_maps(probs, ref)
    assert maps.shape == (3, 4, 4)
    # one-to-one: each map is a permutation matrix, so every consensus cluster gets one whole
    # cluster of every candidate (soft maps let the consensus lose clusters)
    assert set(np.unique(maps)) <= {0.0, 1.0}
    np.testing.assert_allclose(maps.sum(axis=2), 1.0)
    np.testing.assert_allclose(maps.sum(axis=1), 1.0)
    votes = sum(p @ m for p, m in zip(probs, maps)).argmax(axis=1)
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(truth, votes) == 1.0
    assert adjusted_rand_score(truth, members[1]) < 1.0


def test_the_vote_keeps_every_cluster_where_the_candidates_disagree_on_merges():
    # each candidate merges two true clusters, splits another in two and errs on 20 % of the rows:
    # the consensus must still use every cluster (one-to-one maps give each consensus cluster one
    # whole cluster of every candidate; soft maps, P(consensus | cluster), used 5 of 6 here)
    rng = np.random.default_rng(9)
    truth = rng.integers(0, 6, 300)
    members = []
    for _ in range(3):
        m = truth.copy()
        a, b = rng.choice(6, 2, replace=False)
        m[m == b] = a
        half = (truth == rng.integers(0, 6)) & (rng.random(300) < 0.5)
        m[half] = b
        noise = rng.random(300) < 0.2
        m[noise] = rng.integers(0, 6, noise.sum())
        members.append(m)
    probs = [_onehot(m, 6) for m in members]
    maps = vote_maps(probs, most_agreeing(members))
    votes = sum(p @ m for p, m in zip(probs, maps)).argmax(axis=1)
    assert len(np.unique(votes)) == 6


def test_the_vote_refuses_candidates_with_different_numbers_of_clusters():
    with pytest.raises(ValueError, match="one number of clusters"):
        vote_maps([np.eye(3)[[0, 1, 2]], np.eye(4)[[0, 1, 2]]], 0)


def test_the_ensemble_averages_its_members_mapped_probabilities():
    import torch

    class Fixed(torch.nn.Module):
        representations = ("z",)
        reported_representation = "z"

        def __init__(self, probs):
            super().__init__()
            self.p = torch.as_tensor(probs, dtype=torch.float32)

        def infer(self, x, mask=None):
            return {"probs": self.p, "cluster": self.p.argmax(1), "z": self.p * 2}

        def representation_sizes(self):
            return {"z": 2}

    a, b = np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([[0.3, 0.7], [0.6, 0.4]])
    maps = np.stack([np.eye(2), np.array([[0.0, 1.0], [1.0, 0.0]])])  # b names the clusters the other way
    ens = VotingEnsemble([Fixed(a), Fixed(b)], maps, reference=0)
    out = ens.infer(torch.zeros(2, 1))
    np.testing.assert_allclose(out["probs"].numpy(), (a + b[:, ::-1]) / 2, atol=1e-6)
    assert out["cluster"].tolist() == [0, 1]
    np.testing.assert_allclose(out["z"].numpy(), a * 2)  # the reference member's representation


@pytest.mark.parametrize("model", sorted(MODELS))
def test_voting_restarts_report_the_ensemble(tiny_table, tiny_config, model, tmp_path):
    from trainables.evaluation import predict_table
    from trainables.split_data import SplitData

    cfg = tiny_config(model=model, epochs=2, restarts=3, restart_combine="vote", checkpoint_every=0)
    res = train(cfg, tiny_table, checkpoint_dir=str(tmp_path / "ck"))
    assert res.status == "complete", res.reason
    assert "train/restart" in res.metrics and res.epochs_done == 2
    probs = np.asarray(res.assignments["probabilities"])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.array_equal(probs.argmax(axis=1), res.assignments["cluster"])
    # the checkpoint holds the ensemble: loaded again, it assigns every clip as the run reported
    from trainables.checkpoint import load_checkpoint
    from trainables.models import build_model
    from trainables.restarts import load_ensemble

    state = load_checkpoint(tmp_path / "ck", map_location="cpu")
    ens = load_ensemble(state["model"], lambda: build_model(res.config, *tiny_table.shape, preset=tiny_table.preset))
    assert len(ens.members) == 3
    pred = predict_table(ens, SplitData(tiny_table, __import__("torch").device("cpu"), True), res.config)
    assert np.array_equal(pred["cluster"], res.assignments["cluster"])
    # a finished vote resumes as itself: the same clusters, no epoch reported again
    seen = []
    again = train(cfg, tiny_table, resume_from=str(tmp_path / "ck"), on_epoch=lambda e, m, fn: seen.append(e))
    assert again.status == "complete" and seen == []
    assert np.array_equal(again.assignments["cluster"], res.assignments["cluster"])
    assert again.metrics["test/acc"] == pytest.approx(res.metrics["test/acc"])


def _stop_after(polls: int):
    """should_stop: True from its ``polls``-th call on (among the candidates it is polled after every epoch
    but a candidate's last, and between candidates)."""
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) >= polls
    return should_stop


@pytest.mark.parametrize("polls", [2, 3, 4], ids=["inside-candidate-1", "after-candidate-1", "inside-candidate-2"])
def test_a_vote_stopped_among_its_candidates_resumes_to_the_uninterrupted_result(tiny_table, tiny_config, tmp_path,
                                                                                  polls, monkeypatch):
    """Candidates of 3 epochs; the stop comes inside the first (after 2 epochs), between the first and the
    second (3), or inside the second (4); the resumed run trains only the epochs left and votes as if it
    had never stopped."""
    import trainables.restart_loop as restart_loop
    from trainables.checkpoint import load_checkpoint

    cfg = tiny_config(model="uvac", epochs=3, restarts=3, restart_combine="vote", checkpoint_every=1)
    full = train(cfg, tiny_table)
    ck, seen = tmp_path / "ck", []
    stopped = train(cfg, tiny_table, checkpoint_dir=str(ck), should_stop=_stop_after(polls),
                    on_epoch=lambda e, m, fn: seen.append(e))
    assert stopped.status == "stopped" and "among the restarts" in stopped.reason
    assert seen == []  # nothing chosen, nothing reported
    progress = load_checkpoint(ck)["restart_progress"]
    assert len(progress["done"]) == polls // 3 and not progress["chosen"]
    assert (progress["current"] is None) == (polls % 3 == 0)
    trained = []  # a spy on the epochs the resumed run trains (it calls the real run_epoch)
    real_epoch = restart_loop.run_epoch
    monkeypatch.setattr(restart_loop, "run_epoch", lambda run, e, *a: trained.append(e) or real_epoch(run, e, *a))
    resumed = train(cfg, tiny_table, checkpoint_dir=str(ck), resume_from=str(ck),
                    on_epoch=lambda e, m, fn: seen.append(e))
    assert resumed.status == "complete" and seen == [1, 2, 3]
    assert len(trained) == 3 * 3 - polls  # the epochs done before the stop are not trained again
    assert np.array_equal(resumed.assignments["cluster"], full.assignments["cluster"])
    for key in ("val/acc", "test/acc", "train/restart", "train/restart_silhouette_mean"):
        assert resumed.metrics[key] == pytest.approx(full.metrics[key], rel=1e-6), key
    assert load_checkpoint(ck)["restart_progress"]["chosen"]


def test_the_best_candidate_stopped_among_the_candidates_resumes_to_the_uninterrupted_result(tiny_table, tiny_config,
                                                                                            tmp_path):
    """restart_epochs 2 of 3: the stop comes inside the second candidate; the resumed run chooses, continues
    the kept candidate and ends where the uninterrupted run ends."""
    cfg = tiny_config(model="uvac", epochs=3, restarts=2, restart_epochs=2, prior_init="paper", checkpoint_every=1)
    full = train(cfg, tiny_table)
    ck = tmp_path / "ck"
    stopped = train(cfg, tiny_table, checkpoint_dir=str(ck), should_stop=_stop_after(3))
    assert stopped.status == "stopped"
    resumed = train(cfg, tiny_table, checkpoint_dir=str(ck), resume_from=str(ck))
    assert resumed.status == "complete" and resumed.epochs_done == 3
    assert resumed.metrics["train/restart"] == full.metrics["train/restart"]
    np.testing.assert_allclose(resumed.history[-1]["train/loss"], full.history[-1]["train/loss"], rtol=1e-6)
    assert np.array_equal(resumed.assignments["cluster"], full.assignments["cluster"])


def test_a_vote_checkpoint_without_its_candidates_is_refused(tiny_table, tiny_config, tmp_path):
    from trainables.checkpoint import load_checkpoint, save_checkpoint

    cfg = tiny_config(model="uvac", epochs=1, restarts=2, restart_combine="vote", checkpoint_every=1)
    train(cfg, tiny_table, checkpoint_dir=str(tmp_path / "ck"))
    state = load_checkpoint(tmp_path / "ck")
    del state["restart_progress"]  # as written before votes could resume
    save_checkpoint(tmp_path / "old", state)
    with pytest.raises(ValueError, match="cannot resume.*holds no candidates"):
        train(cfg, tiny_table, resume_from=str(tmp_path / "old"))


def test_voting_restarts_train_the_whole_run(tiny_config):
    with pytest.raises(ConfigError, match="whole run"):
        tiny_config(model="uvac", epochs=10, restarts=3, restart_combine="vote", restart_epochs=8)


def test_a_voting_baseline_scores_like_its_base_and_agrees_with_identical_fits(tiny_table):
    from sklearn.metrics import adjusted_rand_score

    from trainables.baselines import get_baseline, run_baseline, run_vote

    single = get_baseline("factorial").run(tiny_table, 0, seed=0)
    voted = get_baseline("factorial_vote").run(tiny_table, 0, seed=0)
    assert set(voted.metrics) == set(single.metrics)
    assert voted.info["votes"] == 3 and 0 <= voted.info["reference"] < 3
    assert 0.0 <= voted.metrics["test/acc"] <= 1.0
    # three identical fits vote for their own partition
    one = run_baseline("kmeans", tiny_table, 0, 0)
    k = int(one.info["n_clusters"])
    same = run_vote([one, one, one], tiny_table, k, sample_size=None, seed=0, standardise=False)
    assert adjusted_rand_score(one.clusters, same.clusters) == 1.0
    assert same.metrics["test/acc"] == pytest.approx(one.metrics["test/acc"])
