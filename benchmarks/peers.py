"""The peer SAE libraries the benchmark and the tests compare against: dictionary_learning and SAELens.

dictionary_learning (PyPI ``dictionary-learning``) is installed by ``make setup`` without its declared dependencies
(``benchmarks/requirements-peers.txt``): its nnsight 0.3 requires torchvision, and PyPI's torchvision is built for
CUDA torch; next to the CPU torch it breaks ``import transformers``.  Its trainers and dictionaries need only torch and einops, but its
package ``__init__`` imports its activation buffer, which imports nnsight; :func:`dictionary_learning` imports the
package without running that ``__init__``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types


def dictionary_learning() -> types.ModuleType:
    """The ``dictionary_learning`` package with ``.dictionary`` and ``.trainers`` imported (ImportError if absent)."""
    name = "dictionary_learning"
    pkg = sys.modules.get(name)
    if pkg is None:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("dictionary-learning is not installed (make setup installs it)")
        pkg = types.ModuleType(name)
        pkg.__path__ = list(spec.submodule_search_locations)
        pkg.__spec__ = spec
        sys.modules[name] = pkg
    for sub in ("dictionary", "trainers"):
        importlib.import_module(f"{name}.{sub}")
    return pkg
