"""Latencies of submitit on the single-node test Slurm (``.ci/slurm/cluster.sh``): what the slurm executor and its
tests can expect.

    python benchmarks/bench_slurm.py [--quick]

Measures, from submission to the answer being known to the submitting process:

* a trivial round trip (``submit(add)`` then ``result()``), three times;
* a job array of 4 trivial tasks (``map_array``, 2 at a time) and a ``batch()`` of 3;
* a job that raises (its traceback comes back in ``FailedJobError``);
* ``scancel`` of a running job until sacct says CANCELLED and ``result()`` raises;
* preemption (``job._interrupt()``) of a checkpointable counter until it finishes after its requeue — it must
  resume from its checkpoint, not from zero;
* the time limit (1 min, submitit's warning signal off) until sacct says TIMEOUT; left out by ``--quick``.

Goals on 2 cores: round trip ≤ 2 s, array ≤ 4 s, cancel ≤ 10 s to CANCELLED, requeue ≤ 30 s (Slurm holds a
requeued job for cred_expire = 10 s), time limit ≤ 100 s (Slurm checks limits every 30 s).  Skips with a message
when the cluster is not running.
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STATE = Path(os.environ.get("COMPANION_SLURM_DIR", "/tmp/companion-slurm"))
SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "slurm" / "cluster.sh"


def _boom(x):
    raise ValueError(f"unit {x} exploded")


class Counter:
    """Counts to ``n`` (0.1 s a step), keeping its position in a file: a checkpointable job."""

    def __init__(self, n: int, state_file: str):
        self.n, self.state_file = n, state_file

    def __call__(self) -> list[int]:
        p = Path(self.state_file)
        i = int(p.read_text()) if p.exists() else 0
        starts = [i]
        log = Path(self.state_file + ".starts")
        log.write_text((log.read_text() if log.exists() else "") + f"{i}\n")
        while i < self.n:
            time.sleep(0.1)
            i += 1
            p.write_text(str(i))
        return [int(s) for s in log.read_text().split()] if log.exists() else starts

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(self)


def _wait(job, every=0.25):
    while not job.done(force_check=True):
        time.sleep(every)


def _sacct_state(job_id: str) -> str:
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "State", "-j", job_id], capture_output=True, text=True)
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="leave out the 1-minute time-limit measurement")
    args = ap.parse_args()
    if subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True).returncode != 0:
        print(f"bench_slurm: skipped, the test cluster is not running (sudo {SCRIPT} up)")
        return 0
    os.environ["SLURM_CONF"] = str(STATE / "etc" / "slurm.conf")
    import submitit

    t: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-slurm-") as tmp:
        folder = Path(tmp) / "%j"

        def executor(**kw):
            ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
            ex.update_parameters(timeout_min=5, slurm_partition="debug", cpus_per_task=1, **kw)
            return ex

        ex = executor(slurm_array_parallelism=2)
        for i in range(3):
            t0 = time.monotonic()
            assert ex.submit(operator.add, 1, i).result() == 1 + i
            t[f"round_trip_{i}_s"] = time.monotonic() - t0

        t0 = time.monotonic()
        assert [j.result() for j in ex.map_array(operator.add, [1, 2, 3, 4], [10, 20, 30, 40])] == [11, 22, 33, 44]
        t["array_of_4_s"] = time.monotonic() - t0
        t0 = time.monotonic()
        with ex.batch():
            jobs = [ex.submit(operator.mul, i, i) for i in range(3)]
        assert [j.result() for j in jobs] == [0, 1, 4]
        t["batch_of_3_s"] = time.monotonic() - t0

        t0 = time.monotonic()
        try:
            ex.submit(_boom, 7).result()
            raise AssertionError("the failing job did not fail")
        except submitit.core.utils.FailedJobError as e:
            assert "ValueError: unit 7 exploded" in str(e)
        t["failing_job_s"] = time.monotonic() - t0

        job = ex.submit(time.sleep, 300)
        while _sacct_state(job.job_id) != "RUNNING":
            time.sleep(0.2)
        t0 = time.monotonic()
        subprocess.run(["scancel", job.job_id], check=True)
        while not _sacct_state(job.job_id).startswith("CANCELLED"):
            time.sleep(0.2)
        t["scancel_to_sacct_cancelled_s"] = time.monotonic() - t0
        _wait(job)
        try:
            job.result()  # waits up to submitit's _results_timeout_s (15 s) for a result file, then raises
        except submitit.core.utils.UncompletedJobError:
            pass
        t["scancel_to_result_raises_s"] = time.monotonic() - t0

        state_file = str(Path(tmp) / "counter")
        t0 = time.monotonic()
        job = ex.submit(Counter(40, state_file))
        while not Path(state_file).exists() or int(Path(state_file).read_text() or 0) < 10:
            time.sleep(0.05)
        job._interrupt()  # preemption: SIGTERM then submitit's USR2; checkpoint() requeues it
        _wait(job)
        starts = job.result()
        assert starts[0] == 0 and starts[1] >= 10, f"did not resume from its checkpoint: started at {starts}"
        t["preempt_requeue_resume_s"] = time.monotonic() - t0

        if not args.quick:
            ex1 = executor(slurm_signal_delay_s=0)  # no warning signal: Slurm's own kill at the limit
            ex1.update_parameters(timeout_min=1)
            t0 = time.monotonic()
            job = ex1.submit(time.sleep, 600)
            while _sacct_state(job.job_id) != "TIMEOUT":
                time.sleep(0.5)
            t["time_limit_1min_to_sacct_timeout_s"] = time.monotonic() - t0
    print(json.dumps({k: round(v, 2) for k, v in t.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
