"""``run_study(StudyOptions) -> StudyResult``: the whole study as one pure-ish function.

features cache -> Ray Tune (study.trainable) searched by Optuna
(study.searcher.StudySearcher, persisted in an RDB storage) -> MLflow parent/child runs
(study.tracking) -> the Pareto-optimal trials.

The study's options are stored as user attributes of the Optuna study, so that
``resume_study(name, storage)`` needs nothing but the study name.
"""
from __future__ import annotations

import dataclasses
import json
import math
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from study.library_logs import library_logs_to, quiet_ray_env
from study.objectives import default_objectives, model_metrics, parse_objective, parse_objectives
from study.spaces import SPACES, RecordingTrial, get_space, record_space
from trainables.config import DEFAULTS

log = logging.getLogger(__name__)


class StudyError(Exception):
    """A problem with the study's input, reported as one line."""


class StudyInterrupted(Exception):
    """The study was stopped by the user; the message is the command that resumes it."""


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
    scheduler: Optional[str] = None         # fifo | asha | moasha; None = auto (study.schedulers.choose_scheduler)
    grace_period: int = 1
    n_clusters: int = 0                     # 0 = number of classes in the data
    storage: str = "sqlite:///optuna.db"
    study_name: Optional[str] = None
    tracking_uri: str = "sqlite:///mlflow.db"
    experiment: str = "vac-study"
    storage_path: str = "runs/ray"
    address: Optional[str] = None
    seed: Optional[int] = None              # sampler seed; None = a fresh one per new study (recorded)
    max_failures: int = 2
    checkpoint_every: int = 1
    overrides: dict = field(default_factory=dict)   # fixed config for every trial; searched keys are pinned
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
        if self.seed is not None and not 0 <= int(self.seed) < 2**32:
            raise StudyError(f"--seed must be in [0, 2**32), got {self.seed}")
        if self.smoke_test:
            self.num_samples, self.epochs = 2, 1
        if not self.objectives:
            self.objectives = default_objectives(self.space)
        # Metric names and --set values are checked here, before any file, run or trial:
        # a typo is one clear error, not a study whose every trial fails.
        model = space_model(self.space, self.epochs)
        try:
            valid = model_metrics(model) if model else None
        except ValueError:  # a model without declared metric names: names are not checked
            log.warning("no declared metric names for model %r; objectives are not checked", model)
            valid = None
        scope = f"for model {model} (space {self.space})"
        try:
            parsed = parse_objectives(self.objectives, valid, scope=scope)
            if self.asha_metric:
                parse_objective(self.asha_metric, valid, what="ASHA metric", scope=scope)
            from study.schedulers import choose_scheduler  # imports Ray: not at module level
            self.scheduler = choose_scheduler(self.scheduler, parsed, self.num_samples, self.asha_metric)
        except ValueError as exc:
            raise StudyError(str(exc)) from None
        consts = space_constants(self.space, self.epochs)
        for k, v in (self.overrides or {}).items():
            if k in consts and str(consts[k]) != str(v):
                raise StudyError(f"--set {k}={v}: space {self.space} fixes {k}={consts[k]!r}; "
                                 f"choose the space instead (--space)")
        # The trial config with a placeholder cache (the real one is checked again once built).
        check_config(self, _fixed_config(self, self.n_clusters))


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
    seed: Optional[int] = None
    pinned: dict = field(default_factory=dict)   # searched keys fixed by --set
    baseline: dict = field(default_factory=dict)  # K-means on the same split: {"val/acc": .., "test/acc": ..}

    @property
    def failed(self) -> bool:
        """Finished, but no trial completed with finite objectives (nothing to select)."""
        return not self.interrupted and self.counts.get("complete", 0) == 0


# --------------------------------------------------------------------------- helpers
def _abs_sqlite(uri: str) -> str:
    from study.tracking import absolute_uri
    return absolute_uri(uri)


