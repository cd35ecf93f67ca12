"""``companion doctor --profile paper``: a preflight for the paper profile, run before hours of GPU time.

Checks, in plain lines, each failing one followed by what to do: the CUDA device every notebook asks for and its
memory against the largest model(s) a notebook holds at once; free disk in the Hugging Face cache against the
weights still to download (~90 GB for the paper profile; the datasets are streamed, not stored); whether the Hub
answers through the clients' own configuration (endpoint, proxies, offline switches; :func:`hub_reachable`); access
to every model repository with the current token (Llama 2 is gated); and a rough run-time estimate per notebook.
The exit status is 1 when anything the profile needs is missing, so scripts can stop before starting.

What the profile needs (models, their sizes, the weights held at once, compute time) is read by
:mod:`companion.models.needs`; sizes come from the Hub's own file listing when it answers (the rehearsal exercises
that path against its loopback Hub).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from companion.models.needs import ASSUMED_TFLOPS, GB, KNOWN_MODELS, estimate_minutes, hub_weights_gb, profile_needs


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
        size = hub_weights_gb(repo_id) if reachable else None
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
