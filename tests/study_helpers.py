"""Shared fixtures of the study tests: a tiny synthetic feature cache and a local Ray."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
from mlflow.tracking import MlflowClient

# Tiny models: the study machinery is under test, not the models.
TINY = {"channels": "4,8,8,8", "gru_hidden": 8, "batch_size": 64, "silhouette_sample": 200, "device": "cpu"}


def build_features(base: Path, limit: int = 120) -> str:
    out = base / "study_features"
    if not any(out.glob("*/manifest*")):
        cmd = [sys.executable, "-m", "features.build", "--dataset", "synthetic", "--out", str(out),
               "--limit", str(limit), "--no-progress"]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
    return str(out)


def uris(tmp: Path) -> dict:
    return {"storage": f"sqlite:///{tmp}/optuna.db", "tracking_uri": f"sqlite:///{tmp}/mlflow.db",
            "storage_path": str(tmp / "ray")}


def optuna_trials(res_or_storage, name=None):
    storage = getattr(res_or_storage, "storage", res_or_storage)
    name = name or res_or_storage.study_name
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def mlflow_children(tracking_uri: str, parent_id: str):
    c = MlflowClient(tracking_uri)
    exp = c.get_run(parent_id).info.experiment_id
    return c, c.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
