"""The runner: parameter validation before execution, skipping, dependency tracking, failures, forks."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from companion.backbone import manifest, plan
from companion.backbone.fork import fork_notebook
from companion.backbone.params import ParameterError
from companion.backbone.runner import RunnerError, run_notebooks
from nbfixtures import write_smoke_notebook

FIXTURES = Path(__file__).parents[1] / "fixtures"


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A throw-away project with two smoke notebooks and its own copy of the companion sources."""
    monkeypatch.setenv("PYTHONPATH", str(FIXTURES))
    monkeypatch.syspath_prepend(str(FIXTURES))
    pkg = tmp_path / "pkgcopy"
    shutil.copytree(manifest.PKG_DIR, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(manifest, "PKG_DIR", pkg)
    write_smoke_notebook(tmp_path / "notebooks" / "00_figs.ipynb", save_fig=True)
    write_smoke_notebook(tmp_path / "notebooks" / "01_plain.ipynb", save_fig=False)
    return tmp_path


def run(project, **kw):
    log = []
    res = run_notebooks("ci", root=project, log=log.append, **kw)
    return {r.notebook: r.status for r in res}, log


@pytest.mark.slow  # executes notebooks
def test_runs_then_skips_then_reruns_only_what_a_module_change_touches(project):
    status, _ = run(project)
    assert status == {"00_figs.ipynb": "ran", "01_plain.ipynb": "ran"}
    executed = project / "build" / "executed" / "ci" / "00_figs.ipynb"
    meta = json.loads(executed.read_text())["metadata"]
    assert meta["companion"]["executed_profile"] == "ci" and meta["papermill"]["parameters"]["profile"] == "ci"
    # Progress under the runner is a text bar on stdout, not a widget the executed copy cannot show, nor red.
    outputs = [o for c in json.loads(executed.read_text())["cells"] for o in c.get("outputs", [])]
    bars = [o for o in outputs if "smoke progress" in "".join(o.get("text", ""))]
    assert len(bars) == 1 and bars[0]["name"] == "stdout" and "100%" in "".join(bars[0]["text"])
    assert not any("widget" in k for o in outputs for k in o.get("data", {}))
    assert not any(o.get("name") == "stderr" for o in outputs)

    status, _ = run(project)
    assert status == {"00_figs.ipynb": "skipped", "01_plain.ipynb": "skipped"}
    # Deciding to skip is cheap: it never imports torch (a fresh process, the same decision).
    probe = (
        f"import sys; sys.path.insert(0, {str(FIXTURES)!r}); from pathlib import Path; "
        "from companion.backbone import manifest, runner; "
        f"manifest.PKG_DIR = Path({str(manifest.PKG_DIR)!r}); "
        f"res = runner.run_notebooks('ci', root=Path({str(project)!r}), log=lambda *_: None); "
        "print([r.status for r in res], 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['skipped', 'skipped'] False"

    # A figure that is no longer the one the last run made (edited, deleted) makes its notebook run again.
    (project / "build" / "figures" / "ci" / "00_line.png").write_bytes(b"not the image that run made")
    status, log = run(project)
    assert status == {"00_figs.ipynb": "ran", "01_plain.ipynb": "skipped"}
    assert any("figures missing or changed since its last run: 00_line" in line for line in log)

    # figures.py is imported by notebook 00 only (01 imports runtime, which does not import figures).
    fig_mod = manifest.PKG_DIR / "backbone" / "figures.py"
    fig_mod.write_text(fig_mod.read_text() + "\n# touched\n")
    status, log = run(project)
    assert status == {"00_figs.ipynb": "ran", "01_plain.ipynb": "skipped"}
    assert any("companion.backbone.figures" in line for line in log)

    status, _ = run(project, force=True)
    assert set(status.values()) == {"ran"}


@pytest.mark.slow  # executes notebooks
def test_dry_run_then_a_failure_that_stops_the_run_and_keeps_earlier_results(project):
    # A dry run validates and says what would run and why, and runs nothing.
    log: list[str] = []
    res = run_notebooks("ci", root=project, dry_run=True, log=log.append)
    assert [r.status for r in res] == ["would run", "would run"]
    assert "no earlier run on profile 'ci'" in log[0] and "nothing was executed" in log[-1]
    assert not (project / "build").exists()
    run(project)
    out = project / "build" / "executed" / "ci"
    stamps = {p: p.read_text() for p in out.glob("*.stamp.json")}
    log.clear()
    res = run_notebooks("ci", root=project, dry_run=True, overrides={"slope": "0.5"}, log=log.append)
    assert [r.status for r in res] == ["would run", "would run"]
    assert all("inputs changed: params: slope" in line for line in log[:2])
    assert {p: p.read_text() for p in stamps} == stamps  # nothing ran, nothing was rewritten
    with pytest.raises(ParameterError, match="at least 2"):  # invalid values fail the dry run too
        run_notebooks("ci", root=project, dry_run=True, overrides={"n_points": "1"}, log=log.append)
    res = run_notebooks("ci", root=project, dry_run=True, log=log.append)
    assert [r.status for r in res] == ["up to date", "up to date"]

    before = (out / "01_plain.ipynb").read_text()
    with pytest.raises(RunnerError) as e:
        run(project, overrides={"fail": True})
    msg = str(e.value)
    assert "00_figs.ipynb failed in cell" in msg and "planted failure" in msg and "raise RuntimeError" in msg
    assert (out / "00_figs.failed.ipynb").is_file()
    # The run stopped at 00: 01 was not re-executed, and the good executed copies are untouched.
    assert (out / "01_plain.ipynb").read_text() == before
    assert (out / "00_figs.ipynb").is_file()
    # ...but 00 is no longer up to date: its last run did not finish.
    log: list[str] = []
    res = run_notebooks("ci", root=project, dry_run=True, log=log.append)
    assert [r.status for r in res] == ["would run", "up to date"] and "its last run did not finish" in log[0]


@pytest.mark.slow  # executes notebooks
def test_only_selects_by_number_and_glob(project):
    status, _ = run(project, only="01")
    assert status == {"01_plain.ipynb": "ran"}
    status, _ = run(project, only="*figs")
    assert status == {"00_figs.ipynb": "ran"}
    with pytest.raises(RunnerError, match="matches no notebook"):
        run(project, only="42")


@pytest.mark.slow  # executes notebooks
def test_fork_records_lineage_and_runs_under_its_own_number(project):
    dest = fork_notebook("00", "my idea", root=project, profile="ci")
    assert dest.name == "02_my-idea.ipynb"
    nb = nbformat.read(dest, as_version=4)
    lineage = nb.metadata["companion"]["lineage"]
    assert lineage["parent"] == "00_figs.ipynb"
    assert lineage["parent_params"] == {
        "seed": 0,
        "n_points": 5,
        "slope": 2.0,
        "fail": False,
        "n_figures": 1,
        "kill_kernel": False,
        "inputs": [],
        "save_delay": 0.0,
    }
    assert "parent_commit" in lineage
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells)
    status, _ = run(project, only="02")
    assert status == {"02_my-idea.ipynb": "ran"}
    assert (project / "build" / "figures" / "ci" / "02_line.png").is_file()
    with pytest.raises(RunnerError, match="already exists"):
        fork_notebook("00", "My Idea", root=project)  # same slug under a new number would confuse readers
    assert fork_notebook("02", "second", root=project).name == "03_second.ipynb"


@pytest.mark.slow  # executes notebooks
def test_parameters_are_converted_routed_and_validated_before_anything_runs(project):
    write_smoke_notebook(project / "notebooks" / "02_other.ipynb", save_fig=False, params="other_params:OtherParams")
    with pytest.raises(ParameterError, match="unknown parameter no_such_param=1: none of the selected notebooks"):
        run(project, overrides={"no_such_param": 1})
    with pytest.raises(ParameterError) as e:
        run(project, overrides={"n_points": "five"})
    assert str(e.value).startswith(
        "00_figs.ipynb: SmokeParams.n_points: Input should be a valid integer, unable to parse "
        "string as an integer (got 'five')"
    )
    with pytest.raises(ParameterError, match="at least 2"):
        run(project, overrides={"n_points": 1})
    with pytest.raises(ParameterError, match="none of the selected notebooks declares it"):
        run(project, only="02", overrides={"slope": "1"})
    assert not (project / "build" / "executed" / "ci").exists()
    # slope is SmokeParams' only: it reaches 00 and 01, and 02 (OtherParams) runs without it.
    status, log = run(project, overrides={"slope": "3e-1", "n_points": "1e1", "fail": "false"})
    assert set(status.values()) == {"ran"}
    side = json.loads((project / "build" / "figures" / "ci" / "00_line.json").read_text())
    assert side["parameters"]["slope"] == 0.3 and side["parameters"]["n_points"] == 10
    assert side["data"]["ys"] == [0.3 * x for x in range(10)]
    other = json.loads((project / "build" / "executed" / "ci" / "02_other.ipynb").read_text())
    assert other["metadata"]["papermill"]["parameters"]["overrides"] == {}


def _git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def git_project(project):
    """The project as a committed git checkout, with tracked figures from an earlier run (as figures/organism is)."""
    _git(project, "init", "-q")
    _git(project, "config", "user.email", "t@example.com")
    _git(project, "config", "user.name", "t")
    run_notebooks("organism", root=project, log=lambda *_: None)
    _git(project, "add", "notebooks", "figures")
    _git(project, "commit", "-qm", "notebooks and their figures")
    return project


@pytest.mark.slow  # executes notebooks
def test_every_sidecar_of_a_run_records_the_commit_and_a_clean_tree_despite_the_run_rewriting_figures(git_project):
    head = _git(git_project, "rev-parse", "HEAD")
    run_notebooks("organism", root=git_project, force=True, overrides={"n_figures": "3"}, log=lambda *_: None)
    sides = sorted((git_project / "figures" / "organism").glob("*.json"))
    assert [p.stem for p in sides] == ["00_line", "00_line_1", "00_line_2"]
    assert _git(git_project, "status", "--porcelain", "--untracked-files=no")  # the run did rewrite tracked figures
    for p in sides:
        assert json.loads(p.read_text())["git"] == {"commit": head, "dirty": False}, p.name
    # An edited input, or a new notebook (a fork) that is not committed yet, is dirty.
    (git_project / "notebooks" / "00_figs.ipynb").write_text(
        (git_project / "notebooks" / "00_figs.ipynb").read_text().replace("Smoke notebook", "Smoke notebook!")
    )
    run_notebooks("organism", root=git_project, only="00", log=lambda *_: None)
    assert json.loads(sides[0].read_text())["git"] == {"commit": head, "dirty": True}
    _git(git_project, "checkout", "--", "notebooks")
    # A fork is lineage, not dirt (issue 19): neither its figures nor any later figure of the parent are dirty, and
    # its figures record its lineage on the profile they were made on, against the parent's parameters there.
    dest = fork_notebook("00", "idea", root=git_project, profile="ci")
    lineage = nbformat.read(dest, as_version=4).metadata["companion"]["lineage"]
    assert lineage["parent_commit"] == head and lineage["parent_tree_dirty"] is False
    from companion.backbone.gitstate import read_git_state

    assert read_git_state(git_project) == {"commit": head, "dirty": False}  # what every figure of a run records
    run_notebooks("organism", root=git_project, only="02", overrides={"slope": "3"}, log=lambda *_: None)
    side = json.loads((git_project / "figures" / "organism" / "02_line.json").read_text())
    assert side["git"] == {"commit": head, "dirty": False}
    fork = side["lineage"]
    assert fork["parent"] == "00_figs.ipynb" and fork["parent_commit"] == head and fork["profile"] == "organism"
    assert fork["forked_under_profile"] == "ci" and fork["parent_params"]["slope"] == 2.0
    assert fork["changed_from_parent"] == {"slope": [2.0, 3.0]} and len(fork["code_sha256"]) == 64
    assert json.loads(sides[0].read_text())["lineage"] is None  # the parent's figures are no fork's
    (git_project / "src").mkdir()
    (git_project / "src" / "new_module.py").write_text("x = 1\n")  # any other untracked input is still dirt
    assert read_git_state(git_project) == {"commit": head, "dirty": True}


def _cli(*args, cwd=None, env=None):
    return subprocess.run(
        [sys.executable, "-m", "companion.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd or Path(__file__).parents[2],
        env=env,
    )


@pytest.mark.slow  # one interpreter per command line
def test_cli_errors_are_one_line_with_exit_status_2(project):
    env = {**os.environ, "COMPANION_ROOT": str(project), "PYTHONPATH": str(FIXTURES)}
    cases = [
        (["figures", "--profile", "nosuch"], "unknown profile 'nosuch'; choose one of ci, organism, paper"),
        (["figures", "--profile", "ci", "-p", "no_such_param=1"], "unknown parameter no_such_param='1'"),
        (
            ["figures", "--profile", "ci", "-p", "n_points=abc"],
            "00_figs.ipynb: SmokeParams.n_points: Input should be a valid integer, unable to parse string as an integer "
            "(got 'abc')",
        ),
        (["figures", "--profile", "ci", "--only", "42"], "ONLY='42' matches no notebook"),
        (["figures", "--profile", "ci", "-p", "n_points"], "must look like name=value"),
        (["figures", "--bogus"], "unrecognized arguments: --bogus"),
        (["fork", "42", "x"], "matches no notebook"),
        (["check-figures", "--profile", "nosuch"], "unknown profile 'nosuch'"),
        (["check-figures", "--profile", "ci", "--rev", "no-such-rev"], "--rev 'no-such-rev' is not a commit"),
    ]
    for args, expected in cases:
        proc = _cli(*args, env=env)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: "), (args, proc.stderr)
        assert expected in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and "running" not in proc.stdout
    assert not (project / "build").exists()


@pytest.mark.slow  # interpreters that import torch
def test_cli_dry_run_on_the_real_notebooks_says_what_would_run(tmp_path):
    proc = _cli(
        "figures",
        "--profile",
        "ci",
        "--dry-run",
        "-p",
        "lr=3e-4",
        "--only",
        "01",
        env={**os.environ, "COMPANION_FIGURES_DIR": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("01_gated_vs_l1_pareto.ipynb: would run (") and "nothing was executed" in lines[-1]
    assert proc.stderr == ""


def test_inputs_given_by_path_enter_the_skip_key_by_content(project, tmp_path):
    """Issue 19: editing a data file (a data_dir, a fit set given by path) did not rerun its notebook."""
    data, fit_set = tmp_path / "mydata", tmp_path / "my_fit_set.yaml"
    data.mkdir()
    (data / "rows.jsonl").write_text('{"q": 1}\n')
    fit_set.write_text("pairs: []\n")
    inputs = {"inputs": f"{data},{fit_set}"}
    out = project / "build" / "executed" / "ci"

    def dry(**kw):
        log: list[str] = []
        run_notebooks("ci", root=project, only="01", dry_run=True, overrides=inputs, log=log.append, **kw)
        return log[0]

    def pretend_it_ran():  # what the runner writes after a successful run: the stamp and the executed copy
        from companion.backbone.profiles import load_profile

        nb = project / "notebooks" / "01_plain.ipynb"
        p = plan.plan_run(load_profile("ci"), [nb], inputs, root=project, out_dir=out)[0]
        out.mkdir(parents=True, exist_ok=True)
        (out / "01_plain.stamp.json").write_text(json.dumps({"inputs": p.manifest, "figures": {}}))
        (out / "01_plain.ipynb").write_text("{}")
        return p.manifest

    manifest = pretend_it_ran()
    assert set(manifest["files"]) == {str(data), str(fit_set)}
    assert dry().endswith("up to date, would be skipped")
    (data / "rows.jsonl").write_text('{"q": 2}\n')  # same size, same name: only the content changed
    assert f"inputs changed: files: {data})" in dry()
    pretend_it_ran()
    fit_set.write_text("pairs: [[a, b]]\n")
    assert f"inputs changed: files: {fit_set})" in dry()
    pretend_it_ran()
    (data / "more.jsonl").write_text("{}\n")  # a new file in the folder
    assert f"inputs changed: files: {data})" in dry()


@pytest.mark.slow  # executes notebooks
def test_after_an_executor_built_the_units_notebooks_run_two_at_a_time_each_with_its_own_run(project):
    write_smoke_notebook(project / "notebooks" / "02_figs.ipynb", save_fig=True)
    here = os.getcwd()
    status, log = run(project, executor="processes", overrides={"save_delay": "2.0"})
    assert os.getcwd() == here  # the kernels ran in notebooks/, the runner process never left its folder
    assert set(status.values()) == {"ran"} and len(status) == 3
    out = project / "build" / "executed" / "ci"
    window = {}
    for name in ("00_figs", "02_figs"):
        pm = json.loads((out / f"{name}.ipynb").read_text())["metadata"]["papermill"]
        window[name] = (pm["start_time"], pm["end_time"])
        # Each kernel had its own notebook and run id, though both ran in one runner process at once.
        stamp = json.loads((out / f"{name}.stamp.json").read_text())
        side = json.loads((project / "build" / "figures" / "ci" / f"{name[:2]}_line.json").read_text())
        assert side["notebook"] == f"notebooks/{name}.ipynb" and side["run"] == stamp["run"], (side, stamp)
    (a0, a1), (b0, b1) = window["00_figs"], window["02_figs"]
    assert a0 < b1 and b0 < a1, f"the two notebooks did not overlap: {window}"
    assert (
        json.loads((out / "00_figs.stamp.json").read_text())["run"]
        != json.loads((out / "02_figs.stamp.json").read_text())["run"]
    )
