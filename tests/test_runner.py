"""The runner: parameter validation before execution, skipping, dependency tracking, failures, forks."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from companion.backbone import plan, runner
from companion.backbone.fork import fork_notebook
from companion.backbone.params import ParameterError
from companion.backbone.runner import RunnerError, run_notebooks
from nbfixtures import write_smoke_notebook

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A throw-away project with two smoke notebooks and its own copy of the companion sources."""
    monkeypatch.setenv("PYTHONPATH", str(FIXTURES))
    monkeypatch.syspath_prepend(str(FIXTURES))
    pkg = tmp_path / "pkgcopy"
    shutil.copytree(plan.PKG_DIR, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(plan, "PKG_DIR", pkg)
    write_smoke_notebook(tmp_path / "notebooks" / "00_figs.ipynb", save_fig=True)
    write_smoke_notebook(tmp_path / "notebooks" / "01_plain.ipynb", save_fig=False)
    return tmp_path


def run(project, **kw):
    log = []
    res = run_notebooks("ci", root=project, log=log.append, **kw)
    return {r.notebook: r.status for r in res}, log


def test_runs_then_skips_then_reruns_only_what_a_module_change_touches(project):
    status, _ = run(project)
    assert status == {"00_figs.ipynb": "ran", "01_plain.ipynb": "ran"}
    executed = project / "build" / "executed" / "ci" / "00_figs.ipynb"
    meta = json.loads(executed.read_text())["metadata"]
    assert meta["companion"]["executed_profile"] == "ci" and meta["papermill"]["parameters"]["profile"] == "ci"

    status, _ = run(project)
    assert status == {"00_figs.ipynb": "skipped", "01_plain.ipynb": "skipped"}
    # Deciding to skip is cheap: it never imports torch (a fresh process, the same decision).
    probe = (f"import sys; sys.path.insert(0, {str(FIXTURES)!r}); from pathlib import Path; "
             "from companion.backbone import plan, runner; "
             f"plan.PKG_DIR = Path({str(plan.PKG_DIR)!r}); "
             f"res = runner.run_notebooks('ci', root=Path({str(project)!r}), log=lambda *_: None); "
             "print([r.status for r in res], 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['skipped', 'skipped'] False"

    # figures.py is imported by notebook 00 only (01 imports runtime, which does not import figures).
    fig_mod = plan.PKG_DIR / "backbone" / "figures.py"
    fig_mod.write_text(fig_mod.read_text() + "\n# touched\n")
    status, log = run(project)
    assert status == {"00_figs.ipynb": "ran", "01_plain.ipynb": "skipped"}
    assert any("companion.backbone.figures" in line for line in log)

    status, _ = run(project, force=True)
    assert set(status.values()) == {"ran"}


def test_parameter_change_reruns_and_unknown_parameter_fails_before_anything_runs(project):
    with pytest.raises(ParameterError, match="no_such_param"):
        run(project, overrides={"no_such_param": 1})
    assert not (project / "build" / "executed" / "ci").exists()
    with pytest.raises(ParameterError, match="n_points.*must be int"):
        run(project, overrides={"n_points": "five"})
    with pytest.raises(ParameterError, match="at least 2"):
        run(project, overrides={"n_points": 1})
    run(project)
    status, _ = run(project, overrides={"n_points": 7})
    assert set(status.values()) == {"ran"}
    side = json.loads((project / "build" / "figures" / "ci" / "00_line.json").read_text())
    assert side["data"]["ys"] == [2.0 * x for x in range(7)]


def test_failure_stops_the_run_shows_the_cell_and_keeps_earlier_results(project):
    run(project)
    out = project / "build" / "executed" / "ci"
    before = (out / "01_plain.ipynb").read_text()
    with pytest.raises(RunnerError) as e:
        run(project, overrides={"fail": True})
    msg = str(e.value)
    assert "00_figs.ipynb failed in cell" in msg and "planted failure" in msg and "raise RuntimeError" in msg
    assert (out / "00_figs.failed.ipynb").is_file()
    # The run stopped at 00: 01 was not re-executed, and the good executed copies are untouched.
    assert (out / "01_plain.ipynb").read_text() == before
    assert (out / "00_figs.ipynb").is_file()


def test_only_selects_by_number_and_glob(project):
    status, _ = run(project, only="01")
    assert status == {"01_plain.ipynb": "ran"}
    status, _ = run(project, only="*figs")
    assert status == {"00_figs.ipynb": "ran"}
    with pytest.raises(RunnerError, match="matches no notebook"):
        run(project, only="42")


def test_fork_records_lineage_and_runs_under_its_own_number(project):
    dest = fork_notebook("00", "my idea", root=project, profile="ci")
    assert dest.name == "02_my-idea.ipynb"
    nb = nbformat.read(dest, as_version=4)
    lineage = nb.metadata["companion"]["lineage"]
    assert lineage["parent"] == "00_figs.ipynb"
    assert lineage["parent_params"] == {"seed": 0, "n_points": 5, "slope": 2.0, "fail": False}
    assert "parent_commit" in lineage
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells)
    status, _ = run(project, only="02")
    assert status == {"02_my-idea.ipynb": "ran"}
    assert (project / "build" / "figures" / "ci" / "02_line.png").is_file()
    with pytest.raises(RunnerError, match="already exists"):
        fork_notebook("00", "My Idea", root=project)  # same slug under a new number would confuse readers
    assert fork_notebook("02", "second", root=project).name == "03_second.ipynb"


def test_cli_rejects_unknown_parameter_without_running(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "companion.backbone.cli", "figures", "--profile", "ci", "-p", "no_such_param=1"],
        capture_output=True, text=True, cwd=Path(__file__).parents[1],
    )
    assert proc.returncode == 2
    assert "no_such_param" in proc.stderr and "unknown parameter" in proc.stderr
    assert "running" not in proc.stdout
