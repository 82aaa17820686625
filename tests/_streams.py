"""Streams in tests: reading one, and a rendezvous-like AF_UNIX listener."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    """*n* bytes from *sock*, or fewer if the stream ends first.

    At most *n* recv calls: each one gets at least a byte or ends the loop.
    """
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


@contextmanager
def unix_listener(tag: str, timeout: float | None) -> Iterator[socket.socket]:
    """A listening AF_UNIX stream at an abstract name of its own (*tag* and this pid),
    with *timeout* (0.0: non-blocking, as a fast-path listener's names are); closed after."""
    lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        lst.bind(b"\0loopfast-test-%s-%d" % (tag.encode(), os.getpid()))
        lst.listen(8)
        lst.settimeout(timeout)
        yield lst
    finally:
        lst.close()
