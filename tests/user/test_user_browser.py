"""The notebooks in JupyterLab, in a real browser, as a researcher opens them after `make setup` and `make lab`.

One JupyterLab, started by ``make lab PROFILE=ci`` in a fresh clone of this checkout whose git filter is installed by
the Makefile's own ``git-filter`` recipe (what ``make setup`` runs); the notebooks' parameters cell reads
``COMPANION_PROFILE`` (``profile = None``), so they open on ``ci``.  Chromium is Debian's
package (``apt-get install chromium``; ``.ci/run`` installs it), driven by Playwright's Python package with
``executable_path`` (Playwright's own browser download is not reachable here).  The window is 1400 px wide with
JupyterLab's file browser open, as it opens by default.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent
CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "companion-test"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.system,  # a real browser: make test-system
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian's chromium is not installed: apt-get install chromium (.ci/run installs it)",
    ),
]


def _git(cwd, *args) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """(base URL, clone, figures folder) of `make lab` in a fresh clone."""
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True).returncode:
        pytest.skip("not a git checkout")
    tmp = tmp_path_factory.mktemp("lab")
    clone = tmp / "companion"
    _git(ROOT.parent, "clone", "-q", "--no-hardlinks", str(ROOT), str(clone))
    setup = subprocess.run(
        ["make", "--no-print-directory", "git-filter", f"VENV={VENV}"], cwd=clone, capture_output=True, text=True
    )
    assert setup.returncode == 0, setup.stderr
    assert _git(clone, "status", "--porcelain") == ""
    settings = tmp / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    # Render every cell (JupyterLab 4 only renders the cells in view by default), so the page holds all outputs.
    (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    env = {
        **os.environ,
        "COMPANION_PROFILE": "ci",
        "COMPANION_FIGURES_DIR": str(tmp / "figs"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings"),
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"),
    }  # no tabs restored from another session
    env.pop("MPLBACKEND", None)  # the tests' Agg; JupyterLab's kernels use the inline backend
    port = _free_port()
    # `make lab` itself (as root here: it must add --allow-root), on the venv set up already (-o: its setup stamp is
    # taken as up to date), with a fixed port and token and no browser of its own.
    args = f"--no-browser --port={port} --ServerApp.ip=127.0.0.1 --IdentityProvider.token={TOKEN}"
    proc = subprocess.Popen(
        [
            "make",
            "--no-print-directory",
            "-o",
            f"{VENV}/.companion-setup",
            "lab",
            f"VENV={VENV}",
            "PROFILE=ci",
            f"LAB_ARGS={args}",
        ],
        cwd=clone,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "lab.log").open("w"),
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=1)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp / "lab.log").read_text()
                time.sleep(0.3)
        yield url, clone, tmp / "figs"
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def _open(browser, url, notebook):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{url}/lab/tree/{notebook}?reset&token={TOKEN}")  # reset: no tabs of the other tests restored
    page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=60_000)
    # The kernel is ready when the status bar says so (clicking Run All before that runs nothing).
    page.wait_for_function("() => document.body.innerText.includes('(ipykernel) | Idle')", timeout=60_000)
    return page


def _run_all(page, timeout_ms=240_000):
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    page.wait_for_function(
        """() => { const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
                          .map(e => e.textContent.trim());
                   return p.length > 0 && p.every(t => /^\\[\\d+\\]:$/.test(t))
                          && document.body.innerText.includes('(ipykernel) | Idle'); }""",
        timeout=timeout_ms,
    )


def test_opening_and_saving_a_notebook_in_jupyterlab_leaves_the_tree_clean(lab, browser):
    """Issue 19: JupyterLab's save writes the kernel's display name and full language_info; the filter must put them
    back, or every figure saved afterwards records a dirty tree."""
    url, clone, _figs = lab
    path = clone / "notebooks" / "04_sycophancy_agreement.ipynb"
    committed = path.read_text()
    before = path.stat().st_mtime_ns
    page = _open(browser, url, path.name)
    try:
        # The kernel told JupyterLab its display name and language_info (what it writes into the notebook).
        assert "Python 3 (ipykernel)" in page.evaluate("() => document.body.innerText")
        page.locator(".jp-Notebook").first.click()
        page.keyboard.press("Control+s")
        deadline = time.monotonic() + 30
        while path.stat().st_mtime_ns == before:  # JupyterLab has written the file
            assert time.monotonic() < deadline, "JupyterLab did not save the notebook"
            time.sleep(0.2)
        time.sleep(1)  # the write is complete
    finally:
        page.close()
    assert path.read_text() == committed  # saved in the committed form: git has nothing to compare but sizes
    assert _git(clone, "status", "--porcelain") == ""
    assert _git(clone, "diff", "--stat") == ""


def test_a_notebook_run_in_jupyterlab_shows_every_figure_as_an_image_and_no_error(lab, browser):
    url, clone, figs = lab
    page = _open(browser, url, "02_shrinkage_gamma.ipynb")
    try:
        _run_all(page)
        seen = page.evaluate("""() => ({
            images: [...document.querySelectorAll('.jp-OutputArea-output img')]
                      .map(i => ({complete: i.complete, width: i.naturalWidth, height: i.naturalHeight})),
            red: [...document.querySelectorAll('[data-mime-type="application/vnd.jupyter.stderr"],'
                                               + '[data-mime-type="application/vnd.jupyter.error"]')]
                   .map(e => e.textContent.slice(0, 300)),
            text: [...document.querySelectorAll('.jp-OutputArea-output')].map(e => e.textContent).join('\\n')})""")
    finally:
        page.close()
    saved = sorted(figs.glob("02_*.json"))
    assert len(saved) == 4, [p.name for p in saved]  # gamma_vs_l0(_all), shrinkage_toy, gamma_asymmetry
    assert len(seen["images"]) == len(saved), seen["images"]
    assert all(i["complete"] and i["width"] > 200 and i["height"] > 100 for i in seen["images"]), seen["images"]
    assert seen["red"] == [], seen["red"]
    assert "Figure size" not in seen["text"] and "Profile 'ci'" in seen["text"]
    # Notebooks opened, saved and autosaved with outputs in Lab are no change to the code: the figures say so.
    head = _git(clone, "rev-parse", "HEAD").strip()
    for side in saved:
        assert json.loads(side.read_text())["git"] == {"commit": head, "dirty": False}, side.name


TABLES = """import numpy as np
from companion.backbone.runtime import start
from companion.sycophancy.params import SycophancyParams
from companion.sycophancy.scoring import ScoredItems
from companion.sycophancy.stats import agreement_stats, stats_frame, wide_table

