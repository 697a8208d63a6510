"""The study's early-stopping scheduler: ``fifo`` (none), ``asha`` (one metric) or ``moasha``
(every objective), chosen by :func:`choose_scheduler` and built by :func:`make_scheduler`.

A trial a scheduler stops gets no final report with ``trial_status`` (study.trainable), which
is how the study classifies it ``pruned`` (study.objectives.classify): PRUNED in Optuna
(study.searcher.StudySearcher), ``pruned`` / KILLED in MLflow (study.tracking). Both
schedulers only stop trials *before* their last epoch, so a trial that trains to the end is
never mistaken for a pruned one.

:class:`MOASHAScheduler` is the Ray glue around the pure rule of study.moasha: rungs at
``grace_period * eta**k`` epochs (``time_attr`` "epoch") below the last epoch; a trial
reaching a rung has its objective vector recorded there and continues only if
``study.moasha.continue_at_rung`` says so. It holds plain dicts and tuples only, so it
pickles with the experiment (``Tuner.restore``). Ray pickles the scheduler once, when the
Tuner is created, and does not checkpoint its state (Ray's ASHA neither): a resumed study's
rungs start empty, so the trials after a resume are judged against fewer records, which can
only keep more of them, never fewer.
"""
from __future__ import annotations

import math

from typing import Optional

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from study.moasha import continue_at_rung
from study.objectives import FINAL_KEY, WARMUP_KEY, Objective, objective_values, parse_objective
from study.pareto import as_losses

SCHEDULERS = ("fifo", "asha", "moasha")
# Ray's ASHA default (so --scheduler asha is today's ASHA), used by MOASHA too so that the
# two prune on the same rungs and keep the same fraction.
REDUCTION_FACTOR = 4
# "More than a handful" of trials: below this, early stopping has too few trials per rung.
MOASHA_MIN_TRIALS = 5


def choose_scheduler(requested: Optional[str], objectives: list[Objective], num_samples: int,
                     asha_metric: Optional[str] = None) -> str:
    """The scheduler's name. None = auto: ``asha`` when an ASHA metric is given (explicit beats
    default), ``moasha`` for >= 2 objectives and at least MOASHA_MIN_TRIALS trials, ``asha`` for
    one objective, else ``fifo``. ValueError (one line) for an unknown name or a combination
    that cannot work."""
    if requested is not None and requested not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {requested!r}; choose one of {', '.join(SCHEDULERS)}")
    if requested is None:
        if asha_metric:
            return "asha"
        if len(objectives) >= 2:
            return "moasha" if num_samples >= MOASHA_MIN_TRIALS else "fifo"
        return "asha"
    if requested == "asha" and len(objectives) >= 2 and not asha_metric:
        raise ValueError(f"--scheduler asha ranks trials on one metric, but the study has {len(objectives)} "
                         "objectives: give --asha-metric METRIC:max|min, or use --scheduler moasha")
    if asha_metric and requested != "asha":
        raise ValueError(f"--asha-metric is used by --scheduler asha only, not {requested}")
    return requested


def make_scheduler(name: str, objectives: list[Objective], *, epochs: int, grace_period: int = 1,
                   asha_metric: Optional[str] = None) -> Optional[TrialScheduler]:
    """The Tune scheduler for ``name`` (None for fifo: Tune's default FIFO, and for asha when
    no rung fits below the last epoch). Neither asha nor moasha stops a trial at its last epoch."""
    if name == "fifo":
        return None
    if name == "asha":
        a = parse_objective(asha_metric) if asha_metric else objectives[0]
        # Ray's rungs are grace * eta**k up to max_t inclusive: max_t = the epoch before the
        # last keeps every rung below the last epoch (a trial stopped there has trained in full
        # but, without its final report, would count as pruned), and stop_last_trials=False
        # lets a trial that reaches max_t train on to its end.
        last_rung = epochs - 1
        if last_rung < max(1, grace_period):
            return None  # no rung below the last epoch: nothing to stop early
        return WarmupASHAScheduler(epochs=epochs, time_attr="epoch", metric=a.metric, mode=a.mode, max_t=last_rung,
                                   grace_period=max(1, grace_period), reduction_factor=REDUCTION_FACTOR,
                                   stop_last_trials=False)
    if name == "moasha":
        return MOASHAScheduler(objectives, epochs=epochs, grace_period=grace_period)
    raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")


