"""The commands a finished study prints to open its UIs work from the project's venv:
optuna-dashboard (the ``[ui]`` extra) serves the study, and the MLflow command names the
venv's own script."""
from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import optuna
import pytest

from study.tracking import dashboard_command, ui_command


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_printed_dashboard_command_serves_the_study(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="ui-check", storage=storage, directions=["maximize", "maximize"])
    study.add_trial(optuna.trial.create_trial(
        params={"lam": 1.0}, distributions={"lam": optuna.distributions.FloatDistribution(0.05, 20, log=True)},
        values=[0.1, 0.5]))
    cmd = dashboard_command(storage)
    assert "not installed" not in cmd, cmd  # the [ui] extra is part of the test install
    argv = shlex.split(cmd)
    assert Path(argv[0]).is_file(), argv[0]
    port = _free_port()
    proc = subprocess.Popen(argv + ["--port", str(port), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        body = None
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as r:
                    body = json.loads(r.read())
                break
            except OSError:
                if proc.poll() is not None:
                    raise AssertionError(proc.stdout.read().decode())
                time.sleep(0.5)
        assert body is not None, "optuna-dashboard did not answer"
        assert [s["study_name"] for s in body["study_summaries"]] == ["ui-check"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_printed_mlflow_command_uses_the_venv_script(tmp_path):
    cmd = ui_command(f"sqlite:///{tmp_path}/mlflow.db")
    argv = shlex.split(cmd)
    assert Path(argv[0]).is_file() and argv[1] == "ui"
    assert argv[argv.index("--backend-store-uri") + 1] == f"sqlite:///{tmp_path}/mlflow.db"
    assert argv[argv.index("--default-artifact-root") + 1] == (tmp_path / "mlartifacts").as_uri()


def test_small_machines_get_one_ui_worker(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert shlex.split(ui_command(uri, cpus=2))[-2:] == ["--workers", "1"]
    assert "--workers" not in ui_command(uri, cpus=16)


def _study_runs(uri: str, name: str, n: int, status: str = "complete") -> str:
    """A study's parent run and ``n`` child runs as study.tracking writes them."""
    from mlflow.entities import Metric

    from study.tracking import mlflow_client, start_parent
    cl = mlflow_client(uri)
    parent = start_parent(uri, "vac-study", name, tags={"study.space": "cat_uvac",
                                                        "study.objectives": "val/silhouette_z:max,val/acc:max"},
                          params={})
    exp = cl.get_run(parent).info.experiment_id
    for t in range(n):
        rid = cl.create_run(exp, run_name=f"{name}-trial-{t}", tags={
            "mlflow.parentRunId": parent, "study.name": name, "trial.number": str(t),
            "trial.status": status}).info.run_id
        cl.log_batch(rid, metrics=[Metric("val/acc", 0.1 * (t + 1), 0, 1), Metric("val/silhouette_z", 0.05 * t, 0, 1)])
        cl.set_terminated(rid)
    return parent


def test_interrupted_runs_say_so_in_their_description(tmp_path):
    from study.tracking import NOTE_TAG, child_runs, interrupt_open_runs, mlflow_client
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    parent = _study_runs(uri, "cut", 1)
    cl = mlflow_client(uri)
    rid = child_runs(uri, parent)[0].info.run_id
    cl.update_run(rid, status="RUNNING")
    assert interrupt_open_runs(uri, parent) == 1
    run = cl.get_run(rid)
    assert run.info.status == "KILLED" and "--resume continues" in run.data.tags[NOTE_TAG]


def test_printed_mlflow_url_opens_the_study_on_its_runs(tmp_path):
    """The MLflow UI command and URL a study prints, served and rendered in headless Chromium:
    the page lists this study's trials only (another study's runs are in the same experiment),
    with its objectives as columns, in the model-training view (not the GenAI overview)."""
    import re

    from study.tracking import SHARED_VIEW_TAG, mlflow_client, ui_url
    from tests.test_analysis_mlflow_ui import find_chromium

    chromium = find_chromium()
    if chromium is None:
        pytest.skip("Chromium not found; .ci/run installs it (apt-get install -y chromium)")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    parent = _study_runs(uri, "ui-study", 3)
    _study_runs(uri, "other-study", 2)
    port = _free_port()
    argv = shlex.split(ui_command(uri))
    argv[argv.index("--port") + 1] = str(port)
    url = ui_url(uri, parent, base=f"http://127.0.0.1:{port}")
    assert "viewStateShareKey=" in url and "workflowType=machine_learning" in url
    exp = mlflow_client(uri).get_experiment_by_name("vac-study")
    view = json.loads(next(v for k, v in exp.tags.items() if k.startswith(SHARED_VIEW_TAG)))
    assert "ui-study" in view["searchFilter"] and view["selectedColumns"][:2] == [
        "metrics.`val/silhouette_z`", "metrics.`val/acc`"]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        browse = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  f"--user-data-dir={tmp_path / 'chrome'}", "--virtual-time-budget=20000", "--window-size=1400,1000"]
        dom = subprocess.run(browse + ["--dump-dom", url], capture_output=True, text=True, timeout=180).stdout
        keep = os.environ.get("ANALYSIS_SCREENSHOT_DIR")
        if keep:  # a copy for a human to look at
            subprocess.run(browse + [f"--screenshot={Path(keep) / 'mlflow_study_link.png'}", url],
                           capture_output=True, timeout=180)
    finally:
        server.terminate()
        server.wait(timeout=30)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))
    assert "3 matching runs" in text, text[:3000]
    assert all(f"ui-study-trial-{t}" in text for t in range(3)) and "other-study" not in text
    assert "val/acc" in text and "val/silhouette_z" in text  # the objectives are columns
    assert "Overview" not in text and "Detect Issues" not in text  # the GenAI pages
