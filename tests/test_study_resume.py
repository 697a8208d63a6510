"""Failures and resume: a driver interrupted (SIGINT) midway and resumed with --resume ends
with exactly the requested trials in Optuna and MLflow; a worker killed mid-trial is retried
from its checkpoint and keeps its one MLflow child run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import ray
from optuna.trial import TrialState
from ray.tune import Callback

from study.engine import resume_study, run_study
from study.options import StudyError, StudyOptions
from study.result import format_result
from study.trial_index import TrialIndex
from trainables.status import TrialStatus
from tests.study_helpers import TINY, build_features, mlflow_children, optuna_trials, uris

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    return build_features(tmp_path_factory.getbasetemp())


class KillWorkerOnce(Callback):
    """SIGKILLs the worker of Optuna trial 0 once, when it reports epoch 2."""

    def __init__(self, flag: str, storage: str, study: str):
        self.flag = flag
        self.index = TrialIndex(storage, study)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self.index.number(trial.trial_id) == 0 and result.get("epoch") == 2 and not os.path.exists(self.flag):
            Path(self.flag).write_text(str(result["pid"]))
            os.kill(result["pid"], signal.SIGKILL)


def test_killed_worker_resumes_from_its_checkpoint(tmp_path, features):
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        flag = str(tmp_path / "killed")
        # a fixed sampler seed: with a fresh one, trial 0 sometimes draws a config that collapses
        # (status "failed" after training to the end), which says nothing about the kill and the retry
        opts = StudyOptions(space="cat_uvac", features=features, num_samples=2, epochs=4, max_concurrent=2,
                            overrides=dict(TINY), study_name="kill", max_failures=2, progress_every_s=1e9,
                            seed=2, **uris(tmp_path))
        res = run_study(opts, extra_callbacks=[KillWorkerOnce(flag, uris(tmp_path)["storage"], "kill")])
    finally:
        ray.shutdown()
    assert os.path.exists(flag), "the worker was never killed"
    trials = optuna_trials(res)
    assert len(trials) == 2 and all(t.state.is_finished() for t in trials)
    assert trials[0].user_attrs["status"] == "complete"
    client, children = mlflow_children(res.tracking_uri, res.parent_run_id)
    assert len(children) == 2
    run0 = next(r for r in children if r.data.tags["trial.number"] == "0")
    assert run0.data.tags["trial.status"] == "complete" and run0.data.tags.get("trial.retries") == "1"
    steps = [m.step for m in client.get_metric_history(run0.info.run_id, "train/loss")]
    # epoch 1 logged once: the retry continued from a checkpoint, it did not start over
    assert steps.count(1) == 1 and max(steps) == 4 and sorted(set(steps)) == [1, 2, 3, 4], steps


def _count_finished(storage: str, name: str) -> int:
    try:
        s = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return 0
    return sum(t.state.is_finished() for t in s.get_trials(deepcopy=False))


@pytest.mark.slow
def test_interrupted_study_resumes_without_losing_or_duplicating(tmp_path, features):
    u = uris(tmp_path)
    name, total = "resume", 5
    cmd = [sys.executable, "-m", "study.launch", "--space", "cat_uvac", "--features", features,
           "--num-samples", str(total), "--epochs", "3", "--max-concurrent", "2", "--study-name", name,
           "--storage", u["storage"], "--tracking-uri", u["tracking_uri"], "--storage-path", u["storage_path"]]
    cmd += [f"--set={k}={v}" for k, v in TINY.items()]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while _count_finished(u["storage"], name) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    assert proc.poll() is None, "the study ended before it could be interrupted:\n" + proc.stdout.read()[-3000:]
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out[-3000:]  # interrupted
    assert f"--resume {name}" in out
    done_before = _count_finished(u["storage"], name)
    assert done_before < total

    res = resume_study(name, u["storage"])
    assert not res.interrupted
    trials = optuna_trials(res)
    assert len(trials) == total, [(t.number, t.state) for t in trials]
    assert all(t.state.is_finished() for t in trials)
    assert sum(t.state == TrialState.COMPLETE for t in trials) >= done_before
    client, children = mlflow_children(res.tracking_uri, res.parent_run_id)
    numbers = sorted(int(r.data.tags["trial.number"]) for r in children)
    assert numbers == list(range(total)), numbers
    # every trial ended as a study ends one (moasha, the default for 5 trials, may prune), none failed
    # or left running/interrupted by the resume
    assert all(r.data.tags["trial.status"] in (TrialStatus.COMPLETE, TrialStatus.PRUNED, TrialStatus.DIVERGED)
               for r in children), [r.data.tags["trial.status"] for r in children]
    assert client.get_run(res.parent_run_id).info.status == "FINISHED"
    # the resumed searcher did not replay the first draws of the seeded sampler
    keys = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(keys)) == total


def _launch(tmp_path, features, name: str, total: int, space: str = "kmeans", epochs: int = 1) -> list[str]:
    u = uris(tmp_path)
    cmd = [sys.executable, "-m", "study.launch", "--space", space, "--features", features,
           "--num-samples", str(total), "--epochs", str(epochs), "--max-concurrent", "2", "--study-name", name,
           "--seed", "3", "--storage", u["storage"], "--tracking-uri", u["tracking_uri"],
           "--storage-path", u["storage_path"]]
    return cmd + [f"--set={k}={v}" for k, v in TINY.items() if space != "kmeans"]


def test_driver_killed_right_after_start_is_restarted_under_its_name(tmp_path, features):
    """SIGKILL as soon as Ray wrote tuner.pkl (before any trial state): --resume runs the
    study's trials in a fresh experiment under the same name, with one MLflow run each."""
    u = uris(tmp_path)
    name, total = "early-kill", 3
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(_launch(tmp_path, features, name, total), cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    pkl = Path(u["storage_path"], name, "tuner.pkl")
    deadline = time.time() + 240
    while not pkl.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert pkl.exists(), proc.stdout.read()[-3000:] if proc.poll() is not None else "no tuner.pkl in time"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started
    proc.wait(timeout=60)
    assert not list(Path(u["storage_path"], name).glob("experiment_state-*.json")), "killed too late to test this"

    res = resume_study(name, u["storage"])
    assert not res.interrupted
    trials = optuna_trials(res)
    assert len(trials) == total and all(t.state.is_finished() for t in trials), [(t.number, t.state) for t in trials]
    _, children = mlflow_children(res.tracking_uri, res.parent_run_id)
    assert sorted(int(r.data.tags["trial.number"]) for r in children) == list(range(total))
    assert list(Path(u["storage_path"]).glob(f"{name}.stale-*")), "the stale Ray folder was not kept aside"


def test_launch_stopped_during_setup_starts_over_under_its_name(tmp_path, features, capsys):
    """An Optuna study with the name but without the study's options (the launch was killed
    during setup) neither blocks the name nor passes for a study that can be resumed."""
    u = uris(tmp_path)
    optuna.create_study(study_name="half", storage=u["storage"], directions=["maximize", "maximize"])
    with pytest.raises(StudyError, match="stopped during its setup"):
        resume_study("half", u["storage"])
    res = run_study(StudyOptions(space="kmeans", features=features, num_samples=1, epochs=1, study_name="half",
                                 progress_every_s=1e9, **u))
    assert "starting it over" in capsys.readouterr().out
    assert res.counts["complete"] == 1 and len(optuna_trials(res)) == 1


class InterruptAt(Callback):
    """Ctrl-C (SIGINT to this driver) once Optuna trial ``number`` reported epoch 1; once only,
    also after a resume (this callback is pickled with the experiment): a flag file says so."""

    def __init__(self, storage: str, study: str, number: int, flag: str):
        self.index, self.number, self.flag = TrialIndex(storage, study), number, flag

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if (not os.path.exists(self.flag) and self.index.number(trial.trial_id) == self.number
                and result.get("epoch") == 1):
            Path(self.flag).write_text("sent")
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_ends_runs_as_interrupted_and_resume_logs_each_epoch_once(tmp_path, features, capsys):
    u = uris(tmp_path)
    opts = StudyOptions(space="cat_uvac", features=features, num_samples=3, epochs=2, max_concurrent=1,
                        overrides=dict(TINY), study_name="ctrl-c", seed=2, scheduler="fifo",
                        progress_every_s=1e9, **u)
    res = run_study(opts, extra_callbacks=[InterruptAt(u["storage"], "ctrl-c", 1, str(tmp_path / "sent"))])
    assert res.interrupted
    printed = capsys.readouterr()
    assert "Tuner.restore" not in printed.out + printed.err  # Ray's hint went to the study log
    assert "continue with: python -m study.launch --resume ctrl-c" in format_result(res)
    client, children = mlflow_children(res.tracking_uri, res.parent_run_id)
    by_number = {int(r.data.tags["trial.number"]): r for r in children}
    assert by_number[0].data.tags["trial.status"] == "complete"
    assert by_number[1].data.tags["trial.status"] == "interrupted" and by_number[1].info.status == "KILLED"
    assert all(r.info.status != "RUNNING" for r in children)
    ended0 = by_number[0].info.end_time
    assert not list(Path(u["storage_path"], "ctrl-c").glob("searcher-state-*.pkl"))  # JSON, not a pickle

    res = resume_study("ctrl-c", u["storage"])
    assert not res.interrupted and res.counts["complete"] + res.counts["diverged"] == 3
    client, children = mlflow_children(res.tracking_uri, res.parent_run_id)
    by_number = {int(r.data.tags["trial.number"]): r for r in children}
    assert sorted(by_number) == [0, 1, 2]
    assert by_number[0].info.end_time == ended0  # a finished trial's run is not reopened
    for r in children:
        assert r.info.status != "RUNNING" and r.data.tags["trial.status"] in ("complete", "diverged")
        steps = [m.step for m in client.get_metric_history(r.info.run_id, "train/loss")]
        assert sorted(steps) == sorted(set(steps)), (r.data.tags["trial.number"], steps)  # each epoch once


def _second_ctrl_c(tmp_path, features, name: str, wait_for_stop: bool) -> subprocess.CompletedProcess:
    """Launch a study, Ctrl-C once while trial 0 trains, then again: at once (inside Ray's
    run) or once Ray's run has returned (the result is collected, Ray is shut down)."""
    cmd = _launch(tmp_path, features, name, 2, space="cat_uvac", epochs=30) + ["--scheduler", "fifo"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    out = []
    for line in proc.stdout:
        out.append(line)
        if line.startswith("[study] trial 0 started"):
            break
    assert proc.poll() is None, "".join(out)
    proc.send_signal(signal.SIGINT)
    if wait_for_stop:
        log = Path(uris(tmp_path)["storage_path"], name, "study.log")
        deadline = time.time() + 60
        while ("Experiment has been interrupted" not in (log.read_text() if log.exists() else "")
               and time.time() < deadline):
            time.sleep(0.02)
    else:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(cmd, proc.returncode, "".join(out) + rest, err)


@pytest.mark.parametrize("wait_for_stop", [False, True], ids=["inside-fit", "after-fit"])
def test_second_ctrl_c_exits_130_with_the_resume_command(tmp_path, features, wait_for_stop):
    name = f"twice-{int(wait_for_stop)}"
    r = _second_ctrl_c(tmp_path, features, name, wait_for_stop)
    assert r.returncode == 130, (r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert f"Continue with: python -m study.launch --resume {name}" in r.stderr


def test_a_second_ctrl_c_swallowed_while_the_result_is_collected_still_ends_the_study(monkeypatch):
    """A second Ctrl-C can land where a library swallows the KeyboardInterrupt (CI saw one in
    SQLAlchemy's weakref callback while the result was collected: exit 1 instead of 130). CtrlC counts
    it, and _fit then ends the study as interrupted instead of returning the result. What runs is _fit's
    own bookkeeping: a stand-in with only .fit() for the Tuner, our _result and _interrupted replaced."""
    from types import SimpleNamespace

    from study import engine

    collected = object()

    def collect_swallowing_a_ctrl_c(st, t0):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler runs here, in the main thread
        except KeyboardInterrupt:
            pass  # what a library that ignores the exception does
        return collected

    def interrupted(st):
        raise engine.StudyInterrupted("python -m study.launch --resume x")

    monkeypatch.setattr(engine, "_interrupted", interrupted)
    monkeypatch.setattr(engine, "_result", lambda st, t0: collected)
    assert engine._fit(SimpleNamespace(fit=lambda: None), None) is collected  # no Ctrl-C: the result
    monkeypatch.setattr(engine, "_result", collect_swallowing_a_ctrl_c)
    with pytest.raises(engine.StudyInterrupted):
        engine._fit(SimpleNamespace(fit=lambda: None), None)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler put back


def test_two_launches_of_one_name_at_once_one_refuses_in_one_line(tmp_path, features):
    """Both on fresh databases, started together: one runs the study, the other refuses the
    name in one line (no DuplicatedStudyError, no 'table ... already exists')."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = _launch(tmp_path, features, "twin", 1)
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _, _ in results)
    assert codes == [0, 2], [(rc, err[-2000:]) for rc, _, err in results]
    rc, out, err = next(r for r in results if r[0] == 2)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err[-3000:]
    assert err.startswith("error: study 'twin' ") and ("already exists" in err or "being set up" in err), err
    trials = optuna_trials(uris(tmp_path)["storage"], "twin")
    assert len(trials) == 1 and trials[0].state == TrialState.COMPLETE


def test_resume_on_a_damaged_searcher_state_continues_from_optuna(tmp_path, features, capsys):
    """Garbage in searcher-state-*.json: Ray would restart the experiment and hang; --resume
    says which file is damaged and runs the remaining trials from the Optuna storage."""
    u = uris(tmp_path)
    opts = StudyOptions(space="cat_uvac", features=features, num_samples=3, epochs=2, max_concurrent=1,
                        overrides=dict(TINY), study_name="garbled", seed=2, scheduler="fifo",
                        progress_every_s=1e9, **u)
    res = run_study(opts, extra_callbacks=[InterruptAt(u["storage"], "garbled", 1, str(tmp_path / "sent"))])
    assert res.interrupted
    states = list(Path(u["storage_path"], "garbled").glob("searcher-state-*.json"))
    assert states, "Ray saved no searcher state: nothing to damage"
    for f in states:
        f.write_text("{garbage")
    capsys.readouterr()
    res = resume_study("garbled", u["storage"])
    out = capsys.readouterr().out
    assert f"{states[0]} is damaged" in out and "continue from the Optuna storage" in out
    trials = optuna_trials(res)
    assert len(trials) == 3 and all(t.state.is_finished() for t in trials), [(t.number, t.state) for t in trials]
    _, children = mlflow_children(res.tracking_uri, res.parent_run_id)
    assert sorted(int(r.data.tags["trial.number"]) for r in children) == [0, 1, 2]
