"""save_figure: image files, provenance sidecar, fallback stamp, re-plotting, figure regression."""

import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from companion.backbone import runtime  # noqa: E402
from companion.backbone.figure_check import compare_sidecars, flatten, format_table  # noqa: E402
from companion.backbone.figures import extract_plotted, replot, save_figure  # noqa: E402
from companion.backbone.params import NotebookParams  # noqa: E402


@pytest.fixture
def in_project(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPANION_ROOT", str(tmp_path))
    monkeypatch.setenv("COMPANION_NOTEBOOK", "notebooks/07_demo.ipynb")
    monkeypatch.setattr(runtime, "_CURRENT", None)
    return tmp_path


def demo_figure():
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3))
    a.plot([1, 10, 100], [0.5, 0.7, 0.9], "o-", label="gated")
    a.scatter([2, 20], [0.4, 0.6], label="baseline")
    a.errorbar([3], [0.5], yerr=[0.1], fmt="s", label="ci")
    a.axhline(0.5, linestyle="--", label="chance")
    a.set_xscale("log")
    a.set_xlabel("L0")
    b.bar(["x", "y"], [3.0, 4.0], label="counts")
    b.set_title("bars")
    return fig


def test_files_sidecar_and_stamp(in_project):
    runtime.start(NotebookParams, "ci", {"seed": 3})
    fig = demo_figure()
    saved = save_figure(fig, "demo", data={"auroc": np.float32(0.75), "xs": np.arange(3)}, tolerance={"atol": 0.01})
    assert saved.png == in_project / "build/figures/ci/07_demo.png"
    assert saved.png.stat().st_size > 0 and saved.pdf.read_bytes().startswith(b"%PDF")
    side = json.loads(saved.sidecar.read_text())
    assert side["notebook"] == "notebooks/07_demo.ipynb" and side["profile"] == "ci" and side["fallback"] is True
    assert side["parameters"] == {"seed": 3}
    assert side["data"] == {"auroc": 0.75, "xs": [0, 1, 2]}
    assert side["tolerance"]["atol"] == 0.01 and "rtol" in side["tolerance"]
    assert set(side["git"]) == {"commit", "dirty"} and side["packages"]["torch"]
    assert side["numerics"]["cpu_capability"] == "AVX2" and side["numerics"]["mkl_branch"] == "COMPATIBLE"
    assert side["wall_time_s"] >= 0 and "inputs" in side
    assert any("FALLBACK" in t.get_text() and "'ci'" in t.get_text() for t in fig.texts)
    save_figure(fig, "demo")
    assert sum("FALLBACK" in t.get_text() for t in fig.texts) == 1  # stamped once, however often saved


def test_paper_profile_is_not_stamped(in_project):
    runtime.start(NotebookParams, "paper")
    fig = demo_figure()
    save_figure(fig, "p")
    assert not any("FALLBACK" in t.get_text() for t in fig.texts)
    assert json.loads((in_project / "figures/paper/07_p.json").read_text())["fallback"] is False


def test_sidecar_replots_the_figure(in_project):
    runtime.start(NotebookParams, "ci")
    fig = demo_figure()
    saved = save_figure(fig, "re")
    side = json.loads(saved.sidecar.read_text())
    lines = side["plotted"][0]["lines"]
    assert lines[0]["x"] == [1, 10, 100] and lines[0]["y"] == [0.5, 0.7, 0.9] and lines[0]["label"] == "gated"
    assert side["plotted"][0]["scatters"][0]["x"] == [2, 20]
    assert side["plotted"][1]["bars"][0]["height"] == [3.0, 4.0]
    again = extract_plotted(replot(saved.sidecar))
    for orig, new in zip(side["plotted"], again, strict=True):
        for kind in ("lines", "scatters", "bars"):
            assert [(d["x"], d.get("y"), d.get("height")) for d in orig[kind]] == [
                (d["x"], d.get("y"), d.get("height")) for d in new[kind]
            ]
        assert orig["xscale"] == new["xscale"] and orig["xlabel"] == new["xlabel"]


