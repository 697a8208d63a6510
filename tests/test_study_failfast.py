"""Studies fail fast and loudly (issue 11): metric names and --set values are checked before
anything is written or started, a searched key given with --set is pinned, the sampler seed
is fresh per study and recorded, and a study whose every trial failed exits non-zero.

Validation tests never start Ray; the study tests use one local Ray, real Optuna and MLflow
(SQLite in tmp dirs) and the tiny synthetic cache of tests/study_helpers.py.
"""
from __future__ import annotations

import json

import optuna
import pytest
from optuna.trial import TrialState

from study.objectives import Objective, parse_objective, parse_objectives
from trainables.metric_names import REPRESENTATIONS, declared_metrics

# --------------------------------------------------------------------------- metric names


@pytest.mark.parametrize("model", sorted(REPRESENTATIONS))
def test_declared_metrics_are_what_the_trainer_reports(model, tiny_table, tiny_config):
    """One tiny epoch of each model: every reported metric is declared, and every declared
    val/ and test/ metric (what objectives and the analysis use) is reported."""
    from trainables import loop

    res = loop.train(tiny_config(model=model, epochs=1), tiny_table)
    assert res.status == "complete", res.reason
    reported = set()
    for d in [res.metrics, *res.history]:
        reported |= {k for k in d if k.startswith(("train/", "val/", "test/"))}
    declared = set(declared_metrics(model))
    assert reported <= declared, f"reported but not declared: {sorted(reported - declared)}"
    splits = {m for m in declared if m.startswith(("val/", "test/"))}
    assert splits <= reported, f"declared but not reported: {sorted(splits - reported)}"


def test_declared_metrics_per_representation():
    assert "val/silhouette_y" in declared_metrics("cat_uvac")
    assert "val/silhouette_y" not in declared_metrics("uvac")
    assert "val/silhouette_x" in declared_metrics("kmeans") and "val/silhouette_z" not in declared_metrics("gmm")
    with pytest.raises(ValueError, match="unknown model"):
        declared_metrics("vae")


def test_one_strict_objective_parser():
    assert parse_objective("val/acc:max") == Objective("val/acc", "max")
    assert parse_objective(" val/dbi_z ") == Objective("val/dbi_z", "min")
    for bad, msg in [("val/acc:max:min", "METRIC or METRIC:max"), ("val/acc:best", "max or min"),
                     (":max", "empty metric"), ("test/acc:max", "validation split")]:
        with pytest.raises(ValueError, match=msg):
            parse_objective(bad)
    with pytest.raises(ValueError, match=r"unknown objective 'val/acx' for cat_uvac; valid: val/acc, "):
        parse_objective("val/acx", declared_metrics("cat_uvac"), scope="for cat_uvac")
    with pytest.raises(ValueError, match="given twice"):
        parse_objectives(["val/acc:max", "val/acc:min"])
    # analysis parses with the same parser (the MLflow tag form: comma-separated)
    from analysis.runs import StudyInfo

    def tagged(tag):
        return StudyInfo("s", "p", "0", tags={"study.objectives": tag}).objectives
    assert tagged("val/silhouette_z:max,val/dbi_z") == [Objective("val/silhouette_z", "max"),
                                                        Objective("val/dbi_z", "min")]
    assert tagged("") == []
    with pytest.raises(ValueError, match="METRIC or METRIC:max"):
        tagged("val/acc:max:min")


# --------------------------------------------------------------------------- launch validation
def _launch_args(tmp_path, *extra):
    return ["--features-root", str(tmp_path / "features"), "--storage", f"sqlite:///{tmp_path}/optuna.db",
            "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--storage-path", str(tmp_path / "ray"),
            "--study-name", "never", *extra]


