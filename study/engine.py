"""``run_study(StudyOptions) -> StudyResult`` and ``resume_study(name)``: a study end to end.

features cache -> Ray Tune (study.trainable) searched by Optuna (study.searcher, persisted
in an RDB storage) under a scheduler (study.schedulers) -> MLflow parent/child runs
(study.tracking) -> the Pareto-optimal trials (study.result).

A new study records everything it needs as user attrs of its Optuna study (options, fixed
config, feature cache, MLflow parent), so that ``resume_study(name, storage)`` needs nothing
but the name. A study survives a kill at any instant:

* killed before its Optuna study holds its options (during setup): launching the same name
  again starts it over, with a message;
* killed after setup but before Ray saved any experiment state (``tuner.pkl`` at most):
  ``--resume`` starts the study's remaining trials in a fresh Ray experiment under the same
  name (the stale folder is kept aside), adopting Optuna trials left RUNNING;
* killed later: ``--resume`` restores Ray's experiment (``Tuner.restore``).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from study.library_logs import library_logs_to, quiet_ray_env
from study.objectives import Objective, parse_objectives
from study.options import (StudyError, StudyOptions, check_config, default_study_name, fixed_config,
                           pinned_params, pinned_text, study_space)
from study.baselines import baseline_metrics, baseline_tags
from study.claim import SETUP_DONE_ATTR, claim_name
from study.result import StudyResult, collect_result, resume_command
from study.tags import (STUDY_CACHE_KEY_TAG, STUDY_DATASET_TAG, STUDY_FRONTENDS_TAG, STUDY_GIT_COMMIT_TAG,
                        STUDY_OBJECTIVES_TAG, STUDY_PINNED_TAG, STUDY_SEED_TAG, STUDY_SPACE_TAG, STUDY_STATE_TAG,
                        STUDY_STORAGE_TAG, StudyState)
from study.terminal import count_of, terminal_logger

log = logging.getLogger(__name__)
term = terminal_logger()


class StudyInterrupted(Exception):
    """The study was stopped by the user; the message is the command that resumes it."""


@dataclass
class _Study:
    """One study's identity and fixed inputs: what a Tuner needs, new or restarted."""

    opts: StudyOptions
    name: str
    storage: str
    tracking_uri: str
    parent_id: str
    objectives: list[Objective]
    fixed: dict
    cache_dirs: dict  # front end -> feature cache directory (the first is the study's main one)
    pinned: dict
    baselines: list  # study.baselines rows

    @property
    def cache_dir(self) -> str:
        return next(iter(self.cache_dirs.values()))

    @property
    def path(self) -> str:
        return os.path.join(_ray_storage_path(self.opts), self.name)


# --------------------------------------------------------------------------- inputs
def _abs_sqlite(uri: str) -> str:
    from study.tracking import absolute_uri
    return absolute_uri(uri)


def ensure_features(opts: StudyOptions) -> dict[str, str]:
    """The feature cache of every front end of the study (``opts.frontends``, filled in by
    ``StudyOptions.resolve``), as ``{preset name: cache directory}``, the first one the study's
    main cache: ``--features`` as given (its clips featurised again by the first front end where
    that is another), or built (once, in this process, with the feature build's own progress bar)
    under ``features_root/<dataset>``; the other front ends are the same clips featurised again
    beside it (features.companion)."""
    from features.build import format_summary, scan
    from features.cache import BuildError, CacheError, build_cache, find_cache_dirs, read_cache_info
    from features.companion import companion_cache
    from features.datasets.base import DatasetError
    from features.frontend import get_preset

    frontends = list(opts.frontends or [])
    try:
        if opts.features:
            given = Path(opts.features).resolve()
            inner = find_cache_dirs(given)
            main = str(inner[0] if len(inner) == 1 else given)
            if read_cache_info(main).preset.name != frontends[0]:  # --frontends names another first
                main = str(companion_cache(main, get_preset(frontends[0]), progress=True))
        else:
            # Always through the build: unchanged inputs cost a scan and a checksum pass ("up to
            # date"); new files, a damaged file or an older cache format are dealt with here.
            out = Path(opts.features_root, opts.dataset).resolve()
            term.info(f"feature cache of {opts.dataset} under {out}")
            ds = scan(opts.dataset, Path(opts.root) if opts.root else None, out, 0)
            summary = build_cache(ds, get_preset(frontends[0]), out, 0, progress=True)
            if not summary.up_to_date:
                print(format_summary(summary), flush=True)
            main = str(summary.cache_dir)
        dirs = {frontends[0]: main}
        for name in frontends[1:]:
            dirs[name] = str(companion_cache(main, get_preset(name), progress=True))
    except (BuildError, CacheError, DatasetError, ValueError, OSError) as exc:
        raise StudyError(f"feature build failed: {exc}") from exc
    return dirs


