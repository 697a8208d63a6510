"""MLflow tracking: one parent run per study, one child run per Optuna trial.

Child runs are written from the driver by a Tune Callback (``MlflowTrialCallback``), so
that only one process writes to the (SQLite) store. A child run is found again by its
tags (``mlflow.parentRunId`` + ``trial.number``), never by an in-memory id, so a retried
trial (worker killed) or a resumed study (driver killed) continues the same child run.

MLflow run statuses: complete -> FINISHED, pruned -> KILLED, diverged/failed -> FAILED;
the tag ``trial.status`` carries the study's own status (complete|pruned|diverged|failed). A
KILLED run says why in the UI: a pruned run's name ends in " (pruned)" and its description
(``mlflow.note.content``) says it was stopped early; an interrupted one's description says
``--resume`` continues it.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from ray.tune import Callback

from study.objectives import FINAL_KEY, classify, settle_ended
from study.trainable import RESOLVED_KEY
from study.tags import (
    EXPERIMENT_KIND_TAG,
    KIND_STUDY,
    MLFLOW_RUN_ATTR,
    NOTE_TAG,
    OPTUNA_STORAGE_TAG,
    OPTUNA_STUDY_TAG,
    PARENT_RUN_TAG,
    SHARED_VIEW_TAG,
    STUDY_KIND_TAG,
    STUDY_NAME_TAG,
    STUDY_OBJECTIVES_TAG,
    TRIAL_NUMBER_TAG,
    TRIAL_RAY_ID_TAG,
    TRIAL_REASON_TAG,
    TRIAL_RETRIES_TAG,
    TRIAL_STATUS_TAG,
)
from study.stores import creation_lock
from study.trial_index import TrialIndex
from trainables.status import ENDINGS, TrialStatus

log = logging.getLogger(__name__)

MLFLOW_STATUS = {TrialStatus.COMPLETE: "FINISHED", TrialStatus.PRUNED: "KILLED", TrialStatus.DIVERGED: "FAILED",
                 TrialStatus.FAILED: "FAILED"}
PRUNED_SUFFIX = " (pruned)"          # appended to a pruned child run's name


def absolute_uri(uri: str) -> str:
    """``sqlite:///rel.db`` -> ``sqlite:////abs/rel.db`` (so workers and printouts agree)."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    return uri


