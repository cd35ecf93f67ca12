"""Saving figures with provenance, re-plotting them from their sidecars, and comparing sidecars.

``save_figure(fig, name, data=...)`` writes ``<figures_dir>/<NN>_<name>.png`` and ``.pdf`` plus ``.json``,
the provenance sidecar: notebook, git commit and dirty flag, profile, parameters, package versions,
input-data hashes, wall time, the hashes of the two images, the caller's ``data`` (the numbers behind the
figure) and ``plotted``, every
line, scatter and bar read back from the figure's artists, so :func:`replot` can redraw it without running
anything.  A figure from any profile but ``paper`` gets a visible stamp naming the profile: a fallback figure
never passes for the paper's.  In a notebook, ``save_figure`` is also what displays the figure, exactly once.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from companion.backbone import runtime
from companion.backbone.atomic import temporary_beside
from companion.backbone.environment import numerics, package_versions
from companion.backbone.gitstate import git_state
from companion.backbone.profiles import project_root

SIDE_CAR_VERSION = 2
#: Set by the runner to an id shared by every figure of one run (the runner finds a run's figures by it).
RUN_ENV = "COMPANION_RUN_ID"
#: Tolerances used by ``check-figures`` when a figure does not state its own.
DEFAULT_TOLERANCE = {"rtol": 1e-4, "atol": 1e-6}
_STAMP_GID = "companion-profile-stamp"


@dataclass(frozen=True)
class SavedFigure:
    """Where :func:`save_figure` wrote a figure."""

    png: Path
    """The raster image."""
    pdf: Path
    """The vector image."""
    sidecar: Path
    """The provenance JSON."""

    def _ipython_display_(self) -> None:
        """Nothing: :func:`save_figure` has already shown the image (a cell ending in it shows it once)."""


def jsonable(obj: Any) -> Any:
    """Convert numbers, arrays and tensors to plain JSON values (NaN/inf become strings)."""
    if hasattr(obj, "detach") and hasattr(obj, "cpu"):  # torch tensor
        obj = obj.detach().cpu().numpy()
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy array or scalar
        obj = obj.tolist()
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float):
        if math.isnan(obj) or math.isinf(obj):
            return str(obj)
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "_asdict"):  # NamedTuple
        return jsonable(obj._asdict())
    if hasattr(obj, "model_dump"):  # a pydantic record (companion.backbone.config.Config)
        return jsonable(obj.model_dump(mode="json"))
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return jsonable(dataclasses.asdict(obj))
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def extract_plotted(fig) -> list[dict[str, Any]]:
    """Read the numbers back out of a figure: per axes, its lines, scatters, bars, labels and scales."""
    from matplotlib.collections import LineCollection, PathCollection
    from matplotlib.container import BarContainer
    from matplotlib.lines import Line2D

    axes_out = []
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            continue
        entry: dict[str, Any] = {
            "position": [round(v, 6) for v in ax.get_position().bounds],
            "title": ax.get_title(),
            "xlabel": ax.get_xlabel(),
            "ylabel": ax.get_ylabel(),
            "xscale": ax.get_xscale(),
            "yscale": ax.get_yscale(),
            "lines": [],
            "scatters": [],
            "bars": [],
            "segments": [],
        }
        bar_patches: set[int] = set()
        for c in ax.containers:
            if isinstance(c, BarContainer):
                rects = list(c.patches)
                bar_patches.update(map(id, rects))
                entry["bars"].append(
                    {
                        "label": c.get_label() if not str(c.get_label()).startswith("_") else "",
                        "x": [r.get_x() for r in rects],
                        "y": [r.get_y() for r in rects],
                        "width": [r.get_width() for r in rects],
                        "height": [r.get_height() for r in rects],
                        "color": _hex(rects[0].get_facecolor()) if rects else None,
                    }
                )
        for line in ax.get_lines():
            if not isinstance(line, Line2D):
                continue
            label = str(line.get_label())
            entry["lines"].append(
                {
                    "label": "" if label.startswith("_") else label,
                    "x": _num_list(line.get_xdata()),
                    "y": _num_list(line.get_ydata()),
                    "color": _hex(line.get_color()),
                    "linestyle": line.get_linestyle(),
                    "marker": line.get_marker() if line.get_marker() not in (None, "None", "") else "",
                }
            )
        for coll in ax.collections:
            label = str(coll.get_label())
            label = "" if label.startswith("_") else label
            if isinstance(coll, PathCollection):
                offs: Any = coll.get_offsets()  # an (N, 2) array; matplotlib's stubs say array-like
                fc = coll.get_facecolor()
                entry["scatters"].append(
                    {
                        "label": label,
                        "x": _num_list([o[0] for o in offs]),
                        "y": _num_list([o[1] for o in offs]),
                        "color": _hex(fc[0]) if len(fc) else None,
                    }
                )
            elif isinstance(coll, LineCollection):  # error bars, hlines/vlines
                entry["segments"].append(
                    {
                        "label": label,
                        "segments": [_num_list(seg.ravel()) for seg in coll.get_segments()],
                        "color": _hex(coll.get_colors()[0]) if len(coll.get_colors()) else None,
                    }
                )
        axes_out.append(entry)
    return axes_out


def _num_list(values) -> list:
    out: list[float | str] = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            out.append(str(v))
            continue
        out.append(f if math.isfinite(f) else str(f))
    return out


def _hex(color) -> str | None:
    from matplotlib.colors import to_hex

    try:
        return to_hex(color, keep_alpha=False)
    except (ValueError, TypeError):
        return None


def _num(v) -> float:
    # A number, or the "nan" / "inf" / "-inf" that _num_list writes for a non-finite one (JSON has no such values):
    # float() reads both.
    return float(v)


def replot(sidecar: str | os.PathLike | Mapping[str, Any]):
    """Redraw a figure from the ``plotted`` numbers of its sidecar (no model, no notebook)."""
    import matplotlib.pyplot as plt

    side = json.loads(Path(sidecar).read_text()) if not isinstance(sidecar, Mapping) else sidecar
    fig = plt.figure(figsize=side.get("size_inches", (6.4, 4.8)))
    for a in side["plotted"]:
        ax = fig.add_axes(a["position"])
        for b in a["bars"]:
            ax.bar(
                b["x"],
                b["height"],
                width=b["width"],
                bottom=b["y"],
                align="edge",
                label=b["label"] or None,
                color=b["color"],
            )
        for ln in a["lines"]:
            ax.plot(
                [_num(v) for v in ln["x"]],
                [_num(v) for v in ln["y"]],
                label=ln["label"] or None,
                color=ln["color"],
                linestyle=ln["linestyle"],
                marker=ln["marker"] or None,
            )
        for s in a["scatters"]:
            ax.scatter([_num(v) for v in s["x"]], [_num(v) for v in s["y"]], label=s["label"] or None, color=s["color"])
        for sg in a["segments"]:
            from matplotlib.collections import LineCollection

            segs = [[(seg[i], seg[i + 1]) for i in range(0, len(seg), 2)] for seg in sg["segments"]]
            ax.add_collection(LineCollection(segs, colors=sg["color"], label=sg["label"] or None))
        ax.set_xscale(a["xscale"])
        ax.set_yscale(a["yscale"])
        ax.set_title(a["title"])
        ax.set_xlabel(a["xlabel"])
        ax.set_ylabel(a["ylabel"])
    return fig


DISPLAY_WIDTH_PX = 900
"""The narrowest width a notebook shows a figure at (JupyterLab's output area in a 1400-px window with its side
panel open): the stamp is sized to stay legible when a wide figure is scaled down to it."""
STAMP_MIN_PX = 10.0
"""Height of the stamp's letters on screen at :data:`DISPLAY_WIDTH_PX` (10 px: a small but legible label)."""


