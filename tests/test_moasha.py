"""MOASHA: the pure rung rule (study.moasha), the Ray scheduler around it and the scheduler
choice (study.schedulers), and one real study on a local Ray whose pruned trials are PRUNED
in Optuna, ``pruned`` in MLflow and never on the final Pareto front."""
from __future__ import annotations

import itertools
import pickle

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.schedulers import TrialScheduler

from study.options import StudyError, StudyOptions
from study.moasha import continue_at_rung, crowding_distances, nondominated_ranks, stopped_at_rung
from study.pareto import as_losses
from study.objectives import FINAL_KEY, Objective, parse_objectives
from study.schedulers import SCHEDULERS, MOASHAScheduler, choose_scheduler, make_scheduler, rung_epochs

OBJ2 = [Objective("val/silhouette_z", "max"), Objective("val/acc", "max")]


def test_nondominated_ranks_peel_fronts():
    losses = [[0, 1], [1, 0], [0.5, 0.5], [0.6, 0.6], [1, 1], [2, 2], [0.5, 0.5]]
    assert nondominated_ranks(losses).tolist() == [0, 0, 0, 1, 2, 3, 0]


def test_crowding_distance_extremes_infinite_duplicates_equal():
    d = crowding_distances([[0, 3], [1, 2], [1, 2], [2, 1], [3, 0]])
    assert np.isinf(d[0]) and np.isinf(d[4])
    assert d[1] == d[2] and np.isfinite(d[1]) and np.isclose(d[3], 4 / 3)


def test_dominated_trial_stopped_front_trial_continues():
    # four trials at a rung, eta 4: keep ceil(4/4) = 1 row ahead at most, plus the first front
    losses = [[0.1, 0.9], [0.9, 0.1], [0.5, 0.5], [0.8, 0.95]]
    assert not continue_at_rung(losses, 3, eta=4)        # dominated by the first row
    assert all(continue_at_rung(losses, i, eta=4) for i in range(3))  # all on the front
    assert stopped_at_rung(losses, eta=4) == {3}


def test_front_trial_never_stopped_even_beyond_the_quota():
    # 8 mutually non-dominated points with eta 4 (quota 2): none stopped
    xs = np.linspace(0, 1, 8)
    losses = np.stack([xs, 1 - xs], axis=1)
    assert stopped_at_rung(losses, eta=4) == set()


def test_second_front_cut_by_crowding_distance():
    # front 0 is one point; front 1 has three points; quota ceil(4/2)=2: one row ahead allowed,
    # so of front 1 only rows with nobody ahead but the front-0 row continue: its extremes.
    losses = [[0, 0], [1, 3], [2, 2], [3, 1]]
    assert stopped_at_rung(losses, eta=2) == {2}


def test_directions_respected():
    good, bad = {"val/acc": 0.9, "val/loss": 0.1}, {"val/acc": 0.8, "val/loss": 0.2}
    objs = parse_objectives(["val/acc:max", "val/loss:min"])
    rows = as_losses([[r[o.metric] for o in objs] for r in (good, bad)], [o.mode for o in objs])
    assert stopped_at_rung(rows, eta=2) == {1}
    flipped = parse_objectives(["val/acc:min", "val/loss:max"])
    rows = as_losses([[r[o.metric] for o in flipped] for r in (good, bad)], [o.mode for o in flipped])
    assert stopped_at_rung(rows, eta=2) == {0}


RUNG = {"a": (0.1, 0.9), "b": (0.9, 0.1), "c": (0.5, 0.5), "d": (0.6, 0.7), "e": (0.7, 0.6),
        "f": (0.95, 0.95), "g": (0.65, 0.65)}


@pytest.mark.parametrize("last", sorted(RUNG))
def test_decision_for_last_trial_independent_of_arrival_order(last):
    others = [k for k in RUNG if k != last]
    decisions, stopped_sets = set(), set()
    for perm in itertools.permutations(others):
        order = [*perm, last]
        rows = [RUNG[k] for k in order]
        decisions.add(continue_at_rung(rows, len(order) - 1, eta=2))
        stopped_sets.add(frozenset(order[i] for i in stopped_at_rung(rows, eta=2)))
    assert len(decisions) == 1 and len(stopped_sets) == 1
    # synchronous: the front {a, b, c} kept; quota ceil(7/2) = 4 rows ahead at most, so of the
    # second front {d, e, g} only its two extremes d and e (crowding +inf, tied) continue
    stopped = stopped_sets.pop()
    assert stopped == {"f", "g"}
    assert decisions.pop() == (last not in stopped)  # the last arrival sees the full set


def test_non_finite_losses_refused():
    with pytest.raises(ValueError, match="finite"):
        nondominated_ranks([[0.0, float("nan")]])


class _Trial:
    def __init__(self, trial_id):
        self.trial_id = trial_id