def artifact_root(tracking_uri: str) -> Optional[str]:
    """For a local SQLite store: ``mlartifacts`` beside the database file."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):])
        return (db.parent / "mlartifacts").resolve().as_uri()
    return None


def venv_script(name: str) -> str:
    """The console script ``name`` of the interpreter running us (the project's venv), so
    that a printed command works without activating it; the bare name when not installed."""
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


UI_PORT = 5000
SMALL_MACHINE_CPUS = 4   # at most this many cores: the UI with one worker (MLflow's default is 4)


def ui_command(tracking_uri: str, cpus: Optional[int] = None) -> str:
    """The command that serves the MLflow UI on this store (loopback only); on a small machine
    (``cpus``, default ``os.cpu_count()``) with ``--workers 1``."""
    root = artifact_root(tracking_uri)
    cmd = f"{venv_script('mlflow')} ui --backend-store-uri {tracking_uri}"
    if root:
        cmd += f" --default-artifact-root {root}"
    small = (cpus or os.cpu_count() or 1) <= SMALL_MACHINE_CPUS
    return cmd + f" --host 127.0.0.1 --port {UI_PORT}" + (" --workers 1" if small else "")


# The MLflow UI's "share view": an experiment tag ``mlflow.sharedViewState.<key>`` (SHARED_VIEW_TAG)
# holding the runs table's state as JSON, opened by ``?viewStateShareKey=<key>`` (MLflow 3.17's UI
# reads the search facets - searchFilter, orderByKey, orderByAsc - and the table state -
# selectedColumns, ... - from it; a search facet in the URL itself would make it ignore the tag).


def study_filter(study_name: str) -> str:
    """The MLflow search that lists a study's trials (its child runs), not the other studies'."""
    safe = study_name.replace("\\", "\\\\").replace("'", "\\'")
    return f"tags.`{STUDY_NAME_TAG}` = '{safe}' and tags.`{TRIAL_NUMBER_TAG}` LIKE '%'"


def study_view(study_name: str, objectives, params=()) -> dict:
    """The runs table of one study: its trials only, sorted by the first objective, the
    objectives, the trial's status and the searched params as columns."""
    metrics = [getattr(o, "metric", str(o).split(":")[0]) for o in objectives]
    modes = [getattr(o, "mode", "max") for o in objectives]
    return {"searchFilter": study_filter(study_name),
            "orderByKey": f"metrics.`{metrics[0]}`" if metrics else "attributes.start_time",
            "orderByAsc": bool(metrics) and modes[0] == "min",
            "selectedColumns": [f"metrics.`{m}`" for m in metrics] + [f"tags.`{TRIAL_STATUS_TAG}`"]
                               + [f"params.`{p}`" for p in params],
            "runsHiddenMode": "SHOW_ALL"}


def share_study_view(tracking_uri: str, experiment_id: str, study_name: str, objectives, params=()) -> str:
    """Record :func:`study_view` on the experiment; returns the key the URL names."""
    import hashlib
    key = "study-" + hashlib.sha256(study_name.encode()).hexdigest()[:16]
    mlflow_client(tracking_uri).set_experiment_tag(
        experiment_id, SHARED_VIEW_TAG + key, json.dumps(study_view(study_name, objectives, params)))
    return key


def ui_url(tracking_uri: str, run_id: str, base: str = f"http://127.0.0.1:{UI_PORT}", objectives=None,
           params=()) -> str:
    """The MLflow UI page of the study whose parent run is ``run_id``: its trials only, the
    objectives (default: the parent's ``study.objectives`` tag), status and ``params`` as
    columns (:func:`share_study_view`), as a training experiment: MLflow 3.17's UI follows its
    global GenAI / Model training switch over the experiment's ``mlflow.experimentKind`` tag,
    and only the ``workflowType`` query sets that switch."""
    from study.objectives import parse_objectives
    run = mlflow_client(tracking_uri).get_run(run_id)
    exp, tags = run.info.experiment_id, run.data.tags
    if objectives is None:
        objectives = parse_objectives(tags[STUDY_OBJECTIVES_TAG]) if tags.get(STUDY_OBJECTIVES_TAG) else []
    key = share_study_view(tracking_uri, exp, tags.get(STUDY_NAME_TAG, run.info.run_name), objectives, params)
    return f"{base}/#/experiments/{exp}/runs?workflowType=machine_learning&viewStateShareKey={key}"


def run_url(tracking_uri: str, run_id: str, base: str = f"http://127.0.0.1:{UI_PORT}") -> str:
    """The MLflow UI page of one run (a study's parent: its report artifacts and study/ metrics)."""
    exp = mlflow_client(tracking_uri).get_run(run_id).info.experiment_id
    return f"{base}/#/experiments/{exp}/runs/{run_id}?workflowType=machine_learning"


def dashboard_command(storage: str) -> str:
    """The command that opens optuna-dashboard on the study's storage (``pip install -e ".[ui]"``)."""
    script = venv_script("optuna-dashboard")
    if script == "optuna-dashboard":
        return f'optuna-dashboard {storage}   (not installed: pip install -e ".[ui]")'
    return f"{script} {storage}"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=10)
        return out.stdout.strip() or "unknown"
    except Exception:
        return "unknown"


def mlflow_client(uri: str):
    """A client of the MLflow store at ``uri``; its construction opens the store, which on a fresh
    SQLite file builds the schema, so it runs under the store's creation lock (two launches on one
    new ``mlflow.db`` would otherwise both fail in MLflow's migrations)."""
    from mlflow.tracking import MlflowClient
    with creation_lock(uri):
        return MlflowClient(tracking_uri=uri)


def _param_value(v) -> str:
    s = str(v)
    return s[:6000]


# MLflow 3's UI opens an experiment without this tag on its GenAI traces page; with it, on
# the runs table (the value the UI names CUSTOM_MODEL_DEVELOPMENT).
EXPERIMENT_KIND = {EXPERIMENT_KIND_TAG: "custom_model_development"}


