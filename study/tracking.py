"""MLflow tracking: one parent run per study, one child run per Optuna trial.

Child runs are written from the driver by a Tune Callback (``MlflowTrialCallback``), so
that only one process writes to the (SQLite) store. A child run is found again by its
tags (``mlflow.parentRunId`` + ``trial.number``), never by an in-memory id, so a retried
trial (worker killed) or a resumed study (driver killed) continues the same child run.

MLflow run statuses: complete -> FINISHED, pruned -> KILLED, diverged/failed -> FAILED;
the tag ``trial.status`` carries the study's own status (complete|pruned|diverged|failed).
"""
from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

from ray.tune import Callback

from study.objectives import classify

log = logging.getLogger(__name__)

MLFLOW_STATUS = {"complete": "FINISHED", "pruned": "KILLED", "diverged": "FAILED", "failed": "FAILED"}
STUDY_KEYS = ("features", "study_trial")


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


def ui_command(tracking_uri: str) -> str:
    root = artifact_root(tracking_uri)
    cmd = f"mlflow ui --backend-store-uri {tracking_uri}"
    if root:
        cmd += f" --default-artifact-root {root}"
    return cmd


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=10)
        return out.stdout.strip() or "unknown"
    except Exception:
        return "unknown"


def _client(uri: str):
    from mlflow.tracking import MlflowClient
    return MlflowClient(tracking_uri=uri)


def _param_value(v) -> str:
    s = str(v)
    return s[:6000]


def get_or_create_experiment(uri: str, name: str) -> str:
    client = _client(uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=artifact_root(uri))


def start_parent(uri: str, experiment: str, study_name: str, tags: dict, params: dict) -> str:
    """Create the study's parent run, or reopen it if one with this study name exists."""
    client = _client(uri)
    exp_id = get_or_create_experiment(uri, experiment)
    existing = find_parent(uri, experiment, study_name)
    if existing:
        client.update_run(existing, status="RUNNING")
        return existing
    run = client.create_run(exp_id, run_name=study_name,
                            tags={**{k: str(v) for k, v in tags.items()}, "study.kind": "study",
                                  "study.name": study_name})
    from mlflow.entities import Param
    client.log_batch(run.info.run_id, params=[Param(k, _param_value(v)) for k, v in params.items()])
    return run.info.run_id


def find_parent(uri: str, experiment: str, study_name: str) -> Optional[str]:
    client = _client(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = client.search_runs([exp.experiment_id],
                              filter_string=f"tags.`study.name` = '{study_name}' and tags.`study.kind` = 'study'")
    return runs[0].info.run_id if runs else None


def child_runs(uri: str, parent_id: str) -> list:
    client = _client(uri)
    parent = client.get_run(parent_id)
    return client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
                              max_results=50000)


def log_parent_metrics(uri: str, parent_id: str, metrics: dict) -> None:
    """Study-level numbers on the parent run (e.g. the K-means baseline of the study's split)."""
    client = _client(uri)
    for k, v in metrics.items():
        client.log_metric(parent_id, k, float(v))


def finish_parent(uri: str, parent_id: str, status: str = "FINISHED", tags: Optional[dict] = None) -> None:
    client = _client(uri)
    for k, v in (tags or {}).items():
        client.set_tag(parent_id, k, str(v))
    client.set_terminated(parent_id, status=status)


class MlflowTrialCallback(Callback):
    """Tune Callback on the driver: one child run per Optuna trial number."""

    def __init__(self, tracking_uri: str, parent_run_id: str, study_name: str):
        self.tracking_uri = tracking_uri
        self.parent_run_id = parent_run_id
        self.study_name = study_name
        self._runs: dict[str, str] = {}
        self._client_obj = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_client_obj"] = None
        state["_runs"] = {}
        return state

    @property
    def client(self):
        if self._client_obj is None:
            self._client_obj = _client(self.tracking_uri)
        return self._client_obj

    # -- run lookup -----------------------------------------------------------------
    def run_id(self, trial) -> Optional[str]:
        number = trial.config.get("study_trial")
        if number is None:
            return None
        key = str(number)
        if key in self._runs:
            return self._runs[key]
        parent = self.client.get_run(self.parent_run_id)
        found = self.client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{self.parent_run_id}' and tags.`trial.number` = '{key}'")
        if found:
            rid = found[0].info.run_id
            if found[0].info.status != "RUNNING":
                self.client.update_run(rid, status="RUNNING")
        else:
            run = self.client.create_run(
                parent.info.experiment_id, run_name=f"{self.study_name}-trial-{key}",
                tags={"mlflow.parentRunId": self.parent_run_id, "study.name": self.study_name,
                      "trial.number": key, "trial.ray_id": trial.trial_id, "trial.status": "running",
                      "trial.reason": ""})
            rid = run.info.run_id
            from mlflow.entities import Param
            params = {k: v for k, v in trial.config.items() if k not in STUDY_KEYS}
            try:  # the full training config, defaults filled in
                from trainables.config import resolve_config
                params = resolve_config(params)
            except Exception:
                pass
            self.client.log_batch(rid, params=[Param(k, _param_value(v)) for k, v in sorted(params.items())])
        self._runs[key] = rid
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
                self.client.set_tag(rid, "trial.retries", str(trial.run_metadata.num_failures))
        self._safe(_tag)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._safe(self._log_result, trial, result)

    def _log_result(self, trial, result):
        from mlflow.entities import Metric
        rid = self.run_id(trial)
        if not rid:
            return
        step = int(result.get("epoch", result.get("training_iteration", 0)) or 0)
        now = int(time.time() * 1000)
        metrics = []
        for k, v in result.items():
            if not (k.startswith("train/") or k.startswith("val/") or k.startswith("test/")):
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            metrics.append(Metric(k, float(v), now, step))
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
        self.client.set_tag(rid, "trial.status", status)
        self.client.set_tag(rid, "trial.reason", reason[:5000])
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


def _error_text(trial) -> str:
    try:
        msg = trial.error_msg if hasattr(trial, "error_msg") else None
        if not msg and trial.error_file and os.path.exists(trial.error_file):
            msg = Path(trial.error_file).read_text()
        lines = [l for l in (msg or "").strip().splitlines() if l.strip()]
        return lines[-1] if lines else ""
    except Exception:
        return ""
