"""End-to-end studies on a local Ray, MLflow (SQLite) and Optuna (SQLite): one smoke study
per space, the MLflow layout, statuses (complete / pruned / diverged), the Pareto set."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import ray
from optuna.trial import TrialState
from ray.tune import Stopper

from study import spaces
from study.engine import run_study
from study.options import StudyError, StudyOptions
from study.result import format_result
from study.trial_index import TrialIndex
from tests.study_helpers import TINY, build_features, mlflow_children, optuna_trials, uris


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    return build_features(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _param_text(v) -> str:
    return str(v)


def _opts(tmp_path, features, **kw) -> StudyOptions:
    base = dict(features=features, num_samples=2, epochs=1, max_concurrent=2, overrides=dict(TINY), seed=0,
                progress_every_s=1e9, **uris(tmp_path))
    base.update(kw)
    return StudyOptions(**base)


@pytest.mark.parametrize("space", ["cat_uvac", "kmeans",
                                   pytest.param("uvac", marks=pytest.mark.slow),
                                   pytest.param("gmm", marks=pytest.mark.slow)])
def test_smoke_study_per_space(tmp_path, features, space, capsys):
    res = run_study(_opts(tmp_path, features, space=space, study_name=f"smoke-{space}"))
    assert not res.interrupted
    trials = optuna_trials(res)
    assert len(trials) == 2 and all(t.state.is_finished() for t in trials)
    assert res.counts["complete"] + res.counts["diverged"] + res.counts["failed"] == 2
    # "failed" only for a trial that trained to the end without finite objectives (a collapse)
    assert all("trained to the end" in t.user_attrs["reason"] for t in trials if t.user_attrs["status"] == "failed")

    client, children = mlflow_children(res.tracking_uri, res.parent_run_id)
    parent = client.get_run(res.parent_run_id)
    tags = parent.data.tags
    assert parent.info.run_name == res.study_name and tags["study.kind"] == "study"
    assert tags["study.space"] == space and tags["study.name"] == res.study_name
    quality = "val/silhouette_x" if space in ("kmeans", "gmm") else "val/silhouette_z"
    assert tags["study.objectives"] == f"{quality}:max,val/acc:max"
    assert tags["study.cache_key"] and tags["study.git_commit"]
    assert parent.data.params["space"] == space and parent.info.status == "FINISHED"

    assert sorted(r.data.tags["trial.number"] for r in children) == ["0", "1"]
    for r in children:
        t = trials[int(r.data.tags["trial.number"])]
        # one linked view: the Optuna trial names its MLflow run, the run its trial and study
        assert t.user_attrs["mlflow_run_id"] == r.info.run_id
        assert r.data.tags["study.name"] == res.study_name and r.data.tags["optuna.storage"] == res.storage
        assert r.data.params["model"] == space
        for k, v in t.params.items():  # the trial's config is in the params
            assert r.data.params[k] == str(v)
        # the params are the config the worker resolved and trained with, nothing else
        resolved = json.loads(Path(client.download_artifacts(r.info.run_id, "config.json", str(tmp_path))).read_text())
        assert r.data.params == {k: _param_text(v) for k, v in resolved.items()}
        assert not {"features", "study_trial"} & set(r.data.params)
        status = r.data.tags["trial.status"]  # how training ended; Optuna's status: how it was told
        assert status == t.user_attrs["status"] or (status, t.user_attrs["status"]) == ("complete", "failed")
        if status == "complete":
            # COMPLETE in Optuna unless an objective is NaN (collapsed clustering): then FAIL,
            # with the reason, so that it stays off the front
            vals = [r.data.metrics.get(o.split(":")[0]) for o in res.objectives]
            finite = all(v is not None and v == v for v in vals)
            assert t.state == (TrialState.COMPLETE if finite else TrialState.FAIL), (vals, t.user_attrs)
            assert t.user_attrs["status"] == ("complete" if finite else "failed")
            assert r.info.status == "FINISHED"
            arts = {a.path for a in client.list_artifacts(r.info.run_id)}
            assert {"assignments.parquet", "config.json"} <= arts
            assert "val/acc" in r.data.metrics
            if space in ("uvac", "cat_uvac"):
                assert "checkpoint" in arts
                hist = client.get_metric_history(r.info.run_id, "train/loss")
                assert [m.step for m in hist][0] == 1
    # study-level metrics on the parent, one step per finished trial
    client_metrics = {k: [(m.step, m.value) for m in client.get_metric_history(res.parent_run_id, k)]
                      for k in ("study/trials_finished", "study/trials_complete", "study/hypervolume")}
    assert [s for s, _ in client_metrics["study/trials_finished"]] == [1, 2]
    assert client_metrics["study/trials_complete"][-1][1] == res.counts["complete"]
    hv = [v for _, v in client_metrics["study/hypervolume"]]
    assert len(hv) == 2 and hv[0] <= hv[1]  # never decreases as trials finish
    # the experiment opens on its runs in the MLflow UI (a training experiment)
    exp = client.get_experiment(parent.info.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    # library noise goes to the study's log file, the study's own lines to the terminal
    printed = capsys.readouterr()
    assert "trial-epochs" in printed.out and "Pareto front now" in printed.out
    assert "A new study created in RDB" not in printed.out + printed.err
    log_file = Path(res.experiment_path, "study.log")
    assert "A new study created in RDB" in log_file.read_text()
    out = format_result(res)
    assert "Pareto-optimal trials" in out and "mlflow ui --backend-store-uri sqlite:///" in out
    # the classical baselines every study should beat, on the same split: the suite on the study's
    # table and on the acoustic-word-embedding front ends, the strongest named, printed beside the
    # Pareto trials with each one's margin, and logged on the parent run
    rows = {r["name"]: r for r in res.baselines}
    assert {"kmeans", "gmm", "kmeans_std", "gmm_std", "awe_kmeans", "awe_gmm", "awe_speaker_kmeans"} <= set(rows)
    assert all(0.0 <= r["val/acc"] <= 1.0 for r in rows.values())
    assert rows["awe_speaker_gmm"]["side_information"] and not rows["awe_gmm"]["side_information"]
    best = max((r for r in rows.values() if not r["side_information"]), key=lambda r: r["val/acc"])
    assert parent.data.tags["baseline.strongest"] == best["name"]
    assert f"{best['name']:<24} val/acc {best['val/acc']:.4f}" in out and "<- strongest" in out
    assert parent.data.metrics["baseline/kmeans_val_acc"] == pytest.approx(rows["kmeans"]["val/acc"])
    assert parent.data.metrics[f"baseline/{best['name']}_test_acc"] == pytest.approx(best["test/acc"])
    if any("val/acc" in p["values"] for p in res.pareto):
        assert f"vs {best['name']}: val/acc" in out
    assert parent.data.params["fixed.recipe"] == "recommended"
    for p in res.pareto:
        assert p["run_id"] in {r.info.run_id for r in children}


class StopTrialOne(Stopper):
    """Stops Optuna trial 1 after its first epoch, as a scheduler would."""

    def __init__(self, storage: str, study: str):
        self.index = TrialIndex(storage, study)

    def __call__(self, trial_id, result):
        number = self.index.number(trial_id)
        return number == 1 and result.get("epoch", 0) >= 1 and "trial_status" not in result

    def stop_all(self):
        return False


def diverging_space(trial, *, epochs=1):
    """cat_uvac with one learning rate that no Adam survives (an honest divergence)."""
    trial.suggest_categorical("lr_start", [1e-3, 1e12])
    trial.suggest_float("lr_end", 1e-5, 1e-4, log=True)
    trial.suggest_categorical("divergence", ["euc"])
    return {"model": "cat_uvac"}


def test_statuses_diverged_pruned_complete(tmp_path, features, monkeypatch):
    """One study, three endings: trial 0 draws lr 1e12 and diverges, trial 1 is stopped
    early (pruned, with ASHA configured too), trial 2 completes. Only complete trials with
    finite objectives can be on the Pareto front."""
    monkeypatch.setitem(spaces.SPACES, "diverging", diverging_space)
    res = run_study(_opts(tmp_path, features, space="diverging", study_name="statuses", num_samples=3, epochs=2,
                          seed=5, asha_metric="val/acc:max", grace_period=1),
                    stopper=StopTrialOne(uris(tmp_path)["storage"], "statuses"))
    trials = optuna_trials(res)
    assert len(trials) == 3
    assert [t.params["lr_start"] for t in trials] == [1e12, 1e-3, 1e-3], "sampler draws changed; pick another seed"
    client, children = mlflow_children(res.tracking_uri, res.parent_run_id)
    by_number = {int(r.data.tags["trial.number"]): r for r in children}
    assert sorted(by_number) == [0, 1, 2] and len(children) == 3

    diverged, pruned, done = trials
    assert diverged.state == TrialState.FAIL and diverged.user_attrs["status"] == "diverged"
    assert "non-finite" in diverged.user_attrs["reason"]
    run = by_number[0]
    assert run.data.tags["trial.status"] == "diverged" and "non-finite" in run.data.tags["trial.reason"]
    assert run.info.status == "FAILED"

    assert pruned.state == TrialState.PRUNED and pruned.user_attrs["status"] == "pruned"
    assert by_number[1].data.tags["trial.status"] == "pruned" and by_number[1].info.status == "KILLED"
    # KILLED in MLflow, but its name and description say it was pruned
    assert by_number[1].info.run_name == "statuses-trial-1 (pruned)"
    assert by_number[1].data.tags["mlflow.note.content"].startswith("Pruned: stopped early")
    assert not by_number[2].info.run_name.endswith("(pruned)")
    assert "val/acc" in by_number[1].data.metrics  # its epoch was still logged

    assert done.user_attrs["status"] == ("complete" if done.state == TrialState.COMPLETE else "failed")
    assert by_number[2].data.tags["trial.status"] == "complete"
    assert [m.step for m in client.get_metric_history(by_number[2].info.run_id, "train/loss")][:2] == [1, 2]
    assert res.counts["diverged"] == 1 and res.counts["pruned"] == 1
    assert {p["number"] for p in res.pareto} <= {2}


def test_bad_input_is_one_clear_error(tmp_path, features):
    with pytest.raises(StudyError, match="unknown config key"):
        run_study(_opts(tmp_path, features, overrides={"chanels": "4,8"}))
    with pytest.raises(StudyError, match="no such directory"):
        run_study(_opts(tmp_path, str(tmp_path / "missing")))
    run_study(_opts(tmp_path, features, space="kmeans", study_name="dup", num_samples=1))
    with pytest.raises(StudyError, match="already exists"):
        run_study(_opts(tmp_path, features, space="kmeans", study_name="dup", num_samples=1))


def test_a_pinned_voice_count_reaches_every_trial(tmp_path, features):
    """--set voices=3 on a voice front end: the trials load the table with 3 voices (a trial given a
    table of another count is refused by the training loop's guard, so a complete trial shows it)."""
    res = run_study(_opts(tmp_path, features, space="cat_uvac", study_name="voices", num_samples=1,
                          frontends=["awe_voice"], overrides={**TINY, "voices": 3}))
    trial = optuna_trials(res)[0]
    assert trial.user_attrs["status"] in ("complete", "diverged"), trial.user_attrs.get("reason")
    client, children = mlflow_children(res.tracking_uri, res.parent_run_id)
    assert [r.data.params["voices"] for r in children] == ["3"]
    assert [r.data.params["frontend"] for r in children] == ["awe_voice"]
