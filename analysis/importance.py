"""Which hyperparameters matter, per objective, read from the study's own Optuna storage.

The parameters and their TRUE search distributions (log-scaled, integer, categorical, as the
search space declared them) come from the Optuna study the engine created; nothing is rebuilt
from MLflow's strings. Where the study lives: the parent run's ``study.storage`` tag (or its
``storage`` param, see :attr:`analysis.runs.StudyInfo.storage`); the Optuna study has the
study's name (``study/engine.py``).

Two steps, I/O apart from computing:

* :func:`load_trials` (I/O) - the study's trials from its storage, or
  :class:`StorageUnavailable` with a message the report shows instead of the panel
  (no storage recorded, the SQLite file missing, no such study in it, ...). A missing
  SQLite file is never created.
* :func:`param_importances` (pure) - ``optuna.importance.get_param_importances`` with
  ``FanovaImportanceEvaluator`` (fixed seed) for ONE objective, on an in-memory study made of
  the storage's trials with their own params and distributions. The value of a trial is
  ``trial.values[i]`` when the objective is the study's own i-th objective (Optuna COMPLETE
  trials); for another metric (``--objective`` override) it is the final MLflow value of
  the trial's child run (trials complete in MLflow with a finite value). Each result says
  how many trials it rests on. Optuna rates only the parameters present in every trial, so a
  conditional parameter (e.g. ``tau_end``) is rated only where it was drawn in all of them.
  Fewer than :data:`MIN_TRIALS` trials, or no parameter that varies, raise
  :class:`TooFewTrials`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

from analysis.runs import StudyInfo, completed

MIN_TRIALS = 5


class TooFewTrials(ValueError):
    pass


class StorageUnavailable(LookupError):
    pass


@dataclass
class OptunaTrials:
    storage: str
    metric_names: list     # the study's own objectives, in the order of trial.values
    trials: list           # optuna FrozenTrial, every state


@dataclass
class Importance:
    metric: str
    n_trials: int
    values: dict           # param -> normalised importance (sums to 1)


def load_trials(info: StudyInfo) -> OptunaTrials:
    """The trials of study ``info.name`` from its Optuna storage (StorageUnavailable if not reachable)."""
    import optuna
    from study.tracking import absolute_uri

    storage = absolute_uri(info.storage) if info.storage else ""
    if not storage:
        raise StorageUnavailable(f"study {info.name!r}: its parent run records no Optuna storage "
                                 "(tag study.storage or param storage)")
    if storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///"):]).is_file():
        raise StorageUnavailable(f"study {info.name!r}: Optuna storage {storage} not found on this machine")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=info.name, storage=storage)
    except KeyError:
        raise StorageUnavailable(f"no Optuna study named {info.name!r} in {storage}") from None
    except Exception as exc:  # a server that does not answer, a bad URL: shown in the report
        raise StorageUnavailable(f"Optuna storage {storage} not reachable ({type(exc).__name__}: {exc})") from exc
    return OptunaTrials(storage=storage, metric_names=list(study.metric_names or []),
                        trials=study.get_trials(deepcopy=False))


def _values_by_trial(source: OptunaTrials, runs: pd.DataFrame, metric: str) -> dict[int, float]:
    """trial number -> value of ``metric``: Optuna's own values for the study's objectives,
    else the final MLflow value of each completed child run."""
    from optuna.trial import TrialState
    if metric in source.metric_names:
        i = source.metric_names.index(metric)
        return {t.number: float(t.values[i]) for t in source.trials if t.state == TrialState.COMPLETE}
    done = completed(runs)
    col = f"metrics.{metric}"
    if col not in done:
        return {}
    pairs = zip(done["trial_number"].astype(int), done[col].astype(float))
    return {n: v for n, v in pairs if math.isfinite(v)}


def param_importances(source: OptunaTrials, runs: pd.DataFrame, metric: str, *, seed: int = 0,
                      min_trials: int = MIN_TRIALS) -> Importance:
    """fANOVA importance of each hyperparameter for ``metric`` (see the module docstring)."""
    import optuna

    values = _values_by_trial(source, runs, metric)
    trials = [t for t in source.trials if t.number in values and t.params]
    if len(trials) < min_trials:
        raise TooFewTrials(f"{metric}: not rated, {len(trials)} completed trial(s) with a finite value "
                           f"(fANOVA needs at least {min_trials})")
    study = optuna.create_study()
    study.add_trials([optuna.trial.create_trial(params=t.params, distributions=t.distributions,
                                                value=values[t.number]) for t in trials])
    if not any(len({repr(t.params.get(p)) for t in trials}) > 1 for p in trials[0].params):
        raise TooFewTrials(f"{metric}: no hyperparameter varies across the {len(trials)} completed trials")
    try:
        imp = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed))
    except (ValueError, RuntimeError) as exc:
        raise TooFewTrials(f"{metric}: Optuna could not rate the parameters ({exc})") from exc
    return Importance(metric=metric, n_trials=len(trials), values={k: float(v) for k, v in imp.items()})


def importances(source: Optional[OptunaTrials], unavailable: str, runs: pd.DataFrame,
                metrics: list[str]) -> tuple[list[Importance], dict[str, str]]:
    """One :class:`Importance` per metric that could be rated, and metric -> message for the
    others (``unavailable`` for every metric when ``source`` is None)."""
    rated, notes = [], {}
    for metric in metrics:
        if source is None:
            notes[metric] = f"{metric}: importance not computed: {unavailable}"
            continue
        try:
            rated.append(param_importances(source, runs, metric))
        except TooFewTrials as exc:
            notes[metric] = str(exc)
    return rated, notes