def ensure_features(opts: StudyOptions) -> str:
    """The feature cache directory: ``--features`` as given, or built (once, in this process,
    with the feature build's own progress bar) under ``features_root/<dataset>``."""
    from features.build import default_preset_for, format_summary, scan
    from features.cache import BuildError, CacheError, build_cache, find_cache_dirs
    from features.datasets.base import DatasetError
    from features.frontend import get_preset

    if opts.features:
        given = Path(opts.features).resolve()
        inner = find_cache_dirs(given)
        return str(inner[0] if len(inner) == 1 else given)

    out = Path(opts.features_root, opts.dataset).resolve()
    found = find_cache_dirs(out) if out.is_dir() else []
    if len(found) == 1:
        return str(found[0])
    print(f"[study] building the {opts.dataset} feature cache under {out}", flush=True)
    try:
        ds = scan(opts.dataset, Path(opts.root) if opts.root else None, out, 0)
        summary = build_cache(ds, get_preset(default_preset_for(opts.dataset)), out, 0, progress=True)
    except (BuildError, CacheError, DatasetError, ValueError, OSError) as exc:
        raise StudyError(f"feature build failed: {exc}") from exc
    print(format_summary(summary), flush=True)
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
# The embedded default (synthetic set, no --features) is a demo sized for a laptop: narrower
# networks and the papers' batch of 64 (the recommended recipe's small batches pay off on real
# speech, at several times the wall time per epoch on tiny inputs).
EMBEDDED_SMALL = {"channels": "8,16,32,32", "gru_hidden": 32, "silhouette_sample": 500, "batch_size": 64}


def _fixed_config(opts: StudyOptions, n_clusters: int) -> dict:
    """The config every trial starts from (the space's samples go over it); the feature cache
    is not part of it (it reaches trials through study.trainable.make_trainable)."""
    fixed = {"epochs": int(opts.epochs), "n_clusters": int(n_clusters),
             "checkpoint_every": int(opts.checkpoint_every)}
    if opts.gpus_per_trial > 0:
        fixed["device"] = "cuda"
    if not opts.features and opts.dataset == "synthetic" and not opts.root and opts.space in ("uvac", "cat_uvac"):
        fixed.update(EMBEDDED_SMALL)
    fixed.update(opts.overrides or {})
    # the recipe every trial's config starts from, recorded with the study's fixed config
    fixed.setdefault("recipe", DEFAULTS["recipe"])
    return fixed


def space_constants(space: str, epochs: int) -> dict:
    """The constants a space returns (e.g. ``{"model": "cat_uvac"}``)."""
    return dict(get_space(space, epochs=epochs)(RecordingTrial()) or {})


def space_model(space: str, epochs: int = 1) -> Optional[str]:
    """The model a space trains (its ``model`` constant), or None when it sets none."""
    return space_constants(space, epochs).get("model")


def searched_params(space: str, epochs: int) -> list[str]:
    """Every parameter the space may suggest (conditional ones included)."""
    params, _ = record_space(space, epochs=max(1, int(epochs)))
    return [c["name"] for c in params]


def pinned_params(opts: StudyOptions) -> dict:
    """The ``--set`` keys the space would search: pinned to the given value in every trial."""
    searched = set(searched_params(opts.space, opts.epochs))
    return {k: v for k, v in (opts.overrides or {}).items() if k in searched}


class PinnedSpace:
    """A space with some parameters pinned: their ``suggest_*`` calls answer the pinned value
    and never reach Optuna (so they are not searched, not in the trial's Optuna params), and
    the pinned values join the space's constants (so they are in every trial's config).
    Picklable (for --resume) when the wrapped space is."""

    def __init__(self, fn, pinned: dict):
        self.fn = fn
        self.pinned = dict(pinned)

    def __call__(self, trial):
        consts = self.fn(_PinnedTrial(trial, self.pinned)) or {}
        return {**consts, **self.pinned}


class _PinnedTrial:
    def __init__(self, trial, pinned: dict):
        self._trial = trial
        self._pinned = pinned

    def _suggest(self, kind: str, name: str, *args, **kwargs):
        if name in self._pinned:
            return self._pinned[name]
        return getattr(self._trial, kind)(name, *args, **kwargs)

    def suggest_float(self, name, *args, **kwargs):
        return self._suggest("suggest_float", name, *args, **kwargs)

    def suggest_int(self, name, *args, **kwargs):
        return self._suggest("suggest_int", name, *args, **kwargs)

    def suggest_categorical(self, name, *args, **kwargs):
        return self._suggest("suggest_categorical", name, *args, **kwargs)

    def suggest_uniform(self, name, *args, **kwargs):  # pragma: no cover - legacy API
        return self._suggest("suggest_uniform", name, *args, **kwargs)

    def suggest_loguniform(self, name, *args, **kwargs):  # pragma: no cover - legacy API
        return self._suggest("suggest_loguniform", name, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._trial, name)


