"""submitit against a real single-node Slurm (the ``slurm`` fixture): what the slurm executor will rely on.

Jobs run stdlib functions, so the job's interpreter needs nothing from the test modules.
"""

import math
import operator
import subprocess
import time

import pytest

submitit = pytest.importorskip("submitit")
pytestmark = [pytest.mark.slow, pytest.mark.system]  # real jobs on the test cluster: make test-system


def _executor(slurm, folder, **kw):
    ex = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm")
    ex.update_parameters(timeout_min=5, slurm_partition=slurm.partition, cpus_per_task=1, **kw)
    return ex


def _sacct(job_id: str) -> dict[str, str]:
    """Job id -> state, as Slurm's accounting records them (array tasks as ``<id>_<i>``)."""
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", job_id.split("_")[0]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split("|", 1) for line in out.splitlines() if line)


def _until(pred, timeout=60.0, every=0.25):
    t0 = time.monotonic()
    while not pred():
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(every)


def test_a_function_round_trips_and_sacct_records_the_job(slurm, tmp_path):
    job = _executor(slurm, tmp_path).submit(operator.add, 2, 3)
    assert job.result() == 5
    _until(lambda: _sacct(job.job_id).get(job.job_id) == "COMPLETED")
    assert job.paths.stdout.parent == tmp_path / job.job_id  # one log folder per job, under the run's folder


def test_an_array_runs_every_task_and_a_failing_job_returns_its_traceback(slurm, tmp_path):
    ex = _executor(slurm, tmp_path, slurm_array_parallelism=2)
    jobs = ex.map_array(math.factorial, [3, 4, 5])
    assert len({j.job_id.split("_")[0] for j in jobs}) == 1  # one array, not three jobs
    assert [j.result() for j in jobs] == [6, 24, 120]
    bad = ex.submit(math.sqrt, -1.0)
    with pytest.raises(submitit.core.utils.FailedJobError) as err:
        bad.result()
    assert "ValueError: math domain error" in str(err.value) and str(bad.paths.stderr) in str(err.value)
    _until(lambda: _sacct(bad.job_id).get(bad.job_id) == "FAILED")
    # Accounting catches up with the array a moment after the results are in (it may list it as one record first).
    want = {j.job_id: "COMPLETED" for j in jobs}
    _until(lambda: _sacct(jobs[0].job_id) == want)


def test_a_cancelled_job_is_seen_as_cancelled_and_result_does_not_hang(slurm, tmp_path):
    job = _executor(slurm, tmp_path).submit(time.sleep, 300)
    _until(lambda: _sacct(job.job_id).get(job.job_id) == "RUNNING")
    subprocess.run(["scancel", job.job_id], check=True)
    _until(lambda: _sacct(job.job_id).get(job.job_id, "").startswith("CANCELLED"), timeout=30)
    assert job.done(force_check=True) and job.state.startswith("CANCELLED")
    # Without accounting (slurmdbd) the state would stay unknown and result() would wait for ever.  It still
    # waits up to _results_timeout_s (15 s) for a result file a slow network filesystem might not show yet; none
    # can come from a cancelled job, so the test does not spend those seconds.
    job._results_timeout_s = 1
    t0 = time.monotonic()
    with pytest.raises(submitit.core.utils.UncompletedJobError, match="CANCELLED"):
        job.result()
    assert time.monotonic() - t0 < 30
