"""The run context of a notebook: which profile, which notebook, which parameters, which inputs.

A notebook calls :func:`start` once, right after its ``parameters`` cell.  It resolves the parameters
(the class's defaults, then the profile's overrides, then the notebook's ``overrides``), validates them,
applies the profile's environment (e.g. ``HF_HUB_OFFLINE=1``), seeds every RNG and records the context that
:func:`companion.backbone.figures.save_figure` writes into each figure's provenance sidecar.
"""

from __future__ import annotations

import dataclasses
import os
import random
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from companion.backbone.params import NotebookParams, ParamsT
from companion.backbone.profiles import Profile, load_profile, project_root

#: Set by the runner to the notebook's path relative to the project root.
NOTEBOOK_ENV = "COMPANION_NOTEBOOK"
#: Set (to "1") by the runner in the kernels it starts.
RUNNER_ENV = "COMPANION_RUNNER"


@dataclasses.dataclass
class RunContext:
    """What a figure's provenance needs to know about the run that made it."""

    profile: Profile
    """The fidelity profile in force."""
    notebook: str
    """Notebook path relative to the project root ("interactive" when unknown)."""
    params: NotebookParams | None
    """The validated parameters (None before :func:`start`)."""
    started: float
    """``time.time()`` when the run started (for wall time)."""
    inputs: dict[str, str] = dataclasses.field(default_factory=dict)
    """Input data name -> content hash (cache keys, dataset blob ids)."""
    lineage: dict[str, Any] | None = None
    """A fork's lineage as its figures record it (:func:`notebook_lineage`); None for a notebook that is no fork."""
    caveats: list[str] = dataclasses.field(default_factory=list)
    """What every figure saved afterwards must say about its inputs (data that is not the pinned data, items left
    out): stamped on the figure and listed in its sidecar (:func:`record_caveat`)."""

    @property
    def notebook_id(self) -> str:
        """The notebook's number ("01") or its stem when it has none; "scratch" when unknown."""
        stem = Path(self.notebook).stem
        m = re.match(r"^(\d+)_", stem)
        if m:
            return m.group(1)
        return "scratch" if self.notebook == "interactive" else stem


_CURRENT: RunContext | None = None


def current_notebook() -> str:
    """The running notebook: from the runner's env var, else JupyterLab's session name, else "interactive"."""
    nb = os.environ.get(NOTEBOOK_ENV) or os.environ.get("JPY_SESSION_NAME")
    if not nb:
        return "interactive"
    p = Path(nb)
    if p.is_absolute():
        try:
            p = p.resolve().relative_to(project_root())
        except ValueError:
            pass
    return p.as_posix()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (imported lazily: the runner must not pay for torch)."""
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def _single_intra_op_thread() -> None:
    """One torch intra-op thread for the organisms (2 blocks, <= 96 wide).

    On models this small a second thread only adds synchronisation: scoring notebook 03's 100 test prompts took
    0.2 s on one thread and 1-11 s on two, on a loaded 2-core machine.  A notebook whose parameters set
    ``torch_threads`` applies its own choice afterwards; the paper profile keeps torch's default.
    """
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    torch.set_num_threads(1)


def resolve_params(params_cls: type[ParamsT], profile: Profile, overrides: Mapping[str, Any] | None = None) -> ParamsT:
    """Defaults <- the profile's overrides for this class <- ``overrides``; validated."""
    values = {**profile.overrides_for(params_cls.__name__), **dict(overrides or {})}
    return params_cls.from_dict(values)


def start(params_cls: type[ParamsT], profile: str | None = None, overrides: Mapping[str, Any] | None = None) -> ParamsT:
    """Begin a notebook run: validate parameters, apply the profile, seed, and record the context."""
    global _CURRENT
    prof = load_profile(profile)
    prof.apply_env()
    params = resolve_params(params_cls, prof, overrides)
    seed_everything(params.seed)
    if prof.is_fallback:
        _single_intra_op_thread()
    notebook = current_notebook()
    _CURRENT = RunContext(
        profile=prof,
        notebook=notebook,
        params=params,
        started=time.time(),
        lineage=notebook_lineage(notebook, prof, params),
    )
    from companion.backbone.quiet import quiet_libraries

    quiet_libraries(text_bars=under_runner())
    _enable_autoreload()
    if prof.is_fallback:
        what = "offline fallback" if prof.offline else "a rehearsal of the paper path on stand-ins"
        print(f"Profile {prof.name!r} ({what}): figures are stamped as such and are not the paper's.")
    else:
        print(f"Profile {prof.name!r}: real models and datasets.")
    return params


def notebook_lineage(notebook: str, profile: Profile, params: NotebookParams) -> dict[str, Any] | None:
    """What a fork's figures record of where it came from, for the run in progress: the parent, the parent's commit,
    the hash of the fork's code cells, the profile this run is on, the parent's parameters under that same profile
    and what the fork changed from them.  None when ``notebook`` is not a fork (``metadata.companion.lineage``)."""
    import hashlib
    import json

    try:
        nb = json.loads((project_root() / notebook).read_text())
    except (OSError, ValueError):
        return None
    recorded = ((nb.get("metadata") or {}).get("companion") or {}).get("lineage")
    if not recorded:
        return None
    code = "\n\x00".join("".join(c.get("source", "")) for c in nb.get("cells", []) if c.get("cell_type") == "code")
    parent = resolve_params(type(params), profile).to_dict()
    mine = params.to_dict()
    return {
        "parent": recorded.get("parent"),
        "parent_commit": recorded.get("parent_commit"),
        "parent_tree_dirty": recorded.get("parent_tree_dirty"),
        "parent_lineage": recorded.get("parent_lineage"),
        "forked_under_profile": recorded.get("parent_profile"),
        "code_sha256": hashlib.sha256(code.encode()).hexdigest(),
        "profile": profile.name,
        "parent_params": parent,
        "changed_from_parent": {k: [parent.get(k), v] for k, v in mine.items() if parent.get(k) != v},
    }


def context() -> RunContext:
    """The current run context; outside :func:`start`, one for the default profile."""
    global _CURRENT
    if _CURRENT is None:
        _CURRENT = RunContext(profile=load_profile(None), notebook=current_notebook(), params=None, started=time.time())
    return _CURRENT


def record_input(name: str, digest: str) -> None:
    """Note an input (dataset file, cache entry) and its content hash for the provenance sidecars."""
    context().inputs[name] = digest


def record_caveat(text: str) -> None:
    """Note something every figure saved afterwards must say about its inputs (stamped on it, in its sidecar)."""
    caveats = context().caveats
    if text not in caveats:
        caveats.append(text)


def under_runner() -> bool:
    """Whether this kernel was started by the runner (``make figures``) rather than opened by a person."""
    return bool(os.environ.get(RUNNER_ENV))


def _enable_autoreload() -> None:
    """Turn on ``%autoreload 2`` in an interactive kernel so library edits show up without a restart."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return
    ip = get_ipython()
    if ip is None or under_runner():  # the runner's fresh kernels gain nothing from it
        return
    try:
        # The extension manager's own call, not %load_ext: it is silent when the extension is already loaded
        # (IPython 9 registers it as "IPython.extensions.autoreload", which a check for "autoreload" misses).
        ip.extension_manager.load_extension("autoreload")
        ip.run_line_magic("autoreload", "2")
    except Exception:  # pragma: no cover - never fail a run over a convenience
        pass
