"""How fast `make figures` decides that nothing needs to run, and how cheap the runner is to import.

    python benchmarks/bench_runner.py [--profile ci]

Prints the import time of ``companion.backbone.runner`` (it must not import torch) and the wall time of a
``run_notebooks`` call on an up-to-date build (every notebook skipped), measured from the executed copies already in
``build/executed/<profile>`` (run ``make figures PROFILE=ci`` first).  Goals: import < 1 s, skip-everything < 3 s.
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
    code = "import time, sys; t=time.perf_counter(); import companion.backbone.runner; " \
           "print(time.perf_counter()-t, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    print(f"import companion.backbone.runner: {float(out[0]) * 1000:.0f} ms (torch imported: {out[1]})")
    from companion.backbone.runner import run_notebooks

    t0 = time.perf_counter()
    results = run_notebooks(a.profile, log=lambda *_: None)
    dt = time.perf_counter() - t0
    skipped = sum(r.status == "skipped" for r in results)
    print(f"run_notebooks({a.profile!r}) on an up-to-date build: {dt:.2f} s, {skipped}/{len(results)} skipped"
          + ("" if skipped == len(results) else "  (not up to date: this measured real runs)"))


if __name__ == "__main__":
    main()
