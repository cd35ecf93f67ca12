"""A notebook in JupyterLab, in a real browser, as a researcher opens it: every figure is an image, nothing is red.

JupyterLab is started from the venv on a copy of notebook 02 (so autosave never writes into notebooks/), with
``COMPANION_PROFILE=ci`` in its environment — what ``make lab PROFILE=ci`` does; the parameters cell's
``profile = None`` picks it up.  Chromium is Debian's package (``apt-get install chromium``; ``.ci/run`` installs
it), driven by Playwright's Python package with ``executable_path`` (Playwright's own browser download is not
reachable here).  The test clicks Run > Run All Cells, waits for every cell, and reads the page.
"""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOK = "02_shrinkage_gamma.ipynb"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed: apt-get install chromium "
                                                     "(.ci/run installs it)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    nb_dir, settings = tmp_path / "nb", tmp_path / "settings" / "@jupyterlab" / "notebook-extension"
    nb_dir.mkdir()
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, nb_dir)
    settings.mkdir(parents=True)
    # Render every cell (JupyterLab 4 only renders the cells in view by default), so the page holds all outputs.
    (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    env = {**os.environ, "COMPANION_PROFILE": "ci", "COMPANION_FIGURES_DIR": str(tmp_path / "figs"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    env.pop("MPLBACKEND", None)  # the tests' Agg; JupyterLab's kernels use the inline backend
    port, token = _free_port(), "companion-test"
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", "--allow-root", f"--port={port}",
         "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={nb_dir}"],
        env=env, stdout=subprocess.DEVNULL, stderr=(tmp_path / "lab.log").open("w"), start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=1)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "lab.log").read_text()
                time.sleep(0.3)
        yield f"{url}/lab/tree/{NOTEBOOK}?token={token}", tmp_path / "figs"
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)


def test_a_notebook_run_in_jupyterlab_shows_every_figure_as_an_image_and_no_error(lab):
    sync_api = pytest.importorskip("playwright.sync_api")
    url, figs = lab
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=60_000)
            # The kernel is ready when the status bar says so (clicking Run All before that runs nothing).
            page.wait_for_function("() => document.body.innerText.includes('(ipykernel) | Idle')", timeout=60_000)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            page.wait_for_function(
                """() => { const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
                                  .map(e => e.textContent.trim());
                           return p.length > 0 && p.every(t => /^\\[\\d+\\]:$/.test(t))
                                  && document.body.innerText.includes('(ipykernel) | Idle'); }""",
                timeout=240_000)
            seen = page.evaluate("""() => ({
                images: [...document.querySelectorAll('.jp-OutputArea-output img')]
                          .map(i => ({complete: i.complete, width: i.naturalWidth, height: i.naturalHeight})),
                red: [...document.querySelectorAll('[data-mime-type="application/vnd.jupyter.stderr"],'
                                                   + '[data-mime-type="application/vnd.jupyter.error"]')]
                       .map(e => e.textContent.slice(0, 300)),
                text: [...document.querySelectorAll('.jp-OutputArea-output')].map(e => e.textContent).join('\\n')})""")
        finally:
            browser.close()
    saved = sorted(figs.glob("*.json"))
    assert len(saved) == 3, [p.name for p in saved]  # gamma_vs_l0, shrinkage_toy, gamma_asymmetry
    assert len(seen["images"]) == len(saved), seen["images"]
    assert all(i["complete"] and i["width"] > 200 and i["height"] > 100 for i in seen["images"]), seen["images"]
    assert seen["red"] == [], seen["red"]
    assert "Figure size" not in seen["text"] and "Profile 'ci'" in seen["text"]
