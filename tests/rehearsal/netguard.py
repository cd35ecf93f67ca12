"""A process-wide guard that refuses, and records, every network connection or name lookup that is not loopback.

Installed in the test process by :func:`install` and in every notebook kernel the runner starts by
``tests/rehearsal/guard/sitecustomize.py`` (put on ``PYTHONPATH``; Python imports ``sitecustomize`` at start-up).
Each refusal is appended as one JSON line to the file named by ``$COMPANION_NETGUARD_LOG``, so the rehearsal test
can assert that no request left the machine, in any process.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket

LOG_ENV = "COMPANION_NETGUARD_LOG"
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def _is_loopback(host) -> bool:
    if host is None:
        return True  # getaddrinfo(None, port): the local wildcard
    if isinstance(host, bytes):
        host = host.decode()
    host = str(host).strip("[]")
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _record(kind: str, target) -> None:
    path = os.environ.get(LOG_ENV)
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "kind": kind, "target": repr(target)}) + "\n")


def install() -> None:
    """Patch ``socket`` so non-loopback connects and lookups raise (and are recorded); idempotent."""
    if getattr(socket, "_companion_netguard", False):
        return
    real_connect, real_connect_ex, real_getaddrinfo = (
        socket.socket.connect,
        socket.socket.connect_ex,
        socket.getaddrinfo,
    )

    def allowed(sock, address) -> bool:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return True  # AF_UNIX and friends never leave the machine
        return _is_loopback(address[0])

    def connect(self, address):
        if not allowed(self, address):
            _record("connect", address)
            raise ConnectionRefusedError(f"network guard: connection to {address!r} refused (not loopback)")
        return real_connect(self, address)

    def connect_ex(self, address):
        if not allowed(self, address):
            _record("connect", address)
            return 111  # ECONNREFUSED
        return real_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if not _is_loopback(host):
            _record("getaddrinfo", host)
            raise socket.gaierror(socket.EAI_NONAME, f"network guard: lookup of {host!r} refused (not loopback)")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex
    socket.getaddrinfo = getaddrinfo
    socket._companion_netguard = True


def refusals(path: str | os.PathLike) -> list[dict]:
    """The refusals recorded in a log file (empty when none, or no file)."""
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []
