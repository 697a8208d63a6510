"""The commands a finished study prints to open its UIs work from the project's venv:
optuna-dashboard (the ``[ui]`` extra) serves the study, and the MLflow command names the
venv's own script."""
from __future__ import annotations

import json
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
    study.add_trial(optuna.trial.create_trial(params={"lam": 1.0},
                                              distributions={"lam": optuna.distributions.FloatDistribution(0.05, 20, log=True)},
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


def test_printed_mlflow_url_opens_the_study_on_its_runs(tmp_path):
    """The MLflow UI command and URL a study prints, served and rendered in headless Chromium:
    the page lists the study's run, in the model-training view (not the GenAI overview)."""
    import re

    from study.tracking import start_parent, ui_url
    from tests.test_analysis_mlflow_ui import find_chromium

    chromium = find_chromium()
    if chromium is None:
        pytest.skip("Chromium not found; .ci/run installs it (apt-get install -y chromium)")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    parent = start_parent(uri, "vac-study", "ui-study", tags={"study.space": "kmeans"}, params={})
    port = _free_port()
    argv = shlex.split(ui_command(uri))
    argv[argv.index("--port") + 1] = str(port)
    url = ui_url(uri, parent, base=f"http://127.0.0.1:{port}")
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                              f"--user-data-dir={tmp_path / 'chrome'}", "--virtual-time-budget=20000",
                              "--dump-dom", url], capture_output=True, text=True, timeout=180).stdout
    finally:
        server.terminate()
        server.wait(timeout=30)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))
    assert "ui-study" in text and "matching run" in text, text[:2000]
    assert "Overview" not in text and "Detect Issues" not in text  # the GenAI pages
