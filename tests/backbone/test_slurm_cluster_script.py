""".ci/slurm/cluster.sh itself, on a second private cluster (own state folder and ports, never the ``slurm`` one).

The case CI met: the daemons were killed (not stopped by ``down``) while a job ran, so the controller recovered a
job whose processes had died with it and kept the node allocated; ``up`` then waited for an idle node in vain.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.system]

SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "slurm" / "cluster.sh"
PORT = 16917  # four ports from here: not the test cluster's (16817)


def _ports_free() -> bool:
    for p in range(PORT, PORT + 4):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", p)) == 0:
                return False
    return True


@pytest.fixture
def private_cluster():
    mode = os.environ.get("COMPANION_SLURM_TESTS", "").strip()
    why = None
    if mode == "0":
        why = "COMPANION_SLURM_TESTS=0"
    elif os.geteuid() != 0:
        why = "starting a Slurm cluster needs root"
    elif not all(shutil.which(b) for b in ("slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd")):
        why = "Slurm, munge or MariaDB not installed (sudo .ci/slurm/cluster.sh up installs them)"
    elif not _ports_free():
        why = f"ports {PORT}-{PORT + 3} are taken"
    if why:
        if mode == "1":
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    # Short: the munge and MariaDB sockets live under it (a Unix socket path has at most 107 bytes).
    state = Path(tempfile.mkdtemp(prefix="slurm-", dir="/tmp"))
    state.chmod(0o755)  # munged runs as `munge` and must reach its socket folder
    env = {**os.environ, "COMPANION_SLURM_DIR": str(state), "COMPANION_SLURM_PORT": str(PORT)}
    env["SLURM_CONF"] = str(state / "etc" / "slurm.conf")

    def script(*args, timeout=300):
        return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout)

    try:
        yield state, env, script
    finally:
        script("down", "--purge")
        shutil.rmtree(state, ignore_errors=True)


def _pid(path: Path) -> int:
    return int(path.read_text().strip())


def test_up_recovers_from_daemons_killed_with_a_job_running(private_cluster):
    state, env, script = private_cluster
    r = script("up")
    assert r.returncode == 0, r.stderr[-2000:]
    pids = state / "job.pids"
    subprocess.run(
        ["sbatch", "-o", "/dev/null", "--wrap", f"echo $PPID $$ > {pids}; exec sleep 300"], env=env, check=True
    )
    t0 = time.monotonic()
    while not (pids.exists() and len(pids.read_text().split()) == 2):
        assert time.monotonic() - t0 < 60, "the job did not start"
        time.sleep(0.2)
    # Everything dies at once, the job's step daemon and its process too: what a killed session leaves behind.
    victims = [int(p) for p in pids.read_text().split()]
    for f in ("run/slurmd.pid", "run/slurmctld.pid", "run/slurmdbd.pid", "run/mariadbd.pid", "munge/munged.pid"):
        victims.append(_pid(state / f))
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    assert script("status").returncode != 0

    t0 = time.monotonic()
    r = script("up")
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    assert "cancelling jobs left from before" in r.stderr
    assert took < 25, f"up took {took:.0f} s"
    node = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True, check=True)
    assert node.stdout.strip() == "idle"
    queue = subprocess.run(["squeue", "-h", "-o", "%i"], env=env, capture_output=True, text=True, check=True)
    assert queue.stdout.strip() == ""
