"""Arenas under churn (stress): threads open, use and close ring connections at once.

Slots are claimed, left and claimed again while other connections of the same
arena carry bytes, with either side closing first (so either side is the one
that gives a finished slot's pages back). Every byte is checked, and the
client's connections keep to one or two arenas: a slot that the protocol lost
(never known free) would show as new arenas.
"""

from __future__ import annotations

import os
import random
import struct
import threading
import time
from multiprocessing.connection import Connection

import pytest

import loopfast
from loopfast._fastpath import ring_link

from .._procs import child, receive
from .._streams import recv_exactly
from ..conftest import TIMEOUT

THREADS = 6
PER_THREAD = 2000
BUDGET = 90.0  # seconds: the test stops there, whatever is left
_HEAD = struct.Struct("!IB")  # payload length, 1: the server closes first


def _fds() -> int:
    """Open fds but those held ahead of need (the pool's, the arenas')."""
    return len(os.listdir("/proc/self/fd")) - ring_link.pooled_fds()


def _ring_inodes() -> set[int]:
    with open("/proc/self/maps") as maps:
        return {int(line.split()[4]) for line in maps if "loopfast-ring" in line}


def _echo(conn: loopfast.socket) -> None:
    with conn:
        conn.settimeout(TIMEOUT)
        size, server_first = _HEAD.unpack(recv_exactly(conn, _HEAD.size))
        conn.sendall(recv_exactly(conn, size)[::-1])
        if not server_first:
            conn.recv(1)  # the client's end of stream: it closes first


def _serve(pipe: Connection) -> None:
    with loopfast.create_server(("127.0.0.1", 0), fast_path=True, backlog=64) as srv:
        srv.settimeout(0.2)
        pipe.send(srv.getsockname()[1])
        while not pipe.poll(0):
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            threading.Thread(target=_echo, args=(conn,), daemon=True).start()


def _client(port: int, seed: int, deadline: float, out: list[tuple[int, int, str]]) -> None:
    rng = random.Random(seed)
    done = wrong = 0
    transports = set()
    for _ in range(PER_THREAD):
        if time.monotonic() > deadline:
            break
        payload = rng.randbytes(rng.choice([1, 100, 4095, 4097, 65_536, 200_000]))
        server_first = rng.random() < 0.5
        with loopfast.create_connection(("127.0.0.1", port), timeout=TIMEOUT,
                                        fast_path=True) as cli:
            transports.add(cli.fast_path_transport)
            cli.sendall(_HEAD.pack(len(payload), server_first) + payload)
            wrong += recv_exactly(cli, len(payload)) != payload[::-1]
            if server_first:
                assert cli.recv(1) == b""
        done += 1
    out.append((done, wrong, ",".join(sorted(str(t) for t in transports))))


@pytest.mark.stress
@pytest.mark.timeout(180)
def test_slots_churned_by_threads_carry_every_byte_and_are_never_lost() -> None:
    before = _ring_inodes()
    with child(_serve) as (proc, pipe):
        port = receive(pipe)
        _client(port, -1, time.monotonic() + 5.0, [])  # warm: this process's own parts
        fds_before = _fds()
        deadline = time.monotonic() + BUDGET
        out: list[tuple[int, int, str]] = []
        threads = [threading.Thread(target=_client, args=(port, seed, deadline, out))
                   for seed in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(BUDGET + 30)
        arenas = _ring_inodes() - before
        pipe.send("stop")
        proc.join(TIMEOUT)
    done = sum(d for d, _, _ in out)
    print(f"\n  {done} connections by {THREADS} threads, {len(arenas)} arena(s)")
    assert len(out) == THREADS and all(w == 0 for _, w, _ in out), out
    assert {t for _, _, t in out} == {"ring"}
    assert done >= THREADS * 50  # enough churn to have reused every slot many times
    assert len(arenas) <= 2, f"{len(arenas)} arenas for {THREADS} connections at a time"
    assert _fds() <= fds_before  # none leaked
