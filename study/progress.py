"""What a running study shows on the terminal (instead of Ray's tables).

* one bar over trial-epochs (every trial's epochs; a trial stopped early gives its remaining
  epochs back, so the total shrinks), with elapsed time and ETA: a tqdm bar on a terminal,
  one plain line every ``every_s`` seconds otherwise (logs, CI);
* one line when a trial starts or ends (with its objectives, or why it stopped);
* after each completed trial, the current Pareto front as the trials on it, one line each.

Compute first (:func:`epoch_progress`, :func:`front_lines`: pure, over Tune's trial
objects), then print (:class:`ProgressCallback`). Trials are named by their Optuna number
(:class:`study.trial_index.TrialIndex`).
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Optional

from ray.tune import Callback

from study.objectives import FINAL_KEY, Objective, is_live, settle, settle_ended
from study.pareto import pareto_front
from study.trial_index import TrialIndex

log = logging.getLogger(__name__)


def _epoch_of(trial) -> int:
    return int((trial.last_result or {}).get("epoch", 0) or 0)


def epoch_progress(trials, total_trials: int, epochs: int, ending=None) -> tuple[int, int]:
    """(trial-epochs done, trial-epochs the study will spend): trials not yet created count
    in full; a trial that ended early (pruned, diverged, failed) counts only what it ran."""
    done = total = 0
    for t in trials:
        # a baseline reports no epochs: a trial that completed counts in full
        ran = epochs if (t.last_result or {}).get(FINAL_KEY) == "complete" else min(_epoch_of(t), epochs)
        done += ran
        total += epochs if is_live(t, ending) else ran
    total += max(0, total_trials - len(trials)) * epochs
    return done, max(total, done)


def front_lines(trials, objectives: list[Objective], index: TrialIndex, ending=None) -> list[str]:
    """The completed trials on the current Pareto front, one line each (best first objective first)."""
    done = [(t, v) for t, _, _, v in settle_ended(trials, objectives, ending) if v is not None]
    if not done:
        return []
    on_front = pareto_front([v for _, v in done], [o.mode for o in objectives])  # a boolean mask
    chosen = [tv for tv, keep in zip(done, on_front) if keep]
    chosen.sort(key=lambda tv: tv[1][0], reverse=objectives[0].mode == "max")
    return [f"    {index.label(t.trial_id):>9}  " + "  ".join(f"{o.metric}={x:.4g}" for o, x in zip(objectives, v))
            for t, v in chosen]


def _clock(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class ProgressCallback(Callback):
    """Driver-side Tune callback; picklable (the stream and the bar are dropped)."""

    def __init__(self, objectives: list[Objective], total_trials: int, epochs: int, index: TrialIndex,
                 every_s: float = 30.0, stream=None):
        self.objectives = list(objectives)
        self.total_trials, self.epochs, self.index = total_trials, epochs, index
        self.every_s = every_s
        self._stream = stream
        self._bar = None
        self._t0 = time.time()
        self._done0: Optional[int] = None   # trial-epochs already done when this session started
        self._last = 0.0
        self._shown: tuple[int, int] = (-1, -1)

    def __getstate__(self):
        state = self.__dict__.copy()
        state.update(_stream=None, _bar=None, _done0=None)
        return state

    @property
    def stream(self):
        return self._stream or sys.stdout

    # -- output ---------------------------------------------------------------------
    def _safe(self, fn, *args) -> None:
        """A display problem must never fail a trial (Tune fails the trial whose hook raised)."""
        try:
            fn(*args)
        except Exception as exc:
            log.warning("progress display failed: %r", exc)

    def _say(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def _update(self, trials, force: bool = False, ending=None) -> None:
        done, total = epoch_progress(trials, self.total_trials, self.epochs, ending)
        if self._done0 is None:
            self._done0 = done
            self._t0 = time.time()
        if self.stream.isatty():
            if self._bar is None:
                from tqdm import tqdm
                self._bar = tqdm(total=total, initial=done, unit="trial-epoch", file=self.stream,
                                 dynamic_ncols=True, bar_format="{l_bar}{bar}| {n}/{total} trial-epochs "
                                 "[{elapsed}<{remaining}]")
            self._bar.total = total
            self._bar.update(done - self._bar.n)
            return
        if (force and (done, total) != self._shown) or time.time() - self._last >= self.every_s:
            self._last, self._shown = time.time(), (done, total)
            elapsed = time.time() - self._t0
            rate = (done - self._done0) / elapsed if elapsed > 0 else 0.0
            eta = _clock((total - done) / rate) if rate > 0 else "?"
            pct = 100.0 * done / total if total else 100.0
            print(f"[study] {done}/{total} trial-epochs ({pct:.0f}%) | elapsed {_clock(elapsed)} | ETA {eta}",
                  file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    # -- Tune hooks -------------------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info):
        self._safe(self._started, trials, trial)

    def _started(self, trials, trial) -> None:
        self._say(f"[study] {self.index.label(trial.trial_id)} started")
        self._update(trials)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._safe(self._update, trials)

    def _ended(self, trials, trial, error: bool) -> None:
        status, reason, vals = settle(trial.last_result, self.objectives, error)
        name = self.index.label(trial.trial_id)
        if status == "complete":
            detail = "  ".join(f"{o.metric}={v:.4g}" for o, v in zip(self.objectives, vals))
        elif status == "pruned":
            detail = f"at epoch {_epoch_of(trial)} of {self.epochs}"
        else:
            detail = reason or ""
        self._say(f"[study] {name} {status}" + (f": {detail}" if detail else ""))
        if status == "complete":
            lines = front_lines(trials, self.objectives, self.index, ending=trial)
            if lines:
                self._say(f"[study] Pareto front now ({len(lines)} trial{'s' * (len(lines) != 1)}):")
                for line in lines:
                    self._say(line)
        self._update(trials, force=True, ending=trial)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._safe(self._ended, trials, trial, False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._safe(self._ended, trials, trial, True)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._safe(self._say, f"[study] {self.index.label(trial.trial_id)} lost its worker; retrying from its checkpoint")

    def on_experiment_end(self, trials, **info):
        self._safe(self._update, trials, True)
        self.close()
