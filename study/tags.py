"""The names a study writes to its stores and reads back: MLflow tag names, the values of the
``study.kind`` and ``*.state`` tags, and the Optuna user attrs. One definition each; the
tracker, the replication, the result, the analysis and the benchmarks import them (the
layout is docs/ARCHITECTURE.md, "study / analysis: MLflow layout").

A trial's status (tag ``trial.status``, user attr ``status``) is
:class:`trainables.status.TrialStatus`. Imports nothing of ours beyond the standard library
(the analysis reads it without torch or Ray).
"""
from __future__ import annotations

from enum import StrEnum

# -- a study's parent run ------------------------------------------------------------------
STUDY_NAME_TAG = "study.name"
STUDY_KIND_TAG = "study.kind"            # KIND_STUDY or KIND_REPLICATION
STUDY_SPACE_TAG = "study.space"
STUDY_DATASET_TAG = "study.dataset"
STUDY_CACHE_KEY_TAG = "study.cache_key"
STUDY_GIT_COMMIT_TAG = "study.git_commit"
STUDY_OBJECTIVES_TAG = "study.objectives"
STUDY_SEED_TAG = "study.seed"            # also a param
STUDY_PINNED_TAG = "study.pinned"        # also a param
STUDY_STORAGE_TAG = "study.storage"
STUDY_FRONTENDS_TAG = "study.frontends"
STUDY_STATE_TAG = "study.state"          # a StudyState
STUDY_FAILURE_TAG = "study.failure"
STUDY_FINISHED_TRIALS_TAG = "study.finished_trials"
STUDY_PARETO_TRIALS_TAG = "study.pareto_trials"
STRONGEST_TAG = "baseline.strongest"
STRONGEST_WITH_SPEAKER_IDS_TAG = "baseline.strongest_with_speaker_ids"
# the parent run's baseline metrics: BASELINE_METRIC_PREFIX + "<name>_<split>_<metric>" (baseline_metric_name)
BASELINE_METRIC_PREFIX = "baseline/"

KIND_STUDY = "study"
KIND_REPLICATION = "replication"

# -- a trial's child run (and a replicate's) -----------------------------------------------
PARENT_RUN_TAG = "mlflow.parentRunId"    # MLflow's own: the parent run's id
TRIAL_NUMBER_TAG = "trial.number"
TRIAL_RAY_ID_TAG = "trial.ray_id"
TRIAL_STATUS_TAG = "trial.status"        # a TrialStatus
TRIAL_REASON_TAG = "trial.reason"
TRIAL_RETRIES_TAG = "trial.retries"
OPTUNA_STUDY_TAG = "optuna.study"
OPTUNA_STORAGE_TAG = "optuna.storage"

# -- the MLflow UI -------------------------------------------------------------------------
NOTE_TAG = "mlflow.note.content"         # the run's description in the MLflow UI
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
# The MLflow UI's "share view": an experiment tag ``mlflow.sharedViewState.<key>`` holding the
# runs table's state as JSON (study.tracking.share_study_view).
SHARED_VIEW_TAG = "mlflow.sharedViewState."

# -- a replication (study.replicate -> analysis.tables) ------------------------------------
REPLICATION_NAME_TAG = "replication.name"
REPLICATION_STATE_TAG = "replication.state"      # a StudyState
REPLICATION_SOURCE_RUNS_TAG = "replication.source_runs"
REPLICATION_SEEDS_TAG = "replication.seeds"
REPLICATION_OVERRIDES_TAG = "replication.overrides"  # --set KEY=VALUE given to every chosen run (JSON)
REPLICATION_BASELINES_TAG = "replication.baselines"
REPLICATION_FEATURES_TAG = "replication.features"
REPLICATION_COMPLETED_TAG = "replication.completed"
REPLICATION_METHOD_TAG = "replication.method"
REPLICATION_MODEL_TAG = "replication.model"
REPLICATION_SOURCE_RUN_TAG = "replication.source_run"
REPLICATION_SEED_TAG = "replication.seed"
REPLICATION_REPRESENTATION_TAG = "replication.representation"  # what the model reports (its class declares it)

# -- Optuna trial user attrs ---------------------------------------------------------------
RAY_ID_ATTR = "ray_trial_id"             # the Tune trial asked for it (study.trial_index)
MLFLOW_RUN_ATTR = "mlflow_run_id"        # its child run
STATUS_ATTR = "status"                   # a TrialStatus, set when told (agrees with the state)
REASON_ATTR = "reason"


class StudyState(StrEnum):
    """Tag ``study.state`` (finished | interrupted | failed) and ``replication.state`` (also
    running)."""
    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"
    FAILED = "failed"


def baseline_metric_name(name: str, split: str, metric: str) -> str:
    """The MLflow metric of baseline ``name``'s ``split``/``metric``: ``baseline/awe_gmm_val_acc``."""
    return f"{BASELINE_METRIC_PREFIX}{name}_{split}_{metric}"
