"""A fresh clone, as a new user gets it: `make setup`'s git filter, then `git status`, `make figures`, `companion fork`.

The clone is of this checkout's last commit.  The filter is installed by the Makefile's own ``git-filter`` recipe
(what ``make setup`` runs), pointed at this checkout's venv.  The committed notebooks are stored exactly as the
filter writes them, so the clone is clean, and the recipe refreshes the index, so the first ``git status`` does not
run the filter over every notebook.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent


def _git(cwd, *args) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True).returncode:
        pytest.skip("not a git checkout")
    dest = tmp_path_factory.mktemp("clone") / "companion"
    _git(ROOT.parent, "clone", "-q", "--no-hardlinks", str(ROOT), str(dest))
    for key, value in (("user.email", "test@example.com"), ("user.name", "test")):
        _git(dest, "config", key, value)
    setup = subprocess.run(
        ["make", "--no-print-directory", "git-filter", f"VENV={VENV}"], cwd=dest, capture_output=True, text=True
    )
    assert setup.returncode == 0, setup.stderr
    return dest


@pytest.mark.slow  # a clone, the Makefile's git-filter recipe and its index refresh (the filter on every notebook)
def test_a_fresh_clone_after_setup_is_clean_and_its_git_status_is_instant(clone):
    assert _git(clone, "config", "filter.nbstripout.clean") == f"{VENV}/bin/python -m companion.backbone.nbclean\n"
    t0 = time.perf_counter()
    status = _git(clone, "status", "--porcelain")
    seconds = time.perf_counter() - t0
    assert status == "", status
    assert seconds < 1.0, f"git status took {seconds:.1f} s: the index was not refreshed, the filter ran"
    # The filter is in force: a notebook saved with outputs is still clean to git.
    nb_path = clone / "notebooks" / "02_shrinkage_gamma.ipynb"
    original = nb_path.read_text()
    nb = nbformat.reads(original, as_version=4)
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="hello\n")]
    nb.cells[2].execution_count = 4
    # ...and so is what JupyterLab's autosave writes: the kernel's display name and its full language_info.
    nb.metadata.kernelspec.display_name = "Python 3 (ipykernel)"
    nb.metadata.language_info = {
        "codemirror_mode": {"name": "ipython", "version": 3},
        "file_extension": ".py",
        "mimetype": "text/x-python",
        "name": "python",
        "nbconvert_exporter": "python",
        "pygments_lexer": "ipython3",
        "version": "3.11.7",
    }
    nb_path.write_text(nbformat.writes(nb))
    assert _git(clone, "diff", "--stat") == ""
    # Git lists the notebook as modified (its size changed), but figures saved now record a clean tree (issue 19).
    from companion.backbone.gitstate import read_git_state

    head = _git(clone, "rev-parse", "HEAD").strip()
    assert read_git_state(clone) == {"commit": head, "dirty": False}
    nb.cells[2].source += "\n# an edit"
    nb_path.write_text(nbformat.writes(nb))
    assert read_git_state(clone) == {"commit": head, "dirty": True}
    nb_path.write_text(original)


@pytest.mark.slow  # runs notebook 02
def test_figures_and_forks_made_in_a_fresh_clone_record_its_commit_and_a_clean_tree(clone):
    head = _git(clone, "rev-parse", "HEAD").strip()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPANION_ROOT", "COMPANION_FIGURES_DIR"))}
    run = subprocess.run(
        [str(VENV / "bin" / "companion"), "figures", "--profile", "ci", "--only", "02"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    sides = sorted((clone / "build" / "figures" / "ci").glob("*.json"))
    assert len(sides) == 4  # notebook 02's: gamma_vs_l0, gamma_vs_l0_all, shrinkage_toy, gamma_asymmetry
    for p in sides:
        assert json.loads(p.read_text())["git"] == {"commit": head, "dirty": False}, p.name
    assert _git(clone, "status", "--porcelain") == ""
    fork = subprocess.run(
        [str(VENV / "bin" / "companion"), "fork", "02", "my idea"], cwd=clone, env=env, capture_output=True, text=True
    )
    assert fork.returncode == 0, fork.stderr
    nb = nbformat.read(clone / "notebooks" / "06_my-idea.ipynb", as_version=4)
    lineage = nb.metadata["companion"]["lineage"]
    assert lineage["parent_commit"] == head and lineage["parent_tree_dirty"] is False
    assert f"at commit `{head[:10]}`" in nb.cells[0].source
