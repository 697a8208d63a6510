"""The study's stores shared by processes started together: a fresh SQLite file's schema is
built once (MLflow's and Optuna's migrations, run twice at once on one file, both fail), and of
several launches claiming one study name exactly one gets it."""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
from pathlib import Path

import optuna
import pytest

from study.claim import CLAIM_ATTR, claim_name
from study.options import StudyError
from study.stores import creation_lock

ROOT = Path(__file__).resolve().parents[1]
N_PROCS = 3


def _start_together(target, args_of, n=N_PROCS):
    """Run ``target(*args_of(i), barrier, queue)`` in n processes released at once; their answers."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args_of(i), barrier, queue)) for i in range(n)]
    for p in procs:
        p.start()
    answers = [queue.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    return answers


def _open_mlflow(uri, i, barrier, queue):
    sys.path.insert(0, str(ROOT))
    from study.tracking import mlflow_client
    barrier.wait()
    try:
        client = mlflow_client(uri)
        client.create_experiment(f"exp-{i}")
        queue.put("ok")
    except Exception as exc:  # the answer the test reads
        queue.put(f"{type(exc).__name__}: {exc}"[:300])


def _claim(storage, name, barrier, queue):
    import socket
    sys.path.insert(0, str(ROOT))
    from study.claim import claim_name
    from study.options import StudyError
    barrier.wait()
    try:
        claim_name(storage, name, ["maximize"])
        queue.put(f"claimed: {socket.gethostname()}:{os.getpid()}")
    except StudyError as exc:
        queue.put(f"refused: {exc}")
    except Exception as exc:
        queue.put(f"{type(exc).__name__}: {exc}"[:300])


def test_processes_opening_one_fresh_mlflow_store_at_once_all_get_it(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    answers = _start_together(_open_mlflow, lambda i: (uri, i))
    assert answers == ["ok"] * N_PROCS, answers
    from mlflow.tracking import MlflowClient
    names = {e.name for e in MlflowClient(uri).search_experiments()}
    assert {f"exp-{i}" for i in range(N_PROCS)} <= names


def test_of_launches_claiming_one_name_on_a_fresh_storage_exactly_one_wins(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    answers = _start_together(_claim, lambda i: (storage, "twin"))
    assert sorted(a.split(":")[0] for a in answers) == ["claimed"] + ["refused"] * (N_PROCS - 1), answers
    assert all("being set up by another launch" in a for a in answers if a.startswith("refused")), answers
    winner = next(a for a in answers if a.startswith("claimed")).split(": ", 1)[1]
    assert optuna.load_study(study_name="twin", storage=storage).user_attrs[CLAIM_ATTR] == winner


def test_a_claimed_name_with_a_finished_setup_is_refused_as_existing(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    claim_name(storage, "done", ["maximize"])
    optuna.load_study(study_name="done", storage=storage).set_user_attr("options", "{}")
    with pytest.raises(StudyError, match="already exists .* use --resume done"):
        claim_name(storage, "done", ["maximize"])


def test_the_creation_lock_excludes_a_second_holder_and_leaves_other_urls_alone(tmp_path):
    import fcntl

    uri = f"sqlite:///{tmp_path}/x.db"
    with creation_lock(uri):
        with open(tmp_path / "x.db", "ab") as other:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(tmp_path / "x.db", "ab") as other:  # released
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with creation_lock("postgresql://host/db"), creation_lock(f"sqlite:///{tmp_path}/no/such/dir.db"):
        pass
    assert not (tmp_path / "no").exists()
