"""Every notebook, end to end, on the `ci` profile, through the same runner `make figures` uses (the session's
``ci_run``, tests/ci_run.py); the executed copies are read as a person would see them: one image per saved figure,
nothing in red.
"""

import json
import re
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from companion.backbone import runner
from companion.backbone.figures import extract_plotted, figure_is_complete, replot

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = runner.discover(ROOT / "notebooks")
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ci_run")]


@pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks yet")
def test_every_notebook_runs_on_ci_then_skips(ci_run):
    results = ci_run.results
    assert [r.notebook for r in results] == [p.name for p in NOTEBOOKS]
    assert all(r.status == "ran" for r in results)
    print(
        f"ci profile: {len(results)} notebooks in {ci_run.seconds:.0f} s: "
        + ", ".join(f"{r.notebook} {r.seconds:.0f}s" for r in results)
    )
    assert all(r.status == "skipped" for r in ci_run.again())


@pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks yet")
def test_every_figure_has_png_pdf_and_a_sidecar_that_replots_it(ci_run):
    figs = ci_run.figs
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
        fig = replot(side)
        again = extract_plotted(fig)
        plt.close(fig)
        assert [len(a["lines"]) + len(a["scatters"]) + len(a["bars"]) for a in again] == [
            len(a["lines"]) + len(a["scatters"]) + len(a["bars"]) for a in side["plotted"]
        ]


#: Lines a notebook may print on stderr: progress bars (text bars of tqdm), nothing else.
# Progress bars, blank lines, and the cache's one line when another process (here: another test worker) is building
# the entry this notebook needs: it names the entry, the builder and the lock, so a reader knows why it waits.
STDERR_ALLOWED = re.compile(
    r"^[^\n]*\d+%\|[^\n]*\|[^\n]*$|^\s*$|^companion: waiting for the [\w-]+ cache entry \w+, being built by pid \d+ "
)
#: What libraries print on their own, on stdout or stderr, that a reader should never see.
LIBRARY_CHATTER = ("Moving model to device", "Loading weights", "Writing model shards", "TqdmWarning")


@pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks yet")
def test_executed_copies_show_one_image_per_saved_figure_and_nothing_in_red(ci_run):
    out, figs = ci_run.out, ci_run.figs
    for nb_path in NOTEBOOKS:
        executed = json.loads((out / "executed" / "ci" / nb_path.name).read_text())
        stamp = json.loads((out / "executed" / "ci" / f"{nb_path.stem}.stamp.json").read_text())
        saved = stamp["figures"]
        assert saved and all(figure_is_complete(figs / f"{stem}.json") for stem in saved), nb_path.name
        images, bad = 0, []
        for i, cell in enumerate(executed["cells"]):
            for o in cell.get("outputs", []):
                data = o.get("data", {})
                if "image/png" in data:
                    images += 1
                    if "save_figure(" not in "".join(cell["source"]):
                        bad.append(f"cell {i}: an image not from save_figure")
                if "application/vnd.jupyter.widget-view+json" in data:
                    bad.append(f"cell {i}: a widget, which an executed copy cannot show")
                if "<Figure size" in "".join(data.get("text/plain", "")):
                    bad.append(f"cell {i}: a figure shown as text")
                if o.get("output_type") == "error":
                    bad.append(f"cell {i}: error {o.get('ename')}")
                if o.get("name") == "stderr":
                    bad += [
                        f"cell {i}: stderr {line!r}"
                        for line in "".join(o["text"]).splitlines()
                        if not STDERR_ALLOWED.match(line)
                    ]
                chatter = [c for c in LIBRARY_CHATTER if c in "".join(o.get("text", ""))]
                bad += [f"cell {i}: library chatter {c!r}" for c in chatter]
                # Progress is a few whole lines (issue 19: 14 KB of bars redrawn with \r and cursor-up escapes).
                if o.get("output_type") == "stream" and any(c in "".join(o["text"]) for c in ("\r", "\x1b[")):
                    bad.append(f"cell {i}: a bar redrawn in place ({o['name']}): {''.join(o['text'])[:80]!r}")
        assert images == len(saved), f"{nb_path.name}: {images} images for {len(saved)} saved figures"
        assert not bad, f"{nb_path.name}: " + "; ".join(bad)


@pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks yet")
def test_every_sidecar_of_the_run_records_one_git_state_read_before_it(ci_run):
    figs, git_before = ci_run.figs, ci_run.git_before
    states = {json.dumps(json.loads(p.read_text())["git"], sort_keys=True) for p in figs.glob("*.json")}
    assert states == {json.dumps(git_before, sort_keys=True)}
    assert git_before["commit"] is not None and git_before["dirty"] is not None
