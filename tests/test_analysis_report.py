"""analysis.report on studies held in a real MLflow (SQLite store in a tmp dir).

The runs are written with the MLflow client following the layout of docs/ARCHITECTURE.md
(the study engine writes the same layout; the end-to-end test on a real study is marked
slow). Expected fronts are recomputed here by brute force from the logged values.
"""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

mlflow = pytest.importorskip("mlflow")
from mlflow.entities import Metric, Param  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from analysis.importance import (StorageUnavailable, TooFewTrials, load_trials,  # noqa: E402
                                 param_importances)
from analysis.report import build_report  # noqa: E402
from analysis.runs import completed, load_runs  # noqa: E402
from study.objectives import Objective  # noqa: E402


def _dominates(a, b, dirs):
    la = [(-x if d == "max" else x) for x, d in zip(a, dirs)]
    lb = [(-x if d == "max" else x) for x, d in zip(b, dirs)]
    return all(p <= q for p, q in zip(la, lb)) and any(p < q for p, q in zip(la, lb))


def log_study(uri, name, space, n, seed, objectives="val/silhouette_z:max,val/acc:max", experiment="exp",
              artifacts=None, storage=None, baselines=None, parent_tags=None):
    """A parent + n child runs with random params/metrics; a few pruned/diverged/failed
    children get the best values of all, so that they would win if not excluded. With
    ``storage`` (an Optuna RDB URL), the study's Optuna trials too, with the search space's
    true distributions (``lam`` log-scaled), as study/engine.py stores them. ``baselines``:
    parent metrics (``baseline/<method>_<split>_<metric>`` -> value), ``parent_tags``: more tags."""
    cl = MlflowClient(uri)
    exp = cl.get_experiment_by_name(experiment)
    if artifacts is None and uri.startswith("sqlite:///"):  # beside the database, never in the cwd
        artifacts = Path(uri[len("sqlite:///"):]).parent / "artifacts"
    loc = Path(artifacts).as_uri() if artifacts else None  # a server: its own artifact store
    exp_id = exp.experiment_id if exp else cl.create_experiment(experiment, artifact_location=loc)
    tags = {"study.name": name, "study.space": space, "study.dataset": "synthetic", "study.cache_key": "k",
            "study.git_commit": "x", "study.objectives": objectives, "study.kind": "study"}
    if storage:
        tags["study.storage"] = storage
    tags.update(parent_tags or {})
    parent = cl.create_run(exp_id, run_name=name, tags=tags).info.run_id
    if baselines:
        cl.log_batch(parent, metrics=[Metric(k, float(v), int(time.time() * 1000), 0) for k, v in baselines.items()])
    rng = np.random.default_rng(seed)
    kinds = ["constant", "linear", "cosine"]
    statuses = ["complete"] * n
    statuses[1], statuses[3], statuses[5] = "pruned", "diverged", "failed"
    ids, optuna_trials = [], []
    for t in range(n):
        st = statuses[t]
        rid = cl.create_run(exp_id, run_name=f"{name}-trial-{t}", tags={
            "mlflow.parentRunId": parent, "study.name": name, "trial.number": str(t),
            "trial.status": st, "trial.reason": "" if st == "complete" else st}).info.run_id
        lam = float(np.exp(rng.uniform(np.log(0.1), np.log(4.0))))
        searched = {"d_z": int(rng.integers(4, 33)), "lam": lam,
                    "divergence": str(rng.choice(["euc", "is", "kl"])), "tau_kind": str(rng.choice(kinds))}
        params = {"model": space, **searched, "epochs": 3, "use_mask": True}
        acc = float(rng.uniform(0.1, 0.8)) if st == "complete" else 0.99
        sil = float(np.clip(1.2 * lam / 4 + rng.normal(0, 0.1), -1, 1)) if st == "complete" else 0.99
        if t == 7:
            sil = float("nan")  # collapsed clustering: complete, NaN objective
        now = int(time.time() * 1000)
        # per-epoch values, the final one at the highest step
        metrics = [Metric("val/acc", acc * (epoch + 1) / 3, now, epoch) for epoch in range(3)]
        mets = {"val/silhouette_z": sil, "val/nmi": acc * 0.9, "val/dbi_z": 2.0 - sil,
                "val/chi_z": 100 * (1 + sil), "test/acc": acc - 0.01, "test/nmi": acc * 0.85,
                "test/silhouette_z": sil, "test/dbi_z": 2.1 - sil, "test/chi_z": 90 * (1 + sil)}
        if space == "cat_uvac":
            mets.update({"val/silhouette_y": min(1.0, sil + 0.5), "test/silhouette_y": min(1.0, sil + 0.4)})
        metrics += [Metric(k, v, now, 2) for k, v in mets.items()]
        cl.log_batch(rid, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()])
        cl.set_terminated(rid, "FINISHED" if st == "complete" else "FAILED")
        ids.append(rid)
        optuna_trials.append((st, searched, {**mets, "val/acc": acc}))
    cl.set_terminated(parent)
    if storage:
        _optuna_study(storage, name, objectives, optuna_trials)
    return parent, ids


