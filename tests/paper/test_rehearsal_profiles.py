"""Profiles for the paper path (issue 11): inheritance (rehearsal = paper + overrides), environment references,
stamps (rehearsal figures; notebook 00 never unstamped under paper), notebook 00 skipped under paper, explicit
devices and a clear error for a missing CUDA device."""

import json

import pytest
import torch

from companion.backbone.profiles import ProfileError, deep_merge, expand_env, load_profile, parse_profile


def test_rehearsal_is_paper_plus_overrides_only():
    paper, reh = load_profile("paper"), load_profile("rehearsal")
    assert reh.extends == "paper" and reh.figures_dir == "build/figures/rehearsal"
    # Ids, datasets, formats and organisms are inherited, never restated.
    for cls, keys in {
        "ParetoParams": ("targets", "text_datasets", "lr", "normalize_activations"),
        "ProbeParams": ("model_id", "control_model_id", "dialogue_format", "trigger"),
        "SycophancyParams": ("models", "data", "data_commit", "templates"),
    }.items():
        for k in keys:
            assert reh.overrides_for(cls).get(k) == paper.overrides_for(cls).get(k), (cls, k)
    # What does change: scale, endpoint, device (and the rehearsal's own data pins).
    allowed = {
        "train_tokens",
        "seq_len",
        "model_batch_size",
        "buffer_tokens",
        "gated_latents",
        "lambdas_gated",
        "lambdas_baseline",
        "lambdas_jumprelu",
        "topk_ks",
        "batchtopk_ks",
        "warmup_steps",
        "resample_every",
        "resample_until",
        "rewarmup_steps",
        "eval_tokens",
        "eval_lm_tokens",
        "eval_seq_len",
        "progress",
        "device",
        "dtype",
        "n_per_dataset",
        "n_bootstrap",
        "n_random_directions",
        "batch_size",
        "data_base_url",
        "data_blobs",
        "toy_lambdas",
        "toy_steps",
    }
    for cls in ("ParetoParams", "ShrinkageParams", "ProbeParams", "SycophancyParams"):
        changed = {k for k, v in reh.overrides_for(cls).items() if paper.overrides_for(cls).get(k) != v}
        assert changed <= allowed, (cls, changed - allowed)
    assert reh.not_applicable == paper.not_applicable and "00" in paper.not_applicable
    assert paper.source_text in reh.source_text  # a change to paper.yaml re-runs the rehearsal's notebooks


def test_deep_merge_and_extends_errors():
    assert deep_merge({"a": {"x": 1, "y": 2}, "b": [1]}, {"a": {"y": 3}, "b": [2]}) == {"a": {"x": 1, "y": 3}, "b": [2]}
    texts = {
        "base": "description: d\noffline: true\nfigures_dir: f\nnotebooks: {P: {a: 1, b: 2}}\n",
        "loop1": "extends: loop2\n",
        "loop2": "extends: loop1\n",
    }
    child = parse_profile("child", "extends: base\nnotebooks: {P: {b: 3}}\n", load_text=texts.__getitem__)
    assert child.overrides_for("P") == {"a": 1, "b": 3} and child.offline
    with pytest.raises(ProfileError, match="cycle"):
        parse_profile("loop1", texts["loop1"], load_text=texts.__getitem__)
    with pytest.raises(ProfileError, match="unknown profile 'nope'"):
        parse_profile("x", "extends: nope\n")


def test_environment_references_expand_or_name_the_missing_variable(monkeypatch):
    monkeypatch.delenv("COMPANION_REHEARSAL_HUB", raising=False)
    with pytest.raises(ProfileError, match="COMPANION_REHEARSAL_HUB"):
        load_profile("rehearsal").apply_env()
    monkeypatch.setenv("COMPANION_REHEARSAL_HUB", "http://127.0.0.1:5")
    monkeypatch.setenv("HF_ENDPOINT", "unchanged")
    load_profile("rehearsal").apply_env()
    import os

    assert os.environ["HF_ENDPOINT"] == "http://127.0.0.1:5"
    assert expand_env("${HF_ENDPOINT}/raw/x") == "http://127.0.0.1:5/raw/x"


