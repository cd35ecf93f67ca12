"""Write ``environment.yml`` for conda users from the lock file, so both install the same pinned set.

Run as ``python -m companion.backbone.envfile > environment.yml`` (``make lock`` does); a test checks they agree.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from companion.backbone.profiles import project_root


def lock_pins(lock: Path) -> list[str]:
    """``name==version`` lines of the lock file, in order."""
    return [ln.strip() for ln in lock.read_text().splitlines() if re.match(r"^[A-Za-z0-9_.\-]+==", ln.strip())]


def render(pins: list[str]) -> str:
    lines = [
        "# conda env create -f environment.yml && conda activate companion",
        "# Generated from requirements.lock by `make lock`; tests/user/test_packaging.py checks they agree.",
        "name: companion",
        "channels:",
        "  - conda-forge",
        "dependencies:",
        "  - python=3.11",
        "  - pip",
        "  - pip:",
        "      - -e .[test,bench]",
    ]
    lines += [f"      - {p}" for p in pins]
    return "\n".join(lines) + "\n"


def main() -> None:
    sys.stdout.write(render(lock_pins(project_root() / "requirements.lock")))


if __name__ == "__main__":
    main()