def in_warmup(result: dict, time_attr: str = "epoch") -> bool:
    """True while a trial's model is still warming up (the trainable reports ``warmup_epochs``, e.g.
    UVAC's epochs before and during its first epoch against the fitted GMM prior): no scheduler
    judges it then, so a trial is never stopped for what its warm-up looks like."""
    t = result.get(time_attr)
    return t is not None and float(t) < float(result.get(WARMUP_KEY, 0) or 0)


class WarmupASHAScheduler(ASHAScheduler):
    """Ray's ASHA, blind to results inside a trial's warm-up (:func:`in_warmup`): they are not
    recorded at any rung, so a trial whose warm-up covers a rung is judged at its first result
    after the warm-up, but never at the study's last epoch ``epochs`` (a finished trial)."""

    def __init__(self, *, epochs: int, time_attr: str = "epoch", **kwargs):
        super().__init__(time_attr=time_attr, **kwargs)
        self.warmup_time_attr = time_attr  # our own copies: Ray's are private
        self.epochs = int(epochs)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if in_warmup(result, self.warmup_time_attr):
            return TrialScheduler.CONTINUE
        if float(result.get(self.warmup_time_attr, 0) or 0) >= getattr(self, "epochs", math.inf):  # inf: pickled before
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)


def rung_epochs(epochs: int, grace_period: int, eta: float) -> list[int]:
    """The rungs: ``grace_period * eta**k`` epochs strictly below the last epoch (stopping at
    the last epoch saves nothing and would hide the trial's final report)."""
    rungs, r = [], max(1, int(grace_period))
    while r < epochs:
        rungs.append(r)
        r = max(r + 1, int(round(r * eta)))
    return rungs


class MOASHAScheduler(FIFOScheduler):
    """Multi-objective ASHA over every objective of the study (see the module docstring)."""

    def __init__(self, objectives: list[Objective], *, epochs: int, grace_period: int = 1,
                 reduction_factor: float = REDUCTION_FACTOR, time_attr: str = "epoch"):
        super().__init__()
        if reduction_factor <= 1:
            raise ValueError(f"reduction_factor must be > 1, got {reduction_factor}")
        self._objectives = list(objectives)
        self._eta = float(reduction_factor)
        self._time_attr = time_attr
        self._epochs = int(epochs)
        # Tune's bookkeeping only (its public ``metric``); the ranking uses every objective
        self.set_search_properties(self._objectives[0].metric, None)
        self.rungs = rung_epochs(epochs, grace_period, self._eta)
        self.records: dict[int, dict[str, tuple]] = {r: {} for r in self.rungs}  # rung -> trial id -> losses
        self.stopped: dict[str, int] = {}  # trial id -> the rung it was stopped at

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if FINAL_KEY in result or in_warmup(result, self._time_attr):  # ended, or not to be judged yet
            return TrialScheduler.CONTINUE
        t = result.get(self._time_attr)
        if t is None:
            return TrialScheduler.CONTINUE
        return self.decide(trial.trial_id, float(t), result)

    def decide(self, trial_id: str, t: float, result: dict) -> str:
        """Record the result at every rung it reaches for the first time; STOP when a rung's
        rule says so. A result with a missing or non-finite objective is not recorded. A trial
        whose warm-up outlasted a rung is judged at its first result after the warm-up, but never
        at the last epoch (stopping there saves nothing and would mark a finished trial pruned)."""
        if t >= getattr(self, "_epochs", math.inf):  # inf: a scheduler pickled before it knew its epochs
            return TrialScheduler.CONTINUE
        for rung in self.rungs:
            if t < rung or trial_id in self.records[rung]:
                continue
            values = objective_values(result, self._objectives)
            if values is None:
                return TrialScheduler.CONTINUE
            recorded = self.records[rung]
            recorded[trial_id] = tuple(as_losses([values], [o.mode for o in self._objectives])[0])
            ids = list(recorded)
            if not continue_at_rung([recorded[i] for i in ids], ids.index(trial_id), self._eta):
                self.stopped[trial_id] = rung
                return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def debug_string(self) -> str:
        counts = ", ".join(f"epoch {r}: {len(self.records[r])} recorded" for r in self.rungs)
        return (f"MOASHA over {', '.join(map(str, self._objectives))} (eta {self._eta:g}); "
                f"rungs {counts or 'none'}; {len(self.stopped)} stopped")
