"""study.replicate: re-train chosen runs over seeds through a local Ray, on a real tiny feature
cache, with runs held in a real MLflow (SQLite); every replicate is a child run (failures and
divergences included) and analysis.tables renders Table I from those runs alone."""
from __future__ import annotations

import math
import subprocess
import sys

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from analysis.tables import render_replication
from study.ray_runtime import init_ray
from study.replicate import ReplicationError, main, replicate, train_one

# A tiny network: the replication machinery is under test, not the models.
TINY = {"channels": "4,8,8,8", "gru_hidden": 8, "d_z": 4, "batch_size": 16, "device": "cpu",
        "silhouette_sample": 200}


def _study_with_runs(uri, tmp_path, cache_dir, cache_key, configs, experiment="exp"):
    """A study parent (fixed.features, study.cache_key) and one child run per config."""
    cl = MlflowClient(uri)
    exp = cl.create_experiment(experiment, artifact_location=(tmp_path / "artifacts").as_uri())
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


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (replicate leaves a running Ray as it is)."""
    import ray
    assert init_ray(None, 2) is True
    assert init_ray(None, 2) is False  # already up: left as it is
    assert len(ray.nodes()) == 1 and ray.cluster_resources()["CPU"] == 2  # a fresh local one, 2 CPUs
    yield
    ray.shutdown()


def _children(cl, parent_id):
    exp = cl.get_run(parent_id).info.experiment_id
    return cl.search_runs([exp], f"tags.mlflow.parentRunId = '{parent_id}'")


def test_replicate_two_seeds_all_rows(tmp_path, tiny_cache, local_ray):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ids = _study_with_runs(uri, tmp_path, tiny_cache.dir, tiny_cache.table.cache_key,
                           [_tiny(model="cat_uvac", lam=0.5), _tiny(model="uvac", divergence="euc")])
    res = replicate(ids, 2, tracking_uri=uri, name="rep-a")
    assert res.completed_sources == 4 and all(o["status"] == "complete" for o in res.outcomes)

    cl = MlflowClient(uri)
    parent = cl.get_run(res.parent_run_id)
    assert parent.info.run_name == "rep-a" and parent.info.status == "FINISHED"
    tags = parent.data.tags
    assert tags["study.kind"] == "replication" and tags["replication.name"] == "rep-a"
    assert tags["replication.source_runs"] == ",".join(ids) and tags["replication.seeds"] == "2"
    assert tags["replication.state"] == "finished" and tags["replication.completed"] == "10/10"
    children = _children(cl, res.parent_run_id)
    assert len(children) == 5 * 2
    assert {(c.data.tags["replication.source_run"], c.data.tags["replication.seed"]) for c in children
            if c.data.tags["replication.source_run"]} == {(r, s) for r in ids for s in ("0", "1")}
    assert sorted(c.data.tags["replication.model"] for c in children
                  if not c.data.tags["replication.source_run"]) == sorted(["kmeans", "gmm", "labels"] * 2)
    for c in children:
        assert c.info.status == "FINISHED" and c.data.tags["trial.status"] == "complete"
        assert c.data.params["seed"] == c.data.tags["replication.seed"] and "test/acc" in c.data.metrics
        assert not any(k.startswith(("val/", "train/")) for k in c.data.metrics)
    uvac0 = next(c for c in children if c.data.tags["replication.source_run"] == ids[1]
                 and c.data.tags["replication.seed"] == "0")
    assert uvac0.data.params["divergence"] == "euc" and uvac0.data.params["model"] == "uvac"
    # the run's params really are the config: seed 0 in-process gives the same test metrics
    again = train_one(_tiny(model="uvac", divergence="euc"), tiny_cache.table, 0)
    assert again["metrics"]["test/acc"] == pytest.approx(uvac0.data.metrics["test/acc"])
    assert again["metrics"]["test/nmi"] == pytest.approx(uvac0.data.metrics["test/nmi"])

    # Table I from MLflow alone, by name and by parent run id
    out = tmp_path / "table"
    rendered = render_replication("rep-a", uri, out)
    t = rendered.table.set_index("Method")
    labels = list(rendered.table["Method"])
    assert len(labels) == 5 and labels[2:] == ["K-means", "GMM-EM", "labels as clusters"]
    assert labels[0].startswith("cat_uvac") and ids[0][:8] in labels[0]
    assert labels[1].startswith("uvac") and ids[1][:8] in labels[1]
    seeds = rendered.seeds
    assert len(seeds) == 10 and set(seeds["seed"]) == {0, 1}
    for method, grp in seeds.groupby("method"):
        assert t.loc[method, "ACC % mean"] == pytest.approx(100 * grp["test/acc"].mean())
        assert t.loc[method, "NMI mean"] == pytest.approx(grp["test/nmi"].mean())
        assert t.loc[method, "Seeds"] == "2/2" and t.loc[method, "Not completed"] == ""
    assert t.loc["labels as clusters", "ACC % mean"] == pytest.approx(100.0)
    assert t.loc["labels as clusters", "NMI mean"] == pytest.approx(1.0)
    assert t.loc[labels[0], "Repr."] == "y" and math.isfinite(t.loc[labels[0], "DBI mean"])
    md = (out / "table_one.md").read_text()
    assert all(m in md for m in labels) and "replication rep-a" in md and "[replication" not in md
    assert list(pd.read_csv(out / "table_one.csv")["Method"]) == labels
    assert len(pd.read_csv(out / "seeds.csv")) == 10
    by_id = render_replication(res.parent_run_id, uri, tmp_path / "by-id")
    assert by_id.markdown == rendered.markdown

    # a name is taken once, refused before anything runs
    with pytest.raises(ReplicationError, match="already exists"):
        replicate(ids, 1, tracking_uri=uri, name="rep-a")


def test_failed_and_diverged_replicates_are_recorded(tmp_path, tiny_cache, local_ray, capsys):
    """Every replicate fails (device cuda, and Ray gives a task without GPUs none) or diverges
    (lr 1e12): the CLI exits 1, the runs say why, and the table shows 0 completed seeds with
    the reasons."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ids = _study_with_runs(uri, tmp_path, tiny_cache.dir, tiny_cache.table.cache_key,
                           [_tiny(model="uvac", device="cuda"),
                            _tiny(model="cat_uvac", divergence="euc", lr_start=1e12, lr_end=1e-5)])
    code = main(["--run", ids[0], "--run", ids[1], "--seeds", "1", "--no-baselines", "--name", "bad",
                 "--tracking-uri", uri])
    assert code == 1
    assert "every replicate of the chosen runs failed" in capsys.readouterr().err
    cl = MlflowClient(uri)
    parent = cl.search_runs([cl.get_experiment_by_name("exp").experiment_id],
                            "tags.`replication.name` = 'bad' and tags.`study.kind` = 'replication'")[0]
    assert parent.info.status == "FAILED" and parent.data.tags["replication.state"] == "failed"
    children = {c.data.tags["replication.source_run"]: c for c in _children(cl, parent.info.run_id)}
    assert set(children) == set(ids)
    bad, diverged = children[ids[0]], children[ids[1]]
    assert bad.data.tags["trial.status"] == "failed"
    assert "CUDA is not available" in bad.data.tags["trial.reason"]
    assert diverged.data.tags["trial.status"] == "diverged" and "non-finite" in diverged.data.tags["trial.reason"]
    assert bad.info.status == diverged.info.status == "FAILED"

    rendered = render_replication("bad", uri, tmp_path / "t")
    t = rendered.table.set_index("Method")
    assert list(t["Seeds"]) == ["0/1", "0/1"] and list(t["ACC %"]) == ["-", "-"]
    assert "seed 0 diverged: " in t.iloc[1]["Not completed"]
    assert "[replication failed]" in rendered.markdown and "not completed: seed 0 failed" in rendered.markdown