P = start(SycophancyParams, profile, {})
rng, stats = np.random.default_rng(0), []
for model in ("syco-p50-small#0", "syco-p90-small#0", "syco-p50-medium#0", "syco-p90-medium#0"):
    for ds in P.datasets:
        for t in P.templates:
            k = 3 if ds == "philpapers2020" else 2
            scored = ScoredItems(model, ds, t, np.log(rng.dirichlet(np.ones(k), size=40)), rng.integers(0, k, 40),
                                 (None,) * 40, np.arange(40))
            stats += agreement_stats(scored, n_boot=20)
frame = stats_frame(stats, {})"""


def test_notebook_04s_parameter_and_statistics_tables_fit_a_1400_px_window(lab, browser):
    """Issue 19: both tables ran off the right edge of the output at a 1400-px window (the parameters' long values,
    the statistics' unbreakable column labels).  The same library calls as notebook 04's, on made-up statistics."""
    url, clone, _figs = lab
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell("profile = 'ci'"),
        nbformat.v4.new_code_cell(TABLES),
        nbformat.v4.new_code_cell("P"),
        nbformat.v4.new_code_cell("wide_table(frame).round(3)"),
    ]
    nbformat.write(nb, clone / "notebooks" / "tables.ipynb")
    page = _open(browser, url, "tables.ipynb")
    try:
        _run_all(page)
        tables = page.evaluate("""() => [...document.querySelectorAll('.jp-OutputArea-output table')].map(t => {
            const out = t.closest('.jp-OutputArea-output');
            return {right: t.getBoundingClientRect().right, out: out.getBoundingClientRect().right,
                    scroll: out.scrollWidth - out.clientWidth, text: t.innerText.slice(0, 40)}; })""")
    finally:
        page.close()
        (clone / "notebooks" / "tables.ipynb").unlink()
    assert len(tables) == 2, tables
    for t in tables:
        assert t["right"] <= t["out"] + 0.5 and t["scroll"] <= 0, t  # inside the output, nothing to scroll to
