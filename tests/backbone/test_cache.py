"""The on-disk cache: content keys covering the producing code, atomic writes, locked builds."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from companion.backbone import codegraph
from companion.backbone.cache import MANIFEST, Cache, CacheError, code_fingerprint, spec_hash


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
    # Only the (empty) lock file may stay: removing a lock file another process waits on breaks the lock.
    assert [p.name for p in (tmp_path / "sae").iterdir() if not p.name.endswith(".lock")] == []


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
    assert code_fingerprint("companion.sae.metrics") == code_fingerprint("companion.sae.metrics")
    assert code_fingerprint("companion.sae.metrics") != code_fingerprint("companion.sae.toy")
    with pytest.raises(CacheError, match="no such companion module"):
        code_fingerprint("companion.no_such_module")


def _package_copy(tmp_path, monkeypatch) -> Path:
    pkg = tmp_path / "companion"
    shutil.copytree(codegraph.PKG_DIR, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(codegraph, "PKG_DIR", pkg)
    return pkg


@pytest.mark.parametrize(
    "producer,helper",
    [
        # The organism key: training code imports the corpus, which imports the fixed world.
        ("companion.organism.build", "organism/world.py"),
        # The SAE key: the sweep code reaches the organism's token batching (what it trains on) and the SAE step.
        ("companion.sae.experiment", "organism/loading.py"),
        ("companion.sae.experiment", "sae/step.py"),
        ("companion.sae.experiment", "models/scoring.py"),
    ],
)
def test_editing_a_helper_the_producer_imports_changes_the_key(tmp_path, monkeypatch, producer, helper):
    pkg = _package_copy(tmp_path, monkeypatch)
    before = code_fingerprint(producer)
    assert code_fingerprint(producer) == before
    f = pkg / helper
    f.write_text(f.read_text() + "\n# an edit\n")
    assert code_fingerprint(producer) != before


def test_analysis_code_is_not_in_the_organism_key(tmp_path, monkeypatch):
    # Changing how a completion is classified (behaviour) must not retrain an organism.
    pkg = _package_copy(tmp_path, monkeypatch)
    before = code_fingerprint("companion.organism.build")
    for rel in ("organism/behaviour.py", "organism/plots.py", "backbone/figures.py"):
        (pkg / rel).write_text((pkg / rel).read_text() + "\n# an edit\n")
    assert code_fingerprint("companion.organism.build") == before


def test_library_versions_are_in_the_key(monkeypatch):
    from companion.backbone import environment

    before = code_fingerprint("companion.sae.metrics")
    real = environment.package_versions
    monkeypatch.setattr(environment, "package_versions", lambda names: {**real(names), "torch": "0.0-other"})
    assert code_fingerprint("companion.sae.metrics") != before


_CONCURRENT_BUILDER = """
import os, sys, time
from pathlib import Path
from companion.backbone.cache import Cache
root, log = Path(sys.argv[1]), Path(sys.argv[2])
def build(tmp):
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\\n")
    (tmp / "a.bin").write_bytes(b"x" * 1000)
    time.sleep(1.5)  # long enough that the other process asks while this one builds
    (tmp / "b.bin").write_bytes(b"y" * 1000)
p = Cache(root).get_or_build("sae", {"k": 1}, build)
assert (p / "a.bin").read_bytes() == b"x" * 1000 and (p / "b.bin").read_bytes() == b"y" * 1000
print(p)
"""


@pytest.mark.slow  # two interpreters that import torch
def test_two_processes_building_one_key_build_it_once_and_both_get_it_whole(tmp_path):
    script = tmp_path / "builder.py"
    script.write_text(_CONCURRENT_BUILDER)
    log = tmp_path / "builds.log"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / "cache"), str(log)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    assert outs[0][0] == outs[1][0]  # the same entry
    assert len(log.read_text().split()) == 1, "the entry was built twice"
    c = Cache(tmp_path / "cache")
    assert c.exists("sae", {"k": 1}) and len(c.ls()) == 1


@pytest.mark.parametrize(
    "mask,dmode,fmode",
    [(0o022, 0o755, 0o644), (0o002, 0o775, 0o664), (0o077, 0o700, 0o600)],
    ids=["umask022", "umask002", "umask077"],
)
def test_entries_get_the_permissions_the_umask_allows(tmp_path, mask, dmode, fmode):
    # mkdtemp and mkstemp make private files whatever the umask; a shared cache needs group-readable entries.
    import stat

    from companion.backbone.atomic import atomic_write_text

    old = os.umask(mask)
    try:

        def build(d):
            atomic_write_text(d / "written_atomically.json", "{}")
            (d / "written_plainly.bin").write_bytes(b"x")

        p = Cache(tmp_path).get_or_build("sae", {"m": mask}, build)
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == dmode
    for f in p.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == fmode, f.name
