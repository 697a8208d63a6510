"""``python -m study.replicate --run RUN_ID [--run ...] --seeds 10``: chosen settings over seeds.

Each chosen MLflow run (a trial of a study) is re-trained with its own params as config, once
per seed (``seed`` = 0..N-1), as Ray tasks (a local Ray bound to 127.0.0.1 by default,
``--address`` for a cluster; :func:`study.ray_runtime.init_ray`), on the same feature cache:
``--set KEY=VALUE`` changes a key of every chosen run's config (e.g. ``--set restarts=3 --set
restart_combine=vote``: the trials, trained once each in their study, repeated as the recipe's vote;
recorded on the parent run, ``replication.overrides``; ``seed`` and ``model`` are the replication's own).
The cache directory comes from the run's params (``features``) or its study's parent run
(``fixed.features``), or ``--features``; the table's ``cache_key`` must equal the parent's
``study.cache_key`` tag (``--allow-other-cache`` skips the check). K-means, GMM-EM and
labels-as-clusters (``trainables.baselines.run_baseline``) run on the same data with the same
seeds. The table is loaded once by the driver and shared with the tasks through ``ray.put``.

Everything goes to MLflow, in the experiment of the first chosen run (docs/ARCHITECTURE.md,
"Replication over seeds"): one parent run per replication (run name = ``--name``, tags
``study.kind=replication``, ``replication.name``, ``replication.source_runs``,
``replication.seeds``, ``replication.state``), one child run per (source run, seed) and per
(baseline, seed) with tags ``replication.method`` / ``.model`` / ``.source_run`` / ``.seed``,
``trial.status`` (complete | diverged | failed) and ``trial.reason``, the config (seed
included) as params and the ``test/...`` metrics. A replicate that fails or diverges stays a
child run with its status and reason. ``python -m analysis.tables --replication NAME`` renders
Table I from these runs.

Exit status: 0 when at least one replicate of a chosen run completed, 1 when every one of
them failed or diverged (parent ``replication.state=failed``), 2 for bad input (before any run
is written or any training starts).
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from study.ray_runtime import init_ray
from study.tags import (
    KIND_REPLICATION,
    PARENT_RUN_TAG,
    REPLICATION_BASELINES_TAG,
    REPLICATION_COMPLETED_TAG,
    REPLICATION_FEATURES_TAG,
    REPLICATION_METHOD_TAG,
    REPLICATION_MODEL_TAG,
    REPLICATION_NAME_TAG,
    REPLICATION_REPRESENTATION_TAG,
    REPLICATION_SEED_TAG,
    REPLICATION_OVERRIDES_TAG,
    REPLICATION_SEEDS_TAG,
    REPLICATION_SOURCE_RUN_TAG,
    REPLICATION_SOURCE_RUNS_TAG,
    REPLICATION_STATE_TAG,
    STUDY_CACHE_KEY_TAG,
    STUDY_GIT_COMMIT_TAG,
    STUDY_KIND_TAG,
    STUDY_NAME_TAG,
    STUDY_SPACE_TAG,
    TRIAL_NUMBER_TAG,
    TRIAL_REASON_TAG,
    TRIAL_STATUS_TAG,
    StudyState,
)
from study.tracking import MLFLOW_STATUS, git_commit, mlflow_client
from trainables.baselines import BASELINES as BASELINE_REGISTRY
from trainables.config import DEFAULTS, ConfigError, resolve_config
from trainables.status import TrialStatus
from trainables.metric_names import reported_representation

log = logging.getLogger(__name__)

# the baselines every replication fits beside the chosen runs, named as the registry names them
BASELINES = tuple((name, BASELINE_REGISTRY[name].label) for name in ("kmeans", "gmm", "labels"))


class ReplicationError(Exception):
    """A problem with the replication's input, reported as one line."""


@dataclass
class Source:
    """A chosen run, read back from MLflow."""
    run_id: str
    label: str
    model: str
    config: dict
    features: str
    cache_key: str
    experiment_id: str


@dataclass
class Replicate:
    """One unit of work: a method trained or fitted with one seed."""
    label: str
    model: str
    source_run: str          # "" for a baseline
    seed: int
    config: dict             # seed included


