"""Read studies back from MLflow into a tidy table (one row per child run).

analysis reads MLflow only (docs/ARCHITECTURE.md, "MLflow layout"): a study is a parent
run tagged ``study.kind=study`` and ``study.name=NAME``; its trials are the runs tagged
``mlflow.parentRunId=<parent id>``.

Columns of the table returned by :func:`load_runs`:

``study, space, dataset, parent_run_id, run_id, run_name, experiment_id, trial_number,
status, reason, mlflow_status, start_time, end_time`` then ``params.<name>`` (values
converted back from MLflow's strings to int / float / bool where they parse) and
``metrics.<name>`` (the *final* value of each metric: MLflow's latest value, i.e. the one
at the highest step, which the study writes with the last epoch's report).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

import numpy as np
import pandas as pd

from study.objectives import Objective, parse_objectives
from study.tags import (
    KIND_STUDY,
    PARENT_RUN_TAG,
    STUDY_DATASET_TAG,
    STUDY_KIND_TAG,
    STUDY_NAME_TAG,
    STUDY_OBJECTIVES_TAG,
    STUDY_SPACE_TAG,
    STUDY_STORAGE_TAG,
    TRIAL_NUMBER_TAG,
    TRIAL_REASON_TAG,
    TRIAL_STATUS_TAG,
)
from trainables.status import TrialStatus

log = logging.getLogger(__name__)


@dataclass
class StudyInfo:
    name: str
    parent_run_id: str
    experiment_id: str
    tags: dict
    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)   # the parent's latest values (baseline/..., study/...)

    @property
    def space(self) -> str:
        return self.tags.get(STUDY_SPACE_TAG, "")

    @property
    def objectives(self) -> list[Objective]:
        """The ``study.objectives`` tag, parsed by the study's own parser; [] without the tag."""
        tag = self.tags.get(STUDY_OBJECTIVES_TAG, "")
        return parse_objectives(tag) if tag.strip() else []

    @property
    def baselines(self):
        """The ``baseline/<method>_<split>_<metric>`` metrics of the parent run
        (:class:`analysis.baselines.Baselines`, empty when the study logged none)."""
        from analysis.baselines import parse_baselines
        return parse_baselines(self.metrics, self.tags)

    @property
    def storage(self) -> str:
        """The Optuna storage URL of the study: the ``study.storage`` tag (absolute), else the
        ``storage`` param the study was launched with; "" when neither is recorded."""
        return self.tags.get(STUDY_STORAGE_TAG) or self.params.get("storage", "")


def client(tracking_uri: Optional[str] = None):
    from mlflow.tracking import MlflowClient
    return MlflowClient(tracking_uri=tracking_uri) if tracking_uri else MlflowClient()


def _search_all(cl, experiment_ids: list[str], filter_string: str, order_by=None) -> list:
    runs, token = [], None
    while True:
        page = cl.search_runs(experiment_ids, filter_string=filter_string, max_results=1000,
                              order_by=order_by, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _experiment_ids(cl) -> list[str]:
    from mlflow.entities import ViewType
    exps, token = [], None
    while True:
        page = cl.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token)
        exps.extend(page)
        token = page.token
        if not token:
            return [e.experiment_id for e in exps]


def find_study(name: str, tracking_uri: Optional[str] = None,
               experiment_ids: Optional[Sequence[str]] = None) -> StudyInfo:
    """The parent run of study ``name`` (the most recent one if several experiments hold one)."""
    cl = client(tracking_uri)
    exp_ids = list(experiment_ids or _experiment_ids(cl))
    if not exp_ids:
        raise LookupError(f"no MLflow experiment at {tracking_uri or 'the default tracking URI'}")
    safe = name.replace("'", "\\'")
    runs = _search_all(cl, exp_ids, f"tags.`{STUDY_NAME_TAG}` = '{safe}' and tags.`{STUDY_KIND_TAG}` = '{KIND_STUDY}'",
                       order_by=["attributes.start_time DESC"])
    if not runs:
        raise LookupError(f"no study named {name!r} (parent run tagged study.kind=study) "
                          f"at {tracking_uri or 'the default tracking URI'}")
    if len(runs) > 1:
        log.warning("%d parent runs named %r; using the latest (%s)", len(runs), name,
                    runs[0].info.run_id)
    r = runs[0]
    return StudyInfo(name=name, parent_run_id=r.info.run_id, experiment_id=r.info.experiment_id,
                     tags=dict(r.data.tags), params=dict(r.data.params), metrics=dict(r.data.metrics))


