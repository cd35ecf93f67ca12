"""Unit entries for the executor tests: each builds a small cache entry recording when it ran, in which process."""

from __future__ import annotations

import json
import os
import time

from companion.backbone.cache import default_cache

KIND = "test-unit"


def spec(name: str) -> dict:
    return {"name": name}


def put(name: str, seconds: float = 0.0, fail: bool = False) -> str:
    """Sleep ``seconds`` inside the entry's build (so an interrupt finds it half-built), then publish it."""

    def build(tmp):
        from tqdm.auto import tqdm

        t0 = time.time()
        print(f"building {name}", flush=True)
        for _ in tqdm(range(3), desc=f"steps of {name}"):  # what a training's bar looks like in the unit's log
            pass
        time.sleep(seconds)
        if fail:
            raise ValueError(f"planted failure in {name}")
        (tmp / "ran.json").write_text(json.dumps({"start": t0, "end": time.time(), "pid": os.getpid()}))

    path = default_cache().get_or_build(KIND, spec(name), build)
    return path.name


def die(name: str) -> str:
    """A unit whose worker is killed from outside mid-build (as the out-of-memory killer does)."""
    import signal

    def build(tmp):
        os.kill(os.getpid(), signal.SIGKILL)

    return default_cache().get_or_build(KIND, spec(name), build).name
