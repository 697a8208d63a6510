"""What a running study shows on the terminal (instead of Ray's tables).

* one bar over trial-epochs with elapsed time and ETA, redrawn every second by a timer
  (``tick_s``) whether or not anything happened, so that minute-long epochs never look hung:
  the ETA counts down between events, and reads "after the first epoch" until one has
  finished. The total never shrinks: the epochs a trial stopped early did not need (pruned,
  diverged, failed) are shown as saved and fill the bar ("12 trained + 4 saved / 18"). A
  tqdm bar on a terminal; one plain line every ``every_s`` seconds otherwise (logs, CI);
* one line when a trial starts (with the params the sampler drew for it) and when it ends
  (complete: its objectives; pruned: the epoch and the values it was judged on; otherwise
  why), numbers in fixed width;
* the current Pareto front, only when it changed and at most every ``front_every_s`` seconds
  (a change held back is printed at the next chance, and the last one at the end).

Compute first (:func:`epoch_progress`, :func:`eta_s`, :func:`bar_text`, :func:`front_lines`,
:func:`value_text`: pure, over Tune's trial objects), then print (:class:`ProgressCallback`).
Trials are named by their Optuna number (:class:`study.trial_index.TrialIndex`).
"""
from __future__ import annotations

import logging
import math
import sys
import threading
import time
from dataclasses import dataclass
from typing import Optional

from ray.tune import Callback

from study.objectives import FINAL_KEY, Objective, is_live, settle, settle_ended
from study.pareto import pareto_front
from study.terminal import terminal_logger
from study.trial_index import TrialIndex
from trainables.status import TrialStatus

log = logging.getLogger(__name__)
term = terminal_logger()


def _epoch_of(trial) -> int:
    return int((trial.last_result or {}).get("epoch", 0) or 0)


@dataclass(frozen=True)
class EpochProgress:
    trained: int   # trial-epochs trained so far
    saved: int     # epochs that trials which ended early did not need
    total: int     # every trial's epochs (the study's size; it never shrinks)

    @property
    def left(self) -> int:
        return max(0, self.total - self.trained - self.saved)


def epoch_progress(trials, total_trials: int, epochs: int, ending=None) -> EpochProgress:
    """Trial-epochs trained, saved (by trials that ended before their last epoch) and in all;
    trials not yet created count in full. ``ending``: the trial being reported as ended."""
    trained = saved = 0
    for t in trials:
        # a baseline reports no epochs: a trial that completed counts in full
        ran = epochs if (t.last_result or {}).get(FINAL_KEY) == TrialStatus.COMPLETE else min(_epoch_of(t), epochs)
        trained += ran
        if not is_live(t, ending):
            saved += epochs - ran
    return EpochProgress(trained, saved, max(total_trials, len(trials)) * epochs)


