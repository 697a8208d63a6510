"""``run_study(StudyOptions) -> StudyResult``: the whole study as one pure-ish function.

features cache -> Ray Tune (trainables.tune.trainable) searched by Optuna
(study.searcher.StudySearcher, persisted in an RDB storage) -> MLflow parent/child runs
(study.tracking) -> the Pareto-optimal trials.

The study's options are stored as user attributes of the Optuna study, so that
``resume_study(name, storage)`` needs nothing but the study name.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from study.objectives import Objective, classify, default_objectives, parse_objective, parse_objectives
from study.spaces import SPACES, get_space

log = logging.getLogger(__name__)


class StudyError(Exception):
    """A problem with the study's input, reported as one line."""


@dataclass
class StudyOptions:
    space: str = "cat_uvac"
    features: Optional[str] = None          # a feature cache directory
    dataset: str = "synthetic"              # built under features_root when features is None
    root: Optional[str] = None              # the dataset's root (real data)
    features_root: str = "runs/features"
    objectives: Optional[list] = None       # default: study.objectives.default_objectives(space)
    num_samples: int = 10
    epochs: int = 6
    max_concurrent: int = 2
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    asha_metric: Optional[str] = None       # e.g. "val/acc:max"
    grace_period: int = 1
    n_clusters: int = 0                     # 0 = number of classes in the data
    storage: str = "sqlite:///optuna.db"
    study_name: Optional[str] = None
    tracking_uri: str = "sqlite:///mlflow.db"
    experiment: str = "vac-study"
    storage_path: str = "runs/ray"
    address: Optional[str] = None
    seed: int = 0
    max_failures: int = 2
    checkpoint_every: int = 1
    overrides: dict = field(default_factory=dict)   # fixed config for every trial
    progress_every_s: float = 30.0
    smoke_test: bool = False

    def validate(self) -> None:
        if self.space not in SPACES:
            raise StudyError(f"unknown space {self.space!r}; choose one of {', '.join(sorted(SPACES))}")
        if self.num_samples < 1:
            raise StudyError(f"--num-samples must be >= 1, got {self.num_samples}")
        if self.epochs < 1:
            raise StudyError(f"--epochs must be >= 1, got {self.epochs}")
        if self.max_concurrent < 1:
            raise StudyError(f"--max-concurrent must be >= 1, got {self.max_concurrent}")
        if self.cpus_per_trial <= 0 or self.gpus_per_trial < 0:
            raise StudyError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
        if self.features and not Path(self.features).exists():
            raise StudyError(f"--features {self.features}: no such directory")
        if not self.objectives:
            self.objectives = default_objectives(self.space)
        try:
            parse_objectives(self.objectives)
            if self.asha_metric:
                parse_objective(self.asha_metric)
        except ValueError as exc:
            raise StudyError(str(exc)) from None
        if self.smoke_test:
            self.num_samples, self.epochs = 2, 1


@dataclass
class StudyResult:
    study_name: str
    parent_run_id: str
    storage: str
    tracking_uri: str
    experiment_path: str
    counts: dict
    pareto: list                 # [{number, values, params, run_id, test}]
    elapsed_s: float
    interrupted: bool
    ui_command: str
    objectives: list
    warnings: list = field(default_factory=list)


# --------------------------------------------------------------------------- helpers
def _abs_sqlite(uri: str) -> str:
    from study.tracking import absolute_uri
    return absolute_uri(uri)


