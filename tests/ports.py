"""Ports for servers a test starts in another process, with no race against other tests or sockets.

The usual trick (bind port 0, read the port, close, hand it on) races twice: the kernel may give the
same port to an outgoing connection of any process (it is in the ephemeral range), and another
pytest-xdist worker may be handed it too. So ports come from below the ephemeral range, from a
block of their own per worker, and are checked free by binding them before they are handed on.
Servers we start in-process bind port 0 themselves and never need this.
"""

from __future__ import annotations

import itertools
import os
import socket
from pathlib import Path

__all__ = ["free_port"]

#: A block of ports per xdist worker (gw0, gw1, ...), below the ephemeral range.
_BLOCK = 500
_FLOOR = 20_000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    digits = worker.removeprefix("gw")
    return int(digits) if digits.isdigit() else 0


def _block() -> range:
    start = _FLOOR + _worker_index() * _BLOCK
    end = min(start + _BLOCK, _ephemeral_low())
    if start >= end:
        raise RuntimeError(f"no port block for xdist worker {_worker_index()} below the ephemeral range")
    return range(start, end)


_next = itertools.cycle(_block())


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback TCP port nobody listens on, that no other worker and no outgoing connection takes."""
    for _ in range(_BLOCK):
        port = next(_next)
        if _bindable(port):
            return port
    raise RuntimeError(f"every port of {_block()} is in use")
