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
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

mlflow = pytest.importorskip("mlflow")
from mlflow.entities import Metric, Param  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from analysis.importance import TooFewTrials, param_importances  # noqa: E402
from analysis.report import build_report  # noqa: E402
from analysis.runs import completed, load_runs  # noqa: E402


def _dominates(a, b, dirs):
    la = [(-x if d == "max" else x) for x, d in zip(a, dirs)]
    lb = [(-x if d == "max" else x) for x, d in zip(b, dirs)]
    return all(p <= q for p, q in zip(la, lb)) and any(p < q for p, q in zip(la, lb))


def log_study(uri, name, space, n, seed, objectives="val/silhouette_z:max,val/acc:max", experiment="exp",
              artifacts=None):
    """A parent + n child runs with random params/metrics; a few pruned/diverged/failed
    children get the best values of all, so that they would win if not excluded."""
    cl = MlflowClient(uri)
    exp = cl.get_experiment_by_name(experiment)
    if artifacts is None and uri.startswith("sqlite:///"):  # beside the database, never in the cwd
        artifacts = Path(uri[len("sqlite:///"):]).parent / "artifacts"
    loc = Path(artifacts).as_uri() if artifacts else None  # a server: its own artifact store
    exp_id = exp.experiment_id if exp else cl.create_experiment(experiment, artifact_location=loc)
    parent = cl.create_run(exp_id, run_name=name, tags={
        "study.name": name, "study.space": space, "study.dataset": "synthetic", "study.cache_key": "k",
        "study.git_commit": "x", "study.objectives": objectives, "study.kind": "study"}).info.run_id
    rng = np.random.default_rng(seed)
    kinds = ["constant", "linear", "cosine"]
    statuses = ["complete"] * n
    statuses[1], statuses[3], statuses[5] = "pruned", "diverged", "failed"
    ids = []
    for t in range(n):
        st = statuses[t]
        rid = cl.create_run(exp_id, run_name=f"{name}-trial-{t}", tags={
            "mlflow.parentRunId": parent, "study.name": name, "trial.number": str(t),
            "trial.status": st, "trial.reason": "" if st == "complete" else st}).info.run_id
        lam = float(np.exp(rng.uniform(np.log(0.1), np.log(4.0))))
        params = {"model": space, "d_z": int(rng.integers(4, 33)), "lam": lam,
                  "divergence": str(rng.choice(["euc", "is", "kl"])), "tau_kind": str(rng.choice(kinds)),
                  "epochs": 3, "use_mask": True}
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
    cl.set_terminated(parent)
    return parent, ids


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


def test_report_two_studies(uri, tmp_path):
    log_study(uri, "s1", "cat_uvac", 14, seed=1)
    log_study(uri, "s2", "uvac", 12, seed=2)
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
        # the hypervolume history grows and ends at the front's hypervolume
        hist = np.array(rep.hypervolume_history)
        assert len(hist) == len(done) and np.all(np.diff(hist) >= -1e-12)
        assert hist[-1] == pytest.approx(rep.hypervolume) and rep.hypervolume > 0

    for name in ("pareto_silhouette.png", "pareto_dbi.png", "pareto_chi.png", "hypervolume.png",
                 "importance.png", "report.html", "pareto_runs.csv", "pareto_runs.md", "summary.json"):
        assert (out / name).stat().st_size > 200, name
    html = (out / "report.html").read_text()
    all_front = [r for rep in res.studies.values() for r in rep.front_run_ids]
    for rid in all_front:
        assert rid in html
    # self-contained: plotly.js inline (megabytes), no external script
    assert "<script src=" not in html and len(html) > 1_000_000 and "Plotly.newPlot" in html
    # hover of a Pareto run carries its id, its params and its metrics
    rid = all_front[0]
    row = table.set_index("run_id").loc[rid]
    hovers = [json.loads(h) for h in re.findall(r'"hovertext":(\[.*?\])', html)]
    mine = [h for hs in hovers for h in hs if rid in h]
    assert mine, "no hover text for a Pareto run"
    assert f"d_z={row['params.d_z']}" in mine[0] and f"divergence={row['params.divergence']}" in mine[0]
    assert f"val/acc={row['metrics.val/acc']:.4g}" in mine[0]

    csv = pd.read_csv(out / "pareto_runs.csv")
    assert sorted(csv["run_id"]) == sorted(all_front)
    assert "test/acc" in csv.columns and "test/silhouette_z" in csv.columns
    md = (out / "pareto_runs.md").read_text()
    assert all(rid in md for rid in all_front)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"s1", "s2"}

    # MLflow: tags on every child, artifacts on each parent
    cl = MlflowClient(uri)
    for study in ("s1", "s2"):
        exp = cl.get_experiment_by_name("exp").experiment_id
        tagged = cl.search_runs([exp], f"tags.pareto = 'true' and tags.`study.name` = '{study}'")
        assert {r.info.run_id for r in tagged} == set(res.studies[study].front_run_ids)
        untagged = cl.search_runs([exp], f"tags.pareto = 'false' and tags.`study.name` = '{study}'")
        assert len(tagged) + len(untagged) == res.studies[study].n_runs
        parent = cl.search_runs([exp], f"tags.`study.kind` = 'study' and tags.`study.name` = '{study}'")[0]
        arts = {a.path for a in cl.list_artifacts(parent.info.run_id, "pareto_report")}
        assert "pareto_report/report.html" in arts and "pareto_report/pareto_runs.csv" in arts


