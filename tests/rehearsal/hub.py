"""A loopback Hugging Face Hub: just enough of the Hub's HTTP API for ``huggingface_hub``, ``transformers`` and
``datasets`` (streaming included) to download repositories from ``HF_ENDPOINT=http://127.0.0.1:<port>``.

No maintained package does this for the three clients (``hf-local-hub`` needs a separately built Go binary, which
its wheel does not ship; ``olah`` is not on the package index), so this is a small threaded server implementing
what the real clients call, and it is tested through them (``tests/paper/test_rehearsal_hub.py``), never against itself:

* ``GET /api/{models,datasets}/<id>[/revision/<rev>]``: repository info (``sha``, ``siblings``, ``gated``,
  ``cardData``);
* ``GET /api/{models,datasets}/<id>/tree/<rev>[/<path>]`` and ``POST .../paths-info/<rev>``: file listings with
  blob ids, sizes and LFS sha256s;
* ``GET /api/{models,datasets}/<id>/auth-check``: gated-repository access for the token sent;
* ``HEAD``/``GET /<id>/resolve/<rev>/<path>`` and ``/datasets/<id>/resolve/...``: the file, with ``ETag``,
  ``X-Repo-Commit``, ``X-Linked-Etag``/``X-Linked-Size`` for LFS files and ``Range`` support (206);
* ``GET /raw/<path>``: plain files outside any repository (the sycophancy files' stand-in for
  raw.githubusercontent.com).

Gated repositories answer 401/403 with ``X-Error-Code: GatedRepo`` unless the request carries an accepted token,
as the Hub does.  Every request is logged (:attr:`LoopbackHub.log`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import threading
import urllib.parse
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LFS_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".gz", ".zst", ".model", ".parquet")
"""Files stored through LFS on the Hub (what the clients see as ``lfs`` entries with a sha256 ETag)."""


def git_blob_id(data: bytes) -> str:
    """``sha1(b"blob <size>\\0" + data)``: the id git (and the Hub's tree API) gives a file."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


@dataclasses.dataclass
class HubFile:
    """One file of a served repository."""

    path: str
    """Path inside the repository."""
    data: bytes
    """Its bytes."""

    @property
    def blob_id(self) -> str:
        return git_blob_id(self.data)

    @property
    def lfs(self) -> bool:
        return self.path.endswith(LFS_SUFFIXES)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.blob_id

    def tree_entry(self) -> dict[str, Any]:
        e: dict[str, Any] = {"type": "file", "oid": self.blob_id, "size": len(self.data), "path": self.path}
        if self.lfs:
            e["lfs"] = {"oid": self.sha256, "size": len(self.data), "pointerSize": 134}
        return e


@dataclasses.dataclass
class HubRepo:
    """A served repository (model or dataset) at one commit."""

    repo_type: str
    """"model" or "dataset"."""
    repo_id: str
    """"owner/name", exactly as the Hub spells it."""
    files: dict[str, HubFile]
    """Path -> file."""
    gated: bool = False
    """Gated like meta-llama's repositories: files need an accepted token."""
    card_data: dict[str, Any] | None = None
    """The README's YAML header as the Hub returns it (``cardData``)."""

    @property
    def sha(self) -> str:
        """The commit id: a hash of every path and blob, so a changed file is a new commit."""
        h = hashlib.sha1()
        for p in sorted(self.files):
            h.update(p.encode() + b"\0" + self.files[p].blob_id.encode())
        return h.hexdigest()

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "_id": self.sha[:24],
            "id": self.repo_id,
            "sha": self.sha,
            "private": False,
            "gated": "manual" if self.gated else False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "lastModified": "2024-01-01T00:00:00.000Z",
            "createdAt": "2024-01-01T00:00:00.000Z",
            "siblings": [
                {
                    "rfilename": p,
                    "size": len(f.data),
                    "blobId": f.blob_id,
                    **({"lfs": {"sha256": f.sha256, "size": len(f.data), "pointerSize": 134}} if f.lfs else {}),
                }
                for p, f in sorted(self.files.items())
            ],
        }
        if self.repo_type == "model":
            out["modelId"] = self.repo_id
        if self.card_data is not None:
            out["cardData"] = self.card_data
        return out

    def tree(self, prefix: str, recursive: bool) -> list[dict[str, Any]]:
        prefix = prefix.strip("/")
        base = f"{prefix}/" if prefix else ""
        entries: dict[str, dict[str, Any]] = {}
        for p in sorted(self.files):
            if not p.startswith(base):
                continue
            rest = p[len(base) :]
            if "/" in rest and not recursive:
                d = base + rest.split("/", 1)[0]
                entries.setdefault(d, {"type": "directory", "oid": git_blob_id(d.encode()), "size": 0, "path": d})
                continue
            if recursive:
                parts = rest.split("/")[:-1]
                for i in range(len(parts)):
                    d = base + "/".join(parts[: i + 1])
                    entries.setdefault(d, {"type": "directory", "oid": git_blob_id(d.encode()), "size": 0, "path": d})
            entries[p] = self.files[p].tree_entry()
        return [entries[k] for k in sorted(entries)]