def _report(epoch, sil, acc):
    return {"epoch": epoch, "val/silhouette_z": sil, "val/acc": acc}


def test_scheduler_stops_dominated_trial_at_rung_and_skips_non_finite():
    s = MOASHAScheduler(OBJ2, epochs=8, grace_period=1, reduction_factor=2)
    assert s.rungs == [1, 2, 4]
    T = TrialScheduler
    assert s.on_trial_result(None, _Trial("a"), _report(1, 0.5, 0.5)) == T.CONTINUE
    assert s.on_trial_result(None, _Trial("nan"), _report(1, float("nan"), 0.9)) == T.CONTINUE
    assert "nan" not in s.records[1]
    assert s.on_trial_result(None, _Trial("b"), _report(1, 0.4, 0.4)) == T.STOP   # dominated by a
    assert s.stopped == {"b": 1}
    assert s.on_trial_result(None, _Trial("c"), _report(1, 0.6, 0.3)) == T.CONTINUE  # on the front
    # the final report (trial_status) is never stopped: the trial has ended already
    assert s.on_trial_result(None, _Trial("d"), {**_report(1, 0.0, 0.0), FINAL_KEY: "complete"}) == T.CONTINUE
    clone = pickle.loads(pickle.dumps(s))  # Tuner.restore pickles the scheduler
    assert clone.records == s.records and clone.stopped == s.stopped and clone.rungs == s.rungs


@pytest.mark.parametrize("name", [n for n in SCHEDULERS if n != "fifo"])
def test_no_scheduler_stops_a_trial_at_its_last_epoch(name):
    # b is ahead at epoch 1 (so it passes the first rung), then far behind a on every
    # objective; at epoch 4 of 4 it has trained in full and must reach its final report.
    s = make_scheduler(name, OBJ2, epochs=4, grace_period=1)
    a, b = _Trial("a"), _Trial("b")
    for t in (a, b):
        s.on_trial_add(None, t)
    assert s.on_trial_result(None, a, _report(1, 0.5, 0.5)) == TrialScheduler.CONTINUE
    assert s.on_trial_result(None, b, _report(1, 0.6, 0.6)) == TrialScheduler.CONTINUE
    for epoch in (2, 3, 4):
        assert s.on_trial_result(None, a, _report(epoch, 0.9, 0.9)) == TrialScheduler.CONTINUE
        assert s.on_trial_result(None, b, _report(epoch, 0.1, 0.1)) == TrialScheduler.CONTINUE


@pytest.mark.parametrize("name", [n for n in SCHEDULERS if n != "fifo"])
def test_no_scheduler_stops_a_trial_inside_its_warmup(name):
    """b reports its warm-up (UVAC before and in its first epoch against the fitted prior: 6 epochs)
    far behind a at every rung inside it; it is judged from its 6th epoch's report on."""
    from study.objectives import WARMUP_KEY

    s = make_scheduler(name, OBJ2, epochs=16, grace_period=1)
    trials = {k: _Trial(k) for k in "abcde"}
    for t in trials.values():
        s.on_trial_add(None, t)
    for epoch in range(1, 6):
        for k in "acde":  # the others, no warm-up, doing well
            s.on_trial_result(None, trials[k], {**_report(epoch, 0.9, 0.9), WARMUP_KEY: 0})
        assert s.on_trial_result(None, trials["b"], {**_report(epoch, 0.0, 0.0), WARMUP_KEY: 6}) == \
            TrialScheduler.CONTINUE, f"stopped inside its warm-up, at epoch {epoch}"
    # past its warm-up the same results are judged (and b, still dominated, goes)
    for k in "acde":
        s.on_trial_result(None, trials[k], {**_report(6, 0.9, 0.9), WARMUP_KEY: 0})
    decisions = [s.on_trial_result(None, trials["b"], {**_report(e, 0.0, 0.0), WARMUP_KEY: 6}) for e in (6, 7)]
    assert TrialScheduler.STOP in decisions


@pytest.mark.parametrize("name", [n for n in SCHEDULERS if n != "fifo"])
def test_a_warmup_that_outlasts_every_rung_is_not_judged_at_the_last_epoch(name):
    """b's warm-up (2 epochs) covers rung 1 of a 2-epoch study: its first judgeable report is its
    last epoch, where stopping saves nothing and would mark a finished trial pruned."""
    from study.objectives import WARMUP_KEY

    s = make_scheduler(name, OBJ2, epochs=2, grace_period=1)
    trials = {k: _Trial(k) for k in "abcd"}
    for t in trials.values():
        s.on_trial_add(None, t)
    for epoch in (1, 2):
        for k in "acd":
            s.on_trial_result(None, trials[k], {**_report(epoch, 0.9, 0.9), WARMUP_KEY: 0})
        assert s.on_trial_result(None, trials["b"], {**_report(epoch, 0.0, 0.0), WARMUP_KEY: 2}) == \
            TrialScheduler.CONTINUE, f"stopped at epoch {epoch} of 2"