def _optuna_study(storage, name, objectives, trials):
    """The Optuna side of log_study: COMPLETE trials carry the objective values (a NaN one is
    told FAIL, as study.searcher does), the others are PRUNED / FAIL."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from optuna.trial import TrialState
    from study.objectives import parse_objectives

    objs = parse_objectives(objectives)
    study = optuna.create_study(study_name=name, storage=storage,
                                directions=["maximize" if o.mode == "max" else "minimize" for o in objs])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental API warning (study/engine.py does the same)
        study.set_metric_names([o.metric for o in objs])
    dists = {"d_z": IntDistribution(4, 32), "lam": FloatDistribution(0.1, 4.0, log=True),
             "divergence": CategoricalDistribution(["euc", "is", "kl"]),
             "tau_kind": CategoricalDistribution(["constant", "linear", "cosine"])}
    for status, params, mets in trials:
        values = [mets[o.metric] for o in objs]
        ok = status == "complete" and all(math.isfinite(v) for v in values)
        state = TrialState.COMPLETE if ok else (TrialState.PRUNED if status == "pruned" else TrialState.FAIL)
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, state=state,
                                                  values=values if ok else None))


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    """One store for the module (creating an MLflow database costs seconds); every test
    uses its own study names."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def test_load_runs_tidy_table(uri):
    parent, ids = log_study(uri, "s1", "cat_uvac", 10, seed=0)
    table, infos = load_runs(["s1"], uri)
    assert infos["s1"].parent_run_id == parent
    assert sorted(table["run_id"]) == sorted(ids)
    assert table["params.d_z"].map(type).eq(int).all()
    assert table["params.use_mask"].map(type).eq(bool).all()
    assert set(table["status"]) == {"complete", "pruned", "diverged", "failed"}
    # the final value (highest step) of a per-epoch metric is read back
    cl = MlflowClient(uri)
    for rid in ids[:3]:
        hist = cl.get_metric_history(rid, "val/acc")
        last = max(hist, key=lambda m: m.step).value
        assert table.set_index("run_id").loc[rid, "metrics.val/acc"] == pytest.approx(last)
    assert len(completed(table)) == 7
    with pytest.raises(LookupError):
        load_runs(["nope"], uri)


KEY = "silhouette_z-max__acc-max"  # objective_key of the default objectives


def _optuna_url(uri, tag):
    return f"sqlite:///{Path(uri[len('sqlite:///'):]).parent / f'optuna-{tag}.db'}"