def _load_table(cache_dir: str, split_scheme: Optional[str], voices: int = 0, val_fold: int = 0):
    from features.cache import load_table
    kwargs = {"split_scheme": split_scheme} if split_scheme else {}
    try:
        return load_table(cache_dir, voices=voices, val_fold=val_fold, **kwargs)
    except Exception as exc:
        raise StudyError(f"cannot load features from {cache_dir}: {exc}") from None


def _check_clusters(table, n_clusters: int) -> None:
    """Every model is refused more clusters than training clips: checked before Ray starts."""
    from trainables.baselines import check_n_clusters
    try:
        check_n_clusters(table, n_clusters)
    except ValueError as exc:
        raise StudyError(str(exc)) from None


def fit_baselines(cache_dirs: dict, split_scheme: Optional[str], n_clusters: int, fixed: dict) -> list[dict]:
    """The classical baselines on the study's split (study.baselines), fitted with the seeds the
    trials train from (``fixed``: seed, replicas): what every trial must beat."""
    from study.baselines import study_baselines, trial_seeds
    from trainables.baseline_suite import get_voices

    voices = int(fixed.get("voices", 0))  # --set voices: the count of the voice front ends' trials
    fold = int(fixed.get("val_fold", 0))  # --set val_fold: the validation fold the trials are judged on
    tables = {name: _load_table(d, split_scheme, voices if get_voices(name) else 0, fold)
              for name, d in cache_dirs.items()}
    main = next(iter(cache_dirs))
    term.info(f"fitting the classical baselines on the study's split ({', '.join(cache_dirs)} and the "
              f"acoustic-word-embedding front ends)")
    try:
        return study_baselines(tables, main, cache_dirs[main], n_clusters, trial_seeds(fixed))
    except (ValueError, OSError) as exc:
        raise StudyError(f"the classical baselines could not be fitted: {exc}") from exc


# --------------------------------------------------------------------------- Ray plumbing
def _ray_init(opts: StudyOptions, record: Optional[Path] = None) -> bool:
    """Start a local Ray (recorded in ``record``), or join ``--address``; True when started here."""
    from study.ray_runtime import init_ray
    quiet_ray_env()
    return init_ray(opts.address, None, record=record)


def ray_session_record(opts: StudyOptions, name: str) -> Path:
    """Where a study records the local Ray it started (study.ray_leftovers), beside its log."""
    from study.ray_leftovers import RECORD
    return study_log_path(opts, name).with_name(RECORD)


def _ray_storage_path(opts: StudyOptions) -> str:
    p = opts.storage_path
    return p if "://" in p else str(Path(p).resolve())


def stop_ray_leftovers(opts: StudyOptions, name: str) -> None:
    """Stop what a killed earlier driver of this study left of its local Ray (study.ray_leftovers)."""
    from study.ray_leftovers import stop_leftovers
    line = stop_leftovers(ray_session_record(opts, name))
    if line:
        term.info(f"{name}: {line}")


def study_log_path(opts: StudyOptions, name: str) -> Path:
    """Where the libraries' lines go (study.library_logs): in the Ray experiment folder when it
    is local, else ``runs/logs``."""
    base = Path(opts.storage_path) if "://" not in opts.storage_path else Path("runs", "logs")
    return (base / name / "study.log").resolve()


def _trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def _callbacks(st: _Study) -> list:
    """The driver-side Tune callbacks: MLflow child runs, study-level metrics on the parent
    run, and the terminal's progress (all pickled with the experiment for --resume)."""
    from study import tracking
    from study.progress import ProgressCallback
    from study.trial_index import TrialIndex

    index = TrialIndex(st.storage, st.name)
    return [tracking.MlflowTrialCallback(st.tracking_uri, st.parent_id, st.name, st.storage),
            tracking.StudyMetricsCallback(st.tracking_uri, st.parent_id, st.objectives),
            ProgressCallback(st.objectives, st.opts.num_samples, st.opts.epochs, index,
                             every_s=st.opts.progress_every_s)]


