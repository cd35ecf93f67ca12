"""The on-disk cache: content keys, atomic writes, never trusting an interrupted entry."""
import os

import pytest

from companion.cache import MANIFEST, Cache, CacheError, code_fingerprint, spec_hash


def test_key_is_stable_and_changes_with_the_spec(tmp_path):
    c = Cache(tmp_path)
    a = {"lr": 1e-3, "layers": [1, 2], "name": "x"}
    assert c.key("sae", a) == c.key("sae", dict(reversed(list(a.items()))))  # key order is irrelevant
    assert c.key("sae", a) != c.key("sae", {**a, "lr": 2e-3})
    assert c.key("sae", a) != c.key("organism", a)
    assert spec_hash({"a": (1, 2)}) == spec_hash({"a": [1, 2]})
    with pytest.raises(TypeError):
        spec_hash({"a": object()})


def test_build_once_then_hit(tmp_path):
    c = Cache(tmp_path)
    calls = []

    def build(d):
        calls.append(d)
        (d / "w.txt").write_text("weights")

    p1 = c.get_or_build("organism", {"s": 1}, build, description="tiny")
    p2 = c.get_or_build("organism", {"s": 1}, build)
    assert p1 == p2 and len(calls) == 1 and (p1 / "w.txt").read_text() == "weights"
    assert c.exists("organism", {"s": 1}) and c.get("organism", {"s": 1}) == p1
    [entry] = c.ls()
    assert entry.kind == "organism" and entry.description == "tiny" and entry.size_bytes > 0


def test_failed_build_leaves_nothing(tmp_path):
    c = Cache(tmp_path)

    def build(d):
        (d / "half.bin").write_bytes(b"x" * 100)
        raise KeyboardInterrupt  # an interrupted run

    with pytest.raises(KeyboardInterrupt):
        c.get_or_build("sae", {"s": 2}, build)
    assert not c.exists("sae", {"s": 2})
    assert list((tmp_path / "sae").iterdir()) == []


def test_entry_without_manifest_is_never_trusted(tmp_path):
    c = Cache(tmp_path)
    p = c.path("sae", {"s": 3})
    p.mkdir(parents=True)
    (p / "corrupt.bin").write_bytes(b"partial")  # as if killed between rename and manifest
    assert not c.exists("sae", {"s": 3})
    with pytest.raises(CacheError, match="built on first use"):
        c.get("sae", {"s": 3})
    out = c.get_or_build("sae", {"s": 3}, lambda d: (d / "good.bin").write_bytes(b"ok"))
    assert (out / MANIFEST).is_file() and not (out / "corrupt.bin").exists()


def test_clear_and_env_root(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPANION_CACHE", str(tmp_path / "elsewhere"))
    c = Cache()
    assert c.root == tmp_path / "elsewhere"
    c.get_or_build("a", {"i": 1}, lambda d: None)
    c.get_or_build("b", {"i": 1}, lambda d: None)
    assert c.clear("a") == 1 and [e.kind for e in c.ls()] == ["b"]
    assert c.clear() == 1 and c.ls() == []


def test_code_fingerprint_tracks_source():
    assert code_fingerprint("companion.cache") == code_fingerprint("companion.cache")
    assert code_fingerprint("companion.cache") != code_fingerprint("companion.params")
