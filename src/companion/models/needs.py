"""What a profile's notebooks need of a machine: the models each loads, the weights it holds on its device at once,
their download sizes and a rough compute time (``companion doctor`` checks the machine against it; the work units
of :mod:`companion.sae.units` and :mod:`companion.sycophancy.units` size Slurm jobs with the same numbers).

Sizes come from the Hub's own file listing when it answers (:func:`hub_weights_gb`), else from
:data:`KNOWN_MODELS`.  Time estimates are FLOP counts (2·N per token and forward pass, plus the SAEs' training) over an
assumed throughput (:data:`ASSUMED_TFLOPS`): orders of magnitude, not promises.
"""

from __future__ import annotations

import dataclasses
from typing import Any

GB = 1e9

KNOWN_MODELS: dict[str, tuple[float, float]] = {
    # repo id: (parameters in billions, bytes stored on the Hub in GB)
    "EleutherAI/pythia-70m": (0.070, 0.17),
    "EleutherAI/pythia-70m-deduped": (0.070, 0.17),
    "EleutherAI/pythia-160m": (0.162, 0.38),
    "EleutherAI/pythia-410m": (0.405, 0.91),
    "EleutherAI/pythia-1b": (1.01, 2.09),
    "EleutherAI/pythia-1.4b": (1.41, 2.93),
    "EleutherAI/pythia-2.8b": (2.78, 5.68),
    "EleutherAI/pythia-6.9b": (6.86, 13.86),
    "EleutherAI/pythia-12b": (11.85, 23.84),
    "NeelNanda/GELU_1L512W_C4_Code": (0.0034, 0.06),
    "saraprice/llama2-7B-backdoor-DEPLOYMENT": (6.74, 26.95),  # stored in float32
    "meta-llama/Llama-2-7b-hf": (6.74, 13.48),
    "meta-llama/Llama-2-7b-chat-hf": (6.74, 13.48),
}
"""Fallback sizes of the paper profile's models, used when the Hub's listing is not available."""

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
ASSUMED_TFLOPS = {"cuda": 40.0, "cpu": 0.3}
"""Effective throughput assumed for the run-time estimates (a recent data-centre GPU at a modest utilisation)."""
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")


@dataclasses.dataclass
class Needs:
    """What a profile's notebooks ask for, read from their resolved parameters."""

    devices: dict[str, str]
    """Notebook parameter class -> device it asks for."""
    models: dict[str, list[str]]
    """Notebook parameter class -> Hub model ids it loads."""
    concurrent_gb: dict[str, float]
    """Notebook parameter class -> GB of weights it holds on the device at once."""
    params: dict[str, Any]
    """Notebook parameter class -> its resolved parameters."""


def profile_needs(profile: str) -> Needs:
    """Resolve every notebook's parameters under ``profile`` (through the runner's discovery) and read its needs."""
    from companion.backbone import runner
    from companion.backbone.profiles import load_profile, project_root
    from companion.models.loading import resolve_name

    prof = load_profile(profile)
    needs = Needs({}, {}, {}, {})
    for nb in runner.discover(project_root() / "notebooks"):
        if prof.skip_reason(nb.name):
            continue
        cls = runner.load_params_class(runner.params_class_path(runner.read_notebook(nb), nb))
        P = cls.from_dict(prof.overrides_for(cls.__name__))
        name = cls.__name__
        needs.params[name] = P
        ids: list[str] = []
        fields: Any = P  # the notebooks' parameter classes differ: read what each has
        if hasattr(P, "targets"):
            ids = [resolve_name(t.split("@")[0]) for t in fields.targets if not t.startswith("organism:")]
        elif hasattr(P, "models"):
            ids = [resolve_name(m) for m in fields.models if m not in prof.organisms]
        elif getattr(P, "model_id", ""):
            ids = [m for m in (fields.model_id, fields.control_model_id) if m]
        ids = list(dict.fromkeys(ids))
        if not ids:
            continue
        needs.models[name] = ids
        needs.devices[name] = str(getattr(P, "device", "cpu"))
        width = DTYPE_BYTES.get(str(getattr(P, "dtype", "float32")), 4)
        sizes = [KNOWN_MODELS.get(m, (0.0, 0.0))[0] * width for m in ids]
        # Notebook 03 holds the model and its control together; the others one model at a time.
        needs.concurrent_gb[name] = sum(sizes) if hasattr(P, "control_model_id") else max(sizes)
    return needs


def hub_weights_gb(repo_id: str) -> float | None:
    """GB of weights ``from_pretrained``/``boot_tl_legacy`` would fetch, from the Hub's listing (None: no answer)."""
    from huggingface_hub import HfApi

    try:
        info = HfApi().model_info(repo_id, files_metadata=True, timeout=10)
    except Exception:
        return None
    files = {s.rfilename: (s.size or 0) for s in info.siblings or []}
    for suffix in WEIGHT_SUFFIXES:  # the first format present is the one the loaders take
        picked = [n for n in files if n.endswith(suffix) and not n.startswith("checkpoints/")]
        if picked:
            return sum(files[n] for n in picked) / GB
    return sum(files.values()) / GB


def estimate_minutes(name: str, params: Any, device: str) -> float | None:
    """Rough minutes for one notebook: forward FLOPs (2·N per token) plus SAE training, at :data:`ASSUMED_TFLOPS`."""
    from companion.models.loading import resolve_name

    flops = 0.0
    if hasattr(params, "targets"):
        for t in params.targets:
            n = KNOWN_MODELS.get(resolve_name(t.split("@")[0]), (0.0, 0.0))[0] * 1e9
            flops += 2 * n * (params.train_tokens + params.eval_tokens)
            flops += 2 * n * params.eval_lm_tokens * (2 + len(params.lambdas_gated) + len(params.lambdas_baseline))
            d = 2048 if "mlp.hook_post" in t else 512
            widths = [1.5 * params.gated_latents] * len(params.lambdas_gated) + [
                params.baseline_width_factor * params.gated_latents
            ] * len(params.lambdas_baseline)
            flops += params.train_tokens * sum(12 * d * m for m in widths)  # forward + backward of encoder and decoder
        if hasattr(params, "toy_steps"):  # notebook 02 reuses notebook 01's SAEs: evaluation only
            flops = sum(
                2
                * KNOWN_MODELS.get(resolve_name(t.split("@")[0]), (0.0, 0.0))[0]
                * 1e9
                * params.eval_lm_tokens
                * (2 + len(params.lambdas_gated) + len(params.lambdas_baseline))
                for t in params.targets
            )
    elif hasattr(params, "models"):
        n_items = (params.n_per_dataset or 10_000) * len(params.datasets) * len(params.templates)
        flops = sum(2 * KNOWN_MODELS.get(resolve_name(m), (0.0, 0.0))[0] * 1e9 * n_items * 200 for m in params.models)
    elif getattr(params, "model_id", ""):
        flops = 2 * 2 * KNOWN_MODELS.get(params.model_id, (0.0, 0.0))[0] * 1e9 * 400 * 120
    else:
        return None
    return flops / (ASSUMED_TFLOPS["cuda" if device.startswith("cuda") else "cpu"] * 1e12) / 60