def clock(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def eta_s(progress: EpochProgress, trained_before: int, elapsed_s: float) -> Optional[float]:
    """Seconds left at the rate of this session's trained epochs; None before the first one."""
    rate = (progress.trained - trained_before) / elapsed_s if elapsed_s > 0 else 0.0
    return progress.left / rate if rate > 0 else None


def bar_text(progress: EpochProgress, elapsed_s: float, eta: Optional[float]) -> str:
    saved = f" + {progress.saved} saved by early stops" if progress.saved else ""
    when = clock(eta) if eta is not None else "after the first epoch"
    return (f"{progress.trained} trained{saved} / {progress.total} trial-epochs | elapsed {clock(elapsed_s)} | "
            f"ETA {when}")


def number(v) -> str:
    """A metric value in fixed width (8 characters: 4 decimals, 1 above 1000)."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return f"{'-':>8}"
    if not math.isfinite(v):
        return f"{'nan':>8}"
    return f"{v:8.1f}" if abs(v) >= 1000 else f"{v:8.4f}"


def value_text(objectives: list[Objective], values) -> str:
    return "  ".join(f"{o.metric}={number(v)}" for o, v in zip(objectives, values))


def param_text(params: dict) -> str:
    return " ".join(f"{k}={f'{v:.3g}' if isinstance(v, float) else v}" for k, v in params.items())


def front_trials(trials, objectives: list[Objective], ending=None) -> list[tuple]:
    """(trial, values) of the completed trials on the current Pareto front, best first objective first."""
    done = [(t, v) for t, _, _, v in settle_ended(trials, objectives, ending) if v is not None]
    if not done:
        return []
    on_front = pareto_front([v for _, v in done], [o.mode for o in objectives])  # a boolean mask
    chosen = [tv for tv, keep in zip(done, on_front) if keep]
    chosen.sort(key=lambda tv: tv[1][0], reverse=objectives[0].mode == "max")
    return chosen


def front_lines(trials, objectives: list[Objective], index: TrialIndex, ending=None, width: int = 3) -> list[str]:
    """The completed trials on the current Pareto front, one line each (best first objective first)."""
    return [f"    {_label(index, t, width)}  {value_text(objectives, v)}"
            for t, v in front_trials(trials, objectives, ending)]


def _label(index: TrialIndex, trial, width: int) -> str:
    n = index.number(trial.trial_id)
    return f"trial {n:>{width}}" if n is not None else f"trial {trial.trial_id}"


class ProgressCallback(Callback):
    """Driver-side Tune callback; picklable (the stream, the bar and the timer are dropped)."""

    def __init__(self, objectives: list[Objective], total_trials: int, epochs: int, index: TrialIndex,
                 every_s: float = 30.0, stream=None, front_every_s: float = 30.0, tick_s: float = 1.0):
        self.objectives = list(objectives)
        self.total_trials, self.epochs, self.index = total_trials, epochs, index
        self.every_s, self.front_every_s, self.tick_s = every_s, front_every_s, tick_s
        self.width = len(str(max(0, total_trials - 1)))
        self._stream = stream
        self._reset()

    def _reset(self) -> None:
        self._bar = self._timer = None
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._t0 = time.time()
        self._trained0: Optional[int] = None   # trial-epochs already trained when this session started
        self._progress: Optional[EpochProgress] = None
        self._eta_at: tuple[Optional[float], float] = (None, 0.0)  # (ETA, when computed)
        self._last_line = 0.0
        self._shown: Optional[EpochProgress] = None
        self._front_shown: tuple = ()
        self._front_key: tuple = ()
        self._front_pending: Optional[str] = None  # the front's lines, one message
        self._front_t = -math.inf

    def __getstate__(self):
        state = {k: v for k, v in self.__dict__.items()
                 if k in ("objectives", "total_trials", "epochs", "index", "every_s", "front_every_s", "tick_s",
                          "width")}
        state["_stream"] = None
        return state

    def __setstate__(self, state):
        # an experiment pickled by an older version of this class lacks the newer settings
        state = {"front_every_s": 30.0, "tick_s": 1.0, **state}
        state.setdefault("width", len(str(max(0, state["total_trials"] - 1))))
        self.__dict__.update({k: v for k, v in state.items() if not k.startswith("_")})
        self._stream = None
        self._reset()

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
        """``[study] <text>`` on the stream (study.terminal: above the bar when one is drawn)."""
        with self._lock:
            term.info(text, extra={"stream": self.stream})

    def _text(self, now: float) -> str:
        eta, at = self._eta_at
        return bar_text(self._progress, now - self._t0, None if eta is None else max(0.0, eta - (now - at)))

    def _update(self, trials, force: bool = False, ending=None) -> None:
        p = epoch_progress(trials, self.total_trials, self.epochs, ending)
        now = time.time()
        with self._lock:
            if self._trained0 is None:
                self._trained0, self._t0 = p.trained, now
            self._progress = p
            self._eta_at = (eta_s(p, self._trained0, now - self._t0), now)
            if self.stream.isatty():
                self._draw_bar(now)
            elif (force and p != self._shown) or now - self._last_line >= self.every_s:
                self._line(now)
        self._start_timer()

    def _draw_bar(self, now: float) -> None:
        p = self._progress
        if self._bar is None:
            from tqdm import tqdm
            self._bar = tqdm(total=p.total, initial=p.trained + p.saved, unit="trial-epoch", file=self.stream,
                             dynamic_ncols=True, mininterval=0, bar_format="{l_bar}{bar}|")
        self._bar.total = p.total
        self._bar.n = p.trained + p.saved
        text = self._text(now).replace("{", "{{").replace("}", "}}")
        self._bar.bar_format = "{l_bar}{bar}| " + text
        self._bar.refresh()

    def _line(self, now: float) -> None:
        self._last_line, self._shown = now, self._progress
        pct = (100.0 * (self._progress.total - self._progress.left) / self._progress.total if self._progress.total
               else 100.0)
        self._say(f"{pct:3.0f}% | {self._text(now)}")

    def tick(self) -> None:
        """Redraw with no event: the bar's clock and ETA (and a held-back front when it is due)."""
        with self._lock:
            if self._progress is None:
                return
            now = time.time()
            if self._bar is not None:
                self._draw_bar(now)
            elif not self.stream.isatty() and now - self._last_line >= self.every_s:
                self._line(now)
        self._flush_front()

    def _start_timer(self) -> None:
        if self._timer is None and self.tick_s > 0:
            def run():
                while not self._stop.wait(self.tick_s):
                    self._safe(self.tick)
            self._timer = threading.Thread(target=run, name="study-progress", daemon=True)
            self._timer.start()

    def close(self) -> None:
        self._stop.set()
        if self._timer is not None:
            self._timer.join(timeout=5)
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    # -- the front ------------------------------------------------------------------
    def _note_front(self, trials, ending) -> None:
        chosen = front_trials(trials, self.objectives, ending)
        key = tuple(sorted(-1 if (n := self.index.number(t.trial_id)) is None else n for t, _ in chosen))
        if chosen and key != self._front_shown:
            nums = ", ".join(str(n) for n in key)
            head = f"Pareto front now ({len(key)} trial{'s' * (len(key) != 1)}: {nums}):"
            self._front_pending = "\n".join([head] + [f"    {_label(self.index, t, self.width)}  "
                                                      f"{value_text(self.objectives, v)}" for t, v in chosen])
            self._front_key = key
        self._flush_front()

    def _flush_front(self, force: bool = False) -> None:
        with self._lock:
            if self._front_pending is None or (not force and time.time() - self._front_t < self.front_every_s):
                return
            text, self._front_pending = self._front_pending, None
            self._front_shown, self._front_t = self._front_key, time.time()
            self._say(text)

    # -- Tune hooks -------------------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info):
        self._safe(self._started, trials, trial)

    def _started(self, trials, trial) -> None:
        params = param_text(self.index.params(trial.trial_id))
        self._say(f"{_label(self.index, trial, self.width)} started    {params}".rstrip())
        self._update(trials)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._safe(self._update, trials)

    def _ended(self, trials, trial, error: bool) -> None:
        status, reason, vals = settle(trial.last_result, self.objectives, error)
        if status == TrialStatus.COMPLETE:
            detail = value_text(self.objectives, vals)
        elif status == TrialStatus.PRUNED:
            last = trial.last_result or {}
            detail = (f"at epoch {_epoch_of(trial)}/{self.epochs} on "
                      + value_text(self.objectives, [last.get(o.metric) for o in self.objectives]))
        else:
            detail = reason or ""
        self._say(f"{_label(self.index, trial, self.width)} {status:<9}" + (f"  {detail}" if detail else ""))
        if status == TrialStatus.COMPLETE:
            self._note_front(trials, trial)
        self._update(trials, force=True, ending=trial)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._safe(self._ended, trials, trial, False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._safe(self._ended, trials, trial, True)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._safe(self._say, f"{_label(self.index, trial, self.width)} lost its worker; "
                              "retrying from its checkpoint")

    def on_experiment_end(self, trials, **info):
        self._safe(self._update, trials, True)
        self._safe(self._flush_front, True)
        self.close()