def test_uvac_declares_its_prior_warmup():
    from trainables.config import resolve_config
    from trainables.models import warmup_epochs
    from trainables.models.uvac import UVAC

    cfg = resolve_config({"model": "uvac", "epochs": 30, "prior_init": "fit", "prior_warmup_epochs": 5})
    assert warmup_epochs(cfg) == 6  # the prior is fitted before epoch 6 (1-based) and used in it
    assert warmup_epochs({**cfg, "epochs": 3}) == 3  # fitted before the last epoch of a short run
    assert UVAC.prior_fit_epoch(5, 3) == 2 and UVAC.prior_fit_epoch(5, 1) == 0
    assert warmup_epochs(resolve_config({"model": "cat_uvac", "kl_warmup_epochs": 4})) == 4
    assert warmup_epochs(resolve_config({"model": "kmeans"})) == 0


def test_rungs_below_last_epoch():
    assert rung_epochs(4, 1, 4) == [1]
    assert rung_epochs(9, 1, 3) == [1, 3]
    assert rung_epochs(1, 1, 4) == []


def test_choose_scheduler():
    one = parse_objectives(["val/acc:max"])
    assert choose_scheduler(None, OBJ2, 5) == "moasha"
    assert choose_scheduler(None, OBJ2, 4) == "fifo"
    assert choose_scheduler(None, one, 2) == "asha"
    assert choose_scheduler(None, OBJ2, 10, "val/acc:max") == "asha"
    assert choose_scheduler("fifo", OBJ2, 10) == "fifo"
    with pytest.raises(ValueError, match="choose one of fifo, asha, moasha"):
        choose_scheduler("bogus", OBJ2, 10)
    with pytest.raises(ValueError, match="--asha-metric"):
        choose_scheduler("asha", OBJ2, 10)
    assert make_scheduler("fifo", OBJ2, epochs=3) is None
    assert isinstance(make_scheduler("moasha", OBJ2, epochs=3), MOASHAScheduler)


def test_options_validate_scheduler():
    with pytest.raises(StudyError, match="unknown scheduler 'bogus'; choose one of fifo, asha, moasha"):
        StudyOptions(space="kmeans", scheduler="bogus").validate()
    with pytest.raises(StudyError, match="--scheduler asha ranks trials on one metric"):
        StudyOptions(space="kmeans", scheduler="asha").validate()
    opts = StudyOptions(space="kmeans", num_samples=6)
    opts.validate()
    assert opts.scheduler is None  # validate checks, it fills nothing in
    assert opts.resolve().scheduler == "moasha"


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    from tests.study_helpers import build_features
    return build_features(tmp_path_factory.getbasetemp())


def test_real_study_moasha_prunes_off_the_front(tmp_path, features):
    import ray

    from study.engine import run_study
    from tests.study_helpers import TINY, mlflow_children, optuna_trials, uris

    # Every trial judged at the rung (epoch 1): the head's fit pinned off, since a trial that fits it
    # is in warm-up for both of its 2 epochs and never judged. Two agreeing objectives (accuracy and
    # NMI of the same clusters): a trial behind an earlier one on accuracy is nearly always behind it
    # on NMI too, hence dominated and stopped, whatever the space draws (sampler seeds 0-7 all prune).
    # (With silhouette against accuracy and the head searched, 6 trials pruned one or more for about
    # one sampler seed in three, and every change to the space re-drew them.)
    opts = StudyOptions(space="cat_uvac", features=features, num_samples=6, epochs=2, max_concurrent=2,
                        scheduler="moasha", seed=0, study_name="moasha", overrides={**TINY, "head_init": "random"},
                        objectives=["val/acc:max", "val/nmi:max"], progress_every_s=1e9, **uris(tmp_path))
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        res = run_study(opts)
    finally:
        ray.shutdown()
    assert not res.interrupted and res.counts["pruned"] >= 1, res.counts
    trials = optuna_trials(res)
    pruned = {t.number for t in trials if t.state == TrialState.PRUNED}
    assert len(pruned) == res.counts["pruned"]
    assert pruned.isdisjoint(p["number"] for p in res.pareto) and res.pareto

    client, children = mlflow_children(res.tracking_uri, res.parent_run_id)
    by_status = {r.data.tags["trial.number"]: r for r in children}
    assert {int(n) for n, r in by_status.items() if r.data.tags["trial.status"] == "pruned"} == pruned
    for n in pruned:  # stopped at the rung (epoch 1), before the last epoch
        run = by_status[str(n)]
        assert run.info.status == "KILLED"
        assert max(m.step for m in client.get_metric_history(run.info.run_id, "val/acc")) == 1
    assert optuna.load_study(study_name=res.study_name, storage=res.storage).user_attrs["scheduler"] == "moasha"
    assert client.get_run(res.parent_run_id).data.params["scheduler"] == "moasha"