def _new_tuner(st: _Study, num_samples: int, *, extra_callbacks=None, stopper=None):
    """A fresh Tuner for ``num_samples`` trials of the study (all of them, or what a restart
    has left to run), searched by Optuna from the study's sampler seed."""
    from ray.tune import CheckpointConfig, FailureConfig, RunConfig, TuneConfig, Tuner
    from ray.tune.search import ConcurrencyLimiter

    from study.schedulers import make_scheduler
    from study.searcher import StudySearcher
    from study.trainable import make_trainable

    o = st.opts
    searcher = StudySearcher(study_space(o, st.pinned), st.objectives, study_name=st.name,
                             storage_url=st.storage, seed=o.seed)
    scheduler = make_scheduler(o.scheduler, st.objectives, epochs=o.epochs, grace_period=o.grace_period,
                               asha_metric=o.asha_metric)
    return Tuner(
        make_trainable(st.cache_dirs, cpus=o.cpus_per_trial, gpus=o.gpus_per_trial),
        param_space=st.fixed,
        tune_config=TuneConfig(search_alg=ConcurrencyLimiter(searcher, max_concurrent=o.max_concurrent),
                               scheduler=scheduler, num_samples=num_samples, trial_dirname_creator=_trial_dirname),
        run_config=RunConfig(name=st.name, storage_path=_ray_storage_path(o),
                             callbacks=_callbacks(st) + list(extra_callbacks or []), stop=stopper,
                             failure_config=FailureConfig(max_failures=o.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=1), verbose=0),
    )


def _fit(tuner, st: _Study) -> StudyResult:
    """``tuner.fit()`` and the study's result. Ray handles a first Ctrl-C by stopping the
    experiment cleanly (the result then says "interrupted"); a second one (counted by
    study.interrupts.CtrlC wherever it lands, even where a library swallowed it) ends the MLflow
    runs as interrupted and raises StudyInterrupted, whose message is our resume command."""
    from study.interrupts import CtrlC

    t0 = time.time()
    result = None
    with CtrlC() as ctrl_c:
        try:
            tuner.fit()
            if not ctrl_c.count:
                result = _result(st, t0)
        except KeyboardInterrupt:
            pass
    # counted, not only caught: a Ctrl-C while the result is collected can land in a callback whose
    # exception Python ignores (SQLAlchemy's weakref callbacks under MLflow and Optuna), and is a
    # second Ctrl-C all the same
    if result is not None and not ctrl_c.count:
        return result
    _interrupted(st)


def _interrupted(st: _Study):
    from study import tracking

    tracking.interrupt_open_runs(st.tracking_uri, st.parent_id)
    tracking.finish_parent(st.tracking_uri, st.parent_id, "KILLED", {STUDY_STATE_TAG: StudyState.INTERRUPTED})
    raise StudyInterrupted(resume_command(st.name, st.storage)) from None


def _result(st: _Study, t0: float) -> StudyResult:
    return collect_result(st.name, st.storage, st.tracking_uri, st.parent_id, st.objectives, st.opts.num_samples,
                          t0, st.path, seed=st.opts.seed, pinned=st.pinned, baselines=st.baselines)


def _with_ray(st: _Study, make_tuner) -> StudyResult:
    from study.interrupts import deferred

    record = ray_session_record(st.opts, st.name)
    started = _ray_init(st.opts, record)
    try:
        return _fit(make_tuner(), st)
    finally:
        if started:
            import ray
            from study.ray_leftovers import forget_session
            with deferred():  # a Ctrl-C now is raised once Ray's processes are stopped
                ray.shutdown()
                forget_session(record)