def test_report_two_studies(uri, tmp_path):
    log_study(uri, "s1", "cat_uvac", 14, seed=1, storage=_optuna_url(uri, "s1"))
    log_study(uri, "s2", "uvac", 12, seed=2, storage=_optuna_url(uri, "s2"))
    out = tmp_path / "report"
    res = build_report(["s1", "s2"], tracking_uri=uri, out_dir=out)
    table, _ = load_runs(["s1", "s2"], uri)

    dirs = ["max", "max"]
    for study in ("s1", "s2"):
        done = completed(table[table["study"] == study])
        vals = done[["metrics.val/silhouette_z", "metrics.val/acc"]].to_numpy(float)
        expected = set()
        for i, v in enumerate(vals):
            if not np.isfinite(v).all():
                continue
            if not any(np.isfinite(w).all() and _dominates(w, v, dirs) for w in vals):
                expected.add(done["run_id"].iloc[i])
        rep = res.studies[study]
        assert set(rep.front_run_ids) == expected and expected
        # excluded statuses never on the front although their values are the best
        bad = table[(table["study"] == study) & (table["status"] != "complete")]["run_id"]
        assert not set(bad) & set(rep.front_run_ids)
        # the hypervolume history grows and ends at the front's hypervolume, against the
        # fixed reference (silhouette -1, accuracy 0)
        hist = np.array(rep.hypervolume_history)
        assert len(hist) == len(done) and np.all(np.diff(hist) >= -1e-12)
        assert hist[-1] == pytest.approx(rep.hypervolume) and rep.hypervolume > 0
        assert rep.reference == [-1.0, 0.0] and rep.key == KEY
        # importance from the Optuna storage, one per objective, on the trials Optuna completed
        assert [i.metric for i in rep.importances] == ["val/silhouette_z", "val/acc"]
        n_finite = int(np.isfinite(vals).all(axis=1).sum())
        assert all(i.n_trials == n_finite for i in rep.importances)

    for name in ("pareto_objectives.png", "pareto_silhouette.png", "pareto_dbi.png", "pareto_chi.png",
                 "hypervolume.png", "importance.png", "report.html", "pareto_runs.csv", "pareto_runs.md",
                 "summary.json"):
        assert (out / name).stat().st_size > 200, name
    html = (out / "report.html").read_text()
    all_front = [r for rep in res.studies.values() for r in rep.front_run_ids]
    for rid in all_front:
        assert rid in html
    # no network, not megabytes per page: plotly.js once per report folder, beside the page
    assert '<script src="plotly.min.js">' in html and "cdn.plot.ly" not in html and "Plotly.newPlot" in html
    assert len(html) < 400_000 and (out / "plotly.min.js").stat().st_size > 1_000_000
    assert html.count("<script src=") == 1
    # the reference point is stated, and so are the importances' trial counts
    assert "Reference point: Silhouette coefficient on z = -1, Clustering accuracy = 0." in html
    assert f"fANOVA on {res.studies['s1'].importances[0].n_trials} completed trials" in html
    # hover: trial number, objectives and only the params that vary (not model, epochs, use_mask)
    done = completed(table).set_index("run_id")
    hovers = [h for hs in re.findall(r'"hovertext":(\[.*?\])', html) for h in json.loads(hs)]
    rid = all_front[0]
    row = done.loc[rid]
    mine = [h for h in hovers if f"trial {row['trial_number']}<br>" in h and h.startswith(f"<b>{row['study']}</b>")]
    assert mine, "no hover text for a Pareto run"
    assert f"d_z = {row['params.d_z']}" in mine[0] and f"divergence = {row['params.divergence']}" in mine[0]
    assert f"Clustering accuracy = {row['metrics.val/acc']:.4g}" in mine[0]
    assert all("epochs" not in h and "use_mask" not in h and "model" not in h for h in hovers)
    assert max(h.count("<br>") for h in hovers) == 6  # 7 lines: study and trial, 2 objectives, 4 varying params

    csv = pd.read_csv(out / "pareto_runs.csv")
    assert sorted(csv["run_id"]) == sorted(all_front)
    assert "test/acc" in csv.columns and "test/silhouette_z" in csv.columns
    md = (out / "pareto_runs.md").read_text()
    assert all(rid in md for rid in all_front)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"s1", "s2"} and summary["s1"]["reference_point"] == [-1.0, 0.0]

    # MLflow: tags keyed by the objectives on every child, artifacts on each parent
    cl = MlflowClient(uri)
    exp = cl.get_experiment_by_name("exp").experiment_id
    for study in ("s1", "s2"):
        tagged = cl.search_runs([exp], f"tags.`pareto.{KEY}` = 'true' and tags.`study.name` = '{study}'")
        assert {r.info.run_id for r in tagged} == set(res.studies[study].front_run_ids)
        untagged = cl.search_runs([exp], f"tags.`pareto.{KEY}` = 'false' and tags.`study.name` = '{study}'")
        assert len(tagged) + len(untagged) == res.studies[study].n_runs
        parent = cl.search_runs([exp], f"tags.`study.kind` = 'study' and tags.`study.name` = '{study}'")[0]
        arts = {a.path for a in cl.list_artifacts(parent.info.run_id, f"pareto_report/{KEY}")}
        assert f"pareto_report/{KEY}/report.html" in arts and f"pareto_report/{KEY}/pareto_runs.csv" in arts


