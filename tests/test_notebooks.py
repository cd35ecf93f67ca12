"""Every notebook, end to end, on the `ci` profile, through the same runner `make figures` uses.

The executed copies and figures go to a temporary folder so the test always executes (it never trusts a
stamp from an earlier run); the organisms come from the test cache (build/cache), trained on first use.
"""
import json
import time
from pathlib import Path

import pytest

from companion.backbone import runner
from companion.backbone.figures import extract_plotted, replot

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = runner.discover(ROOT / "notebooks")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory, monkeypatch_module):
    out = tmp_path_factory.mktemp("ci-run")
    figs = out / "figures"
    monkeypatch_module.setattr(runner, "load_profile", _ci_with_figures_in(figs))
    t0 = time.time()
    results = runner.run_notebooks("ci", root=ROOT, build_dir=out / "executed")
    return results, out, figs, time.time() - t0


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def _ci_with_figures_in(figs: Path):
    """The ci profile with its figures redirected (the runner sets env for the kernels it starts)."""

    from companion.backbone.profiles import load_profile

    def load(name=None):
        prof = load_profile(name)
        return prof.model_copy(update={"env": {**prof.env, "COMPANION_FIGURES_DIR": str(figs)}})

    return load


@pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks yet")
def test_every_notebook_runs_on_ci_then_skips(ci_run):
    results, out, _figs, seconds = ci_run
    assert [r.notebook for r in results] == [p.name for p in NOTEBOOKS]
    assert all(r.status == "ran" for r in results)
    print(f"ci profile: {len(results)} notebooks in {seconds:.0f} s: "
          + ", ".join(f"{r.notebook} {r.seconds:.0f}s" for r in results))
    again = runner.run_notebooks("ci", root=ROOT, build_dir=out / "executed")
    assert all(r.status == "skipped" for r in again)


@pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks yet")
def test_every_figure_has_png_pdf_and_a_sidecar_that_replots_it(ci_run):
    _results, _out, figs, _s = ci_run
    sidecars = sorted(figs.glob("*.json"))
    assert sidecars, "the notebooks saved no figures"
    made_by = {json.loads(p.read_text())["notebook"] for p in sidecars}
    for nb in NOTEBOOKS:
        assert f"notebooks/{nb.name}" in made_by, f"{nb.name} saved no figure"
    for side_path in sidecars:
        side = json.loads(side_path.read_text())
        assert side_path.with_suffix(".png").stat().st_size > 0
        assert side_path.with_suffix(".pdf").read_bytes()[:4] == b"%PDF"
        assert side["profile"] == "ci" and side["fallback"] is True and side["parameters"] is not None
        again = extract_plotted(replot(side))
        assert [len(a["lines"]) + len(a["scatters"]) + len(a["bars"]) for a in again] == \
               [len(a["lines"]) + len(a["scatters"]) + len(a["bars"]) for a in side["plotted"]]
