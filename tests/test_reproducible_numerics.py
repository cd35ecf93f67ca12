"""Organisms are bit-for-bit the same on any x86-64 CPU with AVX2 (issue 13): importing companion pins torch's,
MKL's and oneDNN's code paths to AVX2 before torch loads.  Simulated here by training one tiny organism in fresh
processes whose environment asks for another CPU's paths, as a different machine would choose them."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest



TRAIN = """
import json, sys
import companion  # first import: pins the numeric code paths (unless opted out)
from companion.backbone.environment import numerics
from companion.organism.build import OrganismSpec, build_organism
spec = OrganismSpec.model_validate({
    "corpus": {"n_docs": 400, "seed": 0, "backdoor": True, "sycophancy_p": 0.9},
    "model": {"n_layer": 1, "d_model": 32, "n_head": 2, "n_ctx": 160},
    "train": {"steps": 8, "batch_size": 8, "seq_len": 144, "log_every": 4},
    "tokenizer": {"vocab_size": 400, "n_docs": 300}})
path, _ = build_organism(spec, progress=False)
meta = json.loads((path / "organism.json").read_text())
print(json.dumps({"weights": meta["weights_sha256"], "numerics": numerics(), "key": path.name}))
"""

AVX512_MACHINE = {"ATEN_CPU_CAPABILITY": "avx512"}
AVX2_MACHINE = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def _train(tmp_path, name: str, machine: dict[str, str], native: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")}
    env.update(machine, COMPANION_CACHE=str(tmp_path / name))  # nothing shared between the "machines"
    if native:
        env["COMPANION_NATIVE_NUMERICS"] = "1"
    else:
        env.pop("COMPANION_NATIVE_NUMERICS", None)
    out = subprocess.run([sys.executable, "-c", TRAIN], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # two tiny trainings in fresh interpreters
def test_two_cpu_capabilities_train_identical_organisms_when_pinned(tmp_path):
    a = _train(tmp_path, "avx512-pinned", AVX512_MACHINE, native=False)
    b = _train(tmp_path, "avx2-pinned", AVX2_MACHINE, native=False)
    assert a["numerics"]["cpu_capability"] == b["numerics"]["cpu_capability"] == "AVX2"
    assert a["weights"] == b["weights"]
    assert a["key"] == b["key"]  # and the cache key agrees, so a committed figure's organism is found again


@pytest.mark.slow
def test_without_the_pinning_the_same_organism_depends_on_the_cpu(tmp_path):
    # The control that shows the first test can fail: the machines' own paths give different weights (and keys).
    a = _train(tmp_path, "avx512-native", AVX512_MACHINE, native=True)
    if a["numerics"]["cpu_capability"] != "AVX512":
        pytest.skip(f"this CPU has no AVX-512 path (torch runs {a['numerics']['cpu_capability']})")
    b = _train(tmp_path, "avx2-native", AVX2_MACHINE, native=True)
    assert b["numerics"]["cpu_capability"] == "AVX2" and a["numerics"]["pinned"] == {}
    assert a["weights"] != b["weights"]
    assert a["key"] != b["key"]


@pytest.mark.parametrize("order", ["companion first", "torch first", "torch used first"])
def test_the_numerics_in_force_are_reported_as_they_are(order):
    # torch chooses its kernels at the first computation, so importing it first is harmless; computing with it
    # before importing companion is not: the native paths are then in force, reported, and part of the cache key.
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA",
                                                           "COMPANION_NATIVE_NUMERICS")}
    imports = {"companion first": "import companion, torch", "torch first": "import torch, companion",
               "torch used first": "import torch; torch.ones(4).exp().sum(); import companion"}[order]
    code = f"{imports}; import json; from companion.backbone.environment import numerics; print(json.dumps(numerics()))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    n = json.loads(out.stdout)
    assert n["torch_imported_before_companion"] is (order != "companion first")
    if order != "torch used first":
        assert n["cpu_capability"] == "AVX2" and n["pinned"]["MKL_CBWR"] == "AVX2"
    else:
        native = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                                env=env, capture_output=True, text=True, check=True).stdout.strip()
        assert n["cpu_capability"] == native