@dataclass
class ReplicationResult:
    name: str
    parent_run_id: str
    replicates: list[Replicate]
    outcomes: list[dict]     # per replicate: status, reason, metrics

    @property
    def completed_sources(self) -> int:
        """Replicates of the chosen runs (not baselines) that completed."""
        return sum(1 for r, o in zip(self.replicates, self.outcomes)
                   if r.source_run and o["status"] == TrialStatus.COMPLETE)


def source_from_run(run_id: str, tracking_uri: str, features: Optional[str] = None) -> Source:
    """The run's params that are training config keys (MLflow's strings: resolve_config coerces
    them), its feature cache and study. A config that does not resolve is refused here."""
    cl = mlflow_client(tracking_uri)
    run = cl.get_run(run_id)
    params = dict(run.data.params)
    parent_id = run.data.tags.get(PARENT_RUN_TAG)
    parent = cl.get_run(parent_id) if parent_id else None
    pparams = parent.data.params if parent else {}
    feats = features or params.get("features") or pparams.get("fixed.features") or pparams.get("features")
    if not feats or feats == "None":
        raise ReplicationError(f"run {run_id}: no feature cache in its params nor its parent's "
                               f"(fixed.features); pass --features DIR")
    config = {k: v for k, v in params.items() if k in DEFAULTS}
    dropped = sorted(set(params) - set(config))
    if dropped:
        log.info("run %s: params not in the training config, ignored: %s", run_id, ", ".join(dropped))
    try:
        resolve_config(config)
    except ConfigError as exc:
        raise ReplicationError(f"run {run_id}: its params are not a valid training config: {exc}") from None
    model = config.get("model", parent.data.tags.get(STUDY_SPACE_TAG, "") if parent else "")
    trial = run.data.tags.get(TRIAL_NUMBER_TAG)
    study = run.data.tags.get(STUDY_NAME_TAG, "")
    label = f"{model} {study} trial {trial} ({run_id[:8]})" if trial is not None else f"{model} ({run_id[:8]})"
    return Source(run_id=run_id, label=label, model=model, config=config, features=feats,
                  cache_key=parent.data.tags.get(STUDY_CACHE_KEY_TAG, "") if parent else "",
                  experiment_id=run.info.experiment_id)


def plan(sources: Sequence[Source], seeds: int, baselines: bool, n_clusters: int) -> list[Replicate]:
    """Every (source, seed), then every (baseline, seed) when ``baselines``."""
    out = [Replicate(s.label, s.model, s.run_id, seed, {**s.config, "seed": seed})
           for s in sources for seed in range(seeds)]
    if baselines:
        out += [Replicate(label, method, "", seed, {"model": method, "n_clusters": n_clusters, "seed": seed})
                for method, label in BASELINES for seed in range(seeds)]
    return out


# ------------------------------------------------------------------ the work of one replicate
def _test_metrics(metrics: dict) -> dict:
    return {k: float(v) for k, v in (metrics or {}).items()
            if k.startswith("test/") and isinstance(v, (int, float)) and not isinstance(v, bool)}


def train_one(config: dict, table, seed: int) -> dict:
    """Train one seed of one config on ``table``: status, reason and the test metrics."""
    from trainables.loop import train
    res = train({**config, "seed": int(seed)}, table)
    return {"status": res.status, "reason": res.reason, "metrics": _test_metrics(res.metrics)}


def baseline_one(method: str, table, n_clusters: int, seed: int) -> dict:
    """Fit baseline ``method`` with one seed on ``table``: status, reason and the test metrics."""
    from trainables.baselines import run_baseline
    out = run_baseline(method, table, int(n_clusters) or len(table.classes), int(seed))
    return {"status": TrialStatus.COMPLETE, "reason": "", "metrics": _test_metrics(dict(out.metrics))}


def _failure(exc: BaseException) -> dict:
    return {"status": TrialStatus.FAILED, "reason": f"{type(exc).__name__}: {exc}"[:5000], "metrics": {}}


