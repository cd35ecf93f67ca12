"""Build small notebooks in the project's format for runner, fork and figure tests."""

from __future__ import annotations

from pathlib import Path

import nbformat

SMOKE_PARAMS = "smoke_params:SmokeParams"


def write_smoke_notebook(
    path: Path, *, save_fig: bool = True, pyplot: bool = False, params: str = SMOKE_PARAMS
) -> Path:
    """A notebook with the standard parameters cell; with ``save_fig`` it imports companion.backbone.figures.

    Its figures are bare ``matplotlib.figure.Figure`` objects, or pyplot figures with ``pyplot`` (the two kinds the
    result packages' plot functions return); ``P.n_figures`` of them, each taking ``P.save_delay`` seconds to draw into its PDF (the
    PNG is drawn before its file is opened, the PDF into an open file: interrupts land mid-write at once).
    """
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["companion"] = {"params": params}
    module, _, cls = params.partition(":")
    cells = [
        nbformat.v4.new_markdown_cell("# Smoke notebook\nExercises the runner."),
        nbformat.v4.new_code_cell("profile = None\noverrides = {}", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            f"from companion.backbone.runtime import start\nfrom {module} import {cls}\n"
            f"P = start({cls}, profile, overrides)\nP"
        ),
        nbformat.v4.new_code_cell(
            "if getattr(P, 'fail', False):\n    raise RuntimeError('planted failure')\n"
            "if getattr(P, 'kill_kernel', False):\n    import os, signal\n"
            "    os.kill(os.getpid(), signal.SIGKILL)"
        ),
        nbformat.v4.new_code_cell(
            "from tqdm.auto import tqdm\nfor _ in tqdm(range(3), desc='smoke progress'):\n    pass"
        ),
    ]
    if save_fig:
        make = "    fig, ax = plt.subplots()\n" if pyplot else "    fig = Figure()\n    ax = fig.subplots()\n"
        cells.append(
            nbformat.v4.new_code_cell(
                "import time\n"
                + ("import matplotlib.pyplot as plt\n" if pyplot else "from matplotlib.figure import Figure\n")
                + "from matplotlib.artist import Artist\n"
                "from companion.backbone.figures import save_figure\n\n"
                "class SlowArtist(Artist):\n"
                "    def draw(self, renderer):\n"
                "        pdf = type(getattr(renderer, '_renderer', renderer)).__name__ == 'RendererPdf'  # in a MixedModeRenderer\n"
                "        if pdf:  # the PDF file is open while it is drawn\n"
                "            time.sleep(P.save_delay)\n\n"
                "xs = list(range(P.n_points)); ys = [P.slope * x for x in xs]\n"
                "for i in range(P.n_figures):\n" + make + "    ax.plot(xs, ys, label='line')\n    ax.set_xlabel('x')\n"
                "    fig.add_artist(SlowArtist())\n"
                "    save_figure(fig, 'line' if i == 0 else f'line_{i}', data={'ys': ys})"
            )
        )
    nb.cells = cells
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path