def stamp_lines(ctx: runtime.RunContext) -> list[str]:
    """What a figure of this run is stamped with: the profile's stamp (none for a paper figure), then every caveat
    recorded about its inputs (:func:`companion.backbone.runtime.record_caveat`)."""
    text = ctx.profile.stamp_for(ctx.notebook)  # the profile's stamp; a notebook not of the profile gets its own
    return ([text] if text else []) + list(ctx.caveats)


def stamp_fontsize(width_in: float) -> float:
    """Points for the stamp of an image ``width_in`` inches wide, shown at 100 dpi and scaled down to fit
    :data:`DISPLAY_WIDTH_PX`: the letters stay :data:`STAMP_MIN_PX` high on screen however wide the figure."""
    scale = min(1.0, DISPLAY_WIDTH_PX / (width_in * 100.0))
    return math.ceil(STAMP_MIN_PX * 72.0 / 100.0 / scale * 10) / 10


def _stamp(fig, ctx: runtime.RunContext) -> None:
    """A visible, unmistakable mark on every fallback figure, and each caveat about its inputs (added once).

    It goes below everything the figure draws (its tight bounding box: axes, titles, a legend under the axes), so
    it never covers data or legend; ``bbox_inches="tight"`` grows the image to include it.  Its size follows the
    figure's width (:func:`stamp_fontsize`), so it stays legible once a wide figure is scaled into a notebook.
    """
    import textwrap

    lines = stamp_lines(ctx)
    if not lines or any(t.get_gid() == _STAMP_GID for t in fig.texts):
        return
    fig.draw_without_rendering()  # lays the figure out first (constrained layout moves the axes when drawn)
    box = fig.get_tightbbox()  # inches, everything drawn so far
    width_in, height_in = fig.get_size_inches()
    from matplotlib import rcParams

    size = stamp_fontsize(box.width + 2 * float(rcParams["savefig.pad_inches"]))  # the saved image's width
    chars = max(40, int(box.width * 72 / (0.6 * size)))  # DejaVu Sans averages ~0.55 em per character
    text = "\n".join(textwrap.fill(line, chars) for line in lines)
    fig.text(
        box.x1 / width_in,
        (box.y0 - 0.08) / height_in,
        text,
        ha="right",
        va="top",
        fontsize=size,
        color="#b00020",
        gid=_STAMP_GID,
        bbox={"boxstyle": "round,pad=0.25", "facecolor": "#fff3f3", "edgecolor": "#b00020", "linewidth": 0.6},
    )


