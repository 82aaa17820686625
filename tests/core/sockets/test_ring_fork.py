"""Issue 14 A: a connection inherited across fork() behaves as TCP's does.

Each scenario runs over TCP (the client's fast path off) and
over the ring, with real fork()ed children, and the results must match: bytes
go to whoever reads first, none is duplicated or lost.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

import pytest

from ..._procs import child, receive
from ...conftest import Pair

TRANSPORTS = {"tcp": False, "ring": True}


@pytest.fixture(params=list(TRANSPORTS))
def pair(request: pytest.FixtureRequest, make_pair: Callable[..., Pair]) -> Pair:
    cli, acc = make_pair(client_fp=TRANSPORTS[request.param], server_fp=True)
    assert cli.fast_path_transport == ("ring" if request.param == "ring" else None)
    return cli, acc


def _read(pipe: Connection, sock: socket.socket, n: int) -> None:
    pipe.send(sock.recv(n, socket.MSG_WAITALL))


def _send_then_read(pipe: Connection, out: socket.socket, data: bytes, inp: socket.socket,
                    n: int) -> None:
    out.sendall(data)
    pipe.send(inp.recv(n, socket.MSG_WAITALL))


@pytest.mark.timeout(30)
def test_child_reads_part_parent_reads_the_rest(pair: Pair) -> None:
    cli, acc = pair
    cli.sendall(b"A" * 10 + b"B" * 10)
    with child(_read, acc, 10) as (proc, pipe):
        assert receive(pipe) == b"A" * 10
        proc.join(5)
    assert acc.recv(10, socket.MSG_WAITALL) == b"B" * 10


@pytest.mark.timeout(30)
def test_both_ends_forked_take_turns(pair: Pair) -> None:
    cli, acc = pair
    with child(_send_then_read, cli, b"A" * 10, acc, 5) as (proc, pipe):
        assert receive(pipe) == b"A" * 5
        proc.join(5)
    cli.sendall(b"B" * 10)
    got = b""
    while len(got) < 15:
        got += acc.recv(100)
    assert got == b"A" * 5 + b"B" * 10
    acc.sendall(b"back")  # the other direction was never used by the child
    assert cli.recv(4, socket.MSG_WAITALL) == b"back"


@pytest.mark.timeout(30)
def test_the_child_exits_and_the_parent_goes_on(pair: Pair) -> None:
    cli, acc = pair
    for round_ in range(3):
        cli.sendall(b"x%d" % round_)
        with child(_read, acc, 2) as (proc, pipe):
            assert receive(pipe) == b"x%d" % round_
            proc.join(5)
            assert proc.exitcode == 0
    cli.sendall(b"parent")
    assert acc.recv(6, socket.MSG_WAITALL) == b"parent"
    acc.sendall(b"reply")
    assert cli.recv(5, socket.MSG_WAITALL) == b"reply"


def _block_in_recv(pipe: Connection, sock: socket.socket) -> None:
    sock.settimeout(None)
    pipe.send("blocking")
    sock.recv(10)  # holds the receive direction until killed


@pytest.mark.timeout(30)
def test_a_child_killed_inside_recv_does_not_wedge_the_parent(pair: Pair) -> None:
    cli, acc = pair
    with child(_block_in_recv, acc) as (proc, pipe):
        assert receive(pipe) == "blocking"
        time.sleep(0.2)  # inside recv, holding the lock
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(5)
    cli.sendall(b"for the parent")
    acc.settimeout(5)
    assert acc.recv(14, socket.MSG_WAITALL) == b"for the parent"


def _selector_reader(pipe: Connection, sock: socket.socket, want: int) -> None:
    sock.setblocking(False)
    got = b""
    with selectors.DefaultSelector() as sel:
        sel.register(sock, selectors.EVENT_READ)
        while len(got) < want and sel.select(5):
            with contextlib.suppress(BlockingIOError):
                got += sock.recv(want - len(got))
    pipe.send(got)


@pytest.mark.timeout(60)
def test_two_processes_reading_at_once_lose_and_duplicate_nothing(pair: Pair) -> None:
    cli, acc = pair
    total = 1 << 20
    data = bytes(range(256)) * (total // 256)
    with child(_selector_reader, acc, total // 2) as (_p1, pipe1), \
            child(_selector_reader, acc, total // 2) as (_p2, pipe2):
        cli.sendall(data)
        cli.shutdown(socket.SHUT_WR)
        parts = [receive(pipe1, 20), receive(pipe2, 20)]
    # Whole bytes go to one reader or the other: as many as were sent, each once.
    assert sum(map(len, parts)) == total
    counts = [0] * 256
    for part in parts:
        for value in set(part):
            counts[value] += part.count(value)
    assert counts == [total // 256] * 256
