"""make test-fast runs the tests on two pytest-xdist workers with ``--dist loadgroup``: each file's tests on one
worker (tests/xdist_groups.py), and a group a test names for itself kept across files.  Checked where the scheduler
sees it, in a pytest run of its own on planted test files: every node id carries its group and each group runs on
one worker."""

import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a pytest run of its own, on two workers
def test_each_files_tests_and_each_named_group_run_on_one_worker(tmp_path):
    for name in ("a", "b"):
        (tmp_path / f"test_{name}.py").write_text("".join(f"def test_{i}():\n    pass\n\n\n" for i in range(4)))
    (tmp_path / "test_c.py").write_text(
        'import pytest\n\n\n@pytest.mark.xdist_group("shared")\ndef test_0():\n    pass\n\n\n'
        "def test_1():\n    pass\n\n\n"
    )
    (tmp_path / "test_d.py").write_text(
        'import pytest\n\n\n@pytest.mark.xdist_group("shared")\ndef test_0():\n    pass\n'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "xdist_groups", "-n", "2", "--dist", "loadgroup", "-v"]
        + ["-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(TESTS)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ran = re.findall(r"^\[(gw\d)\] .*PASSED (\S+)", proc.stdout, re.M)
    assert len(ran) == 11, proc.stdout
    workers: dict[str, set[str]] = defaultdict(set)
    for worker, nodeid in ran:
        test, _, group = nodeid.partition("@")
        assert group, f"{nodeid}: no group reached the scheduler"
        workers[group].add(worker)
        if group != "shared":
            assert group == test.split("::")[0]
    assert sorted(workers) == ["shared", "test_a.py", "test_b.py", "test_c.py"]
    assert all(len(w) == 1 for w in workers.values()), dict(workers)
