"""make test and make test-fast run the tests on two pytest-xdist workers with ``--dist loadgroup`` (tests/xdist_groups.py):
a file's tests that share a module fixture on one worker, a group a test names for itself kept across files, every
other test on its own, the longest groups of the runs before first.  Checked where the scheduler sees it, in pytest
runs of their own on planted test files: every node id carries its group, each group runs on one worker, and a group
timed long is handed out first."""

import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]


def _pytest(folder, *args: str) -> str:
    """A pytest run of its own on the planted test files in ``folder``, with this plugin under ``--dist loadgroup``;
    its verbose output (it must pass)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "xdist_groups", "--dist", "loadgroup", "-v", *args]
        + ["--rootdir", str(folder), str(folder)],
        cwd=folder,
        env={**os.environ, "PYTHONPATH": str(TESTS)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.slow  # a pytest run of its own, on two workers
def test_a_files_tests_sharing_a_module_fixture_and_each_named_group_run_on_one_worker(tmp_path):
    for name in ("a", "b"):
        (tmp_path / f"test_{name}.py").write_text("".join(f"def test_{i}():\n    pass\n\n\n" for i in range(4)))
    (tmp_path / "test_m.py").write_text(
        "import pytest\n\n\n@pytest.fixture(scope='module')\ndef built():\n    return 1\n\n\n"
        + "".join(f"def test_{i}(built):\n    pass\n\n\n" for i in range(4))
    )
    (tmp_path / "test_c.py").write_text(
        'import pytest\n\n\n@pytest.mark.xdist_group("shared")\ndef test_0():\n    pass\n\n\n'
        "def test_1():\n    pass\n\n\n"
    )
    (tmp_path / "test_d.py").write_text(
        'import pytest\n\n\n@pytest.mark.xdist_group("shared")\ndef test_0():\n    pass\n'
    )
    out = _pytest(tmp_path, "-n", "2", "-p", "no:cacheprovider")
    ran = re.findall(r"^\[(gw\d)\] .*PASSED (\S+)", out, re.M)
    assert len(ran) == 15, out
    workers: dict[str, set[str]] = defaultdict(set)
    for worker, nodeid in ran:
        test, _, group = nodeid.partition("@")
        assert group, f"{nodeid}: no group reached the scheduler"
        workers[group].add(worker)
        if test.startswith("test_m.py"):
            assert group == "test_m.py", nodeid  # the module fixture is built once
        elif group != "shared":
            assert group == test, nodeid  # nothing shared: a group of its own
    assert "shared" in workers and "test_m.py" in workers and len(workers) == 2 + 8 + 1
    assert all(len(w) == 1 for w in workers.values()), dict(workers)


@pytest.mark.slow  # two pytest runs of their own
def test_the_longest_group_of_the_runs_before_is_handed_out_first(tmp_path):
    # Two files of four quick tests and one file of one slow test: xdist's own order (by number of tests) would hand
    # the slow file out last; once a run has timed it, it goes first.
    for name in ("a", "b"):
        (tmp_path / f"test_{name}.py").write_text("".join(f"def test_{i}():\n    pass\n\n\n" for i in range(4)))
    (tmp_path / "test_slow.py").write_text("import time\n\n\ndef test_0():\n    time.sleep(1.0)\n")

    def run() -> list[str]:
        out = _pytest(tmp_path, "-n", "1", "--no-loadscope-reorder")
        return [n.split("::")[0] for n in re.findall(r"^\[gw0\] .*PASSED (\S+)", out, re.M)]

    first = run()
    assert len(first) == 9 and first[-1] == "test_slow.py", first
    seconds = json.loads(next((tmp_path / ".pytest_cache").rglob("test-seconds")).read_text())
    assert seconds["test_slow.py::test_0"] >= 1.0 and len(seconds) == 9, seconds
    assert run()[0] == "test_slow.py"
