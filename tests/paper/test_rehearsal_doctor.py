"""``companion doctor``: runs here and says, in plain lines, what a GPU user would need (issue 11); against the
loopback Hub it checks access to the gated repository with and without a token."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tests.rehearsal import builders
from tests.rehearsal.hub import LoopbackHub
from tests.rehearsal.world import ACCEPTED_TOKEN

from companion.models.doctor import diagnose, report

ROOT = Path(__file__).resolve().parents[2]


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
    failed = set(lines[-1].split(": ", 1)[1].split(", "))
    must = {"cuda", "hub", "access meta-llama/Llama-2-7b-hf", "download SycophancyParams"}
    assert "disk" in text and must <= failed <= must | {"disk"}, lines[-1]


def _paper_with(**sycophancy):
    """The paper profile with settings of its SycophancyParams section changed (what a user edits in paper.yaml)."""
    from companion.backbone.profiles import load_profile

    prof = load_profile("paper")
    section = {**prof.notebooks["SycophancyParams"], **sycophancy}
    return prof.model_copy(update={"notebooks": {**prof.notebooks, "SycophancyParams": section}})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the report of a machine without CUDA")
def test_doctor_without_the_hub_says_what_it_could_not_check_and_checks_data_dir_and_folders(monkeypatch, tmp_path):
    """Issue 19: no word on the gated licence or HF_TOKEN when the Hub was unreachable, nor on data_dir, the
    streamed datasets, the sycophancy files' host or the folders a run writes; one FAIL printed its fix twice."""
    from _sycophancy_fixtures import FILES, write_dataset_dir
    from companion.sycophancy.data import git_blob_id

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no token file either
    monkeypatch.setenv("COMPANION_FIGURES_DIR", str(tmp_path / "figures-file" / "paper"))
    (tmp_path / "figures-file").write_text("a file where the figures folder should be")
    lines: list[str] = []
    report(diagnose(_paper_with(data_dir="/nonexistent")), lines.append)
    text = "\n".join(lines)
    gated = next(ln for ln in lines if ln.startswith("FAIL access meta-llama/Llama-2-7b-hf"))
    assert gated.endswith(
        "could not check access (the Hub did not answer); the repository is gated and HF_TOKEN is not set"
    )
    assert text.count("accept the licence on the repository's Hub page (meta-llama/Llama-2-7b-hf)") == 1
    for ds in ("allenai/c4", "monology/pile-uncopyrighted"):
        assert f"info dataset {ds}: could not check: the Hub did not answer" in text
    assert "FAIL settings SycophancyParams: data_dir '/nonexistent': no such directory" in text
    assert f"FAIL write figures: {tmp_path}/figures-file/paper: {tmp_path}/figures-file is a file, not a folder" in text
    assert "ok   write cache" in text and "ok   write build" in text
    assert "download SycophancyParams" not in text  # data_dir given: nothing to download

    # A data_dir holding the pinned files is checked, file by file, against the pins.
    d = write_dataset_dir(tmp_path / "data")
    blobs = {fn: git_blob_id((d / fn).read_bytes()) for fn in FILES.values()}
    lines.clear()
    report(diagnose(_paper_with(data_dir=str(d), data_blobs=blobs)), lines.append)
    assert f"ok   data_dir SycophancyParams: {d}: every file is there and is the pinned one" in lines
    (d / FILES["nlp_survey"]).write_text("{}\n")
    lines.clear()
    report(diagnose(_paper_with(data_dir=str(d), data_blobs=blobs)), lines.append)
    assert any(
        ln.startswith(f"FAIL settings SycophancyParams: {d / FILES['nlp_survey']}: git blob id ")
        and f"is not the pinned {blobs[FILES['nlp_survey']]}" in ln
        for ln in lines
    ), lines


@pytest.mark.slow
def test_doctor_checks_gated_access_and_sizes_through_the_hub(tmp_path):
    from companion.sycophancy.data import PINNED_COMMIT

    hub = LoopbackHub(accepted_tokens=(ACCEPTED_TOKEN,)).start()
    try:
        hub.add_repo(
            "model",
            "meta-llama/Llama-2-7b-hf",
            builders.llama_repo(tokenizer=builders.llama_tokenizer(chat_template=None), n_layers=1),
            gated=True,
        )
        size = len(hub.repos[("model", "meta-llama/Llama-2-7b-hf")].files["model.safetensors"].data) / 1e9
        # The streamed datasets and the sycophancy files through the profile's base URL: one of each missing.
        hub.add_repo("dataset", "allenai/c4", {"README.md": "---\n---\n", "en/c4-train.00000-of-01024.json.gz": b""})
        for name, data in list(builders.sycophancy_files().items())[:2]:
            hub.raw[f"anthropics/evals/{PINNED_COMMIT}/sycophancy/{name}"] = data
        env = {k: v for k, v in os.environ.items() if not k.endswith("OFFLINE")}
        endpoint = hub.endpoint
        env.update(COMPANION_REHEARSAL_HUB=endpoint, HF_HOME=str(tmp_path), COMPANION_CACHE=str(tmp_path / "cache"))
        cmd = [sys.executable, "-m", "companion.cli", "doctor", "--profile", "rehearsal"]
        without = subprocess.run(
            cmd, cwd=ROOT, env={**env, "HF_TOKEN": ""}, capture_output=True, text=True, timeout=300
        )
        with_token = subprocess.run(
            cmd, cwd=ROOT, env={**env, "HF_TOKEN": ACCEPTED_TOKEN}, capture_output=True, text=True, timeout=300
        )
    finally:
        hub.stop()
    assert "ok   hub: endpoint " + endpoint in without.stdout, without.stdout + without.stderr
    assert "FAIL access meta-llama/Llama-2-7b-hf" in without.stdout and "gated: accept the licence" in without.stdout
    assert without.stdout.count("accept the licence") == 1  # the fix is printed once, under its FAIL line
    assert without.returncode == 1
    assert "ok   dataset allenai/c4: streamed at run time; readable" in without.stdout
    assert "FAIL dataset monology/pile-uncopyrighted: streamed at run time\n     -> not found" in without.stdout
    missing = list(builders.sycophancy_files())[2]
    assert (
        f"FAIL download SycophancyParams: {endpoint}/raw/anthropics/evals/{PINNED_COMMIT}/sycophancy/{missing}: "
        "answers 404"
    ) in without.stdout, without.stdout
    line = next(ln for ln in with_token.stdout.splitlines() if "meta-llama/Llama-2-7b-hf" in ln)
    assert line.startswith("ok   access meta-llama/Llama-2-7b-hf") and f"{size:.2f} GB to download" in line