def figure_stem(name: str, ctx: runtime.RunContext) -> str:
    """``<notebook number>_<name>``: forks get their own files instead of overwriting the parent's."""
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ValueError(f"figure name must be letters, digits, '-' or '_', got {name!r}")
    return f"{ctx.notebook_id}_{name}"


def save_figure(
    fig,
    name: str,
    *,
    data: Mapping[str, Any] | None = None,
    tolerance: Mapping[str, Any] | None = None,
    caption: str = "",
    dpi: int = 150,
) -> SavedFigure:
    """Write the figure as PNG and PDF plus its provenance sidecar, into the profile's figures folder, and show it.

    ``data`` holds the numbers behind the figure (what ``check-figures`` compares); ``tolerance`` is
    ``{"rtol": ..., "atol": ...}`` for that comparison, optionally with per-key entries under ``"keys"``.

    The three files always come from one call: both images are rendered to temporaries first, the sidecar records
    their hashes, and the renames happen with SIGINT/SIGTERM held back (:func:`figure_is_complete` checks a set).
    In a notebook the PNG just written is displayed once as the cell's image, whatever kind of figure this is, and a
    pyplot figure is closed so the inline backend does not show it a second time.
    """
    ctx = runtime.context()
    root = project_root()
    # $COMPANION_FIGURES_DIR redirects one run's figures (tests use it); the profile's folder otherwise.
    out_dir = Path(os.environ.get("COMPANION_FIGURES_DIR") or root / ctx.profile.figures_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = figure_stem(name, ctx)
    _stamp(fig, ctx)
    png, pdf, side = out_dir / f"{stem}.png", out_dir / f"{stem}.pdf", out_dir / f"{stem}.json"
    from companion.backbone.cache import used_entries

    with temporary_beside(png) as png_tmp, temporary_beside(pdf) as pdf_tmp, temporary_beside(side) as side_tmp:
        fig.savefig(png_tmp, dpi=dpi, bbox_inches="tight", metadata={"Software": f"companion ({ctx.profile.name})"})
        # PDFs embed a creation date by default; drop it so re-runs give identical files.
        fig.savefig(pdf_tmp, bbox_inches="tight", metadata={"CreationDate": None})
        sidecar = {
            "sidecar_version": SIDE_CAR_VERSION,
            "figure": stem,
            "caption": caption,
            "notebook": ctx.notebook,
            "git": git_state(root),
            "run": os.environ.get(RUN_ENV),
            "profile": ctx.profile.name,
            "fallback": ctx.profile.is_fallback_for(ctx.notebook),
            "stamp": ctx.profile.stamp_for(ctx.notebook),
            "caveats": list(ctx.caveats),
            "lineage": ctx.lineage,  # a fork's parent, its code's hash, and its parameters against the parent's
            "profile_description": ctx.profile.description,
            "parameters": ctx.params.to_dict() if ctx.params is not None else None,
            "packages": package_versions(),
            "numerics": numerics(),  # the CPU code paths the numbers were computed on (companion pins them)
            "inputs": {**used_entries(), **ctx.inputs},
            "wall_time_s": round(time.time() - ctx.started, 3),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "size_inches": [float(v) for v in fig.get_size_inches()],
            "files": {"png": _sha256(png_tmp), "pdf": _sha256(pdf_tmp)},
            "tolerance": {**DEFAULT_TOLERANCE, **dict(tolerance or {})},
            "data": jsonable(data or {}),
            "plotted": extract_plotted(fig),
        }
        side_tmp.write_text(json.dumps(jsonable(sidecar), indent=1) + "\n")
        with _signals_held():
            # The old sidecar goes first: a set cut short by SIGKILL has no sidecar vouching for it.
            side.unlink(missing_ok=True)
            os.replace(png_tmp, png)
            os.replace(pdf_tmp, pdf)
            os.replace(side_tmp, side)
    _show(fig, png, dpi)
    return SavedFigure(png, pdf, side)


def figure_is_complete(sidecar: str | os.PathLike) -> bool:
    """Whether a sidecar's PNG and PDF exist and are the very files it was written with."""
    side_path = Path(sidecar)
    try:
        files = json.loads(side_path.read_text()).get("files") or {}
    except (OSError, ValueError):
        return False
    if set(files) != {"png", "pdf"}:
        return False
    for suffix, digest in files.items():
        path = side_path.with_suffix(f".{suffix}")
        if not path.is_file() or _sha256(path) != digest:
            return False
    return True


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def _signals_held():
    """Hold SIGINT and SIGTERM back for a few renames (delivered right after); a no-op off the main thread."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _show(fig, png: Path, dpi: int) -> None:
    """In a notebook kernel, display the saved PNG once and keep the inline backend from showing ``fig`` again."""
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close(fig)  # a no-op for figures pyplot does not manage
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return
    ip = get_ipython()
    if ip is None or not hasattr(ip, "kernel"):  # plain Python or a terminal: nothing to display into
        return
    from IPython.display import Image, display

    data = png.read_bytes()
    width_px = int.from_bytes(data[16:20], "big")  # the PNG header's IHDR width
    # Shown at the size the inline backend would use (100 dpi), however finely the file was rendered.
    display(Image(data=data, format="png", width=max(1, round(width_px * 100 / dpi))))
