"""Training organisms over names x seeds, and training workers that stop when their parent dies."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from companion.organism.workers import prepare_organisms

TINY = {
    "size": "tiny",
    "corpus": {"n_docs": 600, "backdoor": True, "sycophancy_p": 0.9},
    "model": {"n_layer": 1, "d_model": 32, "n_head": 2, "n_ctx": 160},
    "train": {"steps": 12, "batch_size": 8, "seq_len": 144, "log_every": 4},
    "tokenizer": {"vocab_size": 400, "n_docs": 300},
}


def _weights(path: Path) -> str:
    return json.loads((path / "organism.json").read_text())["weights_sha256"]


def test_prepare_organisms_trains_every_name_at_every_seed_once(tmp_path, monkeypatch):
    from companion.backbone import profiles

    monkeypatch.setenv("COMPANION_CACHE", str(tmp_path))
    real = profiles.load_profile("ci")
    tiny = real.model_copy(
        update={
            "organisms": {
                "settings": {"seeds": [0, 1]},
                "a": TINY,
                "b": TINY,
                "c": {**TINY, "corpus": {**TINY["corpus"], "backdoor": False}},
            }
        }
    )
    monkeypatch.setattr("companion.organism.build.load_profile", lambda name=None: tiny)
    out = prepare_organisms(["a", "b", "c"], "ci", jobs=1, progress=False)
    assert set(out) == {(n, s) for n in "abc" for s in (0, 1)}
    for s in (0, 1):
        assert out[("a", s)] == out[("b", s)]  # one spec, one trained model, at every seed
        assert out[("a", s)] != out[("c", s)]
        meta = json.loads((out[("a", s)] / "organism.json").read_text())
        assert meta["seed"] == meta["spec"]["corpus"]["seed"] == meta["spec"]["train"]["seed"] == s
    assert _weights(out[("a", 0)]) != _weights(out[("a", 1)])  # different seeds, different weights
    assert len({p for p in out.values()}) == 4
    again = prepare_organisms(["a"], "ci", seeds=[1], jobs=1, progress=False)
    assert again == {("a", 1): out[("a", 1)]}


_ORPHAN_SCRIPT = """
import multiprocessing as mp, os, sys, threading, time
from companion.organism.build import OrganismSpec
from companion.organism.workers import train_specs
spec = OrganismSpec.model_validate({spec!r})

def report():
    while len(mp.active_children()) < 2:
        time.sleep(0.05)
    print(" ".join(str(p.pid) for p in mp.active_children()), flush=True)

threading.Thread(target=report, daemon=True).start()
train_specs({{"a": spec, "b": spec.with_seed(1)}}, jobs=2, progress=False)
print("finished", flush=True)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"  # a zombie has stopped; its new parent reaps it


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads process states from /proc")
def test_training_workers_stop_when_the_process_that_started_them_dies(tmp_path):
    # Organisms long enough to still be training when the parent is killed (~10^5 steps of a tiny model).
    spec = {**TINY, "train": {**TINY["train"], "steps": 100_000, "log_every": 2}}
    env = {**os.environ, "COMPANION_CACHE": str(tmp_path)}
    parent = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN_SCRIPT.format(spec=spec)], stdout=subprocess.PIPE, text=True, env=env
    )
    workers: list[int] = []
    try:
        workers = [int(p) for p in parent.stdout.readline().split()]
        assert len(workers) == 2, workers
        building = tmp_path / "organism"
        deadline = time.time() + 120
        while len(list(building.glob(".tmp-*"))) < 2:  # both are inside their builds
            assert time.time() < deadline, "workers never started training"
            assert parent.poll() is None, "the parent exited early"
            time.sleep(0.2)
        time.sleep(1.0)
        assert all(_alive(p) for p in workers)
        parent.send_signal(signal.SIGKILL)  # a killed kernel: no cleanup code runs in the parent
        parent.wait()
        deadline = time.time() + 30
        while any(_alive(p) for p in workers) and time.time() < deadline:
            time.sleep(0.2)
        assert not any(_alive(p) for p in workers), "training workers outlived their parent"
        assert not list(building.glob(".tmp-*")), "a stopped worker left a partial cache entry"
        assert not [p for p in building.iterdir() if not p.name.startswith(".")]  # nothing was cached
    finally:
        for p in workers:  # only the processes this test started
            if _alive(p):
                os.kill(p, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
