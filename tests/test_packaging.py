"""Packaging and hygiene: the lock, environment.yml, the Makefile, CI and the committed notebooks."""
import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from companion.envfile import lock_pins, render
from companion.runner import NOTEBOOK_RE, load_params_class

ROOT = Path(__file__).resolve().parents[1]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_lock_pins_cpu_safe_torch_and_every_dependency():
    pins = dict(p.split("==") for p in lock_pins(ROOT / "requirements.lock"))
    assert pins["torch"] == "2.13.0", "torch must be pinned to 2.13.0 without a local (+cpu) label"
    assert not any(n.startswith("nvidia-") for n in pins), "a CUDA wheel in the lock would pull gigabytes"
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [re.split(r"[<>=!\[ ;]", d)[0] for d in deps["dependencies"] + deps["optional-dependencies"]["test"]]
    locked = {_norm(n) for n in pins}
    missing = [n for n in names if _norm(n) not in locked]
    assert not missing, f"dependencies not pinned in requirements.lock: {missing} (run make lock)"


def test_environment_yml_installs_the_same_pinned_set():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["name"] == "companion" and "python=3.11" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "-e .[test]" in pip
    assert sorted(p for p in pip if "==" in p) == sorted(lock_pins(ROOT / "requirements.lock"))
    assert (ROOT / "environment.yml").read_text() == render(lock_pins(ROOT / "requirements.lock"))


def test_make_targets_ci_and_readme_agree():
    make = (ROOT / "Makefile").read_text()
    for target in ("setup", "test", "figures", "lab", "strip", "bench", "clean"):
        assert re.search(rf"^{target}:", make, re.M), f"Makefile lacks target {target}"
    assert "PROFILE" in make and "ONLY" in make and "FORCE" in make
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make setup" in ci and "make test" in ci
    first_block = re.search(r"```(?:bash|sh)?\n(.*?)```", readme, re.S).group(1)
    assert "make setup" in first_block and "make test" in first_block, "README must open with setup and test"
    assert "HF_HUB_OFFLINE" in "".join((ROOT / "src/companion/profiles" / f).read_text() for f in ("ci.yaml", "organism.yaml"))


def _tracked_notebooks():
    out = subprocess.run(["git", "ls-files", "*.ipynb"], cwd=ROOT, capture_output=True, text=True)
    files = out.stdout.split() if out.returncode == 0 else []
    return [ROOT / f for f in files] or sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", _tracked_notebooks(), ids=lambda p: p.name)
def test_committed_notebooks_are_stripped(path):
    nb = json.loads(path.read_text())
    for i, c in enumerate(nb["cells"]):
        assert not c.get("outputs"), f"{path.name} cell {i} has outputs: run `make strip`"
        assert c.get("execution_count") is None, f"{path.name} cell {i} has an execution count: run `make strip`"
        assert "papermill" not in c.get("metadata", {}) and "execution" not in c.get("metadata", {})
    assert "papermill" not in nb.get("metadata", {}), f"{path.name} carries papermill metadata: run `make strip`"


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_follow_the_project_format(path):
    assert NOTEBOOK_RE.match(path.name), f"{path.name}: notebooks are named NN_short_name.ipynb"
    nb = json.loads(path.read_text())
    cls = load_params_class(nb["metadata"]["companion"]["params"])
    params_cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params_cells) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
    ns: dict = {}
    exec("".join(params_cells[0]["source"]), ns)
    assert {k for k in ns if not k.startswith("__")} == {"profile", "overrides"}
    cls.from_dict(ns["overrides"])  # the committed defaults are valid
    assert cls.__doc__ and all(cls.docs().get(f) for f in cls.field_names()), \
        f"{cls.__name__}: every field needs a one-line docstring"
