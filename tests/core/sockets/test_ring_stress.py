"""_core/sockets/ring.py under a soak: ring connections carrying random-sized streams both
ways for a while.

Run with ``make stress`` (``pytest -m stress``); ``LOOPFAST_SOAK_SECONDS`` sets
how long (default 30). It stops by itself: every loop is bounded by that time.
"""

from __future__ import annotations

import hashlib
import os
import random
import selectors
import socket
import threading
import time
from multiprocessing.connection import Connection

import pytest

import loopfast

from ..._procs import child, receive

SECONDS = float(os.environ.get("LOOPFAST_SOAK_SECONDS", "30"))
CONNECTIONS = 8


def _echo_all(pipe: Connection, n: int, seconds: float) -> None:
    """Echo *n* ring connections from one non-blocking selector loop."""
    with loopfast.create_server(("127.0.0.1", 0), fast_path=True, backlog=64) as srv:
        srv.settimeout(10)
        pipe.send(srv.getsockname()[1])
        conns = [srv.accept()[0] for _ in range(n)]
        pending: dict[socket.socket, bytearray] = {c: bytearray() for c in conns}
        buf = bytearray(1 << 16)
        with selectors.DefaultSelector() as sel:
            for conn in conns:
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ)
            deadline = time.monotonic() + seconds + 30
            while sel.get_map() and time.monotonic() < deadline:
                for key, events in sel.select(timeout=0.5):
                    conn = key.fileobj
                    out = pending[conn]
                    if events & selectors.EVENT_READ:
                        try:
                            got = conn.recv_into(buf)
                        except BlockingIOError:
                            got = -1
                        if got == 0:
                            sel.unregister(conn)
                            conn.close()
                            continue
                        if got > 0:
                            out += buf[:got]
                    if out:
                        try:
                            sent = conn.send(out)
                            del out[:sent]
                        except BlockingIOError:
                            pass
                    sel.modify(conn, selectors.EVENT_READ | (selectors.EVENT_WRITE if out else 0))


def _drive(conn: socket.socket, seconds: float, seed: int, result: list[str]) -> None:
    rng = random.Random(seed)
    sent, got = hashlib.sha256(), hashlib.sha256()
    outstanding = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        size = rng.choice([1, 7, 64, 4096, 65536, 300_000])
        data = rng.randbytes(size)
        conn.sendall(data)
        sent.update(data)
        outstanding += size
        while outstanding > 512 * 1024 or (outstanding and rng.random() < 0.5):
            chunk = conn.recv(min(outstanding, 1 << 17))
            assert chunk, "the echo server closed early"
            got.update(chunk)
            outstanding -= len(chunk)
    while outstanding:
        chunk = conn.recv(min(outstanding, 1 << 17))
        assert chunk, "the echo server closed early"
        got.update(chunk)
        outstanding -= len(chunk)
    result.append("ok" if sent.digest() == got.digest() else "mismatch")


@pytest.mark.stress
@pytest.mark.timeout(SECONDS + 120)
def test_soak_ring_streams_arrive_intact() -> None:
    with child(_echo_all, CONNECTIONS, SECONDS) as (_proc, pipe):
        port = receive(pipe)
        conns = [loopfast.create_connection(("127.0.0.1", port), timeout=30, fast_path=True)
                 for _ in range(CONNECTIONS)]
        results: list[str] = []
        threads = [threading.Thread(target=_drive, args=(c, SECONDS, i, results))
                   for i, c in enumerate(conns)]
        try:
            assert all(c.fast_path_transport == "ring" for c in conns)
            for t in threads:
                t.start()
            for t in threads:
                t.join(SECONDS + 60)
        finally:
            for c in conns:
                c.close()
    assert results == ["ok"] * CONNECTIONS
