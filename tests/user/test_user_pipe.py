"""The command in a shell pipeline: a reader that stops early (``companion profiles | head -1``) ends it quietly, as
it ends a Unix tool, never with a BrokenPipeError traceback."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMAND = [sys.executable, "-m", "companion.cli", "profiles"]


@pytest.mark.parametrize("unbuffered", [True, False], ids=["PYTHONUNBUFFERED=1", "block-buffered"])
def test_piping_into_head_prints_the_first_line_and_nothing_on_stderr(unbuffered):
    # Unbuffered, every line is its own write and the one after head exits meets a closed pipe (status 141, as
    # `yes | head -1` ends yes); block-buffered, the whole output may fit in one write made before head exits
    # (status 0). Either way: the first line, and no traceback.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    line = f'{shlex.join(COMMAND)} | head -1; echo "status ${{PIPESTATUS[0]}}" >&2'
    proc = subprocess.run(["bash", "-c", line], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.stdout.startswith("ci ") and proc.stdout.count("\n") == 1, proc.stdout
    assert proc.stderr in ({"status 141\n"} if unbuffered else {"status 0\n", "status 141\n"}), proc.stderr


def test_a_reader_gone_before_the_first_line_is_written_is_no_error_either():
    # The same without the race a pipeline has: the read end is closed before the command starts.
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run(COMMAND, cwd=ROOT, stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert (proc.returncode, proc.stderr) == (141, "")


def test_the_whole_output_read_is_status_0():
    proc = subprocess.run(COMMAND, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "" and proc.stdout.startswith("ci ")
