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

from study.engine import StudyOptions, resume_study, run_study
from study.trial_index import TrialIndex
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
        opts = StudyOptions(space="cat_uvac", features=features, num_samples=2, epochs=4, max_concurrent=2,
                            overrides=dict(TINY), study_name="kill", max_failures=2, progress_every_s=1e9,
                            **uris(tmp_path))
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
    assert all(r.data.tags["trial.status"] in ("complete", "diverged") for r in children)
    assert client.get_run(res.parent_run_id).info.status == "FINISHED"
    # the resumed searcher did not replay the first draws of the seeded sampler
    keys = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(keys)) == total
