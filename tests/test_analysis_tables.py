"""analysis.tables: Table I (pure), rendered from a replication's MLflow runs (a real SQLite
store, runs written by hand in the layout of docs/ARCHITECTURE.md), and the boundary of the
analysis package: it reads MLflow and never imports the training stack."""
from __future__ import annotations

import ast
import json
import math
import pkgutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

import analysis
from analysis.tables import main, render_replication, table_one, table_one_markdown

# What analysis must never import (it reads MLflow only): docs/ARCHITECTURE.md.
FORBIDDEN = ("ray", "torch", "features", "trainables.loop")


def test_table_one_pure():
    rows = [
        {"method": "A", "model": "cat_uvac", "n_runs": 3,
         "metrics": [{"test/acc": 0.5, "test/nmi": 0.4, "test/silhouette_y": 0.9, "test/silhouette_z": 0.1,
                      "test/dbi_y": 0.2, "test/chi_y": 4000.0},
                     {"test/acc": 0.7, "test/nmi": 0.6, "test/silhouette_y": 0.7, "test/silhouette_z": 0.3,
                      "test/dbi_y": 0.4, "test/chi_y": float("nan")}]},
        {"method": "B", "model": "kmeans", "n_runs": 1,
         "metrics": [{"test/acc": 0.2, "test/nmi": 0.1, "test/silhouette_x": 0.13, "test/dbi_x": 2.0,
                      "test/chi_x": 690.0}]},
    ]
    t = table_one(rows)
    a = t.set_index("Method").loc["A"]
    assert a["Repr."] == "y" and a["Seeds"] == "2/3"
    assert a["ACC % mean"] == pytest.approx(60.0) and a["ACC % std"] == pytest.approx(math.sqrt(200.0))
    assert a["Silhouette mean"] == pytest.approx(0.8)
    assert a["CHI x1e3 mean"] == pytest.approx(4.0) and a["CHI x1e3 n"] == 1  # NaN left out
    assert a["ACC %"] == f"60.00 ± {math.sqrt(200.0):.2f}"
    b = t.set_index("Method").loc["B"]
    assert b["Repr."] == "x" and b["Silhouette"] == "0.13 ± 0.00" and b["CHI x1e3"] == "0.69 ± 0.00"
    md = table_one_markdown(t)
    assert "| A | y | 2/3 |" in md and "CHI x1e3 is NaN" in md
    # a chosen representation wins over the model default
    assert table_one([{**rows[0], "representation": "z"}]).loc[0, "Silhouette mean"] == pytest.approx(0.2)

    # seeds that did not complete are listed with their reason
    t = table_one([{**rows[1], "failures": ["seed 1 diverged: non-finite loss"]}])
    assert t.loc[0, "Not completed"] == "seed 1 diverged: non-finite loss"
    assert "- B: not completed: seed 1 diverged: non-finite loss" in table_one_markdown(t)
    assert table_one(rows).loc[0, "Not completed"] == ""


def _replication(uri, tmp_path, name="rep", state="interrupted"):
    """A replication as study.replicate writes it: one chosen run x 3 seeds (seed 1 diverged,
    seed 2 never finished) and K-means x 2 seeds (one without a silhouette: collapsed)."""
    cl = MlflowClient(uri)
    exp = cl.create_experiment("exp", artifact_location=(tmp_path / "artifacts").as_uri())
    parent = cl.create_run(exp, run_name=name, tags={
        "study.kind": "replication", "replication.name": name, "replication.state": state,
        "replication.source_runs": "a" * 32, "replication.seeds": "3", "replication.baselines": "kmeans,gmm,labels",
        "replication.features": "/x/features/fsdd-compact", "study.cache_key": "0123456789abcdef"}).info.run_id
    children = [  # (label, model, source, seed, status, reason, metrics), written out of order
        ("K-means", "kmeans", "", 1, "complete", "", {"test/acc": 0.3, "test/nmi": 0.2, "test/silhouette_x": 0.1}),
        ("uvac st trial 3 (aaaaaaaa)", "uvac", "a" * 32, 2, "running", "", {}),
        ("uvac st trial 3 (aaaaaaaa)", "uvac", "a" * 32, 0, "complete", "",
         {"test/acc": 0.5, "test/nmi": 0.4, "test/silhouette_z": 0.2, "test/silhouette_y": 0.9}),
        ("uvac st trial 3 (aaaaaaaa)", "uvac", "a" * 32, 1, "diverged", "non-finite loss term kl_z", {}),
        ("K-means", "kmeans", "", 0, "complete", "", {"test/acc": 0.5, "test/nmi": 0.4}),
    ]
    for label, model, src, seed, status, reason, metrics in children:
        rid = cl.create_run(exp, run_name=f"{label} seed {seed}", tags={
            "mlflow.parentRunId": parent, "replication.name": name, "replication.method": label,
            "replication.model": model, "replication.source_run": src, "replication.seed": str(seed),
            "trial.status": status, "trial.reason": reason}).info.run_id
        cl.log_batch(rid, metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()]
                     + [Metric("val/acc", 0.99, 0, 0)])
    return parent