class LoopbackHub:
    """A Hub on 127.0.0.1 serving :class:`HubRepo` s; use as a context manager or call :meth:`start`/:meth:`stop`."""

    def __init__(self, *, accepted_tokens: tuple[str, ...] = ()):
        self.repos: dict[tuple[str, str], HubRepo] = {}
        self.raw: dict[str, bytes] = {}
        """Path (without the leading /raw/) -> bytes, served at ``/raw/<path>``."""
        self.accepted_tokens = set(accepted_tokens)
        self.log: list[dict[str, Any]] = []
        """One record per request: method, path, status, client address, whether a token was sent."""
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------------------------------- content
    def add_repo(
        self,
        repo_type: str,
        repo_id: str,
        files: Mapping[str, bytes | str],
        *,
        gated: bool = False,
        card_data: dict[str, Any] | None = None,
    ) -> HubRepo:
        if repo_type not in ("model", "dataset"):
            raise ValueError(f"repo_type must be 'model' or 'dataset', got {repo_type!r}")
        repo = HubRepo(
            repo_type,
            repo_id,
            {p: HubFile(p, d.encode() if isinstance(d, str) else bytes(d)) for p, d in files.items()},
            gated=gated,
            card_data=card_data,
        )
        self.repos[(repo_type, repo_id)] = repo
        return repo

    # ---------------------------------------------------------------------------------------- serving
    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("the loopback hub is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> LoopbackHub:
        hub = self

        class Handler(_Handler):
            owner = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="loopback-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LoopbackHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.log.append(entry)

    def requested_repos(self) -> set[tuple[str, str]]:
        """(type, id) of every repository a request named (info, listing or file)."""
        return {tuple(e["repo"]) for e in self.log if e.get("repo")}


_API = re.compile(r"^/api/(models|datasets)/(?P<rest>.+)$")
_RESOLVE = re.compile(r"^(?:/(?P<kind>datasets))?/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


class _Handler(BaseHTTPRequestHandler):
    owner: LoopbackHub
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:  # the request log replaces stderr chatter
        pass

    # ------------------------------------------------------------------------------------- plumbing
    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        repo: HubRepo | None = None,
        head: bool = False,
    ) -> None:
        self.send_response(status)
        hdrs = {"Content-Length": str(len(body)), **dict(headers or {})}
        if "Content-Type" not in hdrs:
            hdrs["Content-Type"] = "application/json" if body[:1] in (b"{", b"[") else "application/octet-stream"
        for k, v in hdrs.items():
            self.send_header(k, v)
        self.end_headers()
        if body and not head:
            self.wfile.write(body)
        self.owner.record(
            {
                "method": self.command,
                "path": self.path,
                "status": status,
                "client": self.client_address[0],
                "token": bool(self._token()),
                "via_proxy": getattr(self, "via_proxy", False),
                "repo": (repo.repo_type, repo.repo_id) if repo else None,
            }
        )

    def _json(self, status: int, obj: Any, repo: HubRepo | None = None, headers: Mapping[str, str] | None = None):
        self._send(
            status,
            json.dumps(obj).encode(),
            {"Content-Type": "application/json", **dict(headers or {})},
            repo=repo,
            head=self.command == "HEAD",
        )

    def _error(self, status: int, code: str, message: str, repo: HubRepo | None = None) -> None:
        self._json(status, {"error": message}, repo=repo, headers={"X-Error-Code": code, "X-Error-Message": message})

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth[len("Bearer ") :].strip() if auth.startswith("Bearer ") else None

    def _allowed(self, repo: HubRepo) -> bool:
        if not repo.gated:
            return True
        if self._token() in self.owner.accepted_tokens:
            return True
        status = 403 if self._token() else 401
        self._error(
            status,
            "GatedRepo",
            f"Access to {repo.repo_type} {repo.repo_id} is restricted. You must have "
            "access to it and be authenticated to access it. Please log in.",
            repo,
        )
        return False

    def _find(self, repo_type: str, repo_id: str) -> HubRepo | None:
        repo = self.owner.repos.get((repo_type, repo_id))
        if repo is None:
            self._error(404, "RepoNotFound", f"Repository Not Found for url: {self.path}.")
        return repo

    def _revision_ok(self, repo: HubRepo, rev: str) -> bool:
        rev = urllib.parse.unquote(rev)
        if rev in ("main", repo.sha):
            return True
        self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", repo)
        return False

    # ------------------------------------------------------------------------------------- routes
    def do_HEAD(self) -> None:
        self._route()

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def _route(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        # An absolute-form target ("GET http://host/path"): a client using this server as its HTTP proxy.
        self.via_proxy = bool(url.scheme)
        path = urllib.parse.unquote(url.path)
        query = urllib.parse.parse_qs(url.query)
        if path.startswith("/raw/"):
            data = self.owner.raw.get(path[len("/raw/") :])
            if data is None:
                return self._send(404, b"404: Not Found", {"Content-Type": "text/plain"})
            return self._send(200, data, {"Content-Type": "text/plain; charset=utf-8"}, head=self.command == "HEAD")
        m = _API.match(path)
        if m:
            return self._api("model" if m.group(1) == "models" else "dataset", m.group("rest"), query)
        m = _RESOLVE.match(path)
        if m:
            return self._resolve(
                "dataset" if m.group("kind") else "model", m.group("repo"), m.group("rev"), m.group("path")
            )
        if path == "/api/whoami-v2":
            if self._token() in self.owner.accepted_tokens:
                return self._json(200, {"type": "user", "name": "rehearsal", "auth": {"type": "access_token"}})
            return self._error(401, "", "Invalid credentials in Authorization header")
        self._error(404, "EntryNotFound", f"no route for {self.command} {path}")

    def _api(self, repo_type: str, rest: str, query: dict[str, list[str]]) -> None:
        parts = rest.split("/")
        if len(parts) < 2:
            return self._error(404, "RepoNotFound", f"Repository Not Found for url: {self.path}.")
        repo = self._find(repo_type, "/".join(parts[:2]))
        if repo is None:
            return
        tail = parts[2:]
        if not tail:
            return self._json(200, repo.info(), repo)
        if tail[0] == "revision" and len(tail) >= 2:
            if self._revision_ok(repo, "/".join(tail[1:])):
                self._json(200, repo.info(), repo)
            return
        if tail[0] == "auth-check":
            if self._allowed(repo):
                self._json(200, {}, repo)
            return
        if tail[0] == "tree" and len(tail) >= 2:
            if not self._revision_ok(repo, tail[1]):
                return
            recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
            prefix = "/".join(tail[2:])
            entries = repo.tree(prefix, recursive)
            if prefix and not entries:
                return self._error(404, "EntryNotFound", f'{prefix} does not exist on "{tail[1]}"', repo)
            return self._json(200, entries, repo)
        if tail[0] == "paths-info" and len(tail) >= 2:
            if not self._revision_ok(repo, tail[1]):
                return
            paths = self._posted_paths()
            out = []
            for p in paths:
                p = p.strip("/")
                if p in repo.files:
                    out.append(repo.files[p].tree_entry())
                elif any(f.startswith(p + "/") for f in repo.files):
                    out.append({"type": "directory", "oid": git_blob_id(p.encode()), "size": 0, "path": p})
            return self._json(200, out, repo)
        self._error(404, "EntryNotFound", f"no route for {self.command} {self.path}", repo)

    def _posted_paths(self) -> list[str]:
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        ctype = self.headers.get("Content-Type", "")
        if "json" in ctype:
            data = json.loads(body or b"{}")
            paths = data.get("paths", [])
        else:
            paths = urllib.parse.parse_qs(body.decode()).get("paths", [])
        return [paths] if isinstance(paths, str) else list(paths)

    def _resolve(self, repo_type: str, repo_id: str, rev: str, path: str) -> None:
        repo = self._find(repo_type, repo_id)
        if repo is None or not self._revision_ok(repo, rev) or not self._allowed(repo):
            return
        f = repo.files.get(path)
        if f is None:
            return self._error(404, "EntryNotFound", f'{path} does not exist on "{rev}"', repo)
        headers = {
            "ETag": f'"{f.etag}"',
            "X-Repo-Commit": repo.sha,
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if f.lfs:
            headers["X-Linked-Etag"] = f'"{f.sha256}"'
            headers["X-Linked-Size"] = str(len(f.data))
        data, status = f.data, 200
        rng = self.headers.get("Range")
        if rng:
            m = re.match(r"bytes=(\d*)-(\d*)$", rng.strip())
            if not m:
                return self._error(416, "", f"bad range {rng!r}", repo)
            size = len(f.data)
            if m.group(1):
                start = int(m.group(1))
                end = int(m.group(2)) if m.group(2) else size - 1
            else:  # suffix range: the last N bytes
                start, end = max(0, size - int(m.group(2))), size - 1
            end = min(end, size - 1)
            if start >= size and size > 0:
                return self._send(416, b"", {"Content-Range": f"bytes */{size}"}, repo=repo)
            data, status = f.data[start : end + 1], 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        self._send(status, data, headers, repo=repo, head=self.command == "HEAD")
