"""The notebooks' git filter: nbstripout, then the metadata JupyterLab rewrites put back in its committed form.

Notebooks are committed without outputs (nbstripout).  But opening a notebook in JupyterLab is enough for its
autosave to write the running kernel's ``kernelspec.display_name`` ("Python 3 (ipykernel)") and the kernel's full
``language_info`` (version, mimetype, lexer, ...), which nbstripout keeps: the tree turned dirty without anyone
editing anything, and every figure saved afterwards recorded ``"dirty": true``.  This filter strips what nbstripout
strips, with the project's extra keys (:data:`EXTRA_KEYS`), and writes those two entries back as every committed
notebook has them (:data:`KERNELSPEC`, :data:`LANGUAGE_INFO`) whenever the notebook runs on a Python kernel.

``make lab`` applies the same metadata rule when JupyterLab saves (:func:`lab_pre_save_hook`), so a notebook that
is opened and saved is byte for byte the committed one.  ``make setup`` makes this module git's clean filter and diff
text converter for ``*.ipynb`` (``.gitattributes``):

* ``python -m companion.backbone.nbclean`` reads a notebook on stdin and writes it cleaned on stdout (the filter);
* ``python -m companion.backbone.nbclean --textconv FILE`` prints ``FILE`` cleaned (``git diff``);
* ``python -m companion.backbone.nbclean FILE ...`` cleans files in place (``make strip``).
"""

from __future__ import annotations

import io
import sys
import warnings
from collections.abc import Sequence

EXTRA_KEYS = (
    # nbstripout's own defaults
    "metadata.signature",
    "metadata.widgets",
    "cell.metadata.collapsed",
    "cell.metadata.ExecuteTime",
    "cell.metadata.execution",
    "cell.metadata.heading_collapsed",
    "cell.metadata.hidden",
    "cell.metadata.scrolled",
    # what papermill and the widget manager add
    "metadata.papermill",
    "cell.metadata.papermill",
)
"""Metadata stripped on top of outputs and execution counts."""

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
"""The kernelspec of every committed notebook (whatever display name the local kernel has)."""

LANGUAGE_INFO = {"name": "python"}
"""The language_info of every committed notebook (the version and the rest depend on the machine)."""


def committed_metadata(nb) -> None:
    """Write the kernel metadata JupyterLab rewrites (display name, full language_info) in its committed form, in
    place.  Notebooks on another kernel keep their own."""
    meta = nb.setdefault("metadata", {})
    if (meta.get("kernelspec") or {}).get("name") == KERNELSPEC["name"]:
        meta["kernelspec"] = dict(KERNELSPEC)
    if (meta.get("language_info") or {}).get("name") == LANGUAGE_INFO["name"]:
        meta["language_info"] = dict(LANGUAGE_INFO)


def clean(nb):
    """The notebook (an ``nbformat`` node) as it is committed: no outputs, counts or run metadata, and the kernel
    metadata in its committed form (:func:`committed_metadata`)."""
    from nbstripout import strip_output

    nb = strip_output(nb, keep_output=False, keep_count=False, keep_id=False, extra_keys=list(EXTRA_KEYS))
    committed_metadata(nb)
    return nb


def lab_pre_save_hook(model, **_):
    """JupyterLab's pre-save hook (``make lab`` sets ``ContentsManager.pre_save_hook`` to it): a notebook keeps its
    outputs, but its kernel metadata is saved in the committed form, so a notebook opened and saved without a change
    is byte for byte the committed file and ``git status`` stays empty (git compares sizes before contents, and
    would list it as modified however clean the filter made it)."""
    if model.get("type") == "notebook" and isinstance(model.get("content"), dict):
        committed_metadata(model["content"])


def clean_text(text: str) -> str:
    """:func:`clean` on a notebook's JSON text, written as nbformat (and nbstripout) write notebooks."""
    import nbformat

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        nb = clean(nbformat.reads(text, as_version=nbformat.NO_CONVERT))
        out = io.StringIO()
        nbformat.write(nb, out)
    return out.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:  # git's clean filter: stdin -> stdout
        data = sys.stdin.buffer.read().decode("utf-8")
        sys.stdout.buffer.write(clean_text(data).encode("utf-8"))
        return 0
    if args[0] == "--textconv":
        for name in args[1:]:
            with open(name, encoding="utf-8") as f:
                sys.stdout.buffer.write(clean_text(f.read()).encode("utf-8"))
        return 0
    for name in args:
        with open(name, encoding="utf-8") as f:
            text = f.read()
        cleaned = clean_text(text)
        if cleaned != text:
            with open(name, "w", encoding="utf-8") as f:
                f.write(cleaned)
    return 0


if __name__ == "__main__":
    sys.exit(main())
