"""The report through a REAL ``mlflow server`` on 127.0.0.1: runs, pareto tags and report
artifacts served by its REST API, and a headless Chromium screenshot of the study's run
page (skipped, with the reason, where no Chromium is installed)."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from analysis.report import build_report
from tests.test_analysis_report import log_study

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium():
    env = os.environ.get("CHROMIUM")
    if env and Path(env).exists():
        return env
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


def _post(url: str, body: dict, timeout: float = 30):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


@pytest.fixture()
def mlflow_server(tmp_path):
    port = _free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow_bin) if mlflow_bin.exists() else sys.executable,
           *([] if mlflow_bin.exists() else ["-m", "mlflow"]),
           "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
           "--artifacts-destination", (tmp_path / "served-artifacts").as_uri()]
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            if _get(url + "/health", timeout=2)[0] == 200:
                break
        except Exception:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail("mlflow server did not start:\n" + (tmp_path / "server.log").read_text()[-3000:])
        time.sleep(0.5)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_report_served_by_mlflow_server_and_ui_screenshot(tmp_path, mlflow_server):
    url = mlflow_server
    parent, ids = log_study(url, "ui-study", "cat_uvac", 10, seed=7)
    res = build_report(["ui-study"], tracking_uri=url, out_dir=tmp_path / "report")
    front = set(res.studies["ui-study"].front_run_ids)
    key = res.studies["ui-study"].key
    assert front and key == "silhouette_z-max__acc-max"

    # runs and pareto tags through the REST API
    exps = _post(url + "/api/2.0/mlflow/experiments/search", {"max_results": 100})["experiments"]
    exp_id = next(e["experiment_id"] for e in exps if e["name"] == "exp")
    found = _post(url + "/api/2.0/mlflow/runs/search",
                  {"experiment_ids": [exp_id], "filter": f"tags.`pareto.{key}` = 'true'", "max_results": 1000})
    assert {r["info"]["run_id"] for r in found["runs"]} == front
    children = _post(url + "/api/2.0/mlflow/runs/search",
                     {"experiment_ids": [exp_id], "filter": f"tags.mlflow.parentRunId = '{parent}'",
                      "max_results": 1000})
    assert {r["info"]["run_id"] for r in children["runs"]} == set(ids)

    # the report artifacts are listed and downloadable through the server
    q = urllib.parse.urlencode({"run_id": parent, "path": f"pareto_report/{key}"})
    _, body = _get(f"{url}/api/2.0/mlflow/artifacts/list?{q}")
    listed = {f["path"] for f in json.loads(body)["files"]}
    for name in ("report.html", "pareto_runs.csv", "pareto_runs.md", "pareto_objectives.png", "hypervolume.png"):
        assert f"pareto_report/{key}/{name}" in listed
    q = urllib.parse.urlencode({"run_uuid": parent, "path": f"pareto_report/{key}/report.html"})
    status, html = _get(f"{url}/get-artifact?{q}")
    assert status == 200
    html = html.decode()
    assert all(rid in html for rid in front)
    q = urllib.parse.urlencode({"run_uuid": parent, "path": f"pareto_report/{key}/pareto_runs.csv"})
    assert all(rid in _get(f"{url}/get-artifact?{q}")[1].decode() for rid in front)

    # the UI itself: headless Chromium screenshot of the study's run page
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("Chromium not found (looked for CHROMIUM env, " + ", ".join(CHROMIUM_NAMES)
                    + "); install it, e.g. apt-get install -y chromium, to check the UI screenshot")
    shot = tmp_path / "run_page.png"
    page = f"{url}/#/experiments/{exp_id}/runs/{parent}"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'chrome-profile'}",
           "--virtual-time-budget=20000", f"--screenshot={shot}", "--window-size=1400,1000", page]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert shot.exists(), f"no screenshot (rc {r.returncode}): {r.stderr[-2000:]}"
    assert shot.stat().st_size > 20_000
    from PIL import Image
    img = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert img.shape == (1000, 1400)
    # a rendered page, not a blank one: many distinct grey levels and real contrast
    assert img.std() > 10 and len(np.unique(img)) > 50
    # keep a copy for a human to look at
    keep = os.environ.get("ANALYSIS_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "mlflow_run_page.png")