def test_non_finite_points_are_written_as_text_and_replotted_as_numbers(in_project):
    runtime.start(NotebookParams, "ci")
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2, 3], [0.5, np.nan, np.inf, -np.inf], "o-", label="layer sweep")  # e.g. a NaN at layer 0
    saved = save_figure(fig, "nonfinite")
    line = json.loads(saved.sidecar.read_text())["plotted"][0]["lines"][0]
    assert line["y"] == [0.5, "nan", "inf", "-inf"]
    ydata = replot(saved.sidecar).axes[0].lines[0].get_ydata()
    assert ydata[0] == 0.5 and np.isnan(ydata[1]) and list(ydata[2:]) == [np.inf, -np.inf]
    assert extract_plotted(replot(saved.sidecar))[0]["lines"][0]["y"] == line["y"]


def test_figure_name_must_be_a_plain_word(in_project):
    runtime.start(NotebookParams, "ci")
    with pytest.raises(ValueError, match="figure name"):
        save_figure(demo_figure(), "../escape")


def test_compare_sidecars_tolerances():
    old = {
        "figure": "01_x",
        "tolerance": {"rtol": 0.0, "atol": 0.01, "keys": {"loose/*": {"atol": 0.5}}},
        "data": {"a": 1.0, "b": [1.0, 2.0], "loose": {"c": 3.0}, "label": "gated"},
    }
    same = {"figure": "01_x", "data": {"a": 1.005, "b": [1.0, 2.0], "loose": {"c": 3.4}, "label": "gated"}}
    assert compare_sidecars(old, same) == []
    moved = {"figure": "01_x", "data": {"a": 1.02, "b": [1.0], "loose": {"c": 4.0}, "label": "baseline", "new": 1}}
    diffs = {d.key: d for d in compare_sidecars(old, moved)}
    assert set(diffs) == {"a", "b/1", "loose/c", "label", "new"}
    assert diffs["a"].delta == pytest.approx(0.02) and diffs["a"].allowed == pytest.approx(0.01)
    table = format_table(list(diffs.values()), ["01_gone"], [], 1)
    assert "loose/c" in table and "missing: 01_gone" in table and "1 moved beyond tolerance" in table
    assert flatten({"a": {"b": [1, {"c": 2}]}}) == {"a/b/0": 1, "a/b/1/c": 2}


def test_the_sidecar_vouches_for_its_images_and_no_temporary_is_left(in_project):
    from companion.backbone.figures import figure_is_complete

    runtime.start(NotebookParams, "ci")
    saved = save_figure(demo_figure(), "set")
    side = json.loads(saved.sidecar.read_text())
    assert set(side["files"]) == {"png", "pdf"} and figure_is_complete(saved.sidecar)
    assert sorted(p.name for p in saved.png.parent.iterdir()) == ["07_set.json", "07_set.pdf", "07_set.png"]
    png = saved.png.read_bytes()
    saved.png.write_bytes(png[:-10])  # an image from some other write than the one the sidecar records
    assert not figure_is_complete(saved.sidecar)
    saved.png.write_bytes(png)
    assert figure_is_complete(saved.sidecar)
    saved.pdf.unlink()
    assert not figure_is_complete(saved.sidecar)


def test_a_failed_render_leaves_the_previous_figure_whole_and_no_debris(in_project):
    from companion.backbone.figures import figure_is_complete

    runtime.start(NotebookParams, "ci")
    saved = save_figure(demo_figure(), "keep")
    before = {p.name: p.read_bytes() for p in saved.png.parent.iterdir()}

    class Boom(matplotlib.artist.Artist):
        def draw(self, renderer):
            raise KeyboardInterrupt  # what Ctrl-C in the middle of rendering looks like

    fig = demo_figure()
    fig.add_artist(Boom())
    with pytest.raises(KeyboardInterrupt):
        save_figure(fig, "keep")
    assert {p.name: p.read_bytes() for p in saved.png.parent.iterdir()} == before
    assert figure_is_complete(saved.sidecar)


