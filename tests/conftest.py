"""Test-session settings: an isolated cache under build/, offline Hugging Face, a non-interactive backend."""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The organisms the tests train are kept in build/cache so repeated local runs reuse them; CI starts clean.
os.environ.setdefault("COMPANION_CACHE", str(ROOT / "build" / "cache"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