def _replicate_task(rep: Replicate, table) -> dict:
    """Ray task body: one replicate; an exception is its outcome, not a crash of the replication."""
    import torch
    torch.set_num_threads(1)
    try:
        if rep.source_run:
            return train_one(rep.config, table, rep.seed)
        return baseline_one(rep.model, table, rep.config["n_clusters"], rep.seed)
    except Exception as exc:
        return _failure(exc)


# ------------------------------------------------------------------ MLflow
def _start_parent(cl, name: str, sources: Sequence[Source], seeds: int, baselines: bool,
                  feature_dir: str, cache_key: str, overrides: dict) -> str:
    import json

    return cl.create_run(sources[0].experiment_id, run_name=name, tags={
        REPLICATION_OVERRIDES_TAG: json.dumps(overrides, sort_keys=True),
        STUDY_KIND_TAG: KIND_REPLICATION, REPLICATION_NAME_TAG: name, REPLICATION_STATE_TAG: StudyState.RUNNING.value,
        REPLICATION_SOURCE_RUNS_TAG: ",".join(s.run_id for s in sources),
        REPLICATION_SEEDS_TAG: str(seeds),
        REPLICATION_BASELINES_TAG: ",".join(m for m, _ in BASELINES) if baselines else "",
        REPLICATION_FEATURES_TAG: feature_dir, STUDY_CACHE_KEY_TAG: cache_key,
        STUDY_GIT_COMMIT_TAG: git_commit()}).info.run_id


def _start_child(cl, experiment_id: str, parent: str, name: str, rep: Replicate) -> str:
    from mlflow.entities import Param
    rid = cl.create_run(experiment_id, run_name=f"{rep.label} seed {rep.seed}", tags={
        PARENT_RUN_TAG: parent, REPLICATION_NAME_TAG: name, REPLICATION_METHOD_TAG: rep.label,
        REPLICATION_MODEL_TAG: rep.model, REPLICATION_SOURCE_RUN_TAG: rep.source_run,
        REPLICATION_SEED_TAG: str(rep.seed), TRIAL_STATUS_TAG: TrialStatus.RUNNING.value,
        REPLICATION_REPRESENTATION_TAG: reported_representation(rep.model)}).info.run_id
    cl.log_batch(rid, params=[Param(k, str(v)[:6000]) for k, v in sorted(rep.config.items())])
    return rid


def _finish_child(cl, rid: str, outcome: dict) -> None:
    from mlflow.entities import Metric
    now = int(time.time() * 1000)
    cl.set_tag(rid, TRIAL_STATUS_TAG, outcome["status"])
    cl.set_tag(rid, TRIAL_REASON_TAG, outcome["reason"][:5000])
    cl.log_batch(rid, metrics=[Metric(k, v, now, 0) for k, v in sorted(outcome["metrics"].items())
                               if math.isfinite(v)])
    cl.set_terminated(rid, MLFLOW_STATUS.get(outcome["status"], "FAILED"))


def _run_all(replicates: list[Replicate], table, gpus_per_replicate: float, on_outcome) -> list[dict]:
    """Run every replicate as a Ray task (Ray already up); ``on_outcome(i, outcome)`` as each ends."""
    import ray
    table_ref = ray.put(table)
    task = ray.remote(_replicate_task)
    refs = [task.options(num_cpus=1, num_gpus=gpus_per_replicate if r.source_run else 0)
            .remote(r, table_ref) for r in replicates]
    pending = {ref: i for i, ref in enumerate(refs)}
    outcomes: list[dict] = [{}] * len(replicates)
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            i = pending.pop(ref)
            try:
                outcomes[i] = ray.get(ref)
            except Exception as exc:  # the worker died: recorded as this replicate's failure
                outcomes[i] = _failure(exc)
            on_outcome(i, outcomes[i])
    return outcomes


# ------------------------------------------------------------------ the whole thing
def _check_inputs(run_ids: Sequence[str], seeds: int, name: str, tracking_uri: str) -> None:
    if not run_ids:
        raise ReplicationError("give at least one --run")
    twice = sorted({r for r in run_ids if list(run_ids).count(r) > 1})
    if twice:
        raise ReplicationError(f"run(s) given more than once: {', '.join(twice)}")
    if seeds < 1:
        raise ReplicationError(f"--seeds must be >= 1, got {seeds}")
    cl = mlflow_client(tracking_uri)
    exps = [e.experiment_id for e in cl.search_experiments()]
    safe = name.replace("'", "\\'")
    query = f"tags.`{REPLICATION_NAME_TAG}` = '{safe}' and tags.`{STUDY_KIND_TAG}` = '{KIND_REPLICATION}'"
    if exps and cl.search_runs(exps, query):
        raise ReplicationError(f"a replication named {name!r} already exists at {tracking_uri}; choose another --name")


