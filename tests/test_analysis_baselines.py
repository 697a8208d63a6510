"""Baselines on every view of analysis.report: read generically from the parent run's
``baseline/<method>_<split>_<metric>`` metrics, drawn as reference lines on the axes that
have one (in the matplotlib and plotly figure objects), the strongest emphasised, the front
trials that beat it marked, listed in summary.json / report.html / the terminal; the
objective panels zoomed to the trials with the reference point as an arrow, front points
labelled with their trial numbers. Studies in a real MLflow (SQLite) store, written with the
layout of docs/ARCHITECTURE.md (tests.test_analysis_report.log_study)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from analysis import figures, page
from analysis.baselines import parse_baselines, parse_name
from analysis.report import build_report, family_panels, objective_panels
from analysis.runs import completed, load_runs
from tests.test_analysis_report import log_study

BASELINES = {"baseline/kmeans_val_acc": 0.45, "baseline/kmeans_test_acc": 0.40,
             "baseline/awe_gmm_val_acc": 0.62, "baseline/awe_gmm_test_acc": 0.50,
             "baseline/awe_gmm_val_nmi": 0.35, "baseline/kmeans_std_val_acc": 0.30,
             "study/hypervolume": 0.7}


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def test_baseline_names_are_parsed_generically():
    assert parse_name("baseline/kmeans_val_acc") == ("kmeans", "val/acc")
    assert parse_name("baseline/awe_kmeans_test_nmi") == ("awe_kmeans", "test/nmi")
    assert parse_name("baseline/kmeans_std_val_silhouette_x") == ("kmeans_std", "val/silhouette_x")
    assert parse_name("study/hypervolume") is None and parse_name("baseline/kmeans") is None
    b = parse_baselines({**BASELINES, "baseline/gmm_val_acc": float("nan")})
    assert b.methods == ["awe_gmm", "kmeans", "kmeans_std"]  # NaN left out, other metrics ignored
    assert b.values("val/acc") == {"awe_gmm": 0.62, "kmeans": 0.45, "kmeans_std": 0.30}
    assert b.strongest == "awe_gmm"  # no tag: the highest val/acc
    tagged = parse_baselines(BASELINES, {"baseline.strongest": "kmeans"})
    assert tagged.strongest == "kmeans" and tagged.reference("val/acc") == ("kmeans", 0.45)
    assert tagged.reference("val/nmi") == ("awe_gmm", 0.35)  # the strongest did not log nmi: the best one
    assert tagged.beats("val/acc", 0.46) and not tagged.beats("val/acc", 0.45)
    assert parse_baselines({}, {}).strongest is None and not parse_baselines({})


def _front(table, rep):
    done = completed(table[table["study"] == rep.study])
    return done[done["run_id"].isin(rep.front_run_ids)]


def test_baselines_on_every_view(uri, tmp_path):
    log_study(uri, "b1", "cat_uvac", 16, seed=46, baselines=BASELINES)
    out = tmp_path / "r"
    res = build_report(["b1"], tracking_uri=uri, out_dir=out, log_mlflow=False)
    rep = res.studies["b1"]
    table, _ = load_runs(["b1"], uri)
    front = _front(table, rep)
    # which front trials beat the strongest (awe_gmm 0.62 on val/acc), recomputed here
    expected = sorted(int(t) for t, a in zip(front["trial_number"], front["metrics.val/acc"]) if a > 0.62)
    assert rep.beating("val/acc") == expected and 0 < len(expected) < len(front)

    summary = json.loads((out / "summary.json").read_text())["b1"]["baselines"]
    assert summary["strongest"] == "awe_gmm" and set(summary["methods"]) == {"awe_gmm", "kmeans", "kmeans_std"}
    assert summary["methods"]["kmeans"] == {"val/acc": 0.45, "test/acc": 0.40}
    assert summary["reference"]["val/acc"] == {"method": "awe_gmm", "value": 0.62}
    assert summary["pareto_trials_beating"]["val/acc"] == expected

    # the PNG's figure objects: val baselines on the accuracy axis only, strongest emphasised,
    # front points labelled, the beating ones starred, axes zoomed with the reference as an arrow
    panels = objective_panels(table, res.studies)
    fig = figures.scatter_grid_figure(panels, "t")
    ax = fig.axes[0]
    lines = {l.get_gid(): l for l in ax.get_lines() if (l.get_gid() or "").startswith("baseline:")}
    assert set(lines) == {"baseline:awe_gmm:val/acc", "baseline:kmeans:val/acc", "baseline:kmeans_std:val/acc"}
    assert lines["baseline:awe_gmm:val/acc"].get_xdata()[0] == pytest.approx(0.62)  # vertical: acc is x
    assert lines["baseline:awe_gmm:val/acc"].get_linewidth() > lines["baseline:kmeans:val/acc"].get_linewidth()
    labels = sorted(int(t.get_text()) for t in ax.texts if t.get_gid() == "trial-label")
    assert labels == sorted(front["trial_number"].astype(int))
    baseline_labels = [t.get_text() for t in ax.texts if t.get_gid() == "baseline-label"]
    assert any("AWE GMM" in t and "0.62" in t and "strongest" in t for t in baseline_labels)
    stars = [c for c in ax.collections if c.get_gid() == "beats-baseline"]
    assert len(stars) == 1 and len(stars[0].get_offsets()) == len(expected)
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    vals = completed(table)[["metrics.val/acc", "metrics.val/silhouette_z"]].to_numpy(float)
    vals = vals[np.isfinite(vals).all(axis=1)]
    assert x0 <= vals[:, 0].min() and vals[:, 0].max() <= x1 and y0 <= vals[:, 1].min() and vals[:, 1].max() <= y1
    assert y0 > -1 + 0.5  # zoomed: the reference silhouette -1 is not in view ...
    assert [t for t in ax.texts if t.get_gid() == "reference-arrow"]  # ... but pointed at

    # NMI axes get the NMI baseline, never a test one
    nmi = [p for p in family_panels(table, res.studies, "dbi") if p["x"] == "val/nmi"][0]
    assert [(b["method"], b["metric"]) for b in nmi["baselines"]] == [("awe_gmm", "val/nmi")]
    # the same in the plotly figure of report.html
    hover = {"b1": ["metrics.val/acc"]}
    pfig = page.panel_figure(panels[0], completed(table), hover)
    names = {sh.name for sh in pfig.layout.shapes}
    assert {"baseline:awe_gmm:val/acc", "baseline:kmeans:val/acc"} <= names
    labelled = [a.text for a in pfig.layout.annotations if a.text and "baseline" in a.text]
    assert labelled and all(t.startswith("strongest baseline: AWE GMM") for t in labelled)  # the others: hover
    assert all(a.text for a in pfig.layout.annotations)  # plotly.js draws "new text" for an empty one
    hovers = {tr.name: tr.hovertext[0] for tr in pfig.data if (tr.name or "").startswith("hover:baseline:")}
    assert "K-means" in hovers["hover:baseline:kmeans:val/acc"]
    assert "AWE GMM" in hovers["hover:baseline:awe_gmm:val/acc"]
    texts = [t for tr in pfig.data if tr.text is not None for t in tr.text if t]
    assert sorted(map(int, texts)) == sorted(front["trial_number"].astype(int))
    assert any(a.name == "reference-arrow" for a in pfig.layout.annotations)
    assert any(tr.name == "beats the baseline" and len(tr.x) == len(expected) for tr in pfig.data)

    html = (out / "report.html").read_text()
    assert "AWE GMM (strongest)" in html and f"Pareto trials {', '.join(map(str, expected))} beat AWE GMM" in html
    csv = pd.read_csv(out / "pareto_runs.csv")
    beat = csv.set_index("trial")["beats baseline on"].fillna("")
    assert sorted(t for t, v in beat.items() if "val/acc" in v) == expected


def test_a_study_without_baselines_says_nothing_about_them(uri, tmp_path):
    log_study(uri, "b2", "uvac", 10, seed=42)
    res = build_report(["b2"], tracking_uri=uri, out_dir=tmp_path / "n", log_mlflow=False)
    table, _ = load_runs(["b2"], uri)
    panels = objective_panels(table, res.studies)
    assert all(p["baselines"] == [] for p in panels)
    ax = figures.scatter_grid_figure(panels, "t").axes[0]
    assert not [l for l in ax.get_lines() if (l.get_gid() or "").startswith("baseline:")]
    assert not [c for c in ax.collections if c.get_gid() == "beats-baseline"]
    summary = json.loads((tmp_path / "n" / "summary.json").read_text())["b2"]["baselines"]
    assert summary["methods"] == {} and summary["strongest"] is None
    assert "no baseline logged" in (tmp_path / "n" / "report.html").read_text()
    assert "beats baseline on" not in pd.read_csv(tmp_path / "n" / "pareto_runs.csv").columns


def test_strongest_tag_and_two_studies_on_one_panel(uri, tmp_path):
    log_study(uri, "b3", "cat_uvac", 10, seed=43, baselines={"baseline/kmeans_val_acc": 0.4,
                                                             "baseline/gmm_val_acc": 0.5},
              parent_tags={"baseline.strongest": "kmeans"})
    log_study(uri, "b4", "cat_uvac", 10, seed=44, baselines={"baseline/kmeans_val_acc": 0.3})
    res = build_report(["b3", "b4"], tracking_uri=uri, out_dir=tmp_path / "two", log_mlflow=False)
    table, _ = load_runs(["b3", "b4"], uri)
    lines = objective_panels(table, res.studies)[0]["baselines"]
    by = {(b["method"], b["value"]): b for b in lines}
    assert set(by) == {("kmeans", 0.4), ("gmm", 0.5), ("kmeans", 0.3)}
    assert by[("kmeans", 0.4)]["strongest"] and not by[("gmm", 0.5)]["strongest"]  # the tag wins over the max
    assert "(b3)" in by[("kmeans", 0.4)]["label"] and "(b4)" in by[("kmeans", 0.3)]["label"]


def test_baselines_with_the_same_value_share_one_line(uri, tmp_path):
    log_study(uri, "b6", "cat_uvac", 10, seed=46, baselines={"baseline/kmeans_val_acc": 0.4,
                                                             "baseline/kmeans_std_val_acc": 0.4,
                                                             "baseline/gmm_val_acc": 0.5},
              parent_tags={"baseline.strongest": "kmeans_std"})
    res = build_report(["b6"], tracking_uri=uri, out_dir=tmp_path / "same", log_mlflow=False)
    table, _ = load_runs(["b6"], uri)
    lines = [b for b in objective_panels(table, res.studies)[0]["baselines"] if b["metric"] == "val/acc"]
    assert len(lines) == 2
    shared = next(b for b in lines if b["value"] == 0.4)
    assert shared["methods"] == ["kmeans_std", "kmeans"] and shared["method"] == "kmeans_std" and shared["strongest"]
    assert " = " in shared["label"] and shared["label"].endswith("0.4")


def test_cli_prints_a_compact_table(uri, tmp_path):
    log_study(uri, "b5", "cat_uvac", 12, seed=45, baselines=BASELINES)
    r = subprocess.run([sys.executable, "-m", "analysis.report", "--study", "b5", "--tracking-uri", uri,
                        "--out", str(tmp_path / "c"), "--no-mlflow-log"], capture_output=True, text=True,
                       timeout=300, env={**__import__("os").environ, "COLUMNS": "100"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert max(len(l) for l in lines if not l.startswith(("full tables:", "report:"))) <= 100
    head = next(i for i, l in enumerate(lines) if l.split()[:2] == ["trial", "status"])
    rows = lines[head + 1:head + 13]
    assert [int(l.split()[0]) for l in rows] == list(range(12))  # every trial, with its status
    assert {l.split()[1] for l in rows} == {"complete", "pruned", "diverged", "failed"}
    assert "baselines: AWE GMM (strongest) val/acc=0.6200" in r.stdout and "val/acc: " in r.stdout
    assert "| study |" not in r.stdout  # the 30-column Markdown stays in the files
    assert (tmp_path / "c" / "pareto_runs.md").read_text().startswith("| study |")
    trials = pd.read_csv(tmp_path / "c" / "trials.csv")
    assert len(trials) == 12 and {"lam", "d_z", "divergence", "tau_kind", "run_id"} <= set(trials.columns)
