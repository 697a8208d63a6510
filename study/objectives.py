"""Objectives (metric + direction) and the mapping of a trial's end to a status.

Status mapping (one place, used by the searcher for Optuna and by the tracker for MLflow):

=========  =====================================  ==============================
status     how it is recognised                    Optuna state
=========  =====================================  ==============================
complete   final report with trial_status=complete  COMPLETE (values = objectives)
pruned     stopped by the scheduler (no final        PRUNED
           report)
diverged   final report with trial_status=diverged   FAIL, user attr status=diverged
failed     the worker raised after all retries      FAIL, user attr status=failed
=========  =====================================  ==============================

A complete trial whose objective is NaN (e.g. silhouette on a collapsed clustering) or
missing is told FAIL with user attr status=failed and a reason ("... trained to the end,
but objective ... is not finite"), so that it never reaches the Pareto front and Optuna's
status agrees with its state. MLflow keeps trial.status=complete: training did end
normally and its metrics are there for analysis (which filters NaN values itself).

Metric names are checked before a study starts (:func:`check_metric`, against
``trainables.metric_names.declared_metrics`` of the study's model), so a misspelt
objective is one clear error instead of a study whose every trial fails.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from trainables.metrics import metric_direction
from trainables.status import ENDINGS, TrialStatus

DEFAULT_OBJECTIVES = ("val/silhouette_z:max", "val/acc:max")
# Baselines cluster the input features: their quality metrics are on x, not on z.
SPACE_OBJECTIVES = {"kmeans": ("val/silhouette_x:max", "val/acc:max"),
                    "gmm": ("val/silhouette_x:max", "val/acc:max")}


def default_objectives(space: str) -> list[str]:
    return list(SPACE_OBJECTIVES.get(space, DEFAULT_OBJECTIVES))

FINAL_KEY = "trial_status"   # present only in the trainable's final report
REASON_KEY = "trial_reason"
WARMUP_KEY = "warmup_epochs"  # in every report: epochs the trial's model needs before it may be judged


@dataclass(frozen=True)
class Objective:
    metric: str
    mode: str  # "max" | "min"

    def __str__(self) -> str:
        return f"{self.metric}:{self.mode}"


def parse_objective(text: str, valid=None, *, what: str = "objective", scope: str = "") -> Objective:
    """``"val/acc:max"`` -> Objective; ``"val/acc"`` takes its direction from
    ``trainables.metrics.metric_direction`` (the one table of directions).

    ``METRIC`` or ``METRIC:max|min`` only: more ``:`` parts (``val/acc:max:min``), an empty
    metric or a direction other than max/min is a ValueError. With ``valid`` (the metric
    names reported, e.g. ``model_metrics(model)``), an unknown metric is a ValueError that
    lists the valid names (see :func:`check_metric`)."""
    text = str(text).strip()
    parts = text.split(":")
    if len(parts) > 2:
        raise ValueError(f"{what} {text!r}: expected METRIC or METRIC:max|min, got {len(parts)} ':'-separated parts")
    metric = parts[0].strip()
    mode = parts[1].strip().lower() if len(parts) == 2 else None
    if not metric:
        raise ValueError(f"{what} {text!r}: empty metric name; expected METRIC or METRIC:max|min")
    if mode is not None and mode not in ("max", "min"):
        raise ValueError(f"{what} {text!r}: direction must be max or min, got {mode!r}")
    if not metric.startswith("val/"):
        raise ValueError(f"{what} {text!r}: selection uses the validation split only; use a val/... metric")
    if valid is not None:
        check_metric(metric, valid, what, scope)
    if mode is None:
        mode = metric_direction(metric)
    return Objective(metric, mode)


def parse_objectives(texts, valid=None, *, scope: str = "") -> list[Objective]:
    """Objectives from a list of items; an item may hold several, comma-separated
    (the form of the MLflow tag ``study.objectives``)."""
    if isinstance(texts, str):
        texts = [texts]
    items = [x for t in (texts or DEFAULT_OBJECTIVES) for x in str(t).split(",") if x.strip()]
    if not items:
        raise ValueError("no objective given")
    objs = [parse_objective(t, valid, scope=scope) for t in items]
    names = [o.metric for o in objs]
    if len(set(names)) != len(names):
        raise ValueError(f"objective metric given twice: {names}")
    return objs


def check_metric(metric: str, valid, what: str = "objective", scope: str = "") -> None:
    """ValueError (one line, with the valid names) when ``metric`` is not in ``valid``.

    Only names a selection can use are listed (val/...), as :func:`parse_objective` refuses
    the others anyway."""
    valid = set(valid)
    if metric in valid:
        return
    choices = sorted(v for v in valid if v.startswith("val/")) or sorted(valid)
    where = f" {scope}" if scope else ""
    raise ValueError(f"unknown {what} {metric!r}{where}; valid: {', '.join(choices)}")


def model_metrics(model: str) -> list[str]:
    """The metric names reported for ``model`` (trainables.metric_names)."""
    from trainables.metric_names import declared_metrics
    return declared_metrics(model)


def classify(result: Optional[dict], error: bool = False) -> tuple[TrialStatus, str]:
    """(status, reason) of a finished trial from its last result."""
    if error:
        return TrialStatus.FAILED, "the trial raised (see Ray's error file)"
    if not result or FINAL_KEY not in result:
        return TrialStatus.PRUNED, "stopped early by the scheduler"
    status = str(result[FINAL_KEY])
    reason = str(result.get(REASON_KEY) or "")
    if status not in ENDINGS:
        status = TrialStatus.PRUNED if status == TrialStatus.STOPPED else TrialStatus.FAILED
    return TrialStatus(status), reason


def missing_objectives(result: Optional[dict], objectives: list[Objective]) -> list[str]:
    """Objective metrics absent from a result (a misspelt metric would otherwise be silent)."""
    return [o.metric for o in objectives if o.metric not in (result or {})]


def objective_failure(result: Optional[dict], objectives: list[Objective], reason: str = "") -> str:
    """Why a trial that trained to the end has no objective values (missing or not finite)."""
    missing = missing_objectives(result, objectives)
    if missing:
        why = f"objective(s) {', '.join(missing)} not reported"
    else:
        bad = [o.metric for o in objectives if not _finite((result or {}).get(o.metric))]
        why = f"objective(s) {', '.join(bad)} not finite (e.g. collapsed clustering)"
    return (reason + "; " if reason else "") + "trained to the end, but " + why


def _finite(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def objective_values(result: dict, objectives: list[Objective]) -> Optional[list[float]]:
    """The objective values, or None when one is missing or not finite."""
    vals = []
    for o in objectives:
        v = result.get(o.metric)
        try:
            v = float(v)
        except (TypeError, ValueError):
            return None
        if not math.isfinite(v):
            return None
        vals.append(v)
    return vals


def settle(result: Optional[dict], objectives: list[Objective], error: bool = False
           ) -> tuple[TrialStatus, str, Optional[list[float]]]:
    """(status, reason, objective values) of an ended trial, as the study counts it: a trial
    that trained to the end without finite objectives is ``failed`` (it is told FAIL to
    Optuna and never reaches a front), whatever its own report says."""
    status, reason = classify(result, error)
    if status != TrialStatus.COMPLETE:
        return status, reason, None
    values = objective_values(result, objectives)
    if values is None:
        return TrialStatus.FAILED, objective_failure(result, objectives, reason), None
    return status, reason, values


# Tune trial statuses of a trial that has not ended.
LIVE_STATUSES = ("RUNNING", "PENDING", "PAUSED")


def is_live(trial, ending=None) -> bool:
    """Has this Tune trial not ended yet? Tune calls a trial's end hooks before it updates
    ``trial.status``: ``ending`` is the trial being reported as ended (or None)."""
    return trial.status in LIVE_STATUSES and trial is not ending


def settle_ended(trials, objectives: list[Objective], ending=None, error: bool = False) -> list[tuple]:
    """``(trial, status, reason, values)`` of every ended trial in Tune's list, settled as the
    study counts it (:func:`settle`); ``error`` is how ``ending`` ended."""
    out = []
    for t in trials:
        if not is_live(t, ending):
            out.append((t, *settle(t.last_result, objectives, error if t is ending else t.status == "ERROR")))
    return out

