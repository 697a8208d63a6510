"""Concise progress for a running study: one line when a trial starts or ends,
and at most one line per ``every_s`` seconds otherwise (instead of Ray's table)."""
from __future__ import annotations

import sys
import time
from typing import Optional

from ray.tune import Callback

from study.objectives import Objective, classify, objective_values


def summarise(trials, objectives: list[Objective], total: int, ending=None) -> str:
    """One line of counts and best values; ``ending`` = (trial, error) for a trial whose
    end is being reported (Tune calls back before it updates the trial's status)."""
    counts = {"complete": 0, "pruned": 0, "diverged": 0, "failed": 0}
    running = 0
    best: list[Optional[float]] = [None] * len(objectives)
    for t in trials:
        is_ending = ending is not None and t is ending[0] and ending[1] is not None
        is_starting = ending is not None and t is ending[0] and ending[1] is None
        if (t.status in ("RUNNING", "PENDING", "PAUSED") and not is_ending) or is_starting:
            running += t.status == "RUNNING" or is_starting
            continue
        status, _ = classify(t.last_result, ending[1] if is_ending else t.status == "ERROR")
        counts[status] += 1
        if status == "complete":
            vals = objective_values(t.last_result, objectives)
            if vals:
                for i, (v, o) in enumerate(zip(vals, objectives)):
                    if best[i] is None or (v > best[i] if o.mode == "max" else v < best[i]):
                        best[i] = v
    done = sum(counts.values())
    parts = [f"trials {done}/{total} done", f"running {running}",
             ", ".join(f"{k} {v}" for k, v in counts.items())]
    bests = " ".join(f"{o.metric}={'-' if b is None else f'{b:.4g}'}" for o, b in zip(objectives, best))
    return " | ".join(parts) + f" | best {bests}"


class ProgressCallback(Callback):
    def __init__(self, objectives: list[Objective], total: int, every_s: float = 30.0, stream=None):
        self.objectives = list(objectives)
        self.total = total
        self.every_s = every_s
        self._last = 0.0
        self._stream = stream
        self._t0 = time.time()

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_stream"] = None
        return state

    def _print(self, trials, event: str = "", ending=None) -> None:
        self._last = time.time()
        line = f"[study {time.time() - self._t0:6.0f}s] {summarise(trials, self.objectives, self.total, ending)}"
        if event:
            line += f"  <- {event}"
        print(line, file=self._stream or sys.stdout, flush=True)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._print(trials, f"trial {trial.config.get('study_trial', trial.trial_id)} started", (trial, None))

    def on_trial_complete(self, iteration, trials, trial, **info):
        status, reason = classify(trial.last_result, False)
        extra = f" ({reason})" if status == "diverged" and reason else ""
        self._print(trials, f"trial {trial.config.get('study_trial', trial.trial_id)} {status}{extra}", (trial, False))

    def on_trial_error(self, iteration, trials, trial, **info):
        self._print(trials, f"trial {trial.config.get('study_trial', trial.trial_id)} failed", (trial, True))

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._print(trials, f"trial {trial.config.get('study_trial', trial.trial_id)} lost its worker; retrying from its checkpoint")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if time.time() - self._last >= self.every_s:
            self._print(trials)