def parse_value(text):
    """MLflow param string -> bool / int / float / str."""
    if not isinstance(text, str):
        return text
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null", ""):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def run_row(run, study: Optional[StudyInfo] = None) -> dict:
    tags = run.data.tags
    num = tags.get(TRIAL_NUMBER_TAG)
    row = {
        "study": tags.get(STUDY_NAME_TAG, study.name if study else ""),
        "space": study.space if study else tags.get(STUDY_SPACE_TAG, ""),
        "dataset": study.tags.get(STUDY_DATASET_TAG, "") if study else "",
        "parent_run_id": tags.get(PARENT_RUN_TAG, ""),
        "run_id": run.info.run_id,
        "run_name": run.info.run_name,
        "experiment_id": run.info.experiment_id,
        "trial_number": int(num) if num not in (None, "") and str(num).lstrip("-").isdigit() else -1,
        "status": tags.get(TRIAL_STATUS_TAG, ""),
        "reason": tags.get(TRIAL_REASON_TAG, ""),
        "mlflow_status": run.info.status,
        "start_time": run.info.start_time,
        "end_time": run.info.end_time,
    }
    for k, v in sorted(run.data.params.items()):
        row[f"params.{k}"] = parse_value(v)
    for k, v in sorted(run.data.metrics.items()):
        row[f"metrics.{k}"] = float(v)
    return row


def load_study_runs(study: StudyInfo, tracking_uri: Optional[str] = None) -> pd.DataFrame:
    cl = client(tracking_uri)
    runs = _search_all(cl, [study.experiment_id], f"tags.{PARENT_RUN_TAG} = '{study.parent_run_id}'")
    rows = [run_row(r, study) for r in runs]
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=["study", "space", "dataset", "parent_run_id", "run_id", "run_name",
                                   "experiment_id", "trial_number", "status", "reason", "mlflow_status",
                                   "start_time", "end_time"])
    return sort_by_completion(df)


def load_runs(study_names: Iterable[str], tracking_uri: Optional[str] = None
              ) -> tuple[pd.DataFrame, dict[str, StudyInfo]]:
    """All child runs of the named studies as one table, and the studies' parent info."""
    studies: dict[str, StudyInfo] = {}
    frames = []
    for name in study_names:
        info = find_study(name, tracking_uri)
        studies[name] = info
        frames.append(load_study_runs(info, tracking_uri))
    table = pd.concat(frames, ignore_index=True, sort=False) if frames else pd.DataFrame()
    return table, studies


def sort_by_completion(df: pd.DataFrame) -> pd.DataFrame:
    """Order rows by the time the trial ended (running trials last), then trial number."""
    if df.empty:
        return df.reset_index(drop=True)
    end = df["end_time"].astype("float").fillna(np.inf)
    return (df.assign(_end=end).sort_values(["_end", "trial_number"], kind="stable")
            .drop(columns="_end").reset_index(drop=True))


def completed(df: pd.DataFrame) -> pd.DataFrame:
    """Only trials with ``trial.status == complete`` (pruned, diverged, failed, running out)."""
    if df.empty or "status" not in df:
        return df.iloc[0:0]
    return df[df["status"] == TrialStatus.COMPLETE]


def objective_matrix(df: pd.DataFrame, metrics: Sequence[str]) -> np.ndarray:
    """[N, M] float array of the metrics (NaN where a run lacks one)."""
    cols = []
    for metric in metrics:
        col = f"metrics.{metric}"
        cols.append(df[col].astype(float).to_numpy() if col in df else np.full(len(df), np.nan))
    return np.stack(cols, axis=1) if cols else np.zeros((len(df), 0))


def fmt(v) -> str:
    """Compact text of a value for tables and hover labels."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