def test_panels_draw_staircases_and_the_reference(uri, tmp_path):
    from analysis.report import family_panels, objective_panels
    log_study(uri, "st1", "uvac", 12, seed=11)
    res = build_report(["st1"], tracking_uri=uri, out_dir=tmp_path / "st", log_mlflow=False)
    table, _ = load_runs(["st1"], uri)
    panels = objective_panels(table, res.studies) + family_panels(table, res.studies, "dbi")
    assert panels[0]["x"] == "val/acc" and panels[0]["y"] == "val/silhouette_z"
    assert panels[0]["reference"].tolist() == [0.0, -1.0]
    assert all(p["title"] for p in panels)
    for panel in panels:
        steps = panel["series"][0]["steps"]
        assert len(steps) >= 1
        # steps only: every segment is horizontal or vertical, never a diagonal between two trials
        assert all(a[0] == b[0] or a[1] == b[1] for a, b in zip(steps[:-1], steps[1:]))
    # the objective panel's staircase runs from the reference's lines, the others do not
    ref = panels[0]["reference"]
    st = panels[0]["series"][0]["steps"]
    assert st[0][1] == ref[1] and st[-1][0] == ref[0]
    assert panels[-1]["reference"] is None


def test_hypervolume_does_not_depend_on_the_other_studies(uri, tmp_path):
    log_study(uri, "h1", "uvac", 12, seed=21)
    log_study(uri, "h2", "uvac", 12, seed=22)
    alone = build_report(["h1"], tracking_uri=uri, out_dir=tmp_path / "a", log_mlflow=False).studies["h1"]
    beside = build_report(["h1", "h2"], tracking_uri=uri, out_dir=tmp_path / "b", log_mlflow=False).studies["h1"]
    assert alone.hypervolume > 0 and alone.hypervolume == beside.hypervolume
    assert alone.hypervolume_history == beside.hypervolume_history and alone.reference == beside.reference


def test_two_reports_with_different_objectives_keep_both(uri, tmp_path):
    parent, ids = log_study(uri, "k1", "uvac", 12, seed=31)
    first = build_report(["k1"], tracking_uri=uri, out_dir=tmp_path / "one").studies["k1"]
    second = build_report(["k1"], tracking_uri=uri, objectives=["val/dbi_z:min", "val/nmi"],
                          out_dir=tmp_path / "two").studies["k1"]
    assert first.key == KEY and second.key == "dbi_z-min__nmi-max"
    cl = MlflowClient(uri)
    for rep in (first, second):
        arts = {a.path for a in cl.list_artifacts(parent, f"pareto_report/{rep.key}")}
        assert f"pareto_report/{rep.key}/report.html" in arts
        local = mlflow.artifacts.download_artifacts(run_id=parent,
                                                    artifact_path=f"pareto_report/{rep.key}/summary.json",
                                                    dst_path=str(tmp_path / rep.key), tracking_uri=uri)
        summary = json.loads(Path(local).read_text())
        assert summary["k1"]["key"] == rep.key
        tags = {rid: cl.get_run(rid).data.tags[f"pareto.{rep.key}"] for rid in ids}
        assert {r for r, v in tags.items() if v == "true"} == set(rep.front_run_ids)
        assert cl.get_run(parent).data.tags[f"pareto.{rep.key}.n_runs"] == str(len(rep.front_run_ids))
    assert cl.get_run(parent).data.tags["study.objectives"] == "val/silhouette_z:max,val/acc:max"


def test_report_objective_override_with_min(uri, tmp_path):
    log_study(uri, "s3", "uvac", 12, seed=3)
    res = build_report(["s3"], tracking_uri=uri, objectives=["val/dbi_z:min", "val/nmi"],
                       out_dir=tmp_path / "o", log_mlflow=False)
    rep = res.studies["s3"]
    assert rep.objectives == [Objective("val/dbi_z", "min"), Objective("val/nmi", "max")]
    assert rep.reference == [5.0, 0.0]
    table, _ = load_runs(["s3"], uri)
    done = completed(table)
    front = done[done["run_id"].isin(rep.front_run_ids)]
    # no completed run beats a front run on both (lower dbi, higher nmi)
    for _, f in front.iterrows():
        better = done[(done["metrics.val/dbi_z"] <= f["metrics.val/dbi_z"])
                      & (done["metrics.val/nmi"] >= f["metrics.val/nmi"])
                      & ((done["metrics.val/dbi_z"] < f["metrics.val/dbi_z"])
                         | (done["metrics.val/nmi"] > f["metrics.val/nmi"]))]
        assert better.empty
    # no Optuna storage recorded: the report says so instead of rating the parameters
    assert all("records no Optuna storage" in n for n in rep.importance_notes.values()) and not rep.importances
    assert "records no Optuna storage" in (tmp_path / "o" / "report.html").read_text()
    # no tags written with log_mlflow=False
    cl = MlflowClient(uri)
    assert not any(k.startswith("pareto") for k in cl.get_run(rep.run_ids[0]).data.tags)


