"""A dry run validates everything a run will need before anything runs (issue 19): misspelt profile sections and
organism settings, missing data folders, non-finite numbers, unwritable folders, a misspelt ``extends``; one line
each, with a suggestion where there is one."""

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from companion.backbone.plan import SettingsError
from companion.backbone.profiles import ProfileError, parse_profile
from companion.backbone.runner import run_notebooks

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parents[1] / "fixtures"
PROFILES = ROOT / "src" / "companion" / "backbone" / "profiles"


def test_a_dry_run_reports_every_problem_of_the_run_one_line_each_with_suggestions(tmp_path):
    text = (PROFILES / "ci.yaml").read_text()
    edits = {
        "  ParetoParams: &ci_sae_sweep": "  ParetoParam: &ci_sae_sweep",  # a misspelt class section
        "    train: {steps: 300,": "    train: {stepz: 300,",  # a misspelt organism setting
        "  SycophancyParams:\n": "  SycophancyParams:\n    data: anthropic\n    data_dir: /nonexistent\n",
    }
    for old, new in edits.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    prof = parse_profile("ci", text)
    log: list[str] = []
    with pytest.raises(SettingsError) as e:
        run_notebooks(
            prof, root=ROOT, build_dir=tmp_path / "executed", dry_run=True, overrides={"lr": "nan"}, log=log.append
        )
    problems = e.value.problems
    assert log == [] and not (tmp_path / "executed").exists()  # nothing reported as runnable, nothing written
    expected = [
        "src/companion/backbone/profiles/ci.yaml: notebooks.ParetoParam names no notebook's parameter class "
        "(did you mean 'ParetoParams'?)",
        "00_model_organism.ipynb, 03_defection_probe_roc.ipynb: profile 'ci': organisms.backdoor.train.stepz: "
        "unknown setting (did you mean 'steps'?)",
        "01_gated_vs_l1_pareto.ipynb: ParetoParams.lr: Input should be a finite number (got nan)",
        "02_shrinkage_gamma.ipynb: ShrinkageParams.lr: Input should be a finite number (got nan)",
        "00_model_organism.ipynb, 03_defection_probe_roc.ipynb: profile 'ci': organisms.clean.train.stepz: "
        "unknown setting",
        "04_sycophancy_agreement.ipynb: data_dir '/nonexistent': no such directory (/nonexistent)",
    ]
    for want in expected:
        assert any(p.startswith(want) for p in problems), (want, problems)
    assert all("\n" not in p for p in problems)


def test_a_misspelt_extends_names_the_file_that_says_it():
    text = (PROFILES / "rehearsal.yaml").read_text().replace("extends: paper", "extends: papr")
    with pytest.raises(ProfileError) as e:
        parse_profile("rehearsal", text)
    assert str(e.value).startswith(
        "src/companion/backbone/profiles/rehearsal.yaml: extends: unknown profile 'papr' (did you mean 'paper'?)"
    )


@contextlib.contextmanager
def read_only(folder: Path):
    """``folder``, read-only for this process: by its mode for a user, by a read-only mount for root (whom modes
    do not stop)."""
    folder.mkdir(parents=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], capture_output=True
    ).returncode:
        pytest.skip("running as root without the right to mount: cannot make a folder read-only here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def _cli(project, *args, env=None):
    env = {**os.environ, "COMPANION_ROOT": str(project), "PYTHONPATH": str(FIXTURES), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "companion.cli", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
    )


@pytest.mark.slow  # three command-line runs
def test_read_only_build_or_figures_folders_are_one_line_before_anything_runs(tmp_path):
    from nbfixtures import write_smoke_notebook

    write_smoke_notebook(tmp_path / "notebooks" / "00_figs.ipynb")
    with read_only(tmp_path / "build" / "executed"):
        for args in (["--dry-run"], []):
            proc = _cli(tmp_path, "figures", "--profile", "ci", *args)
            assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
            assert proc.stderr.splitlines() == [
                f"error: the executed notebooks folder {tmp_path}/build/executed/ci is not writable: Read-only "
                f"file system (it does not exist, and cannot be created in {tmp_path}/build/executed)"
            ] or (os.geteuid() != 0 and "Permission denied" in proc.stderr), proc.stderr
    with read_only(tmp_path / "figs"):
        proc = _cli(
            tmp_path, "figures", "--profile", "ci", "--dry-run", env={"COMPANION_FIGURES_DIR": str(tmp_path / "figs")}
        )
        assert proc.returncode == 2 and proc.stderr.startswith(
            f"error: the figures folder {tmp_path}/figs is not writable"
        ), proc.stderr