# --------------------------------------------------------------------------- a new study
def run_study(opts: StudyOptions, *, extra_callbacks: Optional[list] = None, stopper=None) -> StudyResult:
    """Run a new study to its end (or until interrupted) and return its Pareto trials; the
    libraries' own lines go to the study's log file (study.library_logs).

    ``extra_callbacks`` (Tune Callbacks) and ``stopper`` (a Tune Stopper; a trial it stops
    counts as pruned) are for programmatic use; both must be picklable for --resume."""
    opts.resolve()
    name = opts.study_name = opts.study_name or default_study_name(opts)
    log_path = study_log_path(opts, name)
    stop_ray_leftovers(opts, name)
    term.info(f"{name}: library logs (Ray, Optuna, MLflow) go to {log_path}")
    with library_logs_to(log_path):
        quiet_ray_env()
        seed_given = opts.seed is not None
        if not seed_given:  # a fresh sampler seed per study, recorded so that it can be replayed
            opts.seed = secrets.randbits(31)
        st = _setup(opts, name)
        term.info(f"{name}: space {opts.space}, {count_of(opts.num_samples, 'trial')} x "
                  f"{count_of(opts.epochs, 'epoch')}, "
                  f"{opts.max_concurrent} concurrent, objectives {', '.join(map(str, st.objectives))}, "
                  f"scheduler {opts.scheduler}")
        term.info(f"sampler seed {opts.seed}" + ("" if seed_given else f" (drawn; replay with --seed {opts.seed})"))
        if st.pinned:
            term.info(f"pinned by --set (not searched): {pinned_text(st.pinned)}")
        return _with_ray(st, lambda: _new_tuner(st, opts.num_samples,
                                                extra_callbacks=extra_callbacks, stopper=stopper))


def _setup(opts: StudyOptions, name: str) -> _Study:
    """Features, the classical baselines, the MLflow parent and the Optuna study with every attr
    a resume needs (set before any trial can start)."""
    import optuna

    from study import tracking

    storage, tracking_uri = _abs_sqlite(opts.storage), _abs_sqlite(opts.tracking_uri)
    objectives, pinned = parse_objectives(opts.objectives), pinned_params(opts)
    claim_name(storage, name, ["maximize" if o.mode == "max" else "minimize" for o in objectives])
    cache_dirs = ensure_features(opts)
    split_scheme = (opts.overrides or {}).get("split_scheme")
    table = _load_table(next(iter(cache_dirs.values())), split_scheme,
                        val_fold=int((opts.overrides or {}).get("val_fold", 0)))
    n_clusters = opts.n_clusters or table.n_classes
    _check_clusters(table, n_clusters)
    fixed = fixed_config(opts, n_clusters)
    check_config(opts, fixed)
    baselines = fit_baselines(cache_dirs, split_scheme, n_clusters, fixed)
    pinned_record = {STUDY_PINNED_TAG: pinned_text(pinned)} if pinned else {}
    parent_id = tracking.start_parent(
        tracking_uri, opts.experiment, name,
        tags={STUDY_SPACE_TAG: opts.space, STUDY_DATASET_TAG: table.dataset, STUDY_CACHE_KEY_TAG: table.cache_key,
              STUDY_GIT_COMMIT_TAG: tracking.git_commit(), STUDY_OBJECTIVES_TAG: ",".join(map(str, objectives)),
              STUDY_STORAGE_TAG: storage,  # absolute: analysis.importance reads the study from it
              STUDY_SEED_TAG: opts.seed, STUDY_FRONTENDS_TAG: ",".join(cache_dirs), **pinned_record,
              **baseline_tags(baselines)},
        params={**{k: v for k, v in dataclasses.asdict(opts).items() if k != "overrides"},
                **{f"fixed.{k}": v for k, v in fixed.items()}, STUDY_SEED_TAG: opts.seed, **pinned_record})
    tracking.log_parent_metrics(tracking_uri, parent_id, baseline_metrics(baselines))
    study = optuna.load_study(study_name=name, storage=storage)  # claimed above
    attrs = {"mlflow_parent_run_id": parent_id, "tracking_uri": tracking_uri, "fixed_config": json.dumps(fixed),
             "features_dir": next(iter(cache_dirs.values())), "features_dirs": json.dumps(cache_dirs),
             "seed": opts.seed, "pinned": json.dumps(pinned), "baselines": json.dumps(baselines),
             "scheduler": opts.scheduler}
    for k, v in attrs.items():
        study.set_user_attr(k, v)
    study.set_metric_names([o.metric for o in objectives])
    study.set_user_attr(SETUP_DONE_ATTR, json.dumps(dataclasses.asdict(opts)))  # last: marks the setup complete
    return _Study(opts, name, storage, tracking_uri, parent_id, objectives, fixed, cache_dirs, pinned, baselines)


# --------------------------------------------------------------------------- resume
def _check_tracking(uri: str) -> None:
    from study.stores import StoreDamaged, check_store
    try:
        check_store(uri, "MLflow store", "--tracking-uri")
    except StoreDamaged as exc:
        raise StudyError(str(exc)) from None