@pytest.mark.parametrize(
    "profile,notebook,stamp_start,fallback",
    [
        ("rehearsal", "notebooks/01_gated_vs_l1_pareto.ipynb", "REHEARSAL", True),
        ("paper", "notebooks/00_model_organism.ipynb", "NOT A PAPER FIGURE", True),  # was unstamped, fallback false
        ("paper", "notebooks/01_gated_vs_l1_pareto.ipynb", None, False),
        ("organism", "notebooks/00_model_organism.ipynb", "FALLBACK", True),
    ],
)
def test_figures_are_stamped_by_profile_and_notebook(profile, notebook, stamp_start, fallback, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from companion.backbone import figures, runtime

    monkeypatch.setenv("COMPANION_FIGURES_DIR", str(tmp_path))
    monkeypatch.setattr(runtime, "_CURRENT", runtime.RunContext(load_profile(profile), notebook, None, 0.0))
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    saved = figures.save_figure(fig, "x")
    side = json.loads(saved.sidecar.read_text())
    drawn = [t.get_text() for t in fig.texts if t.get_gid() == figures._STAMP_GID]
    plt.close(fig)
    assert side["fallback"] is fallback
    if stamp_start is None:
        assert drawn == [] and side["stamp"] is None
    else:
        # The stamp is wrapped to the figure's width: the same words.
        assert len(drawn) == 1 and drawn[0].startswith(stamp_start) and side["stamp"] == " ".join(drawn[0].split())


def test_runner_skips_notebook_00_under_paper_saying_why(tmp_path):
    from companion.backbone import runner
    from companion.backbone.profiles import project_root

    lines = []
    results = runner.run_notebooks("paper", only="00", root=project_root(), build_dir=tmp_path, log=lines.append)
    assert [(r.notebook, r.status) for r in results] == [("00_model_organism.ipynb", "not applicable")]
    assert any("skipped, not a notebook of profile 'paper'" in line and "organisms" in line for line in lines)
    assert not list(tmp_path.rglob("*.ipynb")), "nothing was executed"


def test_paper_notebooks_ask_for_an_explicit_cuda_device():
    from companion.models.needs import profile_needs

    needs = profile_needs("paper")
    assert set(needs.devices) == {"ParetoParams", "ShrinkageParams", "ProbeParams", "SycophancyParams"}
    assert set(needs.devices.values()) == {"cuda"}
    assert needs.params["SycophancyParams"].dtype == "float16"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where CUDA is missing")
def test_a_missing_cuda_device_is_a_clear_error_never_a_cpu_run(monkeypatch):
    from companion.models.loading import DeviceUnavailableError, check_device, load_model
    from companion.sycophancy.experiment import measure_models
    from companion.sycophancy.params import SycophancyParams

    with pytest.raises(DeviceUnavailableError, match="CUDA is not available here.*-p device=cpu"):
        check_device("cuda")
    # Before anything is loaded or downloaded: the loader is never reached.
    from transformer_lens.model_bridge import TransformerBridge

    monkeypatch.setattr(TransformerBridge, "boot_transformers", lambda *a, **k: pytest.fail("loader reached"))
    with pytest.raises(DeviceUnavailableError):
        load_model("EleutherAI/pythia-70m", device="cuda")
    P = SycophancyParams(models=("EleutherAI/pythia-70m",), data="anthropic", device="cuda")
    with pytest.raises(DeviceUnavailableError):
        measure_models(P, {}, load=lambda *a: pytest.fail("a model was loaded"))
    with pytest.raises(ValueError, match="auto"):
        SycophancyParams(device="auto")
    from companion.sae.subjects import load_subject

    with pytest.raises(DeviceUnavailableError):
        load_subject("organism:backdoor", "ci", device="cuda")
