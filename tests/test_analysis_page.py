"""report.html in headless Chromium: the panels render (plotly.js from the report folder, no
network), the grid fits the window (no horizontal scrollbar, narrow or wide: more than one
column when there is room), and the page is small beside its one plotly.min.js."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from analysis.report import build_report
from tests.test_analysis_mlflow_ui import find_chromium
from tests.test_analysis_report import log_study

PROBE = """<script>window.addEventListener("load", () => setTimeout(() => {
  const d = document.documentElement, cells = [...document.querySelectorAll("div.cell")];
  const lefts = new Set(cells.map(c => Math.round(c.getBoundingClientRect().left)));
  document.body.setAttribute("data-probe", `sw=${d.scrollWidth} cw=${d.clientWidth} plots=${
    document.querySelectorAll(".js-plotly-plot .main-svg").length} columns=${lefts.size}`);
}, 1500));</script></body>"""


def _probe(chromium, html, width, tmp_path) -> dict:
    out = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          "--disable-background-networking", f"--user-data-dir={tmp_path / f'chrome-{width}'}",
                          "--virtual-time-budget=15000", f"--window-size={width},900", "--dump-dom", html.as_uri()],
                         capture_output=True, text=True, timeout=180).stdout
    m = re.search(r'data-probe="sw=(\d+) cw=(\d+) plots=(\d+) columns=(\d+)"', out)
    assert m, out[-2000:]
    return dict(zip(("sw", "cw", "plots", "columns"), map(int, m.groups())))


def test_report_page_fits_the_window_and_renders(tmp_path):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("Chromium not found; .ci/run installs it (apt-get install -y chromium)")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    log_study(uri, "pg", "cat_uvac", 12, seed=8, baselines={"baseline/kmeans_val_acc": 0.5})
    out = tmp_path / "report"
    build_report(["pg"], tracking_uri=uri, out_dir=out, log_mlflow=False)
    page = out / "report.html"
    assert page.stat().st_size < 400_000 and (out / "plotly.min.js").is_file()
    probed = tmp_path / "probed"
    shutil.copytree(out, probed)
    html = probed / "report.html"
    html.write_text(html.read_text().replace("</body>", PROBE))
    narrow, wide = _probe(chromium, html, 700, tmp_path), _probe(chromium, html, 1600, tmp_path)
    for p in (narrow, wide):
        assert p["sw"] <= p["cw"], p   # no horizontal scrollbar
        assert p["plots"] >= 7, p      # every panel drawn by the plotly.min.js beside the page
    assert narrow["columns"] == 1 and wide["columns"] >= 2, (narrow, wide)
    # without plotly.min.js beside it the page says what is missing
    (probed / "plotly.min.js").unlink()
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'chrome-missing'}", "--virtual-time-budget=5000",
                          "--dump-dom", html.as_uri()], capture_output=True, text=True, timeout=180).stdout
    assert re.search(r'<p id="noplotly">', dom), dom[:1000]