def study_space(opts: StudyOptions, pinned: Optional[dict] = None):
    """The define-by-run function of the study: the space, with the pinned keys fixed."""
    fn = get_space(opts.space, epochs=opts.epochs)
    pinned = pinned_params(opts) if pinned is None else pinned
    return PinnedSpace(fn, pinned) if pinned else fn


def check_config(opts: StudyOptions, fixed: dict) -> None:
    """Resolve one config of the space (its lowest choices, pinned keys at their --set
    value) so that bad --set values fail now, before any trial."""
    from trainables.config import resolve_config

    pinned = pinned_params(opts)
    rec = RecordingTrial(choose=pinned)
    consts = get_space(opts.space, epochs=opts.epochs)(rec) or {}
    sample = {c["name"]: (c["choices"][0] if c["kind"] == "categorical" else c["low"])
              for c in rec.calls if c["name"] not in pinned}
    try:
        resolve_config({**fixed, **sample, **consts})
    except ValueError as exc:
        raise StudyError(f"invalid trial config (--set or space): {exc}") from None


def default_study_name(opts: StudyOptions) -> str:
    data = Path(opts.features).name if opts.features else opts.dataset
    return f"{opts.space}-{data}-{time.strftime('%Y%m%d-%H%M%S')}"


def _trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def _ray_init(opts: StudyOptions) -> bool:
    """Start a local Ray bound to loopback, or join ``--address``; True when started here."""
    from study.ray_runtime import init_ray
    quiet_ray_env()
    return init_ray(opts.address, None)


def study_log_path(opts: StudyOptions, name: str) -> Path:
    """Where the libraries' lines go (study.library_logs): in the Ray experiment folder when it
    is local, else ``runs/logs``."""
    base = Path(opts.storage_path) if "://" not in opts.storage_path else Path("runs", "logs")
    return (base / name / "study.log").resolve()


def _fit(tuner, opts: StudyOptions, name: str, storage: str, tracking_uri: str, parent_id: str):
    """``tuner.fit()`` with library lines in the study log; a second Ctrl-C (Ray handles the
    first by stopping the experiment cleanly) ends the MLflow runs as interrupted and raises
    StudyInterrupted, whose message is our resume command."""
    from study import tracking
    try:
        return tuner.fit()
    except KeyboardInterrupt:
        tracking.interrupt_open_runs(tracking_uri, parent_id)
        tracking.finish_parent(tracking_uri, parent_id, "KILLED", {"study.state": "interrupted"})
        raise StudyInterrupted(resume_command(name, storage)) from None


def resume_command(name: str, storage: str) -> str:
    default = _abs_sqlite("sqlite:///optuna.db")
    return f"python -m study.launch --resume {name}" + ("" if storage == default else f" --storage {storage}")


def _callbacks(opts: StudyOptions, objectives, name: str, storage: str, tracking_uri: str, parent_id: str) -> list:
    """The driver-side Tune callbacks of a study: MLflow child runs, study-level metrics on
    the parent run, and the terminal's progress (all pickled with the experiment for --resume)."""
    from study import tracking
    from study.progress import ProgressCallback
    from study.trial_index import TrialIndex

    index = TrialIndex(storage, name)
    return [tracking.MlflowTrialCallback(tracking_uri, parent_id, name, storage),
            tracking.StudyMetricsCallback(tracking_uri, parent_id, objectives),
            ProgressCallback(objectives, opts.num_samples, opts.epochs, index, every_s=opts.progress_every_s)]


def _trainable(opts: StudyOptions, cache_dir: str):
    from study.trainable import make_trainable
    return make_trainable(cache_dir, cpus=opts.cpus_per_trial, gpus=opts.gpus_per_trial)


def _ray_storage_path(opts: StudyOptions) -> str:
    p = opts.storage_path
    return p if "://" in p else str(Path(p).resolve())


# --------------------------------------------------------------------------- the study
def run_study(opts: StudyOptions, *, extra_callbacks: Optional[list] = None, stopper=None) -> StudyResult:
    """Run a new study to its end (or until interrupted) and return its Pareto trials; the
    libraries' own lines go to the study's log file (study.library_logs).

    ``extra_callbacks`` (Tune Callbacks) and ``stopper`` (a Tune Stopper; a trial it stops
    counts as pruned) are for programmatic use; both must be picklable for --resume."""
    opts.validate()
    name = opts.study_name = opts.study_name or default_study_name(opts)
    log_path = study_log_path(opts, name)
    print(f"[study] {name}: library logs (Ray, Optuna, MLflow) go to {log_path}", flush=True)
    with library_logs_to(log_path):
        return _run_study(opts, extra_callbacks=extra_callbacks, stopper=stopper)


