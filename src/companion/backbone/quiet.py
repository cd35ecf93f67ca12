"""Quiet notebook runs: progress bars that suit where the notebook runs, and no library chatter.

What a researcher should see in a cell is progress and results, nothing in red.  Three sources of noise are dealt
with here, centrally, because the calls that trigger them are spread over the result packages:

* ``transformers``' own progress bars ("Loading weights", "Writing model shards"), one per load or save of even a
  tiny model: switched off through ``transformers.utils.logging.disable_progress_bar`` (downloads keep their
  ``huggingface_hub`` bars);
* TransformerLens' ``print("Moving model to device: ", ...)`` on every ``TransformerBridge.to(device)``: the bridge's
  module gets a version of ``move_to_and_update_config`` that never prints;
* under the runner (papermill), ``tqdm.auto`` would draw ipywidgets bars, which an executed copy cannot show: there it
  draws text bars on stdout instead.  In JupyterLab the widget bars stay.

Both library patches are applied when the library is first imported (or at once, if it already is), so
:func:`companion.backbone.runtime.start` stays cheap.
"""
from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import sys
import threading
from collections.abc import Callable

_HOOKS: dict[str, list[Callable]] = {}
_LOCK = threading.Lock()


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Runs the hooks registered for a module right after it has been executed."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in _HOOKS:
            return None
        sys.meta_path.remove(self)  # find the real spec without finding ourselves
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        real_exec = spec.loader.exec_module

        def exec_module(module):
            real_exec(module)
            _run_hooks(fullname, module)

        spec.loader.exec_module = exec_module
        return spec


_FINDER = _PostImportFinder()


def _run_hooks(name: str, module) -> None:
    with _LOCK:
        hooks = _HOOKS.pop(name, [])
        if not _HOOKS and _FINDER in sys.meta_path:
            sys.meta_path.remove(_FINDER)
    for hook in hooks:
        try:
            hook(module)
        except Exception:  # pragma: no cover - quieting a library must never break a run
            pass


def when_imported(name: str, hook: Callable) -> None:
    """Call ``hook(module)`` once ``name`` is imported: now if it already is, else right after its import."""
    if name in sys.modules:
        hook(sys.modules[name])
        return
    with _LOCK:
        _HOOKS.setdefault(name, []).append(hook)
        if _FINDER not in sys.meta_path:
            sys.meta_path.insert(0, _FINDER)


def _quiet_transformers(logging_module) -> None:
    logging_module.disable_progress_bar()


def _quiet_transformer_lens(bridge_module) -> None:
    move = getattr(bridge_module, "move_to_and_update_config", None)
    if move is None or getattr(move, "_companion_quiet", False):
        return

    @functools.wraps(move)
    def quiet_move(model, device_or_dtype, print_details=True):
        return move(model, device_or_dtype, False)

    quiet_move._companion_quiet = True
    bridge_module.move_to_and_update_config = quiet_move


def text_progress_bars() -> None:
    """Make ``tqdm.auto`` draw text bars on stdout (for papermill, whose executed copies cannot hold widgets)."""
    import tqdm.auto
    import tqdm.autonotebook
    from tqdm.std import tqdm as std_tqdm

    if getattr(tqdm.auto.tqdm, "_companion_text", False):
        return

    class TextTqdm(std_tqdm):
        """tqdm's text bar, on stdout (not red), redrawn at most once a second to keep executed copies small."""

        _companion_text = True

        def __init__(self, *args, **kwargs):
            kwargs.setdefault("file", sys.stdout)
            kwargs.setdefault("mininterval", 1.0)
            super().__init__(*args, **kwargs)

    tqdm.auto.tqdm = TextTqdm
    tqdm.autonotebook.tqdm = TextTqdm


def quiet_libraries(*, text_bars: bool) -> None:
    """Silence the libraries' chatter (see the module docstring); ``text_bars`` under the runner."""
    when_imported("transformers.utils.logging", _quiet_transformers)
    when_imported("transformer_lens.model_bridge.transformer_bridge", _quiet_transformer_lens)
    if text_bars:
        text_progress_bars()
