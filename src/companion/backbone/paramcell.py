"""The parameters cell every notebook opens with: ``profile`` and ``overrides``, and under them, as comments, every
parameter the notebook's class declares with its default and meaning, so the first screen says what can be changed.

The comment block is generated from the class (:func:`parameters_cell`) and a test keeps each committed notebook's
cell equal to it; after changing a parameter class, rewrite the cells with
``.venv/bin/python -m companion.backbone.paramcell notebooks/*.ipynb``.  Papermill injects its own cell after this
one, so the comments never hide a value given on the command line; ``P`` (shown by the next cell) holds the values
in force, the profile's included.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from companion.backbone.params import NotebookParams

HEAD = (
    'profile = None  # None: $COMPANION_PROFILE if set, else "organism"\n'
    'overrides = {}  # any parameter below, e.g. {"seed": 1}; a profile may change the defaults (P shows them)\n'
)
WIDTH = 118
"""Longest comment line (the notebook's code cells are read at about this width)."""


def _short(text: str, room: int) -> str:
    return text if len(text) <= room else text[: max(room - 1, 1)].rstrip() + "…"


def parameters_cell(cls: type[NotebookParams]) -> str:
    """The source of the parameters cell of a notebook whose parameters are ``cls``."""
    docs = cls.docs()
    lines = [f"# {cls.__name__} ({cls.__module__}): name = default  # meaning"]
    for name, field in cls.model_fields.items():
        default = repr(field.get_default(call_default_factory=True))
        left = f"#   {name} = {_short(default, 60)}"
        meaning = docs.get(name, "").replace("``", "`").rstrip(".")
        lines.append(f"{left}  # {_short(meaning, WIDTH - len(left) - 4)}" if meaning else left)
    return HEAD + "\n".join(lines)


def sync(path: Path) -> bool:
    """Rewrite ``path``'s parameters cell from its class; True when it changed."""
    from companion.backbone.plan import load_params_class

    text = path.read_text()
    nb = json.loads(text)
    cls = load_params_class(nb["metadata"]["companion"]["params"])
    want = parameters_cell(cls).splitlines(keepends=True)
    changed = False
    for cell in nb["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []) and cell["source"] != want:
            cell["source"], changed = want, True
    if changed:
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    for name in sys.argv[1:] if argv is None else argv:
        if sync(Path(name)):
            print(f"{name}: parameters cell rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