def _run_study(opts: StudyOptions, *, extra_callbacks: Optional[list] = None, stopper=None) -> StudyResult:
    """Run a new study to its end (or until interrupted) and return its Pareto trials.

    ``extra_callbacks`` (Tune Callbacks) and ``stopper`` (a Tune Stopper; a trial it stops
    counts as pruned) are for programmatic use; both must be picklable for --resume."""
    import optuna
    from ray.tune import CheckpointConfig, FailureConfig, RunConfig, TuneConfig, Tuner
    from ray.tune.search import ConcurrencyLimiter

    from study import tracking
    from study.schedulers import make_scheduler
    from study.searcher import StudySearcher

    quiet_ray_env()
    t0 = time.time()
    objectives = parse_objectives(opts.objectives)
    seed_given = opts.seed is not None
    if not seed_given:  # a fresh sampler seed per study, recorded so that it can be replayed
        opts.seed = secrets.randbits(31)
    pinned = pinned_params(opts)
    storage = _abs_sqlite(opts.storage)
    tracking_uri = _abs_sqlite(opts.tracking_uri)
    name = opts.study_name

    if optuna.study.get_all_study_names(optuna.storages.RDBStorage(storage)).count(name):
        raise StudyError(f"study {name!r} already exists in {storage}; use --resume {name} or another --study-name")

    cache_dir = ensure_features(opts)
    table = _load_table(cache_dir, (opts.overrides or {}).get("split_scheme"))
    n_clusters = opts.n_clusters or len(table.classes)
    fixed = _fixed_config(opts, n_clusters)
    check_config(opts, fixed)
    cache_key = table.cache_key
    baseline = kmeans_baseline(table, n_clusters)
    del table

    pinned_record = {"study.pinned": _pinned_text(pinned)} if pinned else {}
    parent_id = tracking.start_parent(
        tracking_uri, opts.experiment, name,
        tags={"study.space": opts.space, "study.dataset": Path(cache_dir).name if opts.features else opts.dataset,
              "study.cache_key": cache_key, "study.git_commit": tracking.git_commit(),
              "study.objectives": ",".join(str(o) for o in objectives),
              "study.storage": storage,  # absolute: analysis.importance reads the study from it
              "study.seed": opts.seed, **pinned_record},
        params={**{k: v for k, v in dataclasses.asdict(opts).items() if k != "overrides"},
                **{f"fixed.{k}": v for k, v in fixed.items()},
                "study.seed": opts.seed, **pinned_record})

    searcher = StudySearcher(study_space(opts, pinned), objectives,
                             study_name=name, storage_url=storage, seed=opts.seed)
    study = optuna.load_study(study_name=name, storage=storage)
    study.set_user_attr("options", json.dumps(dataclasses.asdict(opts)))
    study.set_user_attr("mlflow_parent_run_id", parent_id)
    study.set_user_attr("tracking_uri", tracking_uri)
    study.set_user_attr("fixed_config", json.dumps(fixed))
    study.set_user_attr("features_dir", cache_dir)
    study.set_user_attr("seed", opts.seed)
    study.set_user_attr("pinned", json.dumps(pinned))
    study.set_user_attr("kmeans_baseline", json.dumps(baseline))
    tracking.log_parent_metrics(tracking_uri, parent_id, {f"baseline/kmeans_{k.replace('/', '_')}": v
                                                         for k, v in baseline.items()})
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental API warning
        study.set_metric_names([o.metric for o in objectives])

    scheduler = make_scheduler(opts.scheduler, objectives, epochs=opts.epochs, grace_period=opts.grace_period,
                               asha_metric=opts.asha_metric)
    study.set_user_attr("scheduler", opts.scheduler)

    callbacks = _callbacks(opts, objectives, name, storage, tracking_uri, parent_id)
    callbacks += list(extra_callbacks or [])

    started_ray = _ray_init(opts)
    try:
        tuner = Tuner(
            _trainable(opts, cache_dir),
            param_space=fixed,
            tune_config=TuneConfig(search_alg=ConcurrencyLimiter(searcher, max_concurrent=opts.max_concurrent),
                                   scheduler=scheduler, num_samples=opts.num_samples,
                                   trial_dirname_creator=_trial_dirname),
            run_config=RunConfig(name=name, storage_path=_ray_storage_path(opts), callbacks=callbacks, stop=stopper,
                                 failure_config=FailureConfig(max_failures=opts.max_failures),
                                 checkpoint_config=CheckpointConfig(num_to_keep=1), verbose=0),
        )
        print(f"[study] {name}: space {opts.space}, {opts.num_samples} trials x {opts.epochs} epochs, "
              f"{opts.max_concurrent} concurrent, objectives {', '.join(map(str, objectives))}, "
              f"scheduler {opts.scheduler}", flush=True)
        print(f"[study] sampler seed {opts.seed}" + ("" if seed_given else " (drawn; replay with --seed "
                                                     f"{opts.seed})"), flush=True)
        if pinned:
            print(f"[study] pinned by --set (not searched): {_pinned_text(pinned)}", flush=True)
        grid = _fit(tuner, opts, name, storage, tracking_uri, parent_id)
        return _finish(name, storage, tracking_uri, parent_id, objectives, grid, opts.num_samples, t0,
                       os.path.join(_ray_storage_path(opts), name), seed=opts.seed, pinned=pinned,
                       baseline=baseline)
    finally:
        if started_ray:
            import ray
            ray.shutdown()


