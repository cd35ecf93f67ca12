"""SAE sweep checkpoints (companion.sae.checkpoint): a sweep stopped part-way — by an exception, or by SIGKILL in a
separate process — and run again ends with exactly the SAEs, optimiser states and logs of an uninterrupted run
(resampling included, whose pool the resume refills by replaying the stream)."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from companion.sae.checkpoint import Checkpointing
from companion.sae.sweeps import equal_compute_sweep, successor_sweep
from companion.sae.toy import superposition_data
from companion.sae.training import SAETrainConfig, train_sweep

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Resampling every 10 steps until step 32: checkpoints every 4 steps fall before, on and after resamplings.  Few true
# features and large λ, so that checks find dead latents to resample.
CFG = SAETrainConfig(
    lr=0.01, warmup_steps=2, resample_every=10, resample_until=32, rewarmup_steps=4, resample_inputs=512
)
# The successors too: TopK's dead-latent counters (AuxK) and BatchTopK's running threshold are training state.
SPECS = equal_compute_sweep(64, [3.0, 20.0], [2.0, 30.0]) + successor_sweep(
    32,
    lambdas_jumprelu=[0.5],
    topk_ks=[2],
    batchtopk_ks=[2],
    topk={"aux_k": 8, "dead_tokens": 256},
    batchtopk={"aux_k": 8, "dead_tokens": 256},
)
STEPS = 40


def _batches(stop_after: int | None = None):
    data = superposition_data(d=16, n_features=4, expected_l0=1, seed=0)
    for i, b in enumerate(data.batches(STEPS, 128, seed=1)):
        if stop_after is not None and i == stop_after:
            raise KeyboardInterrupt("killed")
        yield b


def _train(checkpoint=None, stop_after=None):
    return train_sweep(_batches(stop_after), SPECS, CFG, seed=3, max_steps=STEPS, progress=False, checkpoint=checkpoint)


def _assert_same(a, b):
    for ta, tb in zip(a, b, strict=True):
        for (name, pa), pb in zip(ta.sae.state_dict().items(), tb.sae.state_dict().values(), strict=True):
            assert torch.equal(pa, pb), f"{ta.spec.name}.{name} differs from the uninterrupted run"
        la, lb = dataclasses.asdict(ta.log), dataclasses.asdict(tb.log)
        la.pop("seconds"), lb.pop("seconds")  # wall-clock step time: measured, never equal
        assert la == lb, ta.spec.name
        assert ta.input_scale == tb.input_scale


def test_a_sweep_stopped_part_way_resumes_to_the_uninterrupted_result(tmp_path):
    reference = _train()
    assert any(n for t in reference for _, n in t.log.resampled), "the test must cross a resampling"
    ck = Checkpointing(tmp_path / "ckpt", every=4)
    with pytest.raises(KeyboardInterrupt):
        _train(ck, stop_after=27)  # dies between the checkpoints of steps 24 and 28 (resampled at 20 and 30)
    assert ck.latest().name == "step-000000024" and len(list(ck.folder.iterdir())) == 1  # older ones removed
    resumed = _train(ck)
    _assert_same(reference, resumed)
    # Saving changes nothing either: an uninterrupted run with checkpoints equals one without.
    _assert_same(reference, _train(Checkpointing(tmp_path / "other", every=4)))


def test_a_checkpoint_of_another_sweep_is_refused(tmp_path):
    ck = Checkpointing(tmp_path / "ckpt", every=4)
    with pytest.raises(KeyboardInterrupt):
        _train(ck, stop_after=9)
    with pytest.raises(ValueError, match="another sweep"):
        train_sweep(
            _batches(),
            equal_compute_sweep(24, [0.5], [0.3]),
            CFG,
            seed=3,
            max_steps=STEPS,
            progress=False,
            checkpoint=ck,
        )


SCRIPT = """
import sys, time, torch
import companion
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
import test_sae_checkpoint as t
from companion.sae.checkpoint import Checkpointing
slow = sys.argv[2] == "slow"

def batches():
    for b in t._batches():
        if slow:
            time.sleep(0.05)
        yield b

out = t.train_sweep(batches(), t.SPECS, t.CFG, seed=3, max_steps=t.STEPS, progress=False,
                    checkpoint=Checkpointing(t.Path(sys.argv[1]), every=4))
torch.save([x.sae.state_dict() for x in out], sys.argv[1] + ".result.pt")
"""


@pytest.mark.slow
def test_a_sweep_killed_with_sigkill_and_rerun_ends_with_the_uninterrupted_saes(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent)))
    folder = tmp_path / "ckpt"
    run = [sys.executable, str(script), str(folder)]
    proc = subprocess.Popen(run + ["slow"], env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)})
    t0 = time.monotonic()
    while not (folder.is_dir() and any(p.name >= "step-000000012" for p in folder.iterdir())):
        assert proc.poll() is None, "the training finished before it could be killed"
        assert time.monotonic() - t0 < 120, "no checkpoint appeared"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not Path(f"{folder}.result.pt").exists()
    subprocess.run(run + ["fast"], check=True, timeout=300)
    resumed = torch.load(f"{folder}.result.pt", weights_only=True)
    reference = _train()
    for sd, t in zip(resumed, reference, strict=True):
        for name, p in t.sae.state_dict().items():
            assert torch.equal(sd[name], p), f"{t.spec.name}.{name} differs after kill and rerun"