def test_stale_temporaries_of_dead_writers_are_swept_and_live_ones_kept(tmp_path):
    import subprocess
    import sys

    from companion.backbone.atomic import is_temporary, remove_stale_temporaries, temporary_beside, writer_pid

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".01_x.tmp-{dead_pid}-abcd.png"
    stale.write_bytes(b"")
    with temporary_beside(tmp_path / "01_y.png") as mine:
        assert is_temporary(mine) and writer_pid(mine) == os.getpid()
        mine.write_bytes(b"half")
    assert not mine.exists()  # a writer removes its own temporary however it exits
    other = tmp_path / f".01_z.tmp-{os.getppid()}-efgh.pdf"  # a live writer elsewhere (our parent process)
    other.write_bytes(b"")
    gone = remove_stale_temporaries(tmp_path)
    assert gone == [stale] and not stale.exists() and other.exists()


def test_numbers_of_a_seed_summary_are_judged_against_the_spread_across_seeds():
    from companion.backbone.figure_check import seed_summary

    s = seed_summary([0.60, 0.70, 0.80])
    assert s == {"per_seed": [0.6, 0.7, 0.8], "mean": pytest.approx(0.7), "std": pytest.approx(0.1), "n": 3}
    assert seed_summary([0.4])["std"] == 0.0
    old = {
        "figure": "03_seed_spread",
        "tolerance": {"rtol": 0.0, "atol": 1e-6},
        "data": {"auroc": {"helpful": s, "solo": seed_summary([0.5])}, "fixed": 1.0},
    }
    fresh = {
        "figure": "03_seed_spread",
        "data": {
            "auroc": {
                "helpful": {"per_seed": [0.55, 0.72, 0.95], "mean": 0.74, "std": 0.2, "n": 3},
                "solo": {"per_seed": [0.52], "mean": 0.52, "std": 0.0, "n": 1},
            },
            "fixed": 1.1,
        },
    }
    d = {x.key: x for x in compare_sidecars(old, fresh)}
    # Inside [min - std, max + std] = [0.5, 0.9]: reseeding explains it.  Outside: it moved.
    assert d["auroc/helpful/per_seed/0"].within_seed_spread and d["auroc/helpful/per_seed/1"].within_seed_spread
    assert not d["auroc/helpful/per_seed/2"].within_seed_spread
    # The mean: within 2·std·sqrt(2/n) = 0.163; the spread: at most 3x.  One seed gives no spread to judge by.
    assert d["auroc/helpful/mean"].within_seed_spread and d["auroc/helpful/std"].within_seed_spread
    assert not d["auroc/solo/per_seed/0"].within_seed_spread and not d["auroc/solo/mean"].within_seed_spread
    assert not d["fixed"].within_seed_spread
    table = format_table(list(d.values()), [], [], 1)
    assert "within seed spread" in table and "1 moved beyond tolerance" in table
    only_spread = [x for x in d.values() if x.within_seed_spread]
    assert "0 moved beyond tolerance, 1 within seed spread only" in format_table(only_spread, [], [], 1)


def test_figures_are_readable_by_whoever_the_umask_lets_read_them(in_project):
    import stat

    runtime.start(NotebookParams, "ci")
    old = os.umask(0o002)
    try:
        saved = save_figure(demo_figure(), "shared")
    finally:
        os.umask(old)
    for f in (saved.png, saved.pdf, saved.sidecar):
        assert stat.S_IMODE(f.stat().st_mode) == 0o664, f.name  # not mkstemp's 0600


def test_the_stamp_sits_below_a_legend_under_the_axes_of_a_constrained_layout(in_project):
    """Issue 19: the stamp covered a legend drawn below the axes; it must cover nothing the figure draws."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    runtime.start(NotebookParams, "ci")
    fig = Figure(figsize=(5.6, 4.0), layout="constrained")
    ax = fig.subplots()
    for i in range(4):
        ax.plot([0, 1], [i, i + 1], label=f"detector {i} AUROC 0.{i}")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    save_figure(fig, "roc")
    renderer = FigureCanvasAgg(fig).get_renderer()
    stamp = next(t for t in fig.texts if t.get_gid() == "companion-profile-stamp")
    box = stamp.get_window_extent(renderer)
    assert not box.overlaps(ax.get_legend().get_window_extent(renderer))
    assert not box.overlaps(ax.get_tightbbox(renderer))
