"""A driver SIGKILLed leaves Ray's dashboard and runtime-env agents running; the next
``study.launch --resume`` of its study finds them (the session recorded by ``init_ray`` in the
study's folder) and stops them in one line. A Ray whose driver lives, and processes that only
look alike, are never touched."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from study.engine import ray_session_record
from study.options import StudyOptions
from study.ray_leftovers import _stat, session_processes, stop_leftovers

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")

DRIVER = """
import sys, time
from study.ray_runtime import init_ray
init_ray(None, 1, record=sys.argv[1])
print("ready", flush=True)
time.sleep(600)
"""


def _stored_study(tmp: Path, name: str) -> str:
    """An Optuna study that --resume can find (options, tracking URI): its MLflow store is
    damaged, so the resume stops with one line right after the leftovers are dealt with."""
    storage = f"sqlite:///{tmp}/optuna.db"
    (tmp / "mlflow.db").write_bytes(b"not a database" * 100)
    study = optuna.create_study(study_name=name, storage=storage, directions=["maximize"])
    study.set_user_attr("tracking_uri", f"sqlite:///{tmp}/mlflow.db")
    opts = StudyOptions(study_name=name, storage=storage, storage_path=str(tmp / "ray"))
    study.set_user_attr("options", json.dumps(dataclasses.asdict(opts)))
    return storage


def test_resume_stops_what_a_killed_driver_left_of_its_ray(tmp_path):
    name = "killed-driver"
    storage = _stored_study(tmp_path, name)
    record = ray_session_record(StudyOptions(storage_path=str(tmp_path / "ray")), name)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(record)], cwd=ROOT, env=env, text=True,
                              stdout=subprocess.PIPE, start_new_session=True)
    leftovers = []
    try:
        assert driver.stdout.readline().strip() == "ready"
        session = json.loads(record.read_text())["session_dir"]
        assert session_processes(session), "no process of the session found: the matching is broken"
        assert stop_leftovers(record) is None and session_processes(session)  # its driver lives: untouched

        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
        time.sleep(3)  # Ray's fate sharing takes GCS and raylet down; the agents stay
        leftovers = session_processes(session)
        assert leftovers, "nothing of the killed driver's Ray survived"

        cmd = [sys.executable, "-m", "study.launch", "--resume", name, "--storage", storage]
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
        assert r.returncode == 2 and "mlflow" in r.stderr.lower(), r.stderr[-2000:]
        lines = [ln for ln in r.stdout.splitlines() if "stopped" in ln and "Ray process" in ln]
        assert len(lines) == 1 and str(driver.pid) in lines[0] and session in lines[0], r.stdout
        assert session_processes(session) == [], session_processes(session)
        assert not record.exists()
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
        for pid in leftovers:  # only on a failure: what this test's driver left
            if _stat(pid) and _stat(pid)[0] != "Z":
                os.kill(pid, signal.SIGKILL)


def test_stop_leftovers_spares_live_drivers_and_other_sessions(tmp_path):
    session = tmp_path / "ray" / "session_2000-01-01_00-00-00_000000_1"
    other = tmp_path / "ray" / "session_2000-01-01_00-00-00_000000_2"
    dead = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead_start = _stat(dead.pid)[1]
    dead.kill()
    dead.wait()
    sleeper = "import sys, time; time.sleep(60)"
    mine = subprocess.Popen([sys.executable, "-c", sleeper, str(session)])
    theirs = subprocess.Popen([sys.executable, "-c", sleeper, str(other)])
    record = tmp_path / "ray-session.json"
    base = {"host": socket.gethostname(), "uid": os.getuid(), "session_dir": str(session)}
    try:
        record.write_text(json.dumps({**base, "driver_pid": os.getpid(), "driver_start": _stat(os.getpid())[1]}))
        assert stop_leftovers(record) is None and mine.poll() is None  # a live driver's
        record.write_text(json.dumps({**base, "session_dir": "/", "driver_pid": dead.pid,
                                      "driver_start": dead_start}))
        assert stop_leftovers(record) is None and mine.poll() is None  # not a session directory
        record.write_text(json.dumps({**base, "driver_pid": dead.pid, "driver_start": dead_start}))
        line = stop_leftovers(record, wait_s=1)
        assert line and str(mine.pid) in line and str(theirs.pid) not in line, line
        assert mine.wait(timeout=5) == -signal.SIGTERM and theirs.poll() is None
        assert not record.exists()
    finally:
        for p in (mine, theirs):
            p.kill()
            p.wait()
