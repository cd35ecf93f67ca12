"""One on-disk cache for everything expensive: trained organisms, activations, SAEs.

An entry is a directory ``<root>/<kind>/<key>/`` where ``key`` is a hash of a JSON *spec* that describes
everything that produced the entry (configs, upstream keys, a fingerprint of the producing code).
Change any of it and the key changes, so a stale entry is never reused.

Writes are atomic: ``build`` fills a private temporary directory beside the final one, ``manifest.json`` is
written into it last, and only then is the directory renamed into place (``os.replace`` on the same filesystem):
the rename is the commit.  An entry without its manifest is never trusted, so a run killed mid-write leaves
nothing a later run will read.  Builds of one key are serialised by a lock file (``<kind>/.<key>.lock``, a
:class:`~companion.backbone.locks.HostLock`: it holds across the hosts of a cluster sharing the cache over a network
filesystem, and a lock left by a dead builder is recovered): a second process asking for an entry that is being
built waits for it instead of building it again or removing it.  Entries are written with the permissions the
umask allows (group-readable under the usual 022 or 002), so jobs and colleagues sharing the cache can read them.

The code fingerprint in a spec (:func:`code_fingerprint`) hashes the source of the producing modules *and of
every ``companion`` module they import*, transitively (:mod:`companion.backbone.codegraph`), plus the versions of
the numerical libraries, so a changed helper or library never reuses an entry made by the old one.

The root is ``$COMPANION_CACHE`` when set, else ``~/.cache/companion``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from companion.backbone import codegraph, environment
from companion.backbone.atomic import atomic_write_text, umask
from companion.backbone.locks import HostLock

CACHE_ENV = "COMPANION_CACHE"
MANIFEST = "manifest.json"
#: Bump when the layout of cache entries changes; it is part of every key.
FORMAT_VERSION = 2


#: Entries read or built in this process ("kind/key" -> key); figures list them as their inputs.
_USED: dict[str, str] = {}


def used_entries() -> dict[str, str]:
    """Cache entries this process has read or built, as ``{"cache:<kind>": "<key>,..."}``-style pairs."""
    return {f"cache:{name}": key for name, key in _USED.items()}


class CacheError(RuntimeError):
    """A cache entry is missing or unusable; the message says what to do."""


def _canonical(obj: Any) -> Any:
    """Make ``obj`` JSON-serialisable in a stable way (dataclasses, paths, tuples, sets)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _canonical(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(_canonical(v) for v in obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and obj != obj:  # NaN has no stable JSON form
        return "NaN"
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise TypeError(f"cache spec value {obj!r} of type {type(obj).__name__} is not JSON-serialisable")


def spec_hash(spec: Mapping[str, Any]) -> str:
    """Stable SHA-256 hex digest of a spec (canonical JSON, sorted keys)."""
    text = json.dumps(_canonical(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprinted_modules(*module_names: str) -> dict[str, Path]:
    """The modules :func:`code_fingerprint` hashes: the named ones and every ``companion`` module they import,
    transitively, except the notebook backbone (``companion.backbone.*``: it moves entries around but computes
    nothing that goes into them)."""
    closure = codegraph.module_closure(module_names)
    missing = [m for m in module_names if m not in closure]
    if missing:
        raise CacheError(f"cannot fingerprint {missing}: no such companion module")
    return {m: f for m, f in closure.items() if not m.startswith("companion.backbone")}


def code_fingerprint(*module_names: str) -> str:
    """Hash of what computes an entry: the closure of ``module_names`` (:func:`fingerprinted_modules`), the
    versions of the numerical libraries and the numeric code paths in force (:func:`environment.numerics`: an
    entry made on the pinned paths is never reused by a process running other ones, and vice versa).  Put it
    in a spec so that changing any of that invalidates entries."""
    h = hashlib.sha256()
    for name, path in sorted(fingerprinted_modules(*module_names).items()):
        h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(json.dumps(environment.package_versions(environment.NUMERIC_PACKAGES), sort_keys=True).encode())
    numerics = environment.numerics()
    h.update(
        json.dumps(
            {k: numerics[k] for k in ("pinned", "cpu_capability", "machine", "mkl_branch", "dense_product")},
            sort_keys=True,
        ).encode()
    )
    h.update(f"python {sys.version_info.major}.{sys.version_info.minor}".encode())
    return h.hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class CacheEntry:
    """One complete cache entry, as listed by ``companion cache ls``."""

    kind: str
    """What the entry holds: "organism", "activations", "sae", ..."""
    key: str
    """The hash of the spec that produced it."""
    path: Path
    """Directory holding the entry's files."""
    size_bytes: int
    """Total size of the files in the entry."""
    created: str
    """ISO timestamp written when the entry was completed."""
    description: str
    """Short human-readable description given when it was built."""


class Cache:
    """A content-keyed directory cache with atomic writes."""

    lock_stale_after_s: float = 120.0
    """How long a build lock held by another host is trusted without a heartbeat (it beats every 10 s)."""
    lock_heartbeat_s: float = 10.0
    """How often a builder refreshes its lock's heartbeat."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_root()

    def key(self, kind: str, spec: Mapping[str, Any]) -> str:
        """The entry key for ``spec`` (includes the cache format version and the kind)."""
        return spec_hash({"kind": kind, "format": FORMAT_VERSION, "spec": spec})[:24]

    def path(self, kind: str, spec: Mapping[str, Any]) -> Path:
        """Where the entry for ``spec`` lives (it may not exist yet)."""
        _check_kind(kind)
        return self.root / kind / self.key(kind, spec)

    def exists(self, kind: str, spec: Mapping[str, Any]) -> bool:
        """True only for a complete entry (its manifest was written)."""
        return (self.path(kind, spec) / MANIFEST).is_file()

    def has(self, kind: str, key: str) -> bool:
        """True for a complete entry of ``kind`` under ``key`` (from :meth:`key`), without its spec."""
        _check_kind(kind)
        return (self.root / kind / key / MANIFEST).is_file()

    def get(self, kind: str, spec: Mapping[str, Any]) -> Path:
        """The directory of a complete entry, or a ``CacheError`` saying how to make it."""
        p = self.path(kind, spec)
        if not (p / MANIFEST).is_file():
            raise CacheError(
                f"no complete {kind!r} cache entry {p.name} under {self.root}. Run the notebook or function "
                f"that builds it (it is built on first use), or point ${CACHE_ENV} at the cache that has it."
            )
        _USED[f"{kind}/{p.name}"] = p.name
        return p

    def get_or_build(
        self,
        kind: str,
        spec: Mapping[str, Any],
        build: Callable[[Path], Any],
        *,
        description: str = "",
    ) -> Path:
        """Return the entry directory, calling ``build(tmp_dir)`` to create it first if needed.

        ``build`` writes its files into ``tmp_dir``; if it raises, nothing is left behind.  Concurrent callers
        with the same key (other processes included) build it once: the others wait for the lock, then find it.
        """
        final = self.path(kind, spec)
        _USED[f"{kind}/{final.name}"] = final.name
        if (final / MANIFEST).is_file():
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        lock = HostLock(
            final.parent / f".{final.name}.lock",
            stale_after_s=self.lock_stale_after_s,
            heartbeat_s=self.lock_heartbeat_s,
            what=f"the {kind} cache entry {final.name}",
        )
        with lock:
            if (final / MANIFEST).is_file():  # another process built it while we waited
                return final
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
            # mkdtemp makes it private (0700) whatever the umask; keep the setgid bit a shared folder passes down.
            os.chmod(tmp, (0o777 & ~umask()) | (tmp.stat().st_mode & stat.S_ISGID))
            try:
                t0 = time.time()
                build(tmp)
                manifest = {
                    "kind": kind,
                    "key": final.name,
                    "spec": _canonical(spec),
                    "description": description,
                    "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    "build_seconds": round(time.time() - t0, 3),
                    "numerics": environment.numerics(),
                }
                atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=2))
                if (final / MANIFEST).is_file():
                    # Only if our lock was judged stale and broken (a long network outage): another builder
                    # published the same entry meanwhile; theirs stays, ours goes.
                    shutil.rmtree(tmp, ignore_errors=True)
                    return final
                if final.exists():
                    # An incomplete leftover of an interrupted run of the old layout: never trusted, replace it.
                    shutil.rmtree(final)
                os.replace(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return final

    def ls(self, kind: str | None = None) -> list[CacheEntry]:
        """All complete entries, optionally of one kind, oldest first."""
        out: list[CacheEntry] = []
        if not self.root.is_dir():
            return out
        for kdir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            if kind is not None and kdir.name != kind:
                continue
            for e in sorted(p for p in kdir.iterdir() if p.is_dir() and not p.name.startswith(".tmp-")):
                mf = e / MANIFEST
                if not mf.is_file():
                    continue
                meta = json.loads(mf.read_text())
                size = sum(f.stat().st_size for f in e.rglob("*") if f.is_file())
                out.append(CacheEntry(kdir.name, e.name, e, size, meta.get("created", ""), meta.get("description", "")))
        return sorted(out, key=lambda c: c.created)

    def clear(self, kind: str | None = None) -> int:
        """Delete entries (all, or of one kind) and any incomplete leftovers; returns how many were removed."""
        if not self.root.is_dir():
            return 0
        n = 0
        for kdir in [p for p in self.root.iterdir() if p.is_dir()]:
            if kind is not None and kdir.name != kind:
                continue
            for e in list(kdir.iterdir()):
                if e.is_dir():
                    shutil.rmtree(e, ignore_errors=True)
                    n += not e.name.startswith(".tmp-")
                else:
                    e.unlink(missing_ok=True)  # lock files
            if not any(kdir.iterdir()):
                kdir.rmdir()
        return n


def _check_kind(kind: str) -> None:
    if not kind or not all(c.isalnum() or c in "-_" for c in kind):
        raise ValueError(f"cache kind must be a short name of letters, digits, '-' or '_', got {kind!r}")


def default_root() -> Path:
    """``$COMPANION_CACHE`` if set, else ``~/.cache/companion``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "companion"


def default_cache() -> Cache:
    """The cache at the default root (re-read from the environment on every call)."""
    return Cache()
