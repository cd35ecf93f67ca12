"""Packaging and hygiene: the lock, environment.yml, the Makefile, CI and the committed notebooks."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml

from companion.backbone.envfile import lock_pins, render
from companion.backbone.runner import NOTEBOOK_RE, load_params_class

ROOT = Path(__file__).resolve().parents[2]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock_lines() -> list[tuple[str, str, str]]:
    """(name, version, marker) of every pin in the lock."""
    out = []
    for pin in lock_pins(ROOT / "requirements.lock"):
        req, _, marker = pin.partition(";")
        name, version = (x.strip() for x in req.split("=="))
        out.append((_norm(name), version, marker.strip()))
    return out


def test_lock_pins_cpu_safe_torch_and_every_dependency():
    lines = _lock_lines()
    assert [(v, m) for n, v, m in lines if n == "torch"] == [("2.13.0", "")], (
        "torch must be pinned once to 2.13.0 without a local (+cpu) label"
    )
    # CUDA packages appear only as torch's own Linux dependencies (constraints, never companion's requirements).
    cuda = [(n, m) for n, _, m in lines if n.startswith(("nvidia-", "cuda-"))]
    assert all("sys_platform == 'linux'" in m for _, m in cuda), cuda
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = deps["dependencies"] + [d for extra in deps["optional-dependencies"].values() for d in extra]
    names = [re.split(r"[<>=!\[ ;]", d)[0] for d in wanted]
    locked = {n for n, _, _ in lines}
    missing = [n for n in names if _norm(n) not in locked]
    assert not missing, f"dependencies not pinned in requirements.lock: {missing} (run make lock)"
    assert not any(_norm(n).startswith(("nvidia-", "cuda-")) for n in names)


def test_what_the_overrides_remove_is_in_no_environment():
    """requirements-overrides.txt removes a dependency of a dependency (one that slows every import of jsonschema)
    with a marker that never holds; the lock must carry the removal for every Python, and make setup must use it."""
    removed = [
        _norm(re.split(r"[<>=!\[ ;]", ln)[0])
        for ln in (ROOT / "requirements-overrides.txt").read_text().splitlines()
        if ln.strip() and not ln.startswith("#") and "sys_platform == 'never'" in ln
    ]
    assert removed == ["rfc3987-syntax"]
    pinned = {n: m for n, _, m in _lock_lines()}
    assert all(pinned.get(n, "sys_platform == 'never'") == "sys_platform == 'never'" for n in removed), pinned
    make = (ROOT / "Makefile").read_text()
    assert make.count("--override requirements-overrides.txt") == 2  # setup's install and make lock


def _markers_hold(marker: str, version: tuple[int, int, int]) -> bool:
    if not marker:
        return True
    from packaging.markers import Marker

    env = {
        "python_version": f"{version[0]}.{version[1]}",
        "python_full_version": ".".join(map(str, version)),
        "sys_platform": "linux",
        "platform_machine": "x86_64",
        "platform_system": "Linux",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "os_name": "posix",
    }
    return Marker(marker).evaluate(env)


@pytest.mark.parametrize("version", [(3, 10, 12), (3, 11, 2), (3, 11, 7), (3, 12, 3), (3, 13, 0), (3, 14, 0)])
def test_the_lock_pins_each_package_exactly_once_for_every_supported_python(version):
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    from packaging.specifiers import SpecifierSet

    assert ".".join(map(str, version)) in SpecifierSet(spec)
    active: dict[str, list[str]] = {}
    for n, v, m in _lock_lines():
        if _markers_hold(m, version):
            active.setdefault(n, []).append(v)
    twice = {n: vs for n, vs in active.items() if len(vs) > 1}
    assert not twice, f"Python {version}: packages pinned twice: {twice}"
    assert {"torch", "numpy", "transformer-lens", "pandas"} <= set(active)


def test_environment_yml_installs_the_same_pinned_set():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["name"] == "companion" and "python=3.11" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "-e .[test,bench]" in pip
    assert sorted(p for p in pip if "==" in p) == sorted(lock_pins(ROOT / "requirements.lock"))
    assert (ROOT / "environment.yml").read_text() == render(lock_pins(ROOT / "requirements.lock"))


def test_make_targets_ci_and_readme_agree():
    make = (ROOT / "Makefile").read_text()
    for target in ("setup", "test", "test-system", "test-fast", "figures", "lab", "strip", "bench", "clean"):
        assert re.search(rf"^{target}:", make, re.M), f"Makefile lacks target {target}"
    assert "PROFILE" in make and "ONLY" in make and "FORCE" in make and "DRY_RUN" in make
    ci = (ROOT / ".ci" / "run").read_text()
    assert "apt-get install" in ci and "chromium" in ci, "CI must install the browser the JupyterLab test drives"
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"^make test\b", ci, re.M) and re.search(r"^make test-system\b", ci, re.M), "CI runs both tiers"
    first_block = re.search(r"```(?:bash|sh)?\n(.*?)```", readme, re.S).group(1)
    assert [ln.split()[:2] for ln in first_block.splitlines()] == [["make", "test"], ["make", "figures"]], (
        "README must open with its two commands, one for the tests and one for the figures"
    )
    assert "HF_HUB_OFFLINE" in "".join(
        (ROOT / "src/companion/backbone/profiles" / f).read_text() for f in ("ci.yaml", "organism.yaml")
    )


def test_the_console_script_names_the_command():
    # pyproject's [project.scripts] is read only at install time: a stale target would break `companion` silently.
    import importlib

    target = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["companion"]
    mod, _, attr = target.partition(":")
    assert callable(getattr(importlib.import_module(mod), attr)), target


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
    # The first screen says what can be changed: every parameter, its default and meaning, generated from the class.
    from companion.backbone.paramcell import parameters_cell

    assert "".join(params_cells[0]["source"]) == parameters_cell(cls), (
        f"{path.name}: run `.venv/bin/python -m companion.backbone.paramcell notebooks/*.ipynb`"
    )
    assert all(f"#   {f} = " in parameters_cell(cls) for f in cls.field_names())
    cls.from_dict(ns["overrides"])  # the committed defaults are valid
    assert cls.__doc__ and all(cls.docs().get(f) for f in cls.field_names()), (
        f"{cls.__name__}: every field needs a one-line docstring"
    )


SETUP_LINES = ("-m venv", "uv pip install")


@pytest.mark.parametrize("target", ["test", "figures"])
def test_make_sets_the_environment_up_first_when_it_is_missing_or_stale(tmp_path, target):
    """Issue 19: two commands, not three: on a fresh clone `make figures` and `make test` failed until `make setup`.
    Asked of make itself (`make -n`: what it would run, in order)."""
    import shutil

    work = tmp_path / "work"
    work.mkdir()
    for name in ("Makefile", "pyproject.toml", "requirements.lock", "requirements-overrides.txt"):
        shutil.copy2(ROOT / name, work / name)

    def plan(venv: Path) -> str:
        out = subprocess.run(
            ["make", "-n", "--no-print-directory", target, f"VENV={venv}"], cwd=work, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    missing = plan(tmp_path / "no-venv")
    assert all(s in missing for s in SETUP_LINES), missing  # no venv: created and installed first
    main = {"test": "-m pytest", "figures": "bin/companion figures"}[target]
    assert missing.index("uv pip install") < missing.index(main)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / ".companion-setup").touch()  # a setup that finished after the files it read
    assert not any(s in plan(venv) for s in SETUP_LINES)
    later = (venv / ".companion-setup").stat().st_mtime + 5
    os.utime(work / "requirements.lock", (later, later))  # the lock changed since: stale
    assert "uv pip install" in plan(venv)


def test_make_lab_allows_root_only_as_root():
    out = subprocess.run(
        ["make", "-n", "--no-print-directory", "-o", ".venv/.companion-setup", "lab"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert ("--allow-root" in out) == (os.geteuid() == 0), out