def test_importance_on_the_optuna_storage(uri, tmp_path):
    storage = _optuna_url(uri, "s4")
    log_study(uri, "s4", "uvac", 30, seed=4, storage=storage)  # silhouette = f(lam) + noise
    table, infos = load_runs(["s4"], uri)
    trials = load_trials(infos["s4"])
    # the storage's own distributions: lam log-scaled, as declared, not guessed from strings
    assert trials.trials[0].distributions["lam"].log and trials.metric_names == ["val/silhouette_z", "val/acc"]
    imp = param_importances(trials, table, "val/silhouette_z")
    assert max(imp.values, key=imp.values.get) == "lam"
    assert sum(imp.values.values()) == pytest.approx(1.0)
    done = completed(table)
    assert imp.n_trials == int(np.isfinite(done["metrics.val/silhouette_z"]).sum())
    # a metric that is not an Optuna objective: values from MLflow, the same trials
    dbi = param_importances(trials, table, "val/dbi_z")
    assert max(dbi.values, key=dbi.values.get) == "lam" and dbi.n_trials == imp.n_trials
    with pytest.raises(TooFewTrials, match="at least"):
        param_importances(trials, table, "val/silhouette_z", min_trials=40)
    # a storage that is gone: a message, and no database created in its place
    gone = tmp_path / "moved.db"
    infos["s4"].tags["study.storage"] = f"sqlite:///{gone}"
    with pytest.raises(StorageUnavailable, match="not found"):
        load_trials(infos["s4"])
    assert not gone.exists()


