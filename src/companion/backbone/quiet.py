"""Quiet notebook runs: progress bars that suit where the notebook runs, and no library chatter.

What a researcher should see in a cell is progress and results, nothing in red:

* ``transformers``' own progress bars ("Loading weights", "Writing model shards"), one per load or save of even a
  tiny model, are switched off (downloads keep their ``huggingface_hub`` bars);
* under the runner (papermill), ``tqdm.auto`` would draw ipywidgets bars, which an executed copy cannot show: there
  progress goes out as a few whole lines on stdout (:func:`LineTqdm`).  In JupyterLab the widget bars stay.

(TransformerLens' "Moving model to device" line is not printed: our one ``TransformerBridge.to`` call passes
``print_details=False``.)
"""

from __future__ import annotations

import sys

from tqdm.std import tqdm as std_tqdm


class LineTqdm(std_tqdm):
    """tqdm as a few readable lines: an executed copy keeps every character a bar writes, so a text bar redrawn with
    carriage returns (and, for bars stacked by ``position``, cursor-up escapes) piled up kilobytes of interleaved
    text.  Here a bar writes one whole line when it finishes (``leave=True``, the default) and, while it runs, one
    line every :attr:`every_s` seconds; a bar that would clear itself at the end (``leave=False``) writes nothing
    unless it runs that long.  No carriage return, no cursor movement."""

    _companion_text = True
    every_s = 120.0
    """Seconds between the lines of a bar that is still running."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("file", sys.stdout)
        kwargs.setdefault("mininterval", 1.0)
        self._line_t = None
        super().__init__(*args, **kwargs)

    def _line(self) -> None:
        self.fp.write(self.__str__() + "\n")
        self.fp.flush()
        self._line_t = self._time()

    def display(self, msg=None, pos=None):
        # A refresh writes a line only when the last one is old (msg="" would clear: nothing was drawn in place).
        last = self._line_t if self._line_t is not None else getattr(self, "start_t", None)
        if msg is None and last is not None and self._time() - last >= self.every_s:
            self._line()
        return True

    def clear(self, nolock=False):
        pass

    def moveto(self, n):
        pass

    def close(self):
        if self.disable:
            return
        leave = abs(self.pos) == 0 if self.leave is None else self.leave
        if leave:
            self._ema_dt = lambda: None  # the overall rate in the final line, as tqdm prints it
            self._line()
        self.disable = True
        self._decr_instances(self)


def text_progress_bars() -> None:
    """Make ``tqdm.auto`` print progress as whole lines on stdout (for papermill, whose executed copies can hold
    neither widgets nor a bar redrawn in place): :class:`LineTqdm`."""
    import tqdm.auto
    import tqdm.autonotebook

    tqdm.auto.tqdm = LineTqdm
    tqdm.autonotebook.tqdm = LineTqdm


def quiet_libraries(*, text_bars: bool) -> None:
    """Silence the libraries' chatter (see the module docstring); ``text_bars`` under the runner."""
    import transformers.utils.logging  # ~0.5 s, and every notebook imports transformers right after

    transformers.utils.logging.disable_progress_bar()
    if text_bars:
        text_progress_bars()
