"""analysis.replicate: re-train chosen runs over seeds through a local Ray, on a real tiny
feature cache, with runs held in a real MLflow (SQLite); Table I with every row."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from analysis.replicate import ReplicationError, replicate, train_one
from analysis.tables import table_one, table_one_markdown

# A tiny network: the replication machinery is under test, not the models.
TINY = {"channels": "4,8,8,8", "gru_hidden": 8, "d_z": 4, "batch_size": 16, "device": "cpu",
        "silhouette_sample": 200}


def _study_with_runs(uri, tmp_path, cache_dir, cache_key, configs):
    """A study parent (fixed.features, study.cache_key) and one child run per config."""
    cl = MlflowClient(uri)
    exp = cl.create_experiment("exp", artifact_location=(tmp_path / "artifacts").as_uri())
    parent = cl.create_run(exp, run_name="st", tags={
        "study.name": "st", "study.kind": "study", "study.space": "cat_uvac", "study.cache_key": cache_key,
        "study.objectives": "val/silhouette_z:max,val/acc:max"}).info.run_id
    cl.log_param(parent, "fixed.features", str(cache_dir))
    ids = []
    for i, cfg in enumerate(configs):
        rid = cl.create_run(exp, run_name=f"st-trial-{i}", tags={
            "mlflow.parentRunId": parent, "study.name": "st", "trial.number": str(i),
            "trial.status": "complete"}).info.run_id
        for k, v in cfg.items():
            cl.log_param(rid, k, v)
        cl.set_terminated(rid)
        ids.append(rid)
    return ids


def _tiny(**kw):
    cfg = dict(TINY)
    cfg.update({"epochs": 1, "n_clusters": 0}, **kw)
    return cfg


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


def test_replicate_two_seeds_all_rows(tmp_path, tiny_cache):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    table = tiny_cache.table
    ids = _study_with_runs(uri, tmp_path, tiny_cache.dir, table.cache_key,
                           [_tiny(model="cat_uvac", lam=0.5), _tiny(model="uvac", divergence="euc")])
    out = tmp_path / "rep"
    res = replicate(ids, 2, tracking_uri=uri, out_dir=out, num_cpus=2)
    t = res.table.set_index("Method")
    labels = list(t.index)
    assert len(labels) == 5
    assert any(ids[0][:8] in m and m.startswith("cat_uvac") for m in labels)
    assert any(ids[1][:8] in m and m.startswith("uvac") for m in labels)
    assert {"K-means", "GMM-EM", "labels as clusters"} <= set(labels)
    seeds = res.seeds
    assert len(seeds) == 5 * 2 and set(seeds["seed"]) == {0, 1}
    assert (seeds["status"] == "complete").all(), seeds[["method", "status", "reason"]]
    # the table is the mean of the per-seed rows (x100 for ACC)
    for method, grp in seeds.groupby("method"):
        assert t.loc[method, "ACC % mean"] == pytest.approx(100 * grp["test/acc"].mean())
        assert t.loc[method, "NMI mean"] == pytest.approx(grp["test/nmi"].mean())
        assert t.loc[method, "Seeds"] == "2/2"
    # labels as clusters: the true partition
    assert t.loc["labels as clusters", "ACC % mean"] == pytest.approx(100.0)
    assert t.loc["labels as clusters", "NMI mean"] == pytest.approx(1.0)
    assert t.loc["labels as clusters", "Repr."] == "x"
    cat = [m for m in labels if m.startswith("cat_uvac")][0]
    assert t.loc[cat, "Repr."] == "y" and math.isfinite(t.loc[cat, "DBI mean"])
    # the run's params really are the config: seed 0 in-process gives the same test metrics
    cfg = _tiny(model="uvac", divergence="euc")
    again = train_one(cfg, str(tiny_cache.dir), 0)
    row0 = seeds[(seeds["source_run"] == ids[1]) & (seeds["seed"] == 0)].iloc[0]
    assert again["metrics"]["test/acc"] == pytest.approx(row0["test/acc"])
    assert again["metrics"]["test/nmi"] == pytest.approx(row0["test/nmi"])

    md = (out / "table_one.md").read_text()
    for m in labels:
        assert m in md
    csv = pd.read_csv(out / "table_one.csv")
    assert list(csv["Method"]) == list(res.table["Method"])
    assert "ACC %" in csv.columns and "CHI x1e3 mean" in csv.columns

    cl = MlflowClient(uri)
    parent = cl.get_run(res.parent_run_id)
    assert parent.data.tags["study.kind"] == "replication"
    assert parent.data.tags["replication.source_runs"] == ",".join(ids)
    children = cl.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{res.parent_run_id}'")
    assert len(children) == 10
    assert all("test/acc" in c.data.metrics for c in children)
    arts = {a.path for a in cl.list_artifacts(res.parent_run_id, "replication")}
    assert {"replication/table_one.md", "replication/table_one.csv", "replication/seeds.csv"} <= arts


def test_replicate_refuses_another_cache(tmp_path, tiny_cache):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ids = _study_with_runs(uri, tmp_path, tiny_cache.dir, "not-the-same-key", [_tiny(model="uvac")])
    with pytest.raises(ReplicationError, match="cache_key"):
        replicate(ids, 1, tracking_uri=uri, out_dir=tmp_path / "x")
    r = subprocess.run([sys.executable, "-m", "analysis.replicate", "--run", ids[0], "--seeds", "1",
                        "--tracking-uri", uri, "--out", str(tmp_path / "y")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "cache_key" in r.stderr