@pytest.mark.parametrize("args, message", [
    (["--objective", "val/acx"], "unknown objective 'val/acx' for model cat_uvac (space cat_uvac); valid: "),
    (["--objective", "val/acc:max:min"], "expected METRIC or METRIC:max|min"),
    (["--objective", "val/acc:up"], "direction must be max or min, got 'up'"),
    (["--space", "uvac", "--objective", "val/silhouette_y:max"], "unknown objective 'val/silhouette_y' for model uvac"),
    (["--space", "kmeans", "--objective", "val/silhouette_z"], "unknown objective 'val/silhouette_z' for model kmeans"),
    (["--asha-metric", "val/accuracy:max"], "unknown ASHA metric 'val/accuracy'"),
    (["--asha-metric", "val/acc:max:min"], "ASHA metric 'val/acc:max:min': expected METRIC"),
    (["--set", "divergence=bogus"], "divergence: expected one of euc, is, kl, got 'bogus'"),
    (["--set", "chanels=4,8"], "unknown config key(s): chanels"),
    (["--set", "model=uvac"], "space cat_uvac fixes model='cat_uvac'"),
    (["--set", "lam"], "expected KEY=VALUE"),
    (["--frontends", "awe", "--set", "voices=3"], "voices=3: front end 'awe' has band normalisation"),
])
def test_launch_refuses_bad_input_before_writing_anything(tmp_path, capsys, args, message):
    import ray

    from study.launch import main

    assert main(_launch_args(tmp_path, *args)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err
    if "unknown objective" in message:  # the valid names of the study's model are listed
        model = message.split("for model ")[1].split()[0]
        listed = set(err.split("valid: ")[1].split(", "))
        assert listed == {m for m in declared_metrics(model) if m.startswith("val/")}
    assert list(tmp_path.iterdir()) == [], "something was written before the input was checked"
    assert not ray.is_initialized()


def _damaged_db(path, kind: str) -> None:
    """A store as a user may find it: garbage, or a real SQLite file with pages overwritten."""
    import sqlite3

    if kind == "garbage":
        path.write_bytes(b"not a database " * 500)
        return
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (x TEXT)")
    con.executemany("INSERT INTO t VALUES (?)", [("y" * 200,)] * 200)
    con.commit()
    con.close()
    data = bytearray(path.read_bytes())
    data[4096:12288] = b"\xff" * 8192  # the table's pages
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["garbage", "pages"])
@pytest.mark.parametrize("store, flag", [("optuna.db", "--storage"), ("mlflow.db", "--tracking-uri")])
def test_launch_names_a_damaged_store_in_one_line(tmp_path, capsys, store, flag, kind):
    import ray

    from study.launch import main

    _damaged_db(tmp_path / store, kind)
    assert main(_launch_args(tmp_path, "--space", "kmeans")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: the {'Optuna storage' if store == 'optuna.db' else 'MLflow store'} "
                          f"{tmp_path / store} is damaged") and len(err.splitlines()) == 1, err
    assert flag in err and not ray.is_initialized()