def _stored_study(name: str, storage: str) -> tuple[dict, StudyOptions]:
    """The Optuna study's user attrs and the options it was launched with."""
    import optuna

    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise StudyError(f"no study named {name!r} in {storage}") from None
    attrs = study.user_attrs
    if "options" not in attrs:
        raise StudyError(f"study {name!r} was not created by study.launch (no stored options)")
    fields = {f.name for f in dataclasses.fields(StudyOptions)}
    return attrs, StudyOptions(**{k: v for k, v in json.loads(attrs["options"]).items() if k in fields})


def resume_study(name: str, storage: str = "sqlite:///optuna.db", *, address: Optional[str] = None) -> StudyResult:
    """Continue an interrupted study: same Ray experiment, Optuna study and MLflow parent."""
    storage = _abs_sqlite(storage)
    attrs, opts = _stored_study(name, storage)
    if address:
        opts.address = address
    log_path = study_log_path(opts, name)
    print(f"[study] resuming {name}: library logs go to {log_path}", flush=True)
    with library_logs_to(log_path):
        return _resume_study(name, storage, attrs, opts)


def _resume_study(name: str, storage: str, attrs: dict, opts: StudyOptions) -> StudyResult:
    from ray.tune import Tuner

    from study import tracking

    t0 = time.time()
    quiet_ray_env()
    objectives = parse_objectives(opts.objectives)
    tracking_uri = attrs["tracking_uri"]
    parent_id = attrs["mlflow_parent_run_id"]
    path = os.path.join(_ray_storage_path(opts), name)
    if not Tuner.can_restore(path):
        raise StudyError(f"no Ray experiment state at {path}; the study cannot be resumed")
    tracking._client(tracking_uri).update_run(parent_id, status="RUNNING")

    started_ray = _ray_init(opts)
    try:
        tuner = Tuner.restore(path, trainable=_trainable(opts, attrs["features_dir"]),
                              resume_unfinished=True, resume_errored=True)
        print(f"[study] resuming {name} from {path} (sampler seed {opts.seed})", flush=True)
        grid = _fit(tuner, opts, name, storage, tracking_uri, parent_id)
        pinned = json.loads(attrs.get("pinned") or "{}")
        return _finish(name, storage, tracking_uri, parent_id, objectives, grid, opts.num_samples, t0, path,
                       seed=opts.seed, pinned=pinned, baseline=json.loads(attrs.get("kmeans_baseline") or "{}"))
    finally:
        if started_ray:
            import ray
            ray.shutdown()


def kmeans_baseline(table, n_clusters: int) -> dict:
    """K-means (seed 0) on the study's split: the accuracy every trial should beat, shown beside
    the Pareto trials (val/acc to compare with the objectives, test/acc for the record)."""
    from trainables.baselines import run_baseline

    m = run_baseline("kmeans", table, int(n_clusters), 0).metrics
    return {k: float(m[k]) for k in ("val/acc", "test/acc") if k in m and math.isfinite(float(m[k]))}


