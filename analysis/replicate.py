"""``python -m analysis.replicate --run RUN_ID [--run ...] --seeds 10``: Table I over seeds.

Each chosen MLflow run (a trial of a study) is re-trained with its own params as config,
once per seed (``seed`` = 0..N-1), as Ray tasks (local Ray by default, ``--address`` for a
cluster), on the same feature cache: the cache directory comes from the run's params
(``features``) or its study's parent run (``fixed.features``), or ``--features``; the
table's ``cache_key`` must equal the parent's ``study.cache_key`` tag (``--allow-other-cache``
to skip the check). K-means, GMM-EM and labels-as-clusters are computed on the same data
with the same seeds (``trainables.baselines.run_baseline``).

Output: the papers' Table I (analysis.tables) on the TEST split as ``table_one.md`` and
``table_one.csv`` plus ``seeds.csv`` (one row per method x seed) in ``--out``; all logged
to MLflow under a parent run tagged ``study.kind=replication`` with one child run per
method x seed, in the experiment of the first chosen run.

``replicate(...)`` does the work; ``main`` is a thin CLI over it.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from analysis.runs import client, parse_value
from trainables.config import DEFAULTS
from analysis.tables import table_one, table_one_markdown

log = logging.getLogger(__name__)

BASELINES = [("kmeans", "K-means"), ("gmm", "GMM-EM"), ("labels", "labels as clusters")]


class ReplicationError(Exception):
    pass


@dataclass
class Source:
    run_id: str
    label: str
    model: str
    config: dict
    features: str
    cache_key: str
    experiment_id: str


@dataclass
class ReplicationResult:
    table: pd.DataFrame
    seeds: pd.DataFrame
    markdown: str
    parent_run_id: Optional[str] = None
    files: dict = field(default_factory=dict)


# ------------------------------------------------------------------ reading the runs
def source_from_run(run_id: str, tracking_uri: Optional[str] = None, features: Optional[str] = None) -> Source:
    cl = client(tracking_uri)
    run = cl.get_run(run_id)
    params = {k: parse_value(v) for k, v in run.data.params.items()}
    parent = None
    pid = run.data.tags.get("mlflow.parentRunId")
    if pid:
        parent = cl.get_run(pid)
    pparams = parent.data.params if parent else {}
    feats = features or params.get("features") or pparams.get("fixed.features") or pparams.get("features")
    if not feats or str(feats) == "None":
        raise ReplicationError(f"run {run_id}: no feature cache in its params nor its parent's "
                               f"(fixed.features); pass --features DIR")
    config = {k: v for k, v in params.items() if v is not None and k in DEFAULTS}
    dropped = sorted(set(params) - set(config))
    if dropped:
        log.info("run %s: params not in the training config, ignored: %s", run_id, ", ".join(dropped))
    model = str(config.get("model", parent.data.tags.get("study.space", "") if parent else ""))
    trial = run.data.tags.get("trial.number")
    study = run.data.tags.get("study.name", "")
    label = f"{model} {study} trial {trial} ({run_id[:8]})" if trial is not None else f"{model} ({run_id[:8]})"
    return Source(run_id=run_id, label=label, model=model, config=config, features=str(feats),
                  cache_key=(parent.data.tags.get("study.cache_key", "") if parent else ""),
                  experiment_id=run.info.experiment_id)


# ------------------------------------------------------------------ the Ray tasks
_TABLE_CACHE: dict = {}


def _table(features: str, split_scheme: Optional[str] = None):
    from features.cache import load_table
    key = (features, split_scheme or "")
    if key not in _TABLE_CACHE:
        _TABLE_CACHE.clear()
        kwargs = {"split_scheme": split_scheme} if split_scheme else {}
        _TABLE_CACHE[key] = load_table(features, **kwargs)
    return _TABLE_CACHE[key]


def _finite_metrics(metrics: dict, split: str = "test/") -> dict:
    out = {}
    for k, v in (metrics or {}).items():
        if not k.startswith(split) or isinstance(v, bool):
            continue
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            continue
    return out


def train_one(config: dict, features: str, seed: int) -> dict:
    """Train one seed of one config; returns status, reason and the test metrics."""
    import torch
    from trainables.loop import train
    torch.set_num_threads(1)
    cfg = {**config, "seed": int(seed)}
    table = _table(features, cfg.get("split_scheme") or None)
    res = train(cfg, table)
    return {"status": res.status, "reason": res.reason, "metrics": _finite_metrics(res.metrics)}


def baseline_one(method: str, features: str, n_clusters: int, seed: int, split_scheme: Optional[str] = None) -> dict:
    from trainables.baselines import run_baseline
    table = _table(features, split_scheme)
    n = int(n_clusters) or len(table.classes)
    out = run_baseline(method, table, n, int(seed))
    return {"status": "complete", "reason": "", "metrics": _finite_metrics(dict(out.metrics))}


def _safe(fn, *args) -> dict:
    try:
        return fn(*args)
    except Exception as exc:  # one seed failing is a result, not a crash of the table
        return {"status": "failed", "reason": f"{type(exc).__name__}: {exc}", "metrics": {}}


def _train_task(config: dict, features: str, seed: int) -> dict:
    return _safe(train_one, config, features, seed)


def _baseline_task(method: str, features: str, n_clusters: int, seed: int, split_scheme=None) -> dict:
    return _safe(baseline_one, method, features, n_clusters, seed, split_scheme)


# ------------------------------------------------------------------ the whole thing
def replicate(run_ids: Sequence[str], seeds: int = 10, *, tracking_uri: Optional[str] = None,
              out_dir: Optional[Path] = None, address: Optional[str] = None,
              features: Optional[str] = None, epochs: Optional[int] = None,
              baselines: bool = True, allow_other_cache: bool = False,
              log_mlflow: bool = True, num_cpus: Optional[int] = None) -> ReplicationResult:
    if not run_ids:
        raise ReplicationError("give at least one --run")
    if seeds < 1:
        raise ReplicationError(f"--seeds must be >= 1, got {seeds}")
    sources = [source_from_run(r, tracking_uri, features) for r in run_ids]
    feats = {s.features for s in sources}
    if len(feats) > 1 and not features:
        raise ReplicationError(f"the chosen runs use different feature caches: {sorted(feats)}; "
                               "Table I compares methods on one data set (pass --features to force one)")
    feature_dir = sources[0].features
    if not Path(feature_dir).exists():
        raise ReplicationError(f"feature cache {feature_dir} not found (pass --features DIR)")
    table = _table(feature_dir, sources[0].config.get("split_scheme") or None)
    for s in sources:
        if s.cache_key and table.cache_key != s.cache_key and not allow_other_cache:
            raise ReplicationError(f"run {s.run_id}: its study used cache_key {s.cache_key}, but {feature_dir} "
                                   f"holds {table.cache_key} (rebuild the same cache, or --allow-other-cache)")
        if epochs:
            s.config["epochs"] = int(epochs)
    n_clusters = int(sources[0].config.get("n_clusters", 0) or 0) or len(table.classes)
    split_scheme = sources[0].config.get("split_scheme") or None

    import ray
    started = False
    if not ray.is_initialized():
        kw = {"include_dashboard": False, "log_to_driver": False}
        if address:
            ray.init(address=address, **kw)
        else:
            # "local": always a fresh local instance, never a cluster that happens to run here
            ray.init(address="local", num_cpus=num_cpus, **kw)
        started = True
    try:
        remote_train = ray.remote(num_cpus=1)(_train_task)
        remote_base = ray.remote(num_cpus=1)(_baseline_task)
        jobs = []  # (method label, model, source run id, seed, config, ref)
        for s in sources:
            for seed in range(seeds):
                jobs.append((s.label, s.model, s.run_id, seed, {**s.config, "seed": seed},
                             remote_train.remote(s.config, feature_dir, seed)))
        if baselines:
            for method, label in BASELINES:
                for seed in range(seeds):
                    jobs.append((label, method, "", seed, {"model": method, "n_clusters": n_clusters, "seed": seed},
                                 remote_base.remote(method, feature_dir, n_clusters, seed, split_scheme)))
        results = ray.get([j[-1] for j in jobs])
    finally:
        if started:
            ray.shutdown()

    long_rows, by_method = [], {}
    for (label, model, src, seed, cfg, _), res in zip(jobs, results):
        long_rows.append({"method": label, "model": model, "source_run": src, "seed": seed,
                          "status": res["status"], "reason": res["reason"], **res["metrics"]})
        entry = by_method.setdefault(label, {"method": label, "model": model, "metrics": [], "n_runs": 0})
        entry["n_runs"] += 1
        if res["status"] == "complete":
            entry["metrics"].append(res["metrics"])
    t1 = table_one(list(by_method.values()))
    seeds_df = pd.DataFrame(long_rows)
    title = (f"Table I: test split of {Path(feature_dir).name}, {seeds} seed(s) "
             f"(cache {table.cache_key[:12]})")
    md = table_one_markdown(t1, title)

    out_dir = Path(out_dir or Path("reports", f"replication-{time.strftime('%Y%m%d-%H%M%S')}"))
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"markdown": out_dir / "table_one.md", "csv": out_dir / "table_one.csv", "seeds": out_dir / "seeds.csv"}
    files["markdown"].write_text(md, encoding="utf-8")
    t1.to_csv(files["csv"], index=False)
    seeds_df.to_csv(files["seeds"], index=False)
    result = ReplicationResult(table=t1, seeds=seeds_df, markdown=md, files=files)
    if log_mlflow:
        result.parent_run_id = _log(sources, jobs, results, seeds, feature_dir, table, out_dir, tracking_uri)
    return result


def _log(sources, jobs, results, seeds, feature_dir, table, out_dir, tracking_uri) -> str:
    from mlflow.entities import Metric, Param
    cl = client(tracking_uri)
    exp = sources[0].experiment_id
    name = f"replication-{time.strftime('%Y%m%d-%H%M%S')}"
    parent = cl.create_run(exp, run_name=name, tags={
        "study.kind": "replication", "replication.source_runs": ",".join(s.run_id for s in sources),
        "replication.seeds": str(seeds), "replication.features": feature_dir,
        "study.cache_key": table.cache_key}).info.run_id
    now = int(time.time() * 1000)
    for (label, model, src, seed, cfg, _), res in zip(jobs, results):
        rid = cl.create_run(exp, run_name=f"{label} seed {seed}", tags={
            "mlflow.parentRunId": parent, "replication.method": label, "replication.seed": str(seed),
            "replication.source_run": src, "trial.status": res["status"],
            "trial.reason": res["reason"][:5000]}).info.run_id
        cl.log_batch(rid, params=[Param(k, str(v)[:6000]) for k, v in sorted(cfg.items())],
                     metrics=[Metric(k, v, now, 0) for k, v in res["metrics"].items() if math.isfinite(v)])
        cl.set_terminated(rid, "FINISHED" if res["status"] == "complete" else "FAILED")
    cl.log_artifacts(parent, str(out_dir), "replication")
    cl.set_terminated(parent)
    return parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.replicate", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", action="append", required=True, help="MLflow run id of a trial (repeat)")
    p.add_argument("--seeds", type=int, default=10, help="seeds per method (default 10)")
    p.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    p.add_argument("--out", help="output directory (default reports/replication-TIMESTAMP)")
    p.add_argument("--address", help="an existing Ray cluster (default: start a local one)")
    p.add_argument("--features", help="feature cache directory (default: from the run / its study)")
    p.add_argument("--epochs", type=int, help="override the runs' epochs")
    p.add_argument("--no-baselines", action="store_true", help="skip K-means, GMM-EM and labels-as-clusters")
    p.add_argument("--allow-other-cache", action="store_true", help="skip the cache_key check")
    p.add_argument("--no-mlflow-log", action="store_true", help="write files only")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    try:
        res = replicate(a.run, a.seeds, tracking_uri=a.tracking_uri, out_dir=a.out, address=a.address,
                        features=a.features, epochs=a.epochs, baselines=not a.no_baselines,
                        allow_other_cache=a.allow_other_cache, log_mlflow=not a.no_mlflow_log)
    except (ReplicationError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if type(exc).__name__ in ("MlflowException", "RestException"):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise
    print(res.markdown)
    print(f"written: {res.files['markdown'].parent.resolve()}")
    if res.parent_run_id:
        print(f"MLflow replication run: {res.parent_run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
