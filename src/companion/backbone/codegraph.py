"""Which ``companion`` modules a piece of code imports, transitively, read from the source (nothing is imported).

Two things depend on it being complete: the runner's skip decision (a notebook re-runs when any module it imports,
however indirectly, changed) and the cache keys (:func:`companion.backbone.cache.code_fingerprint` hashes the
closure of the producing code, so editing a helper that a producer imports makes a new entry).  Imports inside
functions count: the lazy ``from companion.x import y`` in a function body is code that runs.

The package ``__init__`` files of a module's parents are part of its closure (Python runs them on import).  They
hold no imports, so the import graph (:func:`import_graph`) has no edges through them and a cycle found by
:func:`find_cycles` is a real one.

The same graph states the architecture: :data:`LAYERS` orders the package's parts, and :func:`layer_violations`
lists every import that points the wrong way (``tests/backbone/test_codegraph.py`` requires there be none).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

PACKAGE = "companion"
PKG_DIR = Path(__file__).resolve().parents[1]
"""The ``companion`` package folder these functions read by default."""


def strip_magics(src: str) -> str:
    """Drop IPython magics and shell escapes (``%``, ``!`` lines), which are not Python, before parsing."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in src.splitlines())


def _is_ours(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


def imports_of(src: str, module: str | None = None, *, is_package: bool = False) -> set[str]:
    """Dotted ``companion`` names imported anywhere in ``src`` (function bodies included).

    ``module`` (the dotted name of the code's own module) resolves relative imports.  For
    ``from companion.x import y`` both ``companion.x`` and ``companion.x.y`` are returned; the second only matters
    when ``y`` is a module, which :func:`module_file` decides.
    """
    try:
        tree = ast.parse(strip_magics(src))
    except SyntaxError:
        return set()
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if _is_ours(a.name))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if module is None:
                    continue
                parts = module.split(".")
                base_parts = parts if is_package else parts[:-1]
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if not _is_ours(base):
                continue
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if a.name != "*")
    return found


def module_file(name: str, pkg_dir: Path | None = None) -> Path | None:
    """The source file of a dotted ``companion`` module (``__init__.py`` for a package), or None if there is none."""
    pkg_dir = pkg_dir or PKG_DIR
    rel = name.split(".")[1:]
    if not rel:
        return pkg_dir / "__init__.py"
    cand = pkg_dir.joinpath(*rel).with_suffix(".py")
    if cand.is_file():
        return cand
    init = pkg_dir.joinpath(*rel, "__init__.py")
    return init if init.is_file() else None


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


_DIRECT: dict[tuple[str, int, int, str], frozenset[str]] = {}
"""Parsed imports by (file, mtime, size, module): cache keys hash closures often, and parsing is the cost."""


def direct_imports(name: str, pkg_dir: Path | None = None) -> set[str]:
    """The existing ``companion`` modules that module ``name``'s source imports (no parent packages)."""
    f = module_file(name, pkg_dir)
    if f is None:
        return set()
    st = f.stat()
    memo = (str(f), st.st_mtime_ns, st.st_size, name)
    if memo not in _DIRECT:
        found = imports_of(f.read_text(), name, is_package=f.name == "__init__.py")
        _DIRECT[memo] = frozenset(m for m in found if m != name and module_file(m, pkg_dir) is not None)
    return set(_DIRECT[memo])


def module_closure(start: Iterable[str], pkg_dir: Path | None = None) -> dict[str, Path]:
    """Every ``companion`` module reachable by imports from ``start``, with their parent packages -> source file."""
    todo = [m for m in start]
    seen: dict[str, Path] = {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        f = module_file(name, pkg_dir)
        if f is None:
            continue  # `from companion.x import some_function`: a name, not a module
        seen[name] = f
        todo.extend(_parents(name))
        todo.extend(direct_imports(name, pkg_dir))
    return seen


def all_modules(pkg_dir: Path | None = None) -> list[str]:
    """Every module of the package, as dotted names."""
    pkg_dir = pkg_dir or PKG_DIR
    out = []
    for f in sorted(pkg_dir.rglob("*.py")):
        rel = f.relative_to(pkg_dir).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        out.append(".".join([PACKAGE, *parts]))
    return out


def import_graph(pkg_dir: Path | None = None) -> dict[str, set[str]]:
    """module -> the modules its source imports, for every module of the package."""
    return {m: direct_imports(m, pkg_dir) for m in all_modules(pkg_dir)}


LAYERS: tuple[tuple[str, ...], ...] = (
    ("companion",),
    ("companion.backbone",),
    ("companion.models",),
    ("companion.organism",),
    ("companion.sae", "companion.probes", "companion.sycophancy"),
    ("companion.features",),
    ("companion.readme",),
    ("companion.cli",),
)
"""The package's layers, lowest first; each entry names its parts (a subpackage or a module).  A module may import
its own part and the parts of lower layers, never a higher layer nor another part of its own layer: the notebook
backbone computes nothing and knows no model; models know no organism; the result packages (one per notebook pair)
stand on the organism and never on one another; notebook 05's package (``companion.features``) stands on the SAE
results it scores; the README's findings read the results; the command dispatches to
everything.  ``companion`` alone is the package ``__init__`` (the numeric pinning), which imports nothing of ours."""


def layer_of(module: str, layers: Sequence[Sequence[str]] = LAYERS) -> tuple[int, str] | None:
    """``(layer index, part)`` of a dotted module: the longest part naming it or a package above it (the top package
    ``companion`` places only its ``__init__``); None if none."""
    best: tuple[int, str] | None = None
    for i, parts in enumerate(layers):
        for part in parts:
            within = module == part or (part != PACKAGE and module.startswith(part + "."))
            if within and (best is None or len(part) > len(best[1])):
                best = (i, part)
    return best


def layer_violations(
    graph: Mapping[str, Iterable[str]], layers: Sequence[Sequence[str]] = LAYERS
) -> list[tuple[str, str, str]]:
    """Every import of ``graph`` (module -> modules it imports) that points the wrong way, as
    ``(importer, imported, why)``; a module that no layer places is reported once, as importing itself."""
    out: list[tuple[str, str, str]] = []
    for mod in sorted(graph):
        here = layer_of(mod, layers)
        if here is None:
            out.append((mod, mod, "in no layer: place it in LAYERS"))
            continue
        for dep in sorted(graph[mod]):
            there = layer_of(dep, layers)
            if there is None or there[1] == here[1]:
                continue  # an unplaced module is reported as itself; a part may import itself
            if there[0] > here[0]:
                out.append((mod, dep, f"{here[1]} (layer {here[0]}) imports the higher {there[1]} (layer {there[0]})"))
            elif there[0] == here[0]:
                out.append((mod, dep, f"{here[1]} imports {there[1]}, another part of layer {here[0]}"))
    return out


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a self-import): each is an import cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:  # Tarjan's algorithm; the graph has a few dozen nodes, recursion is fine
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out
