"""What a study gives back: :class:`StudyResult` (counts, the Pareto trials with their test
metrics, the classical baselines), read from Optuna and MLflow by :func:`collect_result`, and
printed by :func:`format_result`."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Optional

from study.baselines import margin_lines
from study.options import pinned_text
from study.tags import (
    REASON_ATTR,
    STATUS_ATTR,
    STUDY_FAILURE_TAG,
    STUDY_FINISHED_TRIALS_TAG,
    STUDY_PARETO_TRIALS_TAG,
    STUDY_STATE_TAG,
    TRIAL_NUMBER_TAG,
    StudyState,
)
from trainables.status import ENDINGS, TrialStatus

log = logging.getLogger(__name__)


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
    ui_url: str
    objectives: list
    warnings: list = field(default_factory=list)
    seed: Optional[int] = None
    pinned: dict = field(default_factory=dict)   # searched keys fixed by --set
    baselines: list = field(default_factory=list)  # study.baselines rows: the classical baselines, same split
    run_url: str = ""                             # the parent run's page (report artifacts, study/ metrics)

    @property
    def failed(self) -> bool:
        """Finished, but no trial completed with finite objectives (nothing to select)."""
        return not self.interrupted and self.counts.get(TrialStatus.COMPLETE, 0) == 0





def collect_result(name, storage, tracking_uri, parent_id, objectives, total, t0, path, *,
                   seed=None, pinned=None, baselines=None) -> StudyResult:
    """Read the finished (or interrupted) study back from Optuna and MLflow, end the MLflow
    parent run with the study's state, and return the Pareto trials with their test metrics."""
    import optuna
    from optuna.trial import TrialState

    from study import tracking

    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    counts = {**{s: 0 for s in ENDINGS}, TrialStatus.RUNNING: 0}
    for t in trials:
        if t.state == TrialState.RUNNING or t.state == TrialState.WAITING:
            counts[TrialStatus.RUNNING] += 1
        elif t.state == TrialState.COMPLETE:
            counts[TrialStatus.COMPLETE] += 1
        elif t.state == TrialState.PRUNED:
            counts[TrialStatus.PRUNED] += 1
        else:
            status = t.user_attrs.get(STATUS_ATTR)
            counts[status if status in counts else TrialStatus.FAILED] += 1
    finished = sum(v for k, v in counts.items() if k != TrialStatus.RUNNING)
    warnings = sorted({t.user_attrs.get(REASON_ATTR, "") for t in trials
                       if t.state == TrialState.FAIL and "not reported" in t.user_attrs.get(REASON_ATTR, "")})
    interrupted = finished < total or counts[TrialStatus.RUNNING] > 0
    all_failed = not interrupted and counts[TrialStatus.COMPLETE] == 0

    runs = {}
    try:
        for r in tracking.child_runs(tracking_uri, parent_id):
            runs[r.data.tags.get(TRIAL_NUMBER_TAG)] = r
    except Exception as exc:
        log.warning("could not read MLflow child runs: %s", exc)

    pareto = []
    best = study.best_trials if counts[TrialStatus.COMPLETE] else []
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
    tags = {STUDY_FINISHED_TRIALS_TAG: finished,
            STUDY_PARETO_TRIALS_TAG: ",".join(str(p["number"]) for p in pareto)}
    if interrupted:
        tracking.finish_parent(tracking_uri, parent_id, "KILLED", {**tags, STUDY_STATE_TAG: StudyState.INTERRUPTED})
    elif all_failed:
        tracking.finish_parent(tracking_uri, parent_id, "FAILED",
                               {**tags, STUDY_STATE_TAG: StudyState.FAILED, STUDY_FAILURE_TAG: _failure_text(counts)})
    else:
        tracking.finish_parent(tracking_uri, parent_id, "FINISHED", {**tags, STUDY_STATE_TAG: StudyState.FINISHED})
    return StudyResult(study_name=name, parent_run_id=parent_id, storage=storage, tracking_uri=tracking_uri,
                       experiment_path=path, counts=counts, pareto=pareto, elapsed_s=time.time() - t0,
                       interrupted=interrupted, ui_command=tracking.ui_command(tracking_uri),
                       ui_url=tracking.ui_url(tracking_uri, parent_id, objectives=objectives,
                                              params=sorted({k for t in trials for k in t.params})),
                       run_url=tracking.run_url(tracking_uri, parent_id),
                       objectives=[str(o) for o in objectives], warnings=warnings, seed=seed,
                       pinned=dict(pinned or {}), baselines=list(baselines or []))


def _failure_text(counts: dict) -> str:
    ended = ", ".join(f"{v} {k}" for k, v in counts.items() if v and k != TrialStatus.RUNNING)
    return f"no trial completed with finite objectives ({ended or 'no trial ran'}); nothing to select"


KEY_PARAMS = ("model", "frontend", "divergence", "d_z", "lam", "lr_start", "lr_end", "tau_kind", "tau_start", "tau_end",
              "tau_anneal_epochs", "gmm_covariance", "seed")


def resume_command(name: str, storage: str) -> str:
    """The command that continues study ``name`` (``--storage`` only when not the default)."""
    from study.tracking import absolute_uri

    default = absolute_uri("sqlite:///optuna.db")
    return f"python -m study.launch --resume {name}" + ("" if storage == default else f" --storage {storage}")


def format_result(res: StudyResult) -> str:
    from study import tracking
    from study.progress import number

    lines = [f"study {res.study_name}: " + ", ".join(f"{k} {v}" for k, v in res.counts.items())
             + f" in {res.elapsed_s:.0f}s"]
    if res.seed is not None:
        lines.append(f"sampler seed {res.seed}" + (f"; pinned by --set: {pinned_text(res.pinned)}"
                                                   if res.pinned else ""))
    if res.interrupted:
        lines.append(f"interrupted; continue with: {resume_command(res.study_name, res.storage)}")
    elif res.failed:
        lines.append(f"error: study {res.study_name} failed: {_failure_text(res.counts)}; "
                     "see the trials' reasons in MLflow (tag trial.reason) or Optuna (user attr reason)")
    for w in res.warnings:
        lines.append(f"warning: trials kept off the front: {w}")
    lines.append(f"Pareto-optimal trials ({len(res.pareto)}), objectives {', '.join(res.objectives)}:")
    width = max((len(str(p["number"])) for p in res.pareto), default=1)
    for p in res.pareto:
        vals = " ".join(f"{k}={number(v)}" for k, v in p["values"].items())
        test = " ".join(f"{k}={number(v)}" for k, v in p["test"].items())
        params = " ".join(f"{k}={_short(p['params'][k])}" for k in KEY_PARAMS if k in p["params"])
        lines.append(f"  trial {p['number']:>{width}}  {vals}  | {test}  | {params}  | run {p['run_id']}")
    lines.extend(margin_lines(res.baselines, res.pareto))
    lines.append(f"MLflow parent run {res.parent_run_id}; open the UI with:")
    lines.append(f"  {res.ui_command}")
    lines.append(f"  then open {res.ui_url}")
    lines.append(f"  (this study's trials, its objectives as columns; the study's own run: {res.run_url or '-'})")
    lines.append(f"Optuna study (sampler state, trials, importance): {tracking.dashboard_command(res.storage)}")
    return "\n".join(lines)


def _short(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