def _stored_study(name: str, storage: str) -> tuple[dict, StudyOptions]:
    """The Optuna study's user attrs and the options it was launched with."""
    import optuna

    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise StudyError(f"no study named {name!r} in {storage}") from None
    attrs = study.user_attrs
    if SETUP_DONE_ATTR not in attrs:
        raise StudyError(f"study {name!r} was stopped during its setup, before any trial: "
                         f"launch it again with the same --study-name to start it over")
    fields = {f.name for f in dataclasses.fields(StudyOptions)}
    return attrs, StudyOptions(**{k: v for k, v in json.loads(attrs[SETUP_DONE_ATTR]).items() if k in fields})


def resume_study(name: str, storage: str = "sqlite:///optuna.db", *, address: Optional[str] = None) -> StudyResult:
    """Continue an interrupted study: same Optuna study and MLflow parent; Ray's experiment
    restored, or (killed before Ray saved any state) its remaining trials started afresh."""
    from study import tracking

    storage = _abs_sqlite(storage)
    attrs, opts = _stored_study(name, storage)
    stop_ray_leftovers(opts, name)
    _check_tracking(attrs["tracking_uri"])
    if address:
        opts.address = address
    log_path = study_log_path(opts, name)
    term.info(f"resuming {name}: library logs go to {log_path}")
    st = _Study(opts, name, storage, attrs["tracking_uri"], attrs["mlflow_parent_run_id"],
                parse_objectives(opts.objectives), json.loads(attrs["fixed_config"]),
                json.loads(attrs.get("features_dirs") or "null") or {"": attrs["features_dir"]},
                json.loads(attrs.get("pinned") or "{}"), json.loads(attrs.get("baselines") or "[]"))
    with library_logs_to(log_path):
        quiet_ray_env()
        tracking.mlflow_client(st.tracking_uri).update_run(st.parent_id, status="RUNNING")
        damaged = _damaged_searcher_state(st.path)
        if damaged:  # Ray would restart the experiment and hang: the Optuna storage holds the search
            term.info(f"{damaged}: Ray's experiment is set aside, the remaining trials continue from "
                      f"the Optuna storage")
            return _restart(st)
        if _has_experiment_state(st.path):
            return _with_ray(st, lambda: _restore_tuner(st))
        return _restart(st)


def _damaged_searcher_state(path: str) -> Optional[str]:
    """"<file> is damaged (...)" for a searcher state (study.searcher, JSON) that cannot be read back."""
    for f in sorted(Path(path).glob("searcher-state-*.json")) if "://" not in path else []:
        try:
            state = json.loads(f.read_text(encoding="utf-8"))
            if not isinstance(state, dict) or not {"owned", "adopted", "completed"} <= set(state):
                raise ValueError("not a searcher state")
        except (OSError, ValueError) as exc:
            return f"{f} is damaged ({' '.join(str(exc).split())[:200]})"
    return None


def _has_experiment_state(path: str) -> bool:
    """Ray saved the experiment's trials (not just ``tuner.pkl``, written before any trial)."""
    from ray.tune import Tuner
    return Tuner.can_restore(path) and any(Path(path).glob("experiment_state-*.json"))


def _restore_tuner(st: _Study):
    from ray.tune import Tuner
    from study.trainable import make_trainable

    term.info(f"resuming {st.name} from {st.path} (sampler seed {st.opts.seed})")
    return Tuner.restore(st.path, trainable=make_trainable(st.cache_dirs, cpus=st.opts.cpus_per_trial,
                                                          gpus=st.opts.gpus_per_trial),
                         resume_unfinished=True, resume_errored=True)


def _restart(st: _Study) -> StudyResult:
    """Killed before Ray saved any state: run the trials Optuna has not finished in a fresh
    experiment under the same name; the stale folder is moved aside, not deleted."""
    import optuna

    trials = optuna.load_study(study_name=st.name, storage=st.storage).get_trials(deepcopy=False)
    finished = sum(t.state.is_finished() for t in trials)
    left = st.opts.num_samples - finished
    stale = Path(st.path)
    if stale.exists() and "://" not in st.path:
        stale.rename(stale.with_name(f"{stale.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}"))
    term.info(f"{st.name} was stopped before Ray saved any trial; starting its {left} remaining "
              f"trial(s) again under the same name ({finished} finished ones kept)")
    if left <= 0:
        return _result(st, time.time())
    return _with_ray(st, lambda: _new_tuner(st, left))  # the searcher shifts the seed past those trials
