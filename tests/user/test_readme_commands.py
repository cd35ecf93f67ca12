"""Every command the README shows in a code block works as typed, in a new shell after `make setup` (issue 19: its
`companion ...` lines failed with "command not found", the command being in .venv/bin).

"A new shell": ``bash -c`` with no virtual environment on ``PATH``.  ``make`` lines are checked with ``make -n`` (the
target exists and expands); the ``companion figures`` command a ``make figures`` line expands to is then run with
``--dry-run`` (in this process), which validates everything the run would need.  ``companion`` lines run as typed, except that a line
which writes into the tree (``fork``) runs on a copy of the project's notebooks, as does the ``make figures`` line that
follows it in the same block.
"""

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # a few dry runs, two forks and a doctor


def readme_blocks() -> list[list[str]]:
    """The commands of each ```bash block of the README (comments and blank lines dropped)."""
    text = (ROOT / "README.md").read_text()
    blocks = []
    for body in re.findall(r"```bash\n(.*?)```", text, re.S):
        lines = [re.sub(r"\s+#.*$", "", ln).strip() for ln in body.splitlines()]
        blocks.append([ln for ln in lines if ln and not ln.startswith("#")])
    return blocks


def new_shell_env(**extra) -> dict[str, str]:
    path = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "activate").exists()]
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "COMPANION_ROOT", "COMPANION_FIGURES_DIR", "COMPANION_PROFILE")
    }
    return {**env, "PATH": os.pathsep.join(path), **extra}


def _sh(cmd: str, env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", cmd], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


_DRY_RUNS: set[tuple[str, str]] = set()


def _dry_run(line: str, env, monkeypatch, capsys) -> None:
    """``companion figures ... --dry-run`` (what a ``make figures`` line expands to), run in this process: the same
    entry point as the console script, without paying for a fresh interpreter and torch at each line."""
    from companion.cli import main

    words = shlex.split(line)
    assert (ROOT / words[0]).is_file() and words[0].endswith("bin/companion"), line
    with monkeypatch.context() as m:
        for key in ("COMPANION_ROOT", "COMPANION_FIGURES_DIR", "COMPANION_PROFILE"):
            m.setenv(key, env[key]) if key in env else m.delenv(key, raising=False)
        status = main(words[1:])
    out = capsys.readouterr()
    assert status == 0 and "nothing was executed" in out.out, (line, out.err)


def _check(cmd: str, env, monkeypatch, capsys) -> None:
    words = shlex.split(cmd)
    if words[0] == "make":
        made = _sh(f"make -n --no-print-directory {shlex.join(words[1:])}", env)
        assert made.returncode == 0, (cmd, made.stderr)
        figures = [ln for ln in made.stdout.splitlines() if re.search(r"bin/companion figures\b", ln)]
        if words[1:2] == ["figures"]:
            assert len(figures) == 1, (cmd, made.stdout)
            line = figures[0] if "--dry-run" in figures[0] else figures[0] + " --dry-run"
            if (line, env.get("COMPANION_ROOT", "")) not in _DRY_RUNS:  # `make figures DRY_RUN=1` is `make figures`
                _DRY_RUNS.add((line, env.get("COMPANION_ROOT", "")))
                _dry_run(line, env, monkeypatch, capsys)
        return
    assert words[0] == ".venv/bin/companion", f"README command {cmd!r}: not `make ...` nor `.venv/bin/companion ...`"
    ran = _sh(cmd, env)
    if words[1] == "doctor":  # a report: exit status 1 means it found something missing here (no GPU)
        assert ran.returncode in (0, 1) and "Traceback" not in ran.stderr and ran.stdout.strip(), (cmd, ran.stderr)
    else:
        assert ran.returncode == 0, (cmd, ran.stderr)


def test_every_command_in_the_readme_works_as_typed_in_a_new_shell(tmp_path, monkeypatch, capsys):
    blocks = readme_blocks()
    commands = [c for block in blocks for c in block]
    assert any(c.startswith(".venv/bin/companion fork") for c in commands) and "make test" in commands
    assert not [c for c in commands if c.split()[0] == "companion"], "a bare `companion` is not on a new shell's PATH"
    for block in blocks:
        env = new_shell_env()
        if any(" fork " in f" {c} " for c in block):  # writes a notebook: on a copy of the project's notebooks
            shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks", dirs_exist_ok=True)
            env = new_shell_env(COMPANION_ROOT=str(tmp_path), COMPANION_FIGURES_DIR=str(tmp_path / "figs"))
        for cmd in block:
            _check(cmd, env, monkeypatch, capsys)
    assert sorted(p.name for p in (tmp_path / "notebooks").glob("0[67]_*")) == ["06_my-idea.ipynb", "07_other.ipynb"]
