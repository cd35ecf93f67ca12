"""Build small notebooks in the project's format for runner, fork and figure tests."""
from __future__ import annotations

from pathlib import Path

import nbformat

SMOKE_PARAMS = "smoke_params:SmokeParams"


def write_smoke_notebook(path: Path, *, save_fig: bool = True) -> Path:
    """A notebook with the standard parameters cell; with ``save_fig`` it imports companion.backbone.figures."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["companion"] = {"params": SMOKE_PARAMS}
    cells = [
        nbformat.v4.new_markdown_cell("# Smoke notebook\nExercises the runner."),
        nbformat.v4.new_code_cell('profile = "organism"\noverrides = {}', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "from companion.backbone.runtime import start\nfrom smoke_params import SmokeParams\n"
            "P = start(SmokeParams, profile, overrides)\nP"
        ),
        nbformat.v4.new_code_cell("if P.fail:\n    raise RuntimeError('planted failure')"),
    ]
    if save_fig:
        cells.append(nbformat.v4.new_code_cell(
            "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
            "from companion.backbone.figures import save_figure\n"
            "xs = list(range(P.n_points)); ys = [P.slope * x for x in xs]\n"
            "fig, ax = plt.subplots()\nax.plot(xs, ys, label='line')\nax.set_xlabel('x')\n"
            "save_figure(fig, 'line', data={'ys': ys})"
        ))
    nb.cells = cells
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path
