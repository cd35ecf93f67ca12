"""Progress under papermill is a few readable lines (issue 19): the executed copy of notebook 00 held 14 KB of
interleaved tqdm text with carriage returns and cursor-up escapes from the organisms' stacked training bars."""

import io

from companion.backbone.quiet import LineTqdm


def _timed(bar, clock: list[float]):
    """``bar`` on a clock the test moves (tqdm reads time through ``bar._time``)."""
    bar._time = lambda: clock[0]
    bar.start_t = bar.last_print_t = clock[0]
    return bar


def _bars(out: io.StringIO, clock: list[float]) -> None:
    def Timed(*args, **kwargs):  # noqa: N802
        return _timed(LineTqdm(*args, **kwargs), clock)

    # What notebook 00's parallel training draws: bars stacked by position, updated from a queue, then finished.
    bars = [Timed(total=400, desc=f"backdoor#{i}", position=i, leave=True, file=out) for i in range(3)]
    for step in range(0, 401, 4):
        clock[0] += 1.0
        for bar in bars:
            bar.n = step
            bar.set_postfix(loss=f"{1 / (step + 1):.3f}", refresh=False)
            bar.refresh()
    for bar in bars:
        bar.close()
    for _ in Timed(range(500), desc="scoring", leave=False, file=out):  # a bar that clears itself
        clock[0] += 0.01
    for _ in Timed(range(3), desc="smoke progress", file=out):
        pass


def test_progress_bars_write_whole_lines_and_only_a_few():
    out, clock = io.StringIO(), [0.0]
    _bars(out, clock)
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    # 101 s of training: no line while running (one every 120 s), one line per finished bar, none for the transient
    assert [ln.split(":")[0] for ln in lines] == ["backdoor#0", "backdoor#1", "backdoor#2", "smoke progress"]
    assert all("100%" in ln and "/" in ln for ln in lines) and "loss=0.002" in lines[0]


def test_a_long_bar_writes_a_line_every_two_minutes():
    out, clock = io.StringIO(), [0.0]
    bar = _timed(LineTqdm(total=10, desc="train", file=out, mininterval=0, miniters=1), clock)
    for _ in range(10):
        clock[0] += 30.0  # 5 minutes in all
        bar.update()
    bar.close()
    lines = out.getvalue().splitlines()
    assert [ln.split("|")[0].strip() for ln in lines] == ["train:  40%", "train:  80%", "train: 100%"]