def _with_overrides(sources: Sequence[Source], overrides: dict) -> None:
    """``--set`` values into every chosen run's config, checked (ReplicationError naming the key)."""
    own = sorted(set(overrides) & {"seed", "model"})
    if own:
        raise ReplicationError(f"--set {', '.join(own)}: set by the replication itself (each run's model, "
                               f"seeds 0..N-1)")
    for s in sources:
        s.config.update(overrides)
        try:
            resolve_config(s.config)
        except ConfigError as exc:
            raise ReplicationError(f"--set: run {s.run_id} with {overrides}: {exc}") from None


def _load_sources(run_ids, tracking_uri, features, epochs, allow_other_cache, overrides=None):
    """The chosen runs (``overrides``: ``--set`` values applied) and the one feature table they are all
    replicated on."""
    from features.cache import CacheError, load_table
    sources = [source_from_run(r, tracking_uri, features) for r in run_ids]
    _with_overrides(sources, dict(overrides or {}))
    feats = sorted({s.features for s in sources})
    if len(feats) > 1:
        raise ReplicationError(f"the chosen runs use different feature caches: {feats}; "
                               "Table I compares methods on one data set (pass --features to force one)")
    schemes = sorted({resolve_config(s.config)["split_scheme"] for s in sources})
    if len(schemes) > 1:
        raise ReplicationError(f"the chosen runs use different split schemes {schemes}; Table I needs one test split")
    if not Path(feats[0]).exists():
        raise ReplicationError(f"feature cache {feats[0]} not found (pass --features DIR)")
    voices = sorted({resolve_config(s.config)["voices"] for s in sources})
    if len(voices) > 1:
        raise ReplicationError(f"the chosen runs cluster the clips into different voice counts {voices}; "
                               "Table I compares methods on one table")
    folds = sorted({resolve_config(s.config)["val_fold"] for s in sources})
    if len(folds) > 1:
        raise ReplicationError(f"the chosen runs were validated on different folds {folds}; "
                               "Table I compares methods on one split")
    try:
        table = load_table(feats[0], split_scheme=schemes[0], voices=voices[0], val_fold=folds[0])
    except (CacheError, ValueError) as exc:
        raise ReplicationError(str(exc)) from None
    for s in sources:
        if s.cache_key and table.cache_key != s.cache_key and not allow_other_cache:
            raise ReplicationError(f"run {s.run_id}: its study used cache_key {s.cache_key}, but {feats[0]} "
                                   f"holds {table.cache_key} (rebuild the same cache, or --allow-other-cache)")
        if epochs is not None:
            s.config["epochs"] = int(epochs)
    return sources, table, feats[0]


