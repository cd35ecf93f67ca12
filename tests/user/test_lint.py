"""`make lint` (ruff check, ruff format --check, mypy; configured in pyproject.toml), as a test: make test and make
test-fast run it on one worker while the other runs the rest, instead of before everything (a cold mypy is ~20 s)."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_make_lint_is_clean():
    out = subprocess.run(["make", "--no-print-directory", "lint"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, f"make lint failed:\n{out.stdout[-6000:]}\n{out.stderr[-3000:]}"
