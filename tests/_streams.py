"""Reading a stream in tests: one helper, for test bodies, forked children and scenarios."""

from __future__ import annotations

import socket


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
