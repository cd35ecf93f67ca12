"""Checkpoints of an SAE sweep's training (:func:`companion.sae.training.train_sweep`), so that a sweep interrupted
by a preemption, a time limit, ``scancel`` or a killed kernel resumes where it stopped, and ends with exactly the SAEs
an uninterrupted run of the same seed makes (Rajamanoharan et al. 2024's sweeps take hours on real models).

Every ``every`` steps the whole training state is written: per member SAE its parameters and buffers, its Adam state, its
resampling generator, its dead-latent counters and its log, plus the step and the input scale.  A checkpoint is a
folder ``step-<n>`` made complete in a temporary folder and then renamed into place (the rename is the commit), so
a killed write leaves nothing a resume would trust; older checkpoints are removed once a newer one is in place.
The data are not saved: the activation stream is deterministic for a seed, so a resume replays (fast-forwards) the
batches already trained on — a pass without SAE steps, read from the disk when the activations are cached
(``cache_activations``), else recomputed by the model — and so also refills the resampling pool bit for bit.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from companion.backbone.atomic import TEMP_MARK, is_temporary

STATE = "state.json"
PREFIX = "step-"


@dataclasses.dataclass(frozen=True)
class Checkpointing:
    """Where and how often a sweep's training state is saved."""

    folder: Path
    """Holds the checkpoints (``step-<n>`` folders); one folder per sweep (the SAE cache entry's key names it)."""
    every: int
    """Save every this many steps (0: never)."""

    def due(self, step: int, max_steps: int | None) -> bool:
        """Whether to save after ``step`` steps (never after the last one: the result is saved instead)."""
        return self.every > 0 and step % self.every == 0 and (max_steps is None or step < max_steps)

    def latest(self) -> Path | None:
        """The newest complete checkpoint, if any."""
        done = (
            sorted(p for p in self.folder.glob(f"{PREFIX}*") if (p / STATE).is_file()) if self.folder.is_dir() else []
        )
        return done[-1] if done else None

    def save(self, step: int, members: Sequence[Any], scale: float) -> Path:
        """Write the state after ``step`` steps atomically; returns the checkpoint folder."""
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.folder / f"{PREFIX}{step:09d}"
        tmp = self.folder / f".{final.name}{TEMP_MARK}{os.getpid()}-"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            for i, m in enumerate(members):
                # Every buffer too: training state such as TopK's tokens-since-fired counters is not persistent
                # (no part of a saved SAE), yet a resumed run needs it to match an uninterrupted one.
                torch.save(
                    {
                        "sae": m.sae.state_dict(),
                        "buffers": dict(m.sae.named_buffers()),
                        "opt": m.opt.state_dict(),
                        "gen": m.gen.get_state(),
                        "fired": m.fired,
                        "log": dataclasses.asdict(m.log),
                    },
                    tmp / f"member_{i:02d}.pt",
                )
            meta = {"step": step, "scale": scale, "specs": [dataclasses.asdict(m.spec) for m in members]}
            (tmp / STATE).write_text(json.dumps(meta))
            if final.exists():  # a checkpoint of the same step from an earlier attempt: same content
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        # Only the sweep's one builder writes here (it holds the cache entry's lock): any other folder is debris.
        for old in self.folder.iterdir():
            if old != final and (old.name.startswith(PREFIX) or is_temporary(old)):
                shutil.rmtree(old, ignore_errors=True)
        return final

    def restore(self, members: Sequence[Any], scale: float, log_from_dict: Any) -> int:
        """Load the newest checkpoint into ``members``; returns its step (0 when there is none)."""
        ck = self.latest()
        if ck is None:
            return 0
        meta = json.loads((ck / STATE).read_text())
        specs = [dataclasses.asdict(m.spec) for m in members]
        if meta["specs"] != specs or meta["scale"] != scale:
            raise ValueError(
                f"the checkpoint {ck} is of another sweep (members or input scale differ); remove "
                f"{self.folder} to train from the start"
            )
        for i, m in enumerate(members):
            state = torch.load(ck / f"member_{i:02d}.pt", map_location="cpu", weights_only=True)
            m.sae.load_state_dict(state["sae"])
            with torch.no_grad():
                for name, buf in m.sae.named_buffers():
                    buf.copy_(state["buffers"][name])
            m.opt.load_state_dict(state["opt"])
            m.gen.set_state(state["gen"])
            m.fired.copy_(state["fired"])
            m.log = log_from_dict(state["log"])
        return int(meta["step"])

    def remove(self) -> None:
        """Delete every checkpoint (once the trained SAEs are saved)."""
        shutil.rmtree(self.folder, ignore_errors=True)
