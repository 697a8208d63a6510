"""The study's terminal display (study.progress) on real Ray Tune trial objects and a real
Optuna storage (the trial numbers and drawn params come from it): the bar redraws every
second with no event, its ETA counts down and is never a bare "?", pruned epochs count as
saved; trial lines carry the drawn params, the values a pruned trial was judged on, numbers
in fixed width; the front is printed only when it changes, at most every N seconds."""
from __future__ import annotations

import io
import re
import time

import optuna
import pytest
from ray.tune.experiment import Trial

from study.objectives import FINAL_KEY, Objective
from study.progress import EpochProgress, ProgressCallback, bar_text, epoch_progress, number
from study.trial_index import RAY_ID_ATTR, TrialIndex

OBJS = [Objective("val/silhouette_z", "max"), Objective("val/acc", "max")]


class Terminal(io.StringIO):
    def isatty(self):
        return True


class Log(io.StringIO):
    def isatty(self):
        return False


@pytest.fixture()
def index(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(study_name="p", storage=storage, directions=["maximize", "maximize"])
    return TrialIndex(storage, "p")


def new_trial(index, **params) -> Trial:
    """A Tune trial and its Optuna trial (asked as the searcher does, stamped with the Ray id)."""
    t = Trial("__fake", config={}, stub=True)
    study = optuna.load_study(study_name="p", storage=index.storage_url)
    study.enqueue_trial(params)  # the sampler's draw is these values
    ot = study.ask()
    for k, v in params.items():
        ot.suggest_float(k, 1e-3, 10.0, log=True) if isinstance(v, float) else ot.suggest_categorical(k, [v])
    ot.set_user_attr(RAY_ID_ATTR, t.trial_id)
    t.set_status(Trial.RUNNING)
    return t


def report(t: Trial, epoch: int, sil: float, acc: float, final: bool = False) -> None:
    result = {"epoch": epoch, "val/silhouette_z": sil, "val/acc": acc}
    if final:
        result[FINAL_KEY] = "complete"
    t.update_last_result(result)


def end(t: Trial) -> None:
    t.set_status(Trial.TERMINATED)


def test_pruned_epochs_are_saved_not_vanished(index):
    done, pruned, running = new_trial(index), new_trial(index), new_trial(index)
    report(done, 4, 0.1, 0.5, final=True)
    end(done)
    report(pruned, 1, 0.0, 0.2)
    end(pruned)
    report(running, 2, 0.1, 0.3)
    p = epoch_progress([done, pruned, running], total_trials=4, epochs=4)
    assert p == EpochProgress(trained=7, saved=3, total=16) and p.left == 6  # the total stays 4 x 4
    assert bar_text(p, 65, 30.0) == "7 trained + 3 saved by early stops / 16 trial-epochs | elapsed 1:05 | ETA 0:30"
    assert bar_text(p, 5, None).endswith("ETA after the first epoch")


def test_bar_redraws_every_second_without_an_event(index):
    term = Terminal()
    cb = ProgressCallback(OBJS, total_trials=3, epochs=4, index=index, stream=term)
    t = new_trial(index, lam=0.5)
    cb.on_trial_start(0, [t], t)
    assert "ETA after the first epoch" in term.getvalue()  # not a bare "?"
    time.sleep(1.2)
    report(t, 1, 0.1, 0.3)
    cb.on_trial_result(1, [t], t, t.last_result)
    first = term.getvalue()
    time.sleep(3.3)  # no event at all
    later = term.getvalue()[len(first):]
    draws = [d for d in later.split("\r") if "trial-epochs" in d]
    assert len(draws) >= 3, later  # redrawn at least once a second by the timer
    elapsed = [int(m) for m in re.findall(r"elapsed 0:(\d\d)", later)]
    assert elapsed[-1] >= 4 and elapsed == sorted(elapsed)
    etas = [int(a) * 60 + int(b) for a, b in re.findall(r"ETA (\d+):(\d\d)", later)]
    assert len(etas) >= 3 and etas[-1] < etas[0]  # the ETA counts down between events
    assert "1 trained / 12 trial-epochs" in draws[-1]
    cb.on_experiment_end([t])
    assert cb._timer is not None and not cb._timer.is_alive()
    stopped = term.getvalue()
    time.sleep(1.5)
    assert term.getvalue() == stopped  # nothing drawn after the end


def test_trial_lines_and_a_front_printed_only_when_it_changes(index):
    log = Log()
    cb = ProgressCallback(OBJS, total_trials=12, epochs=3, index=index, stream=log, every_s=1e9,
                          front_every_s=3600)
    a, b, c, d = (new_trial(index, lam=0.25 * (k + 1), divergence="is") for k in range(4))
    trials = [a, b, c, d]
    cb.on_trial_start(0, trials, a)
    assert re.search(r"\[study\] trial  0 started    lam=0\.25 divergence=is\n", log.getvalue())
    report(b, 1, -0.123456, 0.25)
    end(b)
    cb.on_trial_complete(1, trials, b)
    assert "[study] trial  1 pruned     at epoch 1/3 on val/silhouette_z= -0.1235  val/acc=  0.2500" in log.getvalue()
    report(a, 3, 0.5, 0.3, final=True)
    end(a)
    cb.on_trial_complete(2, trials, a)
    out = log.getvalue()
    assert "[study] trial  0 complete   val/silhouette_z=  0.5000  val/acc=  0.3000" in out
    assert "Pareto front now (1 trial: 0)" in out  # the first front is printed at once
    report(c, 3, 0.1, 0.6, final=True)  # joins the front: a change, but within front_every_s
    end(c)
    cb.on_trial_complete(3, trials, c)
    assert log.getvalue().count("Pareto front now") == 1
    report(d, 3, 0.0, 0.1, final=True)  # dominated: no change
    end(d)
    cb.on_trial_complete(4, trials, d)
    cb.on_experiment_end(trials)  # the held-back change is printed at the end
    out = log.getvalue()
    assert out.count("Pareto front now") == 2 and "Pareto front now (2 trials: 0, 2)" in out
    assert re.search(r"\n    trial  2  val/silhouette_z=  0\.1000  val/acc=  0\.6000\n", out)


def test_numbers_have_a_fixed_width():
    assert {len(number(v)) for v in (0.1, -0.123456, 12.5, 1234.5, float("nan"), None)} == {8}