def test_render_replication_from_mlflow(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = _replication(uri, tmp_path)
    res = render_replication("rep", uri, tmp_path / "out")
    assert res.replication.parent_run_id == parent
    t = res.table
    assert list(t["Method"]) == ["uvac st trial 3 (aaaaaaaa)", "K-means"]  # chosen runs first, then baselines
    uvac, km = t.iloc[0], t.iloc[1]
    assert uvac["Seeds"] == "1/3" and uvac["Repr."] == "z" and uvac["ACC % mean"] == pytest.approx(50.0)
    assert uvac["Not completed"] == "seed 1 diverged: non-finite loss term kl_z; seed 2 running"
    assert km["Seeds"] == "2/2" and km["ACC % mean"] == pytest.approx(40.0)
    assert km["ACC % std"] == pytest.approx(100 * math.sqrt(0.02))
    assert km["Silhouette mean"] == pytest.approx(0.1) and km["Silhouette n"] == 1
    md = (tmp_path / "out" / "table_one.md").read_text()
    assert md.startswith("Table I: test split of fsdd-compact, 3 seed(s) (cache 0123456789ab), replication rep "
                         "[replication interrupted]")
    assert "K-means: Silhouette is NaN (collapsed clustering) for 1 seed(s)" in md
    assert "uvac st trial 3 (aaaaaaaa): not completed: seed 1 diverged" in md
    seeds = pd.read_csv(tmp_path / "out" / "seeds.csv")
    assert list(zip(seeds["method"].str[:4], seeds["seed"])) == [("uvac", 0), ("uvac", 1), ("uvac", 2),
                                                                 ("K-me", 0), ("K-me", 1)]
    assert not any(c.startswith("val/") for c in seeds.columns)  # the test split only
    assert render_replication(parent, uri, tmp_path / "by-id").markdown == res.markdown

    assert main(["--replication", "rep", "--tracking-uri", uri, "--out", str(tmp_path / "cli")]) == 0
    assert "| K-means | x | 2/2 | 40.00 ± 14.14 |" in capsys.readouterr().out
    for missing in ("nope", "uvac st trial 3 (aaaaaaaa) seed 0"):  # a child's name is not a replication
        assert main(["--replication", missing, "--tracking-uri", uri, "--out", str(tmp_path / "x")]) == 2
        assert "no replication named" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def _analysis_modules() -> list[str]:
    return ["analysis"] + [f"analysis.{m.name}" for m in pkgutil.iter_modules(analysis.__path__)]


@pytest.fixture(scope="module")
def modules_loaded_by_analysis() -> set[str]:
    """sys.modules of a fresh interpreter after importing every analysis module."""
    mods = _analysis_modules()
    assert "analysis.tables" in mods and "analysis.replicate" not in mods
    code = ("import importlib, json, sys\n"
            f"for m in {mods!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted(sys.modules)))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=Path(analysis.__file__).resolve().parent.parent)
    assert r.returncode == 0, r.stderr
    return set(json.loads(r.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("name", FORBIDDEN)
def test_analysis_imports_no_training_stack(modules_loaded_by_analysis, name):
    """Importing every analysis module loads none of ray, torch, features, trainables.loop ..."""
    loaded = sorted(n for n in modules_loaded_by_analysis if n == name or n.startswith(name + "."))
    assert loaded == []


@pytest.mark.parametrize("path", sorted(Path(analysis.__file__).parent.glob("*.py")), ids=lambda p: p.name)
def test_analysis_source_never_imports_training_stack(path):
    """... and no import statement in analysis/, also inside functions, names one of them."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    bad = [n for n in names if any(n == f or n.startswith(f + ".") for f in FORBIDDEN)]
    assert bad == [], f"{path.name} imports {bad}"