def test_cli_prints_table_and_fails_cleanly(uri, tmp_path, capsys):
    log_study(uri, "s5", "cat_uvac", 8, seed=5)
    r = subprocess.run([sys.executable, "-m", "analysis.report", "--study", "s5", "--tracking-uri", uri,
                        "--out", str(tmp_path / "cli")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "on the front" in r.stdout and (tmp_path / "cli" / "report.html").exists()
    from analysis.report import main
    assert main(["--study", "missing", "--tracking-uri", uri, "--out", str(tmp_path / "cli2")]) == 2
    assert "no study named 'missing'" in capsys.readouterr().err


def test_bad_objective_exits_2_before_anything_is_written(uri, tmp_path, capsys):
    from analysis.report import main
    parent, ids = log_study(uri, "s6", "uvac", 8, seed=6)
    out = tmp_path / "first"
    assert main(["--study", "s6", "--tracking-uri", uri, "--out", str(out)]) == 0
    csv_before = (out / "pareto_runs.csv").read_text()
    cl = MlflowClient(uri)
    tags_before = {rid: dict(cl.get_run(rid).data.tags) for rid in [parent, *ids]}
    capsys.readouterr()
    for bad, message in [("val/silhouete_z:max", "unknown objective 'val/silhouete_z' in study s6; valid: val/acc, "),
                         ("val/acc:max:min", "expected METRIC or METRIC:max|min"),
                         ("val/acc:best", "direction must be max or min"),
                         ("val/time_s:min", "no fixed hypervolume reference for 'val/time_s'")]:
        assert main(["--study", "s6", "--tracking-uri", uri, "--out", str(out), "--objective", bad]) == 2, bad
        assert message in capsys.readouterr().err, bad
        assert main(["--study", "s6", "--tracking-uri", uri, "--out", str(tmp_path / "never"),
                     "--objective", bad]) == 2
        assert not (tmp_path / "never").exists()
    assert (out / "pareto_runs.csv").read_text() == csv_before
    assert {rid: dict(cl.get_run(rid).data.tags) for rid in [parent, *ids]} == tags_before


@pytest.mark.slow
def test_report_and_replicate_on_a_real_study(tmp_path):
    """End to end: a real small study (Ray Tune + Optuna + MLflow through study.engine),
    then the report on it and a 2-seed replication of one of its Pareto runs."""
    ray = pytest.importorskip("ray")
    from study.engine import run_study
    from study.options import StudyOptions

    from analysis.tables import render_replication
    from study.replicate import replicate

    feats = tmp_path / "features"
    subprocess.run([sys.executable, "-m", "features.build", "--dataset", "synthetic", "--out", str(feats),
                    "--limit", "120", "--no-progress"], check=True, capture_output=True, text=True)
    tiny = {"channels": "4,8,8,8", "gru_hidden": 8, "batch_size": 64, "silhouette_sample": 200, "device": "cpu"}
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        res = run_study(StudyOptions(space="cat_uvac", features=str(feats), num_samples=4, epochs=1,
                                     max_concurrent=2, overrides=tiny, progress_every_s=1e9,
                                     storage=f"sqlite:///{tmp_path / 'optuna.db'}", tracking_uri=uri,
                                     storage_path=str(tmp_path / "ray"), study_name="e2e"))
    finally:
        ray.shutdown()
    rep_res = build_report(["e2e"], tracking_uri=uri, out_dir=tmp_path / "report")
    rep = rep_res.studies["e2e"]
    assert rep.n_runs == 4 and rep.objectives == [Objective("val/silhouette_z", "max"), Objective("val/acc", "max")]
    assert "needs at least" in " ".join(rep.importance_notes.values())  # 4 trials, read from the storage
    table, _ = load_runs(["e2e"], uri)
    done = completed(table)
    vals = done[["metrics.val/silhouette_z", "metrics.val/acc"]].to_numpy(float)
    expected = {done["run_id"].iloc[i] for i, v in enumerate(vals) if np.isfinite(v).all()
                and not any(np.isfinite(w).all() and _dominates(w, v, ["max", "max"]) for w in vals)}
    assert set(rep.front_run_ids) == expected
    # and the same trials as Optuna's own Pareto set, which the engine reports
    ours = sorted(int(n) for n in done.loc[done["run_id"].isin(expected), "trial_number"])
    assert ours == sorted(p["number"] for p in res.pareto)
    html = (tmp_path / "report" / "report.html").read_text()
    assert all(r in html for r in rep.front_run_ids)
    cl = MlflowClient(uri)
    for rid in table["run_id"]:
        assert cl.get_run(rid).data.tags[f"pareto.{KEY}"] == ("true" if rid in expected else "false")
    if expected:
        rr = replicate([sorted(expected)[0]], 2, tracking_uri=uri, name="e2e-rep", num_cpus=2)
        assert all(o["status"] == "complete" for o in rr.outcomes)
        t1 = render_replication("e2e-rep", uri, tmp_path / "rep").table
        assert len(t1) == 4 and list(t1["Seeds"]) == ["2/2"] * 4


def test_report_on_a_study_without_completed_trials(uri, tmp_path):
    cl = MlflowClient(uri)
    exp = cl.get_experiment_by_name("exp")
    exp_id = exp.experiment_id if exp else cl.create_experiment(
        "exp", artifact_location=(Path(uri[len("sqlite:///"):]).parent / "artifacts").as_uri())
    parent = cl.create_run(exp_id, run_name="empty", tags={
        "study.name": "empty", "study.kind": "study", "study.objectives": "val/silhouette_z:max,val/acc:max"})
    for t, st in enumerate(["pruned", "diverged"]):
        rid = cl.create_run(exp_id, tags={"mlflow.parentRunId": parent.info.run_id, "study.name": "empty",
                                          "trial.number": str(t), "trial.status": st}).info.run_id
        cl.log_batch(rid, metrics=[Metric("val/acc", 0.9, 0, 0), Metric("val/silhouette_z", 0.9, 0, 0)])
    res = build_report(["empty"], tracking_uri=uri, out_dir=tmp_path / "e")
    rep = res.studies["empty"]
    assert rep.front_run_ids == [] and rep.n_completed == 0 and rep.n_runs == 2
    assert rep.hypervolume == 0.0 and "records no Optuna storage" in " ".join(rep.importance_notes.values())
    assert "no Pareto-optimal run" in (tmp_path / "e" / "pareto_runs.md").read_text()
    assert (tmp_path / "e" / "report.html").stat().st_size > 1000
    tags = [r.data.tags.get(f"pareto.{KEY}") for r in cl.search_runs(
        [exp_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")]
    assert tags == ["false", "false"]