def ensure_features(opts: StudyOptions) -> str:
    """The feature cache directory: ``--features`` as given, or built (once) under
    ``features_root/<dataset>`` with ``python -m features.build``."""
    from features.cache import find_cache_dirs

    if opts.features:
        given = Path(opts.features).resolve()
        inner = find_cache_dirs(given)
        return str(inner[0] if len(inner) == 1 else given)

    out = Path(opts.features_root, opts.dataset).resolve()
    found = find_cache_dirs(out) if out.is_dir() else []
    if len(found) == 1:
        return str(found[0])
    cmd = [sys.executable, "-m", "features.build", "--dataset", opts.dataset, "--out", str(out)]
    if opts.root:
        cmd += ["--root", opts.root]
    print(f"[study] building the feature cache: {' '.join(cmd)}", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        raise StudyError(f"feature build failed: {tail[-1] if tail else proc.returncode}")
    found = find_cache_dirs(out)
    return str(found[0] if len(found) == 1 else out)


def _load_table(cache_dir: str, split_scheme: Optional[str]):
    from features.cache import load_table
    kwargs = {"split_scheme": split_scheme} if split_scheme else {}
    try:
        return load_table(cache_dir, **kwargs)
    except Exception as exc:
        raise StudyError(f"cannot load features from {cache_dir}: {exc}") from None


# The embedded default study (synthetic data, no --features/--root) must finish in about
# ten minutes on a 2-core CPU: it trains narrower networks unless --set says otherwise.
# These values are in every trial's params.
EMBEDDED_SMALL = {"channels": "8,16,32,32", "gru_hidden": 32, "silhouette_sample": 500}


def _fixed_config(opts: StudyOptions, cache_dir: str, n_clusters: int) -> dict:
    fixed = {"features": cache_dir, "epochs": int(opts.epochs), "n_clusters": int(n_clusters),
             "checkpoint_every": int(opts.checkpoint_every)}
    if opts.gpus_per_trial > 0:
        fixed["device"] = "cuda"
    if not opts.features and opts.dataset == "synthetic" and not opts.root and opts.space in ("uvac", "cat_uvac"):
        fixed.update(EMBEDDED_SMALL)
    fixed.update(opts.overrides or {})
    return fixed


def check_config(opts: StudyOptions, fixed: dict) -> None:
    """Resolve one config of the space (its lowest choices) so bad --set values fail now."""
    from study.spaces import RecordingTrial
    from trainables.config import resolve_config
    from trainables.tune import train_config

    rec = RecordingTrial()
    consts = get_space(opts.space, epochs=opts.epochs)(rec) or {}
    sample = {c["name"]: (c["choices"][0] if c["kind"] == "categorical" else c["low"]) for c in rec.calls}
    try:
        resolve_config(train_config({**fixed, **sample, **consts}))
    except ValueError as exc:
        raise StudyError(f"invalid trial config: {exc}") from None


def default_study_name(opts: StudyOptions) -> str:
    data = Path(opts.features).name if opts.features else opts.dataset
    return f"{opts.space}-{data}-{time.strftime('%Y%m%d-%H%M%S')}"


def _trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def _quiet_ray() -> None:
    # Checkpointing every epoch of short trials trips Ray's "snapshot too often" warning.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Ray's boxed tables and TensorBoard hints: the study prints its own progress.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # A diverged trial's last report has no val/ metrics; ASHA skips such results.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")


def _ray_init(opts: StudyOptions) -> bool:
    import ray
    _quiet_ray()
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    # No --address: a fresh local instance, even when another cluster runs on this machine
    # (plain ray.init() would join it); --address auto joins the running cluster.
    ray.init(address=opts.address or "local", **kwargs)
    return True


def _trainable(opts: StudyOptions):
    from ray import tune
    from trainables.tune import trainable
    return tune.with_resources(trainable, {"cpu": opts.cpus_per_trial, "gpu": opts.gpus_per_trial})


def _ray_storage_path(opts: StudyOptions) -> str:
    p = opts.storage_path
    return p if "://" in p else str(Path(p).resolve())


# --------------------------------------------------------------------------- the study
def run_study(opts: StudyOptions, *, extra_callbacks: Optional[list] = None, stopper=None) -> StudyResult:
    """Run a new study to its end (or until interrupted) and return its Pareto trials.

    ``extra_callbacks`` (Tune Callbacks) and ``stopper`` (a Tune Stopper; a trial it stops
    counts as pruned) are for programmatic use; both must be picklable for --resume."""
    import optuna
    from ray import tune
    from ray.tune import CheckpointConfig, FailureConfig, RunConfig, TuneConfig, Tuner
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter

    from study import tracking
    from study.progress import ProgressCallback
    from study.searcher import StudySearcher

    opts.validate()
    _quiet_ray()
    t0 = time.time()
    objectives = parse_objectives(opts.objectives)
    storage = _abs_sqlite(opts.storage)
    tracking_uri = _abs_sqlite(opts.tracking_uri)
    name = opts.study_name or default_study_name(opts)

    if optuna.study.get_all_study_names(optuna.storages.RDBStorage(storage)).count(name):
        raise StudyError(f"study {name!r} already exists in {storage}; use --resume {name} or another --study-name")

    cache_dir = ensure_features(opts)
    table = _load_table(cache_dir, (opts.overrides or {}).get("split_scheme"))
    n_clusters = opts.n_clusters or len(table.classes)
    fixed = _fixed_config(opts, cache_dir, n_clusters)
    check_config(opts, fixed)
    cache_key = getattr(table, "cache_key", "")
    del table

    parent_id = tracking.start_parent(
        tracking_uri, opts.experiment, name,
        tags={"study.space": opts.space, "study.dataset": Path(cache_dir).name if opts.features else opts.dataset,
              "study.cache_key": cache_key, "study.git_commit": tracking.git_commit(),
              "study.objectives": ",".join(str(o) for o in objectives)},
        params={**{k: v for k, v in dataclasses.asdict(opts).items() if k != "overrides"},
                **{f"fixed.{k}": v for k, v in fixed.items()}})

    searcher = StudySearcher(get_space(opts.space, epochs=opts.epochs), objectives,
                             study_name=name, storage_url=storage, seed=opts.seed)
    study = optuna.load_study(study_name=name, storage=storage)
    study.set_user_attr("options", json.dumps(dataclasses.asdict(opts)))
    study.set_user_attr("mlflow_parent_run_id", parent_id)
    study.set_user_attr("tracking_uri", tracking_uri)
    study.set_user_attr("fixed_config", json.dumps(fixed))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental API warning
        study.set_metric_names([o.metric for o in objectives])

    scheduler = None
    if opts.asha_metric:
        a = parse_objective(opts.asha_metric)
        # max_t past the last epoch: ASHA stops a trial that reaches max_t, which would
        # cut off the final report and make a finished trial look pruned.
        scheduler = ASHAScheduler(time_attr="epoch", metric=a.metric, mode=a.mode,
                                  max_t=opts.epochs + 1, grace_period=max(1, opts.grace_period))

    callbacks = [tracking.MlflowTrialCallback(tracking_uri, parent_id, name),
                 ProgressCallback(objectives, opts.num_samples, every_s=opts.progress_every_s)]
    callbacks += list(extra_callbacks or [])

    started_ray = _ray_init(opts)
    try:
        tuner = Tuner(
            _trainable(opts),
            param_space=fixed,
            tune_config=TuneConfig(search_alg=ConcurrencyLimiter(searcher, max_concurrent=opts.max_concurrent),
                                   scheduler=scheduler, num_samples=opts.num_samples,
                                   trial_dirname_creator=_trial_dirname),
            run_config=RunConfig(name=name, storage_path=_ray_storage_path(opts), callbacks=callbacks, stop=stopper,
                                 failure_config=FailureConfig(max_failures=opts.max_failures),
                                 checkpoint_config=CheckpointConfig(num_to_keep=1), verbose=0),
        )
        print(f"[study] {name}: space {opts.space}, {opts.num_samples} trials x {opts.epochs} epochs, "
              f"{opts.max_concurrent} concurrent, objectives {', '.join(map(str, objectives))}", flush=True)
        grid = tuner.fit()
        return _finish(name, storage, tracking_uri, parent_id, objectives, grid, opts.num_samples, t0,
                       os.path.join(_ray_storage_path(opts), name))
    finally:
        if started_ray:
            import ray
            ray.shutdown()


def resume_study(name: str, storage: str = "sqlite:///optuna.db", *, address: Optional[str] = None,
                 extra_callbacks: Optional[list] = None) -> StudyResult:
    """Continue an interrupted study: same Ray experiment, Optuna study and MLflow parent."""
    import optuna
    from ray.tune import Tuner

    from study import tracking

    t0 = time.time()
    _quiet_ray()
    storage = _abs_sqlite(storage)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise StudyError(f"no study named {name!r} in {storage}") from None
    attrs = study.user_attrs
    if "options" not in attrs:
        raise StudyError(f"study {name!r} was not created by study.launch (no stored options)")
    fields = {f.name for f in dataclasses.fields(StudyOptions)}
    opts = StudyOptions(**{k: v for k, v in json.loads(attrs["options"]).items() if k in fields})
    if address:
        opts.address = address
    objectives = parse_objectives(opts.objectives)
    tracking_uri = attrs["tracking_uri"]
    parent_id = attrs["mlflow_parent_run_id"]
    path = os.path.join(_ray_storage_path(opts), name)
    if not Tuner.can_restore(path):
        raise StudyError(f"no Ray experiment state at {path}; the study cannot be resumed")
    tracking._client(tracking_uri).update_run(parent_id, status="RUNNING")

    started_ray = _ray_init(opts)
    try:
        tuner = Tuner.restore(path, trainable=_trainable(opts), resume_unfinished=True, resume_errored=True)
        print(f"[study] resuming {name} from {path}", flush=True)
        grid = tuner.fit()
        return _finish(name, storage, tracking_uri, parent_id, objectives, grid, opts.num_samples, t0, path)
    finally:
        if started_ray:
            import ray
            ray.shutdown()


def _finish(name, storage, tracking_uri, parent_id, objectives, grid, total, t0, path) -> StudyResult:
    import optuna
    from optuna.trial import TrialState

    from study import tracking

    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    counts = {"complete": 0, "pruned": 0, "diverged": 0, "failed": 0, "running": 0}
    for t in trials:
        if t.state == TrialState.RUNNING or t.state == TrialState.WAITING:
            counts["running"] += 1
        elif t.state == TrialState.COMPLETE:
            counts["complete"] += 1
        elif t.state == TrialState.PRUNED:
            counts["pruned"] += 1
        else:
            counts[t.user_attrs.get("status", "failed") if t.user_attrs.get("status") in counts else "failed"] += 1
    finished = sum(v for k, v in counts.items() if k != "running")
    warnings = sorted({t.user_attrs.get("reason", "") for t in trials
                       if t.user_attrs.get("status") == "complete" and t.state == TrialState.FAIL
                       and "not reported" in t.user_attrs.get("reason", "")})
    interrupted = finished < total or counts["running"] > 0

    runs = {}
    try:
        for r in tracking.child_runs(tracking_uri, parent_id):
            runs[r.data.tags.get("trial.number")] = r
    except Exception as exc:
        log.warning("could not read MLflow child runs: %s", exc)

    pareto = []
    best = study.best_trials if counts["complete"] else []
    for t in sorted(best, key=lambda t: t.number):
        run = runs.get(str(t.number))
        test = {}
        if run is not None:  # the test split is read only here, for the chosen trials
            test = {o.metric.replace("val/", "test/", 1): run.data.metrics.get(o.metric.replace("val/", "test/", 1))
                    for o in objectives}
        pareto.append({"number": t.number, "values": dict(zip([o.metric for o in objectives], t.values)),
                       "params": dict(t.params), "run_id": run.info.run_id if run else None, "test": test})

    tags = {"study.finished_trials": finished, "study.pareto_trials": ",".join(str(p["number"]) for p in pareto)}
    if interrupted:
        tracking.finish_parent(tracking_uri, parent_id, "KILLED", {**tags, "study.state": "interrupted"})
    else:
        tracking.finish_parent(tracking_uri, parent_id, "FINISHED", {**tags, "study.state": "finished"})
    return StudyResult(study_name=name, parent_run_id=parent_id, storage=storage, tracking_uri=tracking_uri,
                       experiment_path=path, counts=counts, pareto=pareto, elapsed_s=time.time() - t0,
                       interrupted=interrupted, ui_command=tracking.ui_command(tracking_uri),
                       objectives=[str(o) for o in objectives], warnings=warnings)


KEY_PARAMS = ("model", "divergence", "d_z", "lam", "lr_start", "lr_end", "tau_kind", "tau_start", "tau_end",
              "tau_anneal_epochs", "gmm_covariance", "seed")


def format_result(res: StudyResult) -> str:
    lines = [f"study {res.study_name}: " + ", ".join(f"{k} {v}" for k, v in res.counts.items())
             + f" in {res.elapsed_s:.0f}s"]
    if res.interrupted:
        lines.append(f"interrupted; continue with: python -m study.launch --resume {res.study_name}"
                     + (f" --storage {res.storage}" if res.storage != _abs_sqlite("sqlite:///optuna.db") else ""))
    for w in res.warnings:
        lines.append(f"warning: complete trials kept off the front: {w}")
    lines.append(f"Pareto-optimal trials ({len(res.pareto)}), objectives {', '.join(res.objectives)}:")
    for p in res.pareto:
        vals = " ".join(f"{k}={v:.4g}" for k, v in p["values"].items())
        test = " ".join(f"{k}={'-' if v is None else f'{v:.4g}'}" for k, v in p["test"].items())
        params = " ".join(f"{k}={_short(p['params'][k])}" for k in KEY_PARAMS if k in p["params"])
        lines.append(f"  trial {p['number']:>3}  {vals}  | {test}  | {params}  | run {p['run_id']}")
    lines.append(f"MLflow parent run {res.parent_run_id}; open the UI with:")
    lines.append(f"  {res.ui_command}")
    lines.append(f"Optuna study: optuna-dashboard {res.storage}")
    return "\n".join(lines)


def _short(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