def test_report_objective_override_with_min(uri, tmp_path):
    log_study(uri, "s3", "uvac", 12, seed=3)
    res = build_report(["s3"], tracking_uri=uri, objectives=["val/dbi_z:min", "val/nmi"],
                       out_dir=tmp_path / "o", log_mlflow=False)
    rep = res.studies["s3"]
    assert rep.objectives == [("val/dbi_z", "min"), ("val/nmi", "max")]
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
    # no tags written with log_mlflow=False
    cl = MlflowClient(uri)
    assert "pareto" not in cl.get_run(rep.run_ids[0]).data.tags


def test_importance_finds_the_parameter_that_drives_the_metric(uri):
    log_study(uri, "s4", "uvac", 30, seed=4)  # silhouette = f(lam) + noise
    table, _ = load_runs(["s4"], uri)
    imp = param_importances(table, "val/silhouette_z", "max")
    assert max(imp, key=imp.get) == "lam"
    assert sum(imp.values()) == pytest.approx(1.0)
    with pytest.raises(TooFewTrials, match="at least"):
        param_importances(table.iloc[:4], "val/silhouette_z", "max")


def test_cli_prints_table_and_fails_cleanly(uri, tmp_path, capsys):
    log_study(uri, "s5", "cat_uvac", 8, seed=5)
    r = subprocess.run([sys.executable, "-m", "analysis.report", "--study", "s5", "--tracking-uri", uri,
                        "--out", str(tmp_path / "cli")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "on the front" in r.stdout and (tmp_path / "cli" / "report.html").exists()
    from analysis.report import main
    assert main(["--study", "missing", "--tracking-uri", uri, "--out", str(tmp_path / "cli2")]) == 2
    assert "no study named 'missing'" in capsys.readouterr().err


@pytest.mark.slow
def test_report_and_replicate_on_a_real_study(tmp_path):
    """End to end: a real small study (Ray Tune + Optuna + MLflow through study.engine),
    then the report on it and a 2-seed replication of one of its Pareto runs."""
    ray = pytest.importorskip("ray")
    from study.engine import StudyOptions, run_study

    from analysis.replicate import replicate

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
    assert rep.n_runs == 4 and rep.objectives == [("val/silhouette_z", "max"), ("val/acc", "max")]
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
        assert cl.get_run(rid).data.tags["pareto"] == ("true" if rid in expected else "false")
    if expected:
        rr = replicate([sorted(expected)[0]], 2, tracking_uri=uri, out_dir=tmp_path / "rep", num_cpus=2)
        assert len(rr.table) == 4 and (rr.seeds["status"] == "complete").all()


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
    assert rep.hypervolume == 0.0 and "needs at least" in " ".join(rep.importance_notes.values())
    assert "no Pareto-optimal run" in (tmp_path / "e" / "pareto_runs.md").read_text()
    assert (tmp_path / "e" / "report.html").stat().st_size > 1000
    tags = [r.data.tags.get("pareto") for r in cl.search_runs(
        [exp_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")]
    assert tags == ["false", "false"]