@pytest.mark.parametrize("kind", ["garbage", "pages"])
def test_report_names_a_damaged_mlflow_store_in_one_line(tmp_path, capsys, kind):
    from analysis.report import main

    _damaged_db(tmp_path / "mlflow.db", kind)
    assert main(["--study", "s", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
                 "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: the MLflow store {tmp_path / 'mlflow.db'} is damaged") and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_a_device_this_machine_lacks_is_refused_before_ray(tmp_path, capsys):
    import ray
    import torch

    from study.launch import main

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the error path needs a machine without it")
    assert main(_launch_args(tmp_path, "--set", "device=cuda")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: invalid trial config (--set or space)") and len(err.splitlines()) == 1, err
    assert "device 'cuda' requested but CUDA is not available" in err
    assert err.endswith("use --set device=cpu") and "--device" not in err, err  # a study has no --device
    assert list(tmp_path.iterdir()) == [] and not ray.is_initialized()


def test_set_help_documents_pinning():
    from study.launch import parser
    text = parser().format_help()
    assert "pinned" in text and "exit 2" in text


# --------------------------------------------------------------------------- analysis.report
def test_report_refuses_an_unknown_objective_before_writing(tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    from analysis.report import main
    from tests.test_analysis_report import log_study

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _, ids = log_study(uri, "fs", "uvac", 8, seed=0)
    out = tmp_path / "report"
    for objective, message in [("val/acx", "unknown objective 'val/acx' in study fs; valid: "),
                               ("val/silhouette_y:max", "unknown objective 'val/silhouette_y'"),
                               ("val/acc:max:min", "expected METRIC or METRIC:max|min"),
                               ("val/acc:top", "direction must be max or min")]:
        assert main(["--study", "fs", "--tracking-uri", uri, "--objective", objective, "--out", str(out)]) == 2
        errors = [l for l in capsys.readouterr().err.splitlines() if l.startswith("error:")]
        assert len(errors) == 1 and message in errors[0], errors
    assert not out.exists()
    assert all("pareto" not in MlflowClient(uri).get_run(r).data.tags for r in ids)
    # valid: the union of what the studies' models report and the metrics present in their runs
    main(["--study", "fs", "--tracking-uri", uri, "--objective", "val/bogus", "--out", str(out)])
    err = [l for l in capsys.readouterr().err.splitlines() if l.startswith("error:")][0]
    listed = set(err.split("valid: ")[1].split(", "))
    assert {m for m in declared_metrics("uvac") if m.startswith("val/")} <= listed
    assert "val/silhouette_y" not in listed
    # a good one still works
    assert main(["--study", "fs", "--tracking-uri", uri, "--objective", "val/dbi_z", "--objective", "val/nmi:max",
                 "--out", str(out), "--no-mlflow-log"]) == 0
    assert (out / "summary.json").exists()


# --------------------------------------------------------------------------- pinning (no Ray)
def test_pinned_space_takes_keys_out_of_the_search():
    from study.options import PinnedSpace, StudyOptions, pinned_params, study_space

    opts = StudyOptions(space="cat_uvac", epochs=3, overrides={"divergence": "kl", "tau_kind": "constant",
                                                               "channels": "4,8"})
    assert pinned_params(opts) == {"divergence": "kl", "tau_kind": "constant"}  # channels is not searched
    space = study_space(opts)
    assert isinstance(space, PinnedSpace)
    study = optuna.create_study(directions=["maximize"], sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(3):
        trial = study.ask()
        config = space(trial)
        assert config["divergence"] == "kl" and config["tau_kind"] == "constant" and config["model"] == "cat_uvac"
        # not searched: absent from Optuna's params; the constant branch has no tau_end
        assert not {"divergence", "tau_kind", "tau_end", "tau_anneal_epochs"} & set(trial.params)
        assert {"d_z", "lam", "lr_start", "lr_end", "tau_start"} <= set(trial.params)
        study.tell(trial, 0.0)
    import pickle
    assert pickle.loads(pickle.dumps(space)).pinned == space.pinned  # --resume pickles the searcher


def test_complete_trial_without_finite_objective_is_failed_in_optuna(tmp_path):
    """Told FAIL, so the status must not say complete: status=failed and a reason."""
    from study.options import StudyOptions, study_space
    from study.searcher import StudySearcher

    storage = f"sqlite:///{tmp_path}/optuna.db"
    objs = parse_objectives(["val/silhouette_x:max", "val/acc:max"])
    searcher = StudySearcher(study_space(StudyOptions(space="kmeans")), objs, study_name="nan",
                             storage_url=storage, seed=1)
    for tid, result in [("a", {"val/silhouette_x": float("nan"), "val/acc": 0.5}),
                        ("b", {"val/acc": 0.5}),
                        ("c", {"val/silhouette_x": 0.2, "val/acc": 0.5})]:
        searcher.suggest(tid)
        searcher.on_trial_complete(tid, {**result, "trial_status": "complete", "trial_reason": ""})
    a, b, c = optuna.load_study(study_name="nan", storage=storage).get_trials()
    assert a.state == TrialState.FAIL and a.user_attrs["status"] == "failed"
    assert "val/silhouette_x not finite" in a.user_attrs["reason"]
    assert b.state == TrialState.FAIL and b.user_attrs["status"] == "failed"
    assert "val/silhouette_x not reported" in b.user_attrs["reason"]
    assert c.state == TrialState.COMPLETE and c.user_attrs["status"] == "complete"


# --------------------------------------------------------------------------- studies on Ray
@pytest.fixture(scope="module")
def features(tmp_path_factory):
    from tests.study_helpers import build_features
    return build_features(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def local_ray():
    import ray
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.parametrize("space", ["cat_uvac", "kmeans"])
def test_more_clusters_than_training_clips_is_refused_before_ray(tmp_path, features, capsys, space):
    import ray

    from study.launch import main

    assert main(_launch_args(tmp_path, "--space", space, "--features", features, "--n-clusters", "500")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: n_clusters=500 is more than the ") and len(err.splitlines()) == 1, err
    assert "clips of the train split" in err
    assert not ray.is_initialized() and not list(tmp_path.rglob("tuner.pkl"))  # Ray never started


def test_pinned_key_and_drawn_seed_are_used_and_recorded(tmp_path, features, local_ray, capsys):
    """gmm with --set gmm_covariance=spherical: every trial uses it, Optuna searches only the
    seed; the sampler seed is drawn, printed and recorded; --resume keeps it."""
    from study.engine import resume_study, run_study
    from study.options import StudyOptions
    from tests.study_helpers import mlflow_children, optuna_trials, uris

    opts = StudyOptions(space="gmm", features=features, num_samples=2, max_concurrent=2, study_name="pin",
                        overrides={"gmm_covariance": "spherical", "silhouette_sample": 200},
                        progress_every_s=1e9, **uris(tmp_path))
    assert opts.seed is None
    res = run_study(opts)
    out = capsys.readouterr().out
    assert res.counts["complete"] == 2 and not res.failed
    seed = res.seed
    assert isinstance(seed, int) and f"[study] sampler seed {seed}" in out
    assert "[study] pinned by --set (not searched): gmm_covariance=spherical" in out
    assert res.pinned == {"gmm_covariance": "spherical"}

    study = optuna.load_study(study_name="pin", storage=res.storage)
    assert study.user_attrs["seed"] == seed and json.loads(study.user_attrs["options"])["seed"] == seed
    assert json.loads(study.user_attrs["pinned"]) == {"gmm_covariance": "spherical"}
    for t in optuna_trials(res):
        assert set(t.params) == {"seed"}

    client, children = mlflow_children(res.tracking_uri, res.parent_run_id)
    parent = client.get_run(res.parent_run_id).data
    assert parent.params["study.seed"] == str(seed) and parent.tags["study.seed"] == str(seed)
    assert parent.params["study.pinned"] == "gmm_covariance=spherical" == parent.tags["study.pinned"]
    assert len(children) == 2 and all(r.data.params["gmm_covariance"] == "spherical" for r in children)

    again = resume_study("pin", res.storage)  # nothing left to run; the original seed is kept
    assert again.seed == seed and again.pinned == res.pinned
    assert optuna.load_study(study_name="pin", storage=res.storage).user_attrs["seed"] == seed

    other = run_study(StudyOptions(space="kmeans", features=features, num_samples=1, study_name="pin2",
                                   progress_every_s=1e9, **uris(tmp_path)))
    assert other.seed != seed  # fresh per study (2**-31 chance of a clash)


def always_diverging_space(trial, *, epochs=1):
    """cat_uvac with a learning rate that no Adam survives: every trial diverges."""
    trial.suggest_categorical("lr_start", [1e12])
    trial.suggest_float("lr_end", 1e-5, 1e-4, log=True)
    return {"model": "cat_uvac"}


def raising_space(trial, *, epochs=1):
    """A config only the worker can refuse (500 clusters on a 96-clip train split)."""
    trial.suggest_float("lr_end", 1e-5, 1e-4, log=True)
    return {"model": "kmeans", "n_clusters": 500}


def test_a_trials_own_exception_fails_it_once_without_a_retry(tmp_path, features, local_ray, monkeypatch, capsys):
    from study import spaces
    from study.launch import main
    from tests.study_helpers import mlflow_children, optuna_trials, uris

    monkeypatch.setitem(spaces.SPACES, "raising", raising_space)
    u = uris(tmp_path)
    argv = ["--space", "raising", "--features", features, "--num-samples", "2", "--max-concurrent", "2",
            "--study-name", "raises", "--max-failures", "3", "--objective", "val/acc:max", "--storage", u["storage"],
            "--tracking-uri", u["tracking_uri"], "--storage-path", u["storage_path"]]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "lost its worker" not in captured.out
    assert "every trial failed, diverged or has no finite objective (2 failed)" in captured.err
    trials = optuna_trials(u["storage"], "raises")
    assert [t.user_attrs["status"] for t in trials] == ["failed", "failed"]
    assert all("ValueError: n_clusters=500 is more than the" in t.user_attrs["reason"] for t in trials)
    study = optuna.load_study(study_name="raises", storage=u["storage"])
    client, children = mlflow_children(u["tracking_uri"], study.user_attrs["mlflow_parent_run_id"])
    assert len(children) == 2 and all(r.data.tags["trial.status"] == "failed" for r in children)
    assert all("n_clusters=500" in r.data.tags["trial.reason"] and "trial.retries" not in r.data.tags
               for r in children)


def test_study_whose_every_trial_failed_exits_1(tmp_path, features, local_ray, monkeypatch, capsys):
    from mlflow.tracking import MlflowClient

    from study import spaces
    from study.launch import main
    from tests.study_helpers import TINY, optuna_trials, uris

    monkeypatch.setitem(spaces.SPACES, "diverging", always_diverging_space)
    u = uris(tmp_path)
    argv = ["--space", "diverging", "--features", features, "--num-samples", "2", "--epochs", "1",
            "--max-concurrent", "2", "--study-name", "doomed", "--seed", "7", "--storage", u["storage"],
            "--tracking-uri", u["tracking_uri"], "--storage-path", u["storage_path"]]
    argv += [f"--set={k}={v}" for k, v in TINY.items()]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "every trial failed, diverged or has no finite objective (2 diverged)" in captured.err
    assert "[study] sampler seed 7\n" in captured.out
    trials = optuna_trials(u["storage"], "doomed")
    assert [t.user_attrs["status"] for t in trials] == ["diverged", "diverged"]
    assert all(t.state == TrialState.FAIL for t in trials)
    study = optuna.load_study(study_name="doomed", storage=u["storage"])
    assert study.user_attrs["seed"] == 7
    cl = MlflowClient(u["tracking_uri"])
    parent = cl.get_run(study.user_attrs["mlflow_parent_run_id"])
    assert parent.info.status == "FAILED" and parent.data.tags["study.state"] == "failed"
    assert "no trial completed with finite objectives" in parent.data.tags["study.failure"]


def test_a_pinned_branch_lets_its_own_keys_be_pinned():
    """--set augment=speed,shift takes the branch where the space searches consistency, so pinning
    consistency as well is accepted (the trials run that branch: study.options.PinnedSpace); pinning
    consistency while the space may still draw augment=none is refused as before."""
    from study.options import StudyError, StudyOptions, space_constants

    assert space_constants("uvac", 3)["consistency"] == "none"
    assert "consistency" not in space_constants("uvac", 3, pinned={"augment": "speed,shift"})
    StudyOptions(space="uvac", epochs=3, overrides={"augment": "speed,shift", "consistency": "mi"}).validate()
    with pytest.raises(StudyError, match="space uvac fixes consistency='none'"):
        StudyOptions(space="uvac", epochs=3, overrides={"consistency": "mi"}).validate()