def _pinned_text(pinned: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(pinned.items()))


def _finish(name, storage, tracking_uri, parent_id, objectives, grid, total, t0, path, *,
            seed=None, pinned=None, baseline=None) -> StudyResult:
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
                       if t.state == TrialState.FAIL and "not reported" in t.user_attrs.get("reason", "")})
    interrupted = finished < total or counts["running"] > 0
    all_failed = not interrupted and counts["complete"] == 0

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

    if interrupted:  # child runs left RUNNING by Ctrl-C: ended as interrupted, reopened by --resume
        tracking.interrupt_open_runs(tracking_uri, parent_id)
    tags = {"study.finished_trials": finished, "study.pareto_trials": ",".join(str(p["number"]) for p in pareto)}
    if interrupted:
        tracking.finish_parent(tracking_uri, parent_id, "KILLED", {**tags, "study.state": "interrupted"})
    elif all_failed:
        tracking.finish_parent(tracking_uri, parent_id, "FAILED",
                               {**tags, "study.state": "failed", "study.failure": _failure_text(counts)})
    else:
        tracking.finish_parent(tracking_uri, parent_id, "FINISHED", {**tags, "study.state": "finished"})
    return StudyResult(study_name=name, parent_run_id=parent_id, storage=storage, tracking_uri=tracking_uri,
                       experiment_path=path, counts=counts, pareto=pareto, elapsed_s=time.time() - t0,
                       interrupted=interrupted, ui_command=tracking.ui_command(tracking_uri),
                       objectives=[str(o) for o in objectives], warnings=warnings, seed=seed,
                       pinned=dict(pinned or {}), baseline=dict(baseline or {}))


def _failure_text(counts: dict) -> str:
    ended = ", ".join(f"{v} {k}" for k, v in counts.items() if v and k != "running")
    return f"no trial completed with finite objectives ({ended or 'no trial ran'}); nothing to select"


KEY_PARAMS = ("model", "divergence", "d_z", "lam", "lr_start", "lr_end", "tau_kind", "tau_start", "tau_end",
              "tau_anneal_epochs", "gmm_covariance", "seed")


def format_result(res: StudyResult) -> str:
    from study import tracking

    lines = [f"study {res.study_name}: " + ", ".join(f"{k} {v}" for k, v in res.counts.items())
             + f" in {res.elapsed_s:.0f}s"]
    if res.seed is not None:
        lines.append(f"sampler seed {res.seed}" + (f"; pinned by --set: {_pinned_text(res.pinned)}"
                                                   if res.pinned else ""))
    if res.interrupted:
        lines.append(f"interrupted; continue with: {resume_command(res.study_name, res.storage)}")
    elif res.failed:
        lines.append(f"error: study {res.study_name} failed: {_failure_text(res.counts)}; "
                     "see the trials' reasons in MLflow (tag trial.reason) or Optuna (user attr reason)")
    for w in res.warnings:
        lines.append(f"warning: trials kept off the front: {w}")
    lines.append(f"Pareto-optimal trials ({len(res.pareto)}), objectives {', '.join(res.objectives)}:")
    if res.baseline:
        km = " ".join(f"{k}={v:.4g}" for k, v in res.baseline.items())
        above = [p["number"] for p in res.pareto if p["values"].get("val/acc", -1) > res.baseline.get("val/acc", 2)]
        verdict = "" if not any("val/acc" in p["values"] for p in res.pareto) else (
            f"; Pareto trials above it on val/acc: {', '.join(map(str, above))}" if above
            else "; no Pareto trial beats it on val/acc")
        lines.append(f"  baseline K-means on the same split (seed 0): {km}{verdict}")
    for p in res.pareto:
        vals = " ".join(f"{k}={v:.4g}" for k, v in p["values"].items())
        test = " ".join(f"{k}={'-' if v is None else f'{v:.4g}'}" for k, v in p["test"].items())
        params = " ".join(f"{k}={_short(p['params'][k])}" for k in KEY_PARAMS if k in p["params"])
        lines.append(f"  trial {p['number']:>3}  {vals}  | {test}  | {params}  | run {p['run_id']}")
    lines.append(f"MLflow parent run {res.parent_run_id}; open the UI with:")
    lines.append(f"  {res.ui_command}")
    lines.append(f"Optuna study (sampler state, trials, importance): {tracking.dashboard_command(res.storage)}")
    return "\n".join(lines)


def _short(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