def get_or_create_experiment(uri: str, name: str) -> str:
    """The experiment's id, created (tagged as a training experiment) if missing."""
    client = mlflow_client(uri)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        return client.create_experiment(name, artifact_location=artifact_root(uri), tags=EXPERIMENT_KIND)
    if EXPERIMENT_KIND_TAG not in exp.tags:  # made by an older version of the tool
        for k, v in EXPERIMENT_KIND.items():
            client.set_experiment_tag(exp.experiment_id, k, v)
    return exp.experiment_id


def start_parent(uri: str, experiment: str, study_name: str, tags: dict, params: dict) -> str:
    """Create the study's parent run, or reopen it if one with this study name exists."""
    client = mlflow_client(uri)
    exp_id = get_or_create_experiment(uri, experiment)
    existing = find_parent(uri, experiment, study_name)
    if existing:
        client.update_run(existing, status="RUNNING")
        return existing
    run = client.create_run(exp_id, run_name=study_name,
                            tags={**{k: str(v) for k, v in tags.items()}, STUDY_KIND_TAG: KIND_STUDY,
                                  STUDY_NAME_TAG: study_name})
    from mlflow.entities import Param
    client.log_batch(run.info.run_id, params=[Param(k, _param_value(v)) for k, v in params.items()])
    return run.info.run_id


def find_parent(uri: str, experiment: str, study_name: str) -> Optional[str]:
    client = mlflow_client(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`{STUDY_NAME_TAG}` = '{study_name}' and "
                                                                 f"tags.`{STUDY_KIND_TAG}` = '{KIND_STUDY}'")
    return runs[0].info.run_id if runs else None


def child_runs(uri: str, parent_id: str) -> list:
    client = mlflow_client(uri)
    parent = client.get_run(parent_id)
    return client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.{PARENT_RUN_TAG} = '{parent_id}'",
                              max_results=50000)


def log_parent_metrics(uri: str, parent_id: str, metrics: dict) -> None:
    """Study-level numbers on the parent run (e.g. the K-means baseline of the study's split)."""
    client = mlflow_client(uri)
    for k, v in metrics.items():
        client.log_metric(parent_id, k, float(v))


def finish_parent(uri: str, parent_id: str, status: str = "FINISHED", tags: Optional[dict] = None) -> None:
    client = mlflow_client(uri)
    for k, v in (tags or {}).items():
        client.set_tag(parent_id, k, str(v))
    client.set_terminated(parent_id, status=status)


