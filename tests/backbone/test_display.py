"""What a notebook cell shows, in a real kernel with the inline backend, as in JupyterLab (not through the runner).

One image per ``save_figure``, whatever the plot function returned (a bare ``Figure`` or a pyplot one), never a
``<Figure size ...>`` line, never the ``SavedFigure`` repr; re-running ``start()`` prints no autoreload notice; the
libraries' chatter is switched off by ``start()``.
"""

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow  # starts a kernel

CELLS = [
    "from companion.backbone.runtime import start\nfrom companion.backbone.params import NotebookParams\n"
    "P = start(NotebookParams, None)",
    "P = start(NotebookParams, None)  # run again, as one does",
    "import matplotlib\nprint(matplotlib.get_backend())",
    "from matplotlib.figure import Figure\nfrom companion.backbone.figures import save_figure\n"
    "bare = Figure()\nbare.subplots().plot([1, 2, 3])\nsave_figure(bare, 'bare')",
    "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([3, 2, 1])\nsaved = save_figure(fig, 'py')\nsaved",
    "save_figure(bare, 'again')\nprint('after the figure')",
    "import transformers.utils.logging as hf_logging\nprint('transformers bars:', hf_logging.is_progress_bar_enabled())",
]


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield _execute(tmp_path_factory.mktemp("display"), monkeypatch)


def _execute(tmp_path, monkeypatch):
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the inline backend, as in JupyterLab
    for var in ("COMPANION_NOTEBOOK", "COMPANION_RUNNER", "COMPANION_RUN_ID", "COMPANION_GIT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("COMPANION_PROFILE", "ci")
    monkeypatch.setenv("COMPANION_FIGURES_DIR", str(tmp_path / "figs"))
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "09_display.ipynb"))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    NotebookClient(nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb, tmp_path / "figs"


def _outputs(cell):
    images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
    texts = ["".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", "")) for o in cell.outputs]
    return images, "\n".join(texts)


def test_each_save_figure_shows_its_figure_once_and_nothing_else(executed):
    nb, figs = executed
    assert "".join(_outputs(nb.cells[2])[1]).strip() == "module://matplotlib_inline.backend_inline"
    for i in (3, 4, 5):
        images, text = _outputs(nb.cells[i])
        assert len(images) == 1, f"cell {i}: {len(images)} images"
        assert "Figure size" not in text and "SavedFigure" not in text, text
        assert images[0]["metadata"]["image/png"]["width"] > 100
        assert not any(o.get("name") == "stderr" for o in nb.cells[i].outputs)
    assert "after the figure" in _outputs(nb.cells[5])[1]
    assert sorted(p.name for p in figs.iterdir()) == sorted(
        f"09_{n}.{ext}" for n in ("bare", "py", "again") for ext in ("png", "pdf", "json")
    )


def test_start_again_is_silent_and_libraries_are_quiet(executed):
    nb, _ = executed
    for i in (0, 1):
        _, text = _outputs(nb.cells[i])
        assert "already loaded" not in text and not any(o.get("name") == "stderr" for o in nb.cells[i].outputs)
    assert "transformers bars: False" in _outputs(nb.cells[6])[1]
    # TransformerLens' "Moving model to device" is checked where it would appear: the executed ci notebooks
    # (tests/user/test_notebooks.py, LIBRARY_CHATTER).
