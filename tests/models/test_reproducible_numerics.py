"""The same organism and SAE on Intel and AMD CPUs (issues 13, 22): trained on this CPU and on emulated ones.

``qemu-x86_64 -cpu Haswell`` (Intel) and ``-cpu EPYC`` (AMD) run this very venv on another CPU: the same
instructions, executed deterministically, with the other CPU's identity (vendor, model, caches), which is what
MKL picks its kernels by.  ``tests/_cpu_worker.py`` trains a tiny organism (tokenizer included), takes
activations through TransformerLens, trains a gated SAE on them and evaluates the SAE-spliced LM loss, once under
companion's pinning and once under the pinning it replaced (the control: ``MKL_CBWR=AVX2``, MKL's products,
unfused optimisers).  qemu also computes the approximate-reciprocal instructions exactly, where real silicon does
not, so any kernel using them makes the native run differ from the emulated ones.  The three runs start in the
background, at low priority, as soon as collection selects these tests (``tests/_emulated_cpus.py``).

Skipped with one line where qemu-user is missing (``apt-get install qemu-user``); ``COMPANION_REQUIRE_QEMU=1``
(set by ``.ci/run``) makes that a failure instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import _emulated_cpus
from _emulated_cpus import CPUS, PINNED

ARTIFACTS = ("organism", "organism_key", "tokenizer", "activations", "sae", "successor_saes", "sae_code_key", "losses")


@pytest.fixture(scope="module")
def emulated_runs() -> dict[str, dict[str, dict]]:
    """{cpu: {"pinned" | "control": the worker's report}} (the workers started when collection ended)."""
    why = _emulated_cpus.unavailable()
    if why:
        if os.environ.get("COMPANION_REQUIRE_QEMU") == "1":
            pytest.fail(f"COMPANION_REQUIRE_QEMU=1 but {why}")
        pytest.skip(why)
    return _emulated_cpus.start().reports()


def _by_cpu(runs, variant: str, what: str) -> dict[str, object]:
    return {cpu: runs[cpu][variant][what] for cpu in CPUS}


@pytest.mark.slow
@pytest.mark.system  # emulated CPUs: make test-system
def test_organisms_and_saes_are_the_same_on_intel_and_amd(emulated_runs):
    for what in ARTIFACTS:
        got = _by_cpu(emulated_runs, "pinned", what)
        assert len({json.dumps(v) for v in got.values()}) == 1, f"{what} differs between CPUs: {got}"
    # And every CPU reports the same numerics (they are in the cache keys): MKL really runs its vendor-neutral
    # branch, training's products go through oneDNN, torch's kernels are its AVX2 ones.
    numerics = _by_cpu(emulated_runs, "pinned", "numerics")
    assert len({json.dumps(n, sort_keys=True) for n in numerics.values()}) == 1, numerics
    n = numerics["native"]
    assert (n["mkl_branch"], n["dense_product"], n["cpu_capability"]) == ("COMPATIBLE", "onednn", "AVX2")


@pytest.mark.slow
@pytest.mark.system  # emulated CPUs: make test-system
def test_under_the_pinning_it_replaced_the_same_training_differs_by_cpu(emulated_runs):
    # The control, so the test above can fail: MKL_CBWR=AVX2 is honoured on Intel only (MKL reports AUTO on AMD),
    # and the organism, its activations and the SAE trained on them then differ between Intel and AMD.
    numerics = _by_cpu(emulated_runs, "control", "numerics")
    assert numerics["Haswell"]["mkl_branch"] == "AVX2" and numerics["EPYC"]["mkl_branch"] == "AUTO", numerics
    for what in ("organism", "activations", "sae"):
        got = _by_cpu(emulated_runs, "control", what)
        assert got["Haswell"] != got["EPYC"], f"control {what} is the same on emulated Intel and AMD: {got}"
        assert got["Haswell"] != emulated_runs["Haswell"]["pinned"][what]  # and the pinning did change the computation
    # The old cache keys could not tell those organisms apart; MKL's actual branch is in the keys now.
    for key in ("organism_key", "sae_code_key"):
        keys = _by_cpu(emulated_runs, "control", key)
        assert keys["Haswell"] != keys["EPYC"], keys


@pytest.mark.slow  # four interpreters that import torch
@pytest.mark.parametrize("order", ["companion first", "torch first", "torch used first"])
def test_the_numerics_in_force_are_reported_as_they_are(order):
    # torch chooses its kernels at the first computation, so importing it first is harmless; computing with it
    # before importing companion is not: the native paths are then in force, reported, and part of the cache key.
    env = {k: v for k, v in os.environ.items() if k not in PINNED}
    imports = {
        "companion first": "import companion, torch",
        "torch first": "import torch, companion",
        "torch used first": "import torch; torch.ones(4).exp().sum(); import companion",
    }[order]
    code = f"{imports}; import json; from companion.backbone.environment import numerics; print(json.dumps(numerics()))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    n = json.loads(out.stdout)
    assert n["torch_imported_before_companion"] is (order != "companion first")
    if order != "torch used first":
        assert n["cpu_capability"] == "AVX2" and n["pinned"]["MKL_CBWR"] == "COMPATIBLE"
        assert n["mkl_branch"] == "COMPATIBLE" and n["dense_product"] == "onednn"
    else:
        native = subprocess.run(
            [sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert n["cpu_capability"] == native
