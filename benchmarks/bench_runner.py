"""How fast `make figures` decides what needs to run, and how cheap the runner is to import.

    python benchmarks/bench_runner.py [--profile ci]

Prints the import time of ``companion.backbone.runner`` (it must not import torch) and the wall time of the
decision a run makes before executing anything, timed as ``companion figures --dry-run`` (nothing is executed,
whatever the state of ``build/executed/<profile>``; run ``make figures PROFILE=ci`` first to time the common
everything-up-to-date case).  Goals: import < 1 s, deciding that everything is up to date < 3 s.
These are speed goals, so they live here and not in the timed-out-on-a-busy-machine test suite.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--profile", default="ci")
    a = ap.parse_args()
    code = (
        "import time, sys; t=time.perf_counter(); import companion.backbone.runner; "
        "print(time.perf_counter()-t, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    print(f"import companion.backbone.runner: {float(out[0]) * 1000:.0f} ms (torch imported: {out[1]})")
    from companion.backbone.runner import run_notebooks

    t0 = time.perf_counter()
    results = run_notebooks(a.profile, dry_run=True, log=lambda *_: None)
    dt = time.perf_counter() - t0
    fresh = sum(r.status == "up to date" for r in results)
    print(
        f"deciding what to run (--dry-run, profile {a.profile!r}): {dt:.2f} s, {fresh}/{len(results)} up to date"
        + ("" if fresh == len(results) else "  (not all up to date: this includes validating their parameters)")
    )


if __name__ == "__main__":
    main()