class MlflowTrialCallback(Callback):
    """Tune Callback on the driver: one child run per Optuna trial number.

    The run is tagged with the trial's number, study and Ray id, and the Optuna trial gets
    the run's id (user attr ``mlflow_run_id``). Params are the config the WORKER resolved
    (its first report, study.trainable.RESOLVED_KEY). A run found again after a resume is
    reopened only if it was left running or interrupted, and epochs it already holds are not
    logged twice.
    """

    def __init__(self, tracking_uri: str, parent_run_id: str, study_name: str, storage_url: str):
        self.tracking_uri = tracking_uri
        self.parent_run_id = parent_run_id
        self.study_name = study_name
        self.index = TrialIndex(storage_url, study_name)
        self._runs: dict[str, str] = {}        # ray trial id -> MLflow run id
        self._last_step: dict[str, int] = {}   # MLflow run id -> last epoch logged
        self._client_obj = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state.update(_client_obj=None, _runs={}, _last_step={})
        return state

    @property
    def client(self):
        if self._client_obj is None:
            self._client_obj = mlflow_client(self.tracking_uri)
        return self._client_obj

    # -- run lookup -----------------------------------------------------------------
    def run_id(self, trial) -> Optional[str]:
        if trial.trial_id in self._runs:
            return self._runs[trial.trial_id]
        number = self.index.number(trial.trial_id)
        if number is None:
            return None
        parent = self.client.get_run(self.parent_run_id)
        found = self.client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.{PARENT_RUN_TAG} = '{self.parent_run_id}' "
                          f"and tags.`{TRIAL_NUMBER_TAG}` = '{number}'")
        if found:
            rid = found[0].info.run_id
            if found[0].data.tags.get(TRIAL_STATUS_TAG) in (TrialStatus.RUNNING, TrialStatus.INTERRUPTED):
                self.client.update_run(rid, status="RUNNING")
                self.client.set_tag(rid, TRIAL_STATUS_TAG, TrialStatus.RUNNING)
                if NOTE_TAG in found[0].data.tags:  # the "interrupted" description no longer holds
                    self.client.delete_tag(rid, NOTE_TAG)
            self._last_step[rid] = _last_epoch(self.client, rid)
        else:
            run = self.client.create_run(
                parent.info.experiment_id, run_name=f"{self.study_name}-trial-{number}",
                tags={PARENT_RUN_TAG: self.parent_run_id, STUDY_NAME_TAG: self.study_name,
                      TRIAL_NUMBER_TAG: str(number), TRIAL_RAY_ID_TAG: trial.trial_id,
                      TRIAL_STATUS_TAG: TrialStatus.RUNNING.value, TRIAL_REASON_TAG: "",
                      OPTUNA_STUDY_TAG: self.study_name, OPTUNA_STORAGE_TAG: self.index.storage_url})
            rid = run.info.run_id
        self.index.set_attr(trial.trial_id, MLFLOW_RUN_ATTR, rid)
        self._runs[trial.trial_id] = rid
        return rid

    def _safe(self, fn, *args):
        try:
            fn(*args)
        except Exception as exc:  # tracking trouble must not stop the study
            log.warning("MLflow logging failed: %s", exc)

    # -- Tune hooks -----------------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info):
        self._safe(self.run_id, trial)

    def on_trial_recover(self, iteration, trials, trial, **info):
        def _tag():
            rid = self.run_id(trial)
            if rid:
                self.client.set_tag(rid, TRIAL_RETRIES_TAG, str(trial.num_failures))
        self._safe(_tag)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._safe(self._log_result, trial, result)

    def _log_result(self, trial, result):
        from mlflow.entities import Metric, Param
        rid = self.run_id(trial)
        if not rid:
            return
        if RESOLVED_KEY in result:
            resolved = json.loads(result[RESOLVED_KEY])
            if not self.client.get_run(rid).data.params:
                params = [Param(k, _param_value(v)) for k, v in sorted(resolved.items())]
                for i in range(0, len(params), 90):
                    self.client.log_batch(rid, params=params[i:i + 90])
        step = int(result.get("epoch", result.get("training_iteration", 0)) or 0)
        seen = step <= self._last_step.get(rid, -1)  # this epoch is already in the run
        if seen and FINAL_KEY not in result:
            return  # an epoch replayed after a resume
        # the final report repeats the last epoch's train/ and val/ values: only test/ is new
        prefixes = ("test",) if seen else ("train", "val", "test")
        self._last_step[rid] = max(step, self._last_step.get(rid, -1))
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in result.items()
                   if k.split("/", 1)[0] in prefixes and isinstance(v, (int, float)) and not isinstance(v, bool)]
        for i in range(0, len(metrics), 900):
            self.client.log_batch(rid, metrics=metrics[i:i + 900])

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._safe(self._finish, trial, False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._safe(self._finish, trial, True)

    def _finish(self, trial, error: bool):
        rid = self.run_id(trial)
        if not rid:
            return
        status, reason = classify(trial.last_result, error)
        if error:
            reason = _error_text(trial) or reason
        self.client.set_tag(rid, TRIAL_STATUS_TAG, status)
        self.client.set_tag(rid, TRIAL_REASON_TAG, reason[:5000])
        if status == TrialStatus.PRUNED:  # MLflow shows KILLED: the name and the description say why
            epoch = int((trial.last_result or {}).get("epoch", 0) or 0)
            self.client.update_run(rid, name=f"{self.client.get_run(rid).info.run_name.removesuffix(PRUNED_SUFFIX)}"
                                             f"{PRUNED_SUFFIX}")
            self.client.set_tag(rid, NOTE_TAG, f"Pruned: stopped early by the scheduler after epoch {epoch} "
                                               "(MLflow status KILLED; tag trial.status=pruned).")
        self._log_artifacts(rid, trial)
        self.client.set_terminated(rid, status=MLFLOW_STATUS[status])

    def _log_artifacts(self, rid, trial):
        ckpt = trial.checkpoint
        if ckpt is None:
            return
        with tempfile.TemporaryDirectory() as tmp:
            local = ckpt.to_directory(os.path.join(tmp, "ckpt"))
            for name in ("assignments.parquet", "config.json"):
                p = Path(local, name)
                if p.exists():
                    self.client.log_artifact(rid, str(p))
            inner = Path(local, "checkpoint")
            if inner.is_dir():
                self.client.log_artifacts(rid, str(inner), "checkpoint")


class StudyMetricsCallback(Callback):
    """Study-level metrics on the parent run, one step per finished trial: trials complete /
    pruned / diverged / failed so far, and the hypervolume of the completed trials' front
    (fixed reference point per objective set, study.pareto.reference_point), so the
    parent run's charts show how the study converged."""

    def __init__(self, tracking_uri: str, parent_run_id: str, objectives):
        self.tracking_uri = tracking_uri
        self.parent_run_id = parent_run_id
        self.objectives = list(objectives)

    def _log(self, trials, ending, error: bool) -> None:
        from mlflow.entities import Metric
        from study.pareto import hypervolume, reference_point

        counts = {s: 0 for s in ENDINGS}
        values = []
        for _, status, _, v in settle_ended(trials, self.objectives, ending, error):
            counts[status] += 1
            if v is not None:
                values.append(v)
        step = sum(counts.values())
        now = int(time.time() * 1000)
        metrics = [Metric(f"study/trials_{k}", float(v), now, step) for k, v in counts.items()]
        metrics.append(Metric("study/trials_finished", float(step), now, step))
        try:
            ref = reference_point([o.metric for o in self.objectives])
            hv = hypervolume(values, [o.mode for o in self.objectives], ref) if values else 0.0
            metrics.append(Metric("study/hypervolume", float(hv), now, step))
        except ValueError as exc:  # an objective without a fixed reference: no hypervolume
            log.info("no study/hypervolume: %s", exc)
        mlflow_client(self.tracking_uri).log_batch(self.parent_run_id, metrics=metrics)

    def on_trial_complete(self, iteration, trials, trial, **info):
        try:
            self._log(trials, trial, False)
        except Exception as exc:  # tracking trouble must not stop the study
            log.warning("MLflow study metrics failed: %s", exc)

    def on_trial_error(self, iteration, trials, trial, **info):
        try:
            self._log(trials, trial, True)
        except Exception as exc:
            log.warning("MLflow study metrics failed: %s", exc)


def _last_epoch(client, run_id: str) -> int:
    """The last epoch a run holds (-1 for none): epochs up to it are not logged again."""
    run = client.get_run(run_id)
    keys = [k for k in run.data.metrics if k.startswith("train/")] or list(run.data.metrics)
    if not keys:
        return -1
    return max((m.step for m in client.get_metric_history(run_id, keys[0])), default=-1)


def interrupt_open_runs(uri: str, parent_id: str) -> int:
    """End the study's child runs still RUNNING as KILLED, tagged ``trial.status=interrupted``
    (after Ctrl-C or a stop); a resume reopens them. Returns how many were ended."""
    client = mlflow_client(uri)
    n = 0
    for r in child_runs(uri, parent_id):
        if r.info.status == "RUNNING":
            client.set_tag(r.info.run_id, TRIAL_STATUS_TAG, TrialStatus.INTERRUPTED)
            client.set_tag(r.info.run_id, NOTE_TAG, "Interrupted (Ctrl-C or a stop): MLflow status KILLED; "
                                                    "python -m study.launch --resume continues this run.")
            client.set_terminated(r.info.run_id, status="KILLED")
            n += 1
    return n


def _error_text(trial) -> str:
    try:
        msg = trial.error_msg if hasattr(trial, "error_msg") else None
        if not msg and trial.error_file and os.path.exists(trial.error_file):
            msg = Path(trial.error_file).read_text()
        lines = [l for l in (msg or "").strip().splitlines() if l.strip()]
        return lines[-1] if lines else ""
    except Exception:
        return ""
