"""Quiet notebook runs: progress bars that suit where the notebook runs, and no library chatter.

What a researcher should see in a cell is progress and results, nothing in red:

* ``transformers``' own progress bars ("Loading weights", "Writing model shards"), one per load or save of even a
  tiny model, are switched off (downloads keep their ``huggingface_hub`` bars);
* under the runner (papermill), ``tqdm.auto`` would draw ipywidgets bars, which an executed copy cannot show: there it
  draws text bars on stdout instead.  In JupyterLab the widget bars stay.

(TransformerLens' "Moving model to device" line is not printed: our one ``TransformerBridge.to`` call passes
``print_details=False``.)
"""
from __future__ import annotations

import sys


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
    import transformers.utils.logging  # ~0.5 s, and every notebook imports transformers right after

    transformers.utils.logging.disable_progress_bar()
    if text_bars:
        text_progress_bars()
