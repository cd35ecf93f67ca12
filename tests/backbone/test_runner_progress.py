"""A notebook that computes for minutes shows a bar of executed cells in a terminal, and nothing in a log."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import textwrap

import nbformat
import pytest

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from companion.backbone import kernels
    d = Path(sys.argv[1])
    kernels.execute(d / "nb.ipynb", d / "out.ipynb", {}, cwd=d)
""")


def _run(tmp_path, stderr) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("y = x + 1")]
    nbformat.write(nb, tmp_path / "nb.ipynb")
    env = dict(os.environ)
    subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        stderr=stderr,
        stdout=subprocess.DEVNULL,
        env=env,
        check=True,
        timeout=120,
    )


def _read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # the pty's other end is closed: everything has been read
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode(errors="replace")


def test_a_terminal_gets_a_bar_of_executed_cells_named_after_the_notebook(tmp_path):
    main, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a new pty is 0 columns wide
    try:
        _run(tmp_path, secondary)
    finally:
        os.close(secondary)
    shown = _read_all(main)
    os.close(main)
    assert "nb:" in shown and "cell/s" in shown, shown


def test_a_log_gets_no_bar(tmp_path):
    log = tmp_path / "stderr.log"
    with open(log, "w") as f:
        _run(tmp_path, f)
    assert "Executing" not in log.read_text() and "nb:" not in log.read_text(), log.read_text()
