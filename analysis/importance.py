"""Which hyperparameters matter, per objective, from the runs read back from MLflow.

The completed trials of a study are rebuilt into an in-memory Optuna study
(``optuna.create_study`` + ``add_trial(optuna.trial.create_trial(...))``), one study per
objective, with distributions inferred from the values found in the runs:

* bool or non-numeric values -> ``CategoricalDistribution`` of the distinct values;
* integers -> ``IntDistribution(min, max)``; floats -> ``FloatDistribution(min, max)``;
  ``log=True`` when every value is > 0 and max / min >= 100 (learning rates, KL weights);
* a parameter with a single value in the completed trials is constant: skipped.

Importance: ``optuna.importance.get_param_importances`` with ``FanovaImportanceEvaluator``
(fixed seed; needs scikit-learn) by default, ``PedAnovaImportanceEvaluator`` on request.
Optuna only rates the parameters present in every completed trial, so a conditional
parameter (e.g. ``tau_end``, absent when ``tau_kind=constant``) is rated only when it was
drawn in all of them. Fewer than :data:`MIN_TRIALS` completed trials with a finite value
raise :class:`TooFewTrials` (the report writes the message instead of a figure).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from analysis.runs import completed, param_columns

MIN_TRIALS = 5

# Params that describe bookkeeping, not the search (never rated).
IGNORED_PARAMS = ("study_trial", "features")


class TooFewTrials(ValueError):
    pass


def _is_num(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def infer_distributions(df: pd.DataFrame) -> dict:
    """name -> optuna distribution, from the ``params.*`` columns of ``df`` (constants out)."""
    from optuna.distributions import (CategoricalDistribution, FloatDistribution,
                                      IntDistribution)

    out = {}
    for col in param_columns(df):
        name = col[len("params."):]
        if name in IGNORED_PARAMS:
            continue
        vals = [v for v in df[col].tolist() if v is not None and not (isinstance(v, float) and math.isnan(v))]
        if not vals:
            continue
        distinct = sorted(set(map(repr, vals)))
        if len(distinct) < 2:
            continue
        if all(_is_num(v) for v in vals):
            lo, hi = min(vals), max(vals)
            log = lo > 0 and hi / lo >= 100
            if all(float(v).is_integer() and isinstance(v, (int, np.integer)) for v in vals):
                out[name] = IntDistribution(int(lo), int(hi), log=log)
            else:
                out[name] = FloatDistribution(float(lo), float(hi), log=log)
        else:
            choices = sorted({v if isinstance(v, (bool, str)) else str(v) for v in vals}, key=str)
            out[name] = CategoricalDistribution(choices)
    return out


def _param_value(v, dist):
    from optuna.distributions import CategoricalDistribution, IntDistribution
    if isinstance(dist, CategoricalDistribution):
        return v if isinstance(v, (bool, str)) else str(v)
    if isinstance(dist, IntDistribution):
        return int(v)
    return float(v)


def rebuild_study(df: pd.DataFrame, metric: str, direction: str):
    """An in-memory Optuna study holding the completed trials of ``df`` with ``metric`` as
    value. Returns (study, number of trials added)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    done = completed(df)
    col = f"metrics.{metric}"
    if col not in done:
        return optuna.create_study(direction="maximize" if direction == "max" else "minimize"), 0
    done = done[np.isfinite(done[col].astype(float))]
    dists = infer_distributions(done)
    study = optuna.create_study(direction="maximize" if direction == "max" else "minimize")
    n = 0
    for _, row in done.iterrows():
        params, used = {}, {}
        for name, dist in dists.items():
            v = row.get(f"params.{name}")
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            params[name] = _param_value(v, dist)
            used[name] = dist
        study.add_trial(optuna.trial.create_trial(value=float(row[col]), params=params,
                                                  distributions=used,
                                                  user_attrs={"run_id": row["run_id"]}))
        n += 1
    return study, n


def param_importances(df: pd.DataFrame, metric: str, direction: str, *,
                      evaluator: str = "fanova", seed: int = 0,
                      min_trials: int = MIN_TRIALS) -> dict[str, float]:
    """Normalised importance (sums to 1) of each hyperparameter for one objective."""
    import optuna

    study, n = rebuild_study(df, metric, direction)
    if n < min_trials:
        raise TooFewTrials(f"{metric}: {n} completed trial(s) with a finite value; parameter importance "
                           f"needs at least {min_trials}")
    if not infer_distributions(completed(df)):
        raise TooFewTrials(f"{metric}: no hyperparameter varies across the completed trials")
    if evaluator == "fanova":
        ev = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    elif evaluator == "ped_anova":
        ev = optuna.importance.PedAnovaImportanceEvaluator()
    else:
        raise ValueError(f"unknown evaluator {evaluator!r}: fanova or ped_anova")
    try:
        imp = optuna.importance.get_param_importances(study, evaluator=ev)
    except (ValueError, RuntimeError) as exc:
        raise TooFewTrials(f"{metric}: Optuna could not rate the parameters ({exc})") from exc
    return {k: float(v) for k, v in imp.items()}


def importance_table(df: pd.DataFrame, objectives: Sequence[tuple[str, str]], **kw
                     ) -> tuple[pd.DataFrame, dict[str, str]]:
    """Importances for each objective: DataFrame [param x metric] (NaN where not rated) and
    metric -> message for the objectives that could not be rated."""
    cols, notes = {}, {}
    for metric, direction in objectives:
        try:
            cols[metric] = param_importances(df, metric, direction, **kw)
        except TooFewTrials as exc:
            notes[metric] = str(exc)
    table = pd.DataFrame(cols)
    if not table.empty:
        table = table.loc[table.max(axis=1).sort_values(ascending=False).index]
    return table, notes
