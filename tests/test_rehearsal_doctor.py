"""``companion doctor``: runs here and says, in plain lines, what a GPU user would need (issue 11); against the
loopback Hub it checks access to the gated repository with and without a token."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from companion.models.doctor import diagnose, report
from tests.rehearsal import builders
from tests.rehearsal.hub import LoopbackHub
from tests.rehearsal.world import ACCEPTED_TOKEN

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the report of a machine without CUDA")
def test_doctor_paper_here_fails_with_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as the test session: no Hub here
    lines: list[str] = []
    status = report(diagnose("paper"), lines.append)
    text = "\n".join(lines)
    assert status == 1
    assert "FAIL cuda: no usable CUDA device" in text and "-> run on a machine with a GPU" in text
    assert "FAIL hub" in text and "-> unset HF_HUB_OFFLINE" in text
    assert "meta-llama/Llama-2-7b-hf: 13.48 GB to download" in text
    for name in ("ParetoParams", "ShrinkageParams", "ProbeParams", "SycophancyParams"):
        assert f"info time {name}: ~" in text
    assert "disk" in text and lines[-1].startswith("3 problem(s)") or lines[-1].startswith("2 problem(s)")


@pytest.mark.slow
def test_doctor_checks_gated_access_and_sizes_through_the_hub(tmp_path):
    hub = LoopbackHub(accepted_tokens=(ACCEPTED_TOKEN,)).start()
    try:
        hub.add_repo("model", "meta-llama/Llama-2-7b-hf",
                     builders.llama_repo(tokenizer=builders.llama_tokenizer(chat_template=None), n_layers=1),
                     gated=True)
        size = len(hub.repos[("model", "meta-llama/Llama-2-7b-hf")].files["model.safetensors"].data) / 1e9
        env = {k: v for k, v in os.environ.items() if not k.endswith("OFFLINE")}
        endpoint = hub.endpoint
        env.update(COMPANION_REHEARSAL_HUB=endpoint, HF_HOME=str(tmp_path))
        cmd = [sys.executable, "-m", "companion.cli", "doctor", "--profile", "rehearsal"]
        without = subprocess.run(cmd, cwd=ROOT, env={**env, "HF_TOKEN": ""}, capture_output=True, text=True,
                                 timeout=300)
        with_token = subprocess.run(cmd, cwd=ROOT, env={**env, "HF_TOKEN": ACCEPTED_TOKEN}, capture_output=True,
                                    text=True, timeout=300)
    finally:
        hub.stop()
    assert "ok   hub: endpoint " + endpoint in without.stdout, without.stdout + without.stderr
    assert "FAIL access meta-llama/Llama-2-7b-hf" in without.stdout and "gated: accept the licence" in without.stdout
    assert without.returncode == 1
    line = next(ln for ln in with_token.stdout.splitlines() if "meta-llama/Llama-2-7b-hf" in ln)
    assert line.startswith("ok   access meta-llama/Llama-2-7b-hf") and f"{size:.2f} GB to download" in line