def replicate(run_ids: Sequence[str], seeds: int = 10, *, tracking_uri: str = "sqlite:///mlflow.db",
              name: Optional[str] = None, address: Optional[str] = None, num_cpus: Optional[int] = None,
              features: Optional[str] = None, epochs: Optional[int] = None, baselines: bool = True,
              allow_other_cache: bool = False, gpus_per_replicate: float = 0.0,
              overrides: Optional[dict] = None) -> ReplicationResult:
    """Re-train ``run_ids`` over ``seeds`` seeds (plus the baselines) and log it all to MLflow;
    ``overrides``: config keys changed in every chosen run (``--set``)."""
    name = name or f"replication-{time.strftime('%Y%m%d-%H%M%S')}"
    _check_inputs(run_ids, seeds, name, tracking_uri)
    if epochs is not None and epochs < 1:
        raise ReplicationError(f"--epochs must be >= 1, got {epochs}")
    if gpus_per_replicate < 0:
        raise ReplicationError(f"--gpus-per-replicate must be >= 0, got {gpus_per_replicate}")
    sources, table, feature_dir = _load_sources(run_ids, tracking_uri, features, epochs, allow_other_cache,
                                                overrides)
    n_clusters = resolve_config(sources[0].config)["n_clusters"] or len(table.classes)
    replicates = plan(sources, seeds, baselines, n_clusters)
    try:
        started_ray = init_ray(address, num_cpus)
    except ValueError as exc:
        raise ReplicationError(str(exc)) from None

    cl = mlflow_client(tracking_uri)
    exp = sources[0].experiment_id
    parent = _start_parent(cl, name, sources, seeds, baselines, feature_dir, table.cache_key, overrides or {})
    children = [_start_child(cl, exp, parent, name, r) for r in replicates]
    finished: set[int] = set()

    def record(i: int, outcome: dict) -> None:
        _finish_child(cl, children[i], outcome)
        finished.add(i)
        r = replicates[i]
        acc = outcome["metrics"].get("test/acc", math.nan)
        print(f"[{len(finished)}/{len(replicates)}] {r.label} seed {r.seed}: {outcome['status']}"
              f"{' ' + outcome['reason'] if outcome['reason'] else ''}  test/acc {acc:.4g}", file=sys.stderr)

    try:
        outcomes = _run_all(replicates, table, gpus_per_replicate, record)
    except BaseException as exc:  # interrupted: unfinished replicates and the parent say so
        for i in sorted(set(range(len(replicates))) - finished):
            _finish_child(cl, children[i], _failure(RuntimeError(f"replication stopped: {type(exc).__name__}")))
        cl.set_tag(parent, REPLICATION_STATE_TAG, StudyState.INTERRUPTED)
        cl.set_terminated(parent, "KILLED")
        raise
    finally:
        if started_ray:
            import ray
            ray.shutdown()
    result = ReplicationResult(name, parent, replicates, outcomes)
    ok = result.completed_sources > 0
    cl.set_tag(parent, REPLICATION_STATE_TAG, StudyState.FINISHED if ok else StudyState.FAILED)
    done = sum(o["status"] == TrialStatus.COMPLETE for o in outcomes)
    cl.set_tag(parent, REPLICATION_COMPLETED_TAG, f"{done}/{len(outcomes)}")
    cl.set_terminated(parent, "FINISHED" if ok else "FAILED")
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m study.replicate", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", action="append", required=True, help="MLflow run id of a trial (repeat)")
    p.add_argument("--seeds", type=int, default=10, help="seeds per method (default 10)")
    p.add_argument("--name", help="the replication's name (default replication-TIMESTAMP); must be new")
    p.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    p.add_argument("--address", help="an existing Ray cluster (default: start a local one on 127.0.0.1)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance (default: all)")
    p.add_argument("--gpus-per-replicate", type=float, default=0.0, help="GPUs per model replicate (default 0)")
    p.add_argument("--features", help="feature cache directory (default: from the run / its study)")
    p.add_argument("--epochs", type=int, help="override the runs' epochs")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change a config key of every chosen run (repeatable), e.g. --set restarts=3")
    p.add_argument("--no-baselines", action="store_true", help="skip K-means, GMM-EM and labels-as-clusters")
    p.add_argument("--allow-other-cache", action="store_true", help="skip the cache_key check")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    from mlflow.exceptions import MlflowException

    from study.options import StudyError, parse_set
    try:
        res = replicate(a.run, a.seeds, tracking_uri=a.tracking_uri, name=a.name, address=a.address,
                        num_cpus=a.num_cpus, features=a.features, epochs=a.epochs,
                        baselines=not a.no_baselines, allow_other_cache=a.allow_other_cache,
                        gpus_per_replicate=a.gpus_per_replicate, overrides=parse_set(a.set))
    except (ReplicationError, StudyError, MlflowException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"MLflow replication run: {res.parent_run_id} (name {res.name})")
    if res.completed_sources == 0:
        print("error: every replicate of the chosen runs failed or diverged (see their trial.reason)",
              file=sys.stderr)
        return 1
    print(f"Table I: python -m analysis.tables --replication {res.name} --tracking-uri {a.tracking_uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
