"""``companion doctor --profile paper``: a preflight for the paper profile, run before hours of GPU time.

Checks, in plain lines, each failing one followed by what to do: the CUDA device every notebook asks for and its
memory against the largest model(s) a notebook holds at once; free disk in the Hugging Face cache against the
weights still to download (~90 GB for the paper profile; the datasets are streamed, not stored); whether the Hub
answers through the clients' own configuration (endpoint, proxies, offline switches; :func:`hub_reachable`); access
to every model repository with the current token (Llama 2 is gated); and a rough run-time estimate per notebook.
The exit status is 1 when anything the profile needs is missing, so scripts can stop before starting.

Sizes come from the Hub's own file listing when it answers (the rehearsal exercises that path against its
loopback Hub), else from :data:`KNOWN_MODELS`.  Time estimates are FLOP counts over an assumed throughput: orders of
magnitude, not promises.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable
from pathlib import Path
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
class Check:
    """One line of the report."""

    name: str
    """What was checked."""
    ok: bool | None
    """True passed, False failed (the profile cannot run), None informational."""
    detail: str
    """What was found."""
    fix: str = ""
    """What to do when it failed."""


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


def _hub_sizes(repo_id: str) -> float | None:
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


def estimate_minutes(name: str, P: Any, device: str) -> float | None:
    """Rough minutes for one notebook: forward FLOPs (2·N per token) plus SAE training, at :data:`ASSUMED_TFLOPS`."""
    from companion.models.loading import resolve_name

    flops = 0.0
    if hasattr(P, "targets"):
        for t in P.targets:
            n = KNOWN_MODELS.get(resolve_name(t.split("@")[0]), (0.0, 0.0))[0] * 1e9
            flops += 2 * n * (P.train_tokens + P.eval_tokens)
            flops += 2 * n * P.eval_lm_tokens * (2 + len(P.lambdas_gated) + len(P.lambdas_baseline))
            d = 2048 if "mlp.hook_post" in t else 512
            widths = [1.5 * P.gated_latents] * len(P.lambdas_gated) + [P.baseline_width_factor * P.gated_latents] * len(
                P.lambdas_baseline
            )
            flops += P.train_tokens * sum(12 * d * m for m in widths)  # forward + backward of encoder and decoder
        if hasattr(P, "toy_steps"):  # notebook 02 reuses notebook 01's SAEs: evaluation only
            flops = sum(
                2
                * KNOWN_MODELS.get(resolve_name(t.split("@")[0]), (0.0, 0.0))[0]
                * 1e9
                * P.eval_lm_tokens
                * (2 + len(P.lambdas_gated) + len(P.lambdas_baseline))
                for t in P.targets
            )
    elif hasattr(P, "models"):
        n_items = (P.n_per_dataset or 10_000) * len(P.datasets) * len(P.templates)
        flops = sum(2 * KNOWN_MODELS.get(resolve_name(m), (0.0, 0.0))[0] * 1e9 * n_items * 200 for m in P.models)
    elif getattr(P, "model_id", ""):
        flops = 2 * 2 * KNOWN_MODELS.get(P.model_id, (0.0, 0.0))[0] * 1e9 * 400 * 120
    else:
        return None
    return flops / (ASSUMED_TFLOPS["cuda" if device.startswith("cuda") else "cpu"] * 1e12) / 60


def diagnose(profile: str = "paper") -> list[Check]:
    """Every check for ``profile``, in report order (its environment applied first, as a notebook run would)."""
    from companion.backbone.profiles import load_profile

    prof = load_profile(profile)
    prof.apply_env()  # before the Hub clients are imported: they read HF_ENDPOINT once
    import torch

    from companion.models.hub import hub_endpoint, hub_reachable, is_cached_locally, offline_env

    checks = [Check("profile", None, f"{prof.name}: figures -> {prof.figures_dir}; offline={prof.offline}")]
    needs = profile_needs(profile)

    # --- CUDA and its memory
    wants_cuda = sorted({d for d in needs.devices.values() if d.startswith("cuda")})
    need_gb = max(needs.concurrent_gb.values(), default=0.0)
    if torch.cuda.is_available():
        props = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
        free, total = torch.cuda.mem_get_info(0)
        detail = (
            f"{len(props)} device(s): {', '.join(p.name for p in props)}; device 0 has {free / GB:.1f} of "
            f"{total / GB:.1f} GB free; the largest notebook holds ~{need_gb:.1f} GB of weights at once"
        )
        checks.append(
            Check(
                "cuda",
                free / GB >= need_gb * 1.2,
                detail,
                "free GPU memory (other processes hold it) or use a larger GPU; bfloat16/float16 "
                "weights halve it (-p dtype=bfloat16)",
            )
        )
    else:
        built = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        detail = f"no usable CUDA device (torch {torch.__version__}, {built})"
        if wants_cuda:
            checks.append(
                Check(
                    "cuda",
                    False,
                    f"{detail}; the profile asks for {', '.join(wants_cuda)} in "
                    f"{', '.join(k for k, v in needs.devices.items() if v.startswith('cuda'))}",
                    f"run on a machine with a GPU holding ~{need_gb:.0f} GB of weights plus activations "
                    "(e.g. one 40-80 GB card), with a CUDA build of torch",
                )
            )
        else:
            checks.append(Check("cuda", None, detail + "; this profile does not ask for CUDA"))

    # --- the Hub, through the clients' configuration
    proxies = {
        k: v
        for k in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "NO_PROXY", "no_proxy")
        if (v := os.environ.get(k))
    }
    where = f"endpoint {hub_endpoint()}" + (f", proxies {proxies}" if proxies else ", no proxy")
    reachable = not prof.offline and hub_reachable()
    if prof.offline:
        checks.append(Check("hub", None, f"{where}; this profile never uses the Hub"))
    elif offline_env():
        checks.append(
            Check(
                "hub",
                False,
                f"{where}; offline switches set "
                f"({[v for v in ('HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE', 'HF_DATASETS_OFFLINE') if os.environ.get(v)]})",
                "unset HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE / HF_DATASETS_OFFLINE",
            )
        )
    else:
        checks.append(
            Check(
                "hub",
                reachable,
                f"{where}; {'answers' if reachable else 'does not answer'}",
                "check the network, HF_ENDPOINT (a mirror?) and HTTPS_PROXY; the Hub clients use exactly these",
            )
        )

    # --- access to each model, and what is left to download
    from huggingface_hub import get_token

    token = get_token()
    ids = list(dict.fromkeys(m for ms in needs.models.values() for m in ms))
    todo_gb = 0.0
    for repo_id in ids:
        cached = is_cached_locally(repo_id)
        size = _hub_sizes(repo_id) if reachable else None
        size = size if size is not None else KNOWN_MODELS.get(repo_id, (0.0, 0.0))[1]
        todo_gb += 0.0 if cached else size
        state = "cached" if cached else f"{size:.2f} GB to download"
        if reachable:
            ok, fix = _access(repo_id, token)
            checks.append(
                Check(f"access {repo_id}", ok, state + ("; readable with the current token" if ok else ""), fix)
            )
        elif repo_id.startswith(GATED_PREFIXES):  # what we know without the Hub: it is gated, and the token
            checks.append(
                Check(
                    f"access {repo_id}",
                    None if token else False,
                    f"{state}; could not check access (the Hub did not answer); the repository is gated "
                    f"and HF_TOKEN is {'set' if token else 'not set'}",
                    _GATED_FIX.format(repo_id=repo_id),
                )
            )
        else:
            checks.append(Check(f"model {repo_id}", None, state))

    # --- the streamed datasets, and files fetched from outside the Hub
    for repo_id in dict.fromkeys(
        d.partition(":")[0] for P in needs.params.values() for d in (getattr(P, "text_datasets", None) or {}).values()
    ):
        if reachable:
            ok, fix = _access(repo_id, token, "dataset")
            checks.append(Check(f"dataset {repo_id}", ok, "streamed at run time" + ("; readable" if ok else ""), fix))
        else:
            checks.append(
                Check(
                    f"dataset {repo_id}",
                    None,
                    "could not check: the Hub did not answer (streamed at "
                    "run time, never stored: the run needs the Hub throughout)",
                )
            )
    for name, P in needs.params.items():
        checks += _source_checks(f"download {name}", P.sources(prof))

    # --- what each notebook checks itself before a run (data folders and their pinned files, organisms)
    for name, P in needs.params.items():
        problems = P.preflight(prof)
        for line in problems:
            checks.append(
                Check(
                    f"settings {name}",
                    False,
                    line,
                    "fix the profile's notebooks."
                    + name
                    + " section or the files it names (`companion figures --dry-run` lists the same)",
                )
            )
        if not problems and getattr(P, "data_dir", None):
            checks.append(Check(f"data_dir {name}", True, f"{P.data_dir}: every file is there and is the pinned one"))

    # --- the folders a run writes to
    from companion.backbone.atomic import writable_problem
    from companion.backbone.cache import default_root
    from companion.backbone.plan import figures_dir
    from companion.backbone.profiles import project_root

    root = project_root()
    for what, folder in (
        ("figures", figures_dir(prof, root)),
        ("build", root / "build" / "executed" / prof.name),
        ("cache", default_root()),
    ):
        problem = writable_problem(folder)
        checks.append(
            Check(
                f"write {what}",
                problem is None,
                problem or f"{folder} is writable",
                "make it writable, or point it elsewhere (COMPANION_FIGURES_DIR, COMPANION_CACHE)",
            )
        )

    # --- disk
    from huggingface_hub import constants as hc

    cache_dir = Path(hc.HF_HUB_CACHE)
    probe = next((p for p in (cache_dir, *cache_dir.parents) if p.exists()), Path("/"))
    free_gb = shutil.disk_usage(probe).free / GB
    checks.append(
        Check(
            "disk",
            free_gb >= todo_gb * 1.1,
            f"{free_gb:.0f} GB free at {cache_dir} (HF_HOME / HF_HUB_CACHE); ~{todo_gb:.1f} GB of weights "
            "still to download (datasets are streamed, not stored)",
            f"free ~{todo_gb * 1.1 - free_gb:.0f} GB there, or point HF_HOME at a larger disk",
        )
    )

    # --- time
    for name, P in needs.params.items():
        device = needs.devices.get(name, "cpu")
        minutes = estimate_minutes(name, P, device)
        if minutes is not None:
            checks.append(
                Check(
                    f"time {name}",
                    None,
                    f"~{max(minutes, 0.1):.1f} min of compute on {device} "
                    f"(FLOPs at an assumed {ASSUMED_TFLOPS['cuda' if device.startswith('cuda') else 'cpu']:g}"
                    " TFLOP/s), plus downloads",
                )
            )
    return checks


GATED_PREFIXES = ("meta-llama/",)
"""Repositories gated on the Hub (Meta's licence): known without asking the Hub."""
_GATED_FIX = (
    "accept the licence on the repository's Hub page ({repo_id}) with your account, then set HF_TOKEN to a "
    "token of that account (or `huggingface-cli login`), and run this again where the Hub answers"
)


def _source_checks(name: str, sources: dict[str, str]) -> list[Check]:
    """Whether each file a run would download from outside the Hub answers at its URL, as one line when all do (or
    when the host itself does not answer), else one line per missing file."""
    from companion.models.hub import offline_env

    if not sources:
        return []
    where = os.path.commonprefix(list(sources.values())).rpartition("/")[0] + "/"
    fix = (
        "check the network, the URL's setting in the profile (e.g. data_base_url) and HTTPS_PROXY; or put the "
        "files in a folder and set data_dir"
    )
    if offline_env():
        return [
            Check(
                name,
                False,
                f"{len(sources)} file(s) to download from {where}; offline switches are set, so "
                "the run would refuse to download them",
                "unset HF_HUB_OFFLINE / HF_DATASETS_OFFLINE, or " + fix,
            )
        ]
    bad = []
    for _fname, url in sources.items():
        ok, detail = _url_answers(url)
        if not ok:
            bad.append(Check(name, False, f"{url}: {detail}", fix))
            if detail.startswith("does not answer"):  # the host: the other files would say the same
                break
    return bad or [Check(name, True, f"{len(sources)} file(s) not cached yet, each answers at {where}")]


def _url_answers(url: str, timeout: float = 10.0) -> tuple[bool, str]:
    """Whether ``url`` serves a file (a HEAD request through urllib, which honours HTTP(S)_PROXY), and what it said."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout) as r:  # noqa: S310
            return True, f"answers ({r.status})"
    except urllib.error.HTTPError as e:
        return False, f"answers {e.code} {e.reason}: the file is not there"
    except (urllib.error.URLError, OSError) as e:
        return False, f"does not answer ({getattr(e, 'reason', e)})"


def _access(repo_id: str, token: str | None, repo_type: str = "model") -> tuple[bool, str]:
    """Whether the current token can read ``repo_id``, and what to do when it cannot ("" when it can)."""
    from huggingface_hub import auth_check
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        auth_check(repo_id, repo_type=repo_type, token=token)
    except GatedRepoError:
        return False, (
            f"gated: accept the licence on the repository's Hub page ({repo_id}) with your account, "
            f"then set HF_TOKEN to a token of that account ({'one is set but' if token else 'none is set'}"
            f"{' lacks access' if token else ''})"
        )
    except RepositoryNotFoundError:
        return False, f"not found on the Hub (or private): check the id {repo_id!r} in the profile"
    except Exception as e:  # network trouble mid-way: report, do not crash the report
        return False, f"could not check ({type(e).__name__}: {e})"
    return True, ""


def report(checks: list[Check], out: Callable[[str], None] = print) -> int:
    """Print the checks as plain lines; returns the exit status (1 when any failed)."""
    mark = {True: "ok  ", False: "FAIL", None: "info"}
    for c in checks:
        out(f"{mark[c.ok]} {c.name}: {c.detail}")
        if c.ok is False and c.fix:
            out(f"     -> {c.fix}")
    failed = [c.name for c in checks if c.ok is False]
    out(f"{len(failed)} problem(s): {', '.join(failed)}" if failed else "ready: nothing missing for this profile")
    return 1 if failed else 0