def test_set_changes_every_chosen_runs_config_and_is_recorded(tmp_path, tiny_cache, local_ray):
    """--set restarts=2 --set restart_combine=vote: a trial trained once in its study, repeated as a vote."""
    import json

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ids = _study_with_runs(uri, tmp_path, tiny_cache.dir, tiny_cache.table.cache_key, [_tiny(model="uvac")])
    votes = {"restarts": 2, "restart_combine": "vote"}
    res = replicate(ids, 1, tracking_uri=uri, name="rep-vote", baselines=False, overrides=votes)
    assert [o["status"] for o in res.outcomes] == ["complete"]
    cl = MlflowClient(uri)
    assert json.loads(cl.get_run(res.parent_run_id).data.tags["replication.overrides"]) == votes
    child = _children(cl, res.parent_run_id)[0]
    assert child.data.params["restarts"] == "2" and child.data.params["restart_combine"] == "vote"
    again = train_one({**_tiny(model="uvac"), **votes}, tiny_cache.table, 0)  # the vote, not the single run
    assert again["metrics"]["test/acc"] == pytest.approx(child.data.metrics["test/acc"])
    for bad, words in [({"seed": 3}, "set by the replication itself"), ({"no_such_key": 1}, "unknown config key"),
                       ({"restarts": 0}, "restarts")]:
        with pytest.raises(ReplicationError, match=words):
            replicate(ids, 1, tracking_uri=uri, name=f"rep-bad-{len(words)}", overrides=bad)
    assert main(["--run", ids[0], "--seeds", "1", "--tracking-uri", uri, "--set", "restarts"]) == 2


def test_replicate_refuses_bad_input_before_any_run(tmp_path, tiny_cache, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ids = _study_with_runs(uri, tmp_path, tiny_cache.dir, "not-the-same-key", [_tiny(model="uvac")])
    with pytest.raises(ReplicationError, match="cache_key"):
        replicate(ids, 1, tracking_uri=uri)
    with pytest.raises(ReplicationError, match="more than once"):
        replicate([ids[0], ids[0]], 1, tracking_uri=uri)
    with pytest.raises(ReplicationError, match="--seeds"):
        replicate(ids, 0, tracking_uri=uri)
    bad = _study_with_runs(uri, tmp_path, tiny_cache.dir, tiny_cache.table.cache_key,
                           [_tiny(model="uvac", divergence="no-such-divergence")], experiment="exp2")
    with pytest.raises(ReplicationError, match="not a valid training config: divergence"):
        replicate(bad, 1, tracking_uri=uri)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReplicationError, match="not a feature cache"):
        replicate(ids, 1, tracking_uri=uri, features=str(tmp_path / "empty"))
    r = subprocess.run([sys.executable, "-m", "study.replicate", "--run", ids[0], "--seeds", "1",
                        "--tracking-uri", uri], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "cache_key" in r.stderr
    assert main(["--run", "0" * 32, "--seeds", "1", "--tracking-uri", uri]) == 2
    assert "error: Run with id=" + "0" * 32 + " not found" in capsys.readouterr().err
    cl = MlflowClient(uri)
    exps = [cl.get_experiment_by_name(e).experiment_id for e in ("exp", "exp2")]
    assert cl.search_runs(exps, "tags.`study.kind` = 'replication'") == []


def test_init_ray_refuses_bad_options():
    """Refused before Ray is touched: a cluster's size is its own, and CPUs count from 1."""
    with pytest.raises(ValueError, match="local Ray instance only"):
        init_ray("auto", 2)
    with pytest.raises(ValueError, match="num_cpus must be >= 1"):
        init_ray(None, 0)
