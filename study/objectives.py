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

A complete trial whose objective is NaN (e.g. silhouette on a collapsed clustering) is
told FAIL with user attr status=complete and reason "objective ... is not finite", so
that it never reaches the Pareto front; MLflow keeps trial.status=complete.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

# Metric-name suffix -> direction; mirrors trainables.metrics.DIRECTIONS (used when
# that module is importable, see ``default_direction``).
_FALLBACK_DIRECTIONS = {"acc": "max", "nmi": "max", "ari": "max", "silhouette": "max",
                        "dbi": "min", "chi": "max", "loss": "min"}

DEFAULT_OBJECTIVES = ("val/silhouette_z:max", "val/acc:max")
# Baselines cluster the input features: their quality metrics are on x, not on z.
SPACE_OBJECTIVES = {"kmeans": ("val/silhouette_x:max", "val/acc:max"),
                    "gmm": ("val/silhouette_x:max", "val/acc:max")}


def default_objectives(space: str) -> list[str]:
    return list(SPACE_OBJECTIVES.get(space, DEFAULT_OBJECTIVES))

FINAL_KEY = "trial_status"   # present only in the trainable's final report
REASON_KEY = "trial_reason"


@dataclass(frozen=True)
class Objective:
    metric: str
    mode: str  # "max" | "min"

    def __str__(self) -> str:
        return f"{self.metric}:{self.mode}"


def _directions() -> dict:
    try:
        from trainables.metrics import DIRECTIONS  # type: ignore
        return {**_FALLBACK_DIRECTIONS, **DIRECTIONS}
    except Exception:
        return dict(_FALLBACK_DIRECTIONS)


def default_direction(metric: str) -> str:
    base = metric.split("/")[-1]
    dirs = _directions()
    for key in (base, base.split("_")[0]):
        if key in dirs:
            return dirs[key]
    raise ValueError(f"no default direction for {metric!r}; write it as {metric}:max or {metric}:min")


def parse_objective(text: str) -> Objective:
    text = text.strip()
    if ":" in text:
        metric, mode = text.rsplit(":", 1)
        mode = mode.strip().lower()
        if mode not in ("max", "min"):
            raise ValueError(f"objective {text!r}: direction must be max or min, got {mode!r}")
    else:
        metric, mode = text, None
    metric = metric.strip()
    if not metric.startswith("val/"):
        raise ValueError(f"objective {text!r}: selection uses the validation split only; use a val/... metric")
    if mode is None:
        mode = default_direction(metric)
    return Objective(metric, mode)


def parse_objectives(texts) -> list[Objective]:
    objs = [parse_objective(t) for t in (texts or DEFAULT_OBJECTIVES)]
    names = [o.metric for o in objs]
    if len(set(names)) != len(names):
        raise ValueError(f"objective metric given twice: {names}")
    return objs


def classify(result: Optional[dict], error: bool = False) -> tuple[str, str]:
    """(status, reason) of a finished trial from its last result."""
    if error:
        return "failed", "the trial raised (see Ray's error file)"
    if not result or FINAL_KEY not in result:
        return "pruned", "stopped early by the scheduler"
    status = str(result[FINAL_KEY])
    reason = str(result.get(REASON_KEY) or "")
    if status not in ("complete", "diverged", "pruned", "failed"):
        status = "pruned" if status == "stopped" else "failed"
    return status, reason


def missing_objectives(result: Optional[dict], objectives: list[Objective]) -> list[str]:
    """Objective metrics absent from a result (a misspelt metric would otherwise be silent)."""
    return [o.metric for o in objectives if o.metric not in (result or {})]


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
