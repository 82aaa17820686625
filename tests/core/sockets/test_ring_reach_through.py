"""Code that reaches past a ring socket object to its fd: it works, or fails loudly on both ends.

- ``socket.socket(fileno=fd)`` (under ``patch()``) or ``loopfast.socket(fileno=fd)``
  of a live ring connection's fd, and ``socket.fromfd``, share the connection.
- Bytes written to the fd with ``os.write`` cannot be carried: both ends get
  ConnectionResetError naming the cause, the writer's peer in another process too.
- Socket objects sharing a connection close in any order; the rings never keep
  using a closed (and perhaps reused) fd number.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

import pytest

import loopfast

from ..._procs import child
from ...conftest import TIMEOUT

Pair = tuple[loopfast.socket, loopfast.socket]
LOUD = "written to its fd behind the socket object"


def _drain(sock: socket.socket) -> int:
    sock.setblocking(False)
    got = 0
    for _ in range(10_000):  # bounded: the rings hold a few MiB
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            break
        if not chunk:
            break
        got += len(chunk)
    return got


def _fill(sock: socket.socket) -> int:
    sock.setblocking(False)
    sent = 0
    for _ in range(10_000):
        try:
            sent += sock.send(b"x" * 65536)
        except BlockingIOError:
            break
    return sent


@pytest.mark.usefixtures("patched")
def test_socket_from_fileno_under_patch_carries_data(closing: Callable[..., socket.socket]) -> None:
    srv = closing(socket.create_server(("127.0.0.1", 0)))
    cli = closing(socket.create_connection(srv.getsockname(), timeout=TIMEOUT))
    acc = closing(srv.accept()[0])
    acc.settimeout(TIMEOUT)
    assert cli.fast_path_transport == "ring"

    # What http.client's test_response_fileno does with response.fileno().
    raw = socket.socket(fileno=cli.fileno())
    assert (raw.fileno(), raw.family, raw.getpeername()) == (
        cli.fileno(), socket.AF_INET, cli.getpeername())
    raw.sendall(b"proxied data\n")
    assert acc.recv(100) == b"proxied data\n"
    assert raw.detach() == cli.fileno()  # the number stays open for cli

    cli.sendall(b"still here")
    assert acc.recv(100) == b"still here"
    acc.sendall(b"back")
    assert cli.recv(100) == b"back"


def test_loopfast_socket_from_fileno_shares_and_closes_in_any_order(
        make_pair: Callable[..., Pair]) -> None:
    cli, acc = make_pair()
    twin = loopfast.socket(fileno=cli.fileno())
    twin.settimeout(TIMEOUT)
    assert twin.fast_path_transport == "ring"
    twin.sendall(b"from the twin")
    assert acc.recv(100) == b"from the twin"
    twin.close()  # cli uses the same number: it stays open and working
    cli.sendall(b"from cli")
    assert acc.recv(100) == b"from cli"
    cli.close()
    assert acc.recv(100) == b""  # the last holder closed: end of stream


@pytest.mark.usefixtures("patched")
def test_fromfd_then_original_closed_keeps_readiness_right(
        make_pair: Callable[..., Pair], closing: Callable[..., socket.socket]) -> None:
    """The rings moved to the survivor's fd: a socket that reuses the old number gets
    no filler, and the survivor's POLLOUT follows the ring."""
    cli, acc = make_pair()
    twin = closing(socket.fromfd(cli.fileno(), socket.AF_INET, socket.SOCK_STREAM))
    assert isinstance(twin, loopfast.socket) and twin.fast_path_transport == "ring"
    old = cli.fileno()
    cli.close()
    stranger_srv = closing(socket.create_server(("127.0.0.1", 0)))
    stranger = closing(socket.create_connection(stranger_srv.getsockname(), timeout=TIMEOUT))
    stranger_peer = closing(stranger_srv.accept()[0])
    assert old in (stranger.fileno(), stranger_srv.fileno(), stranger_peer.fileno())

    assert _fill(twin) > 0
    assert select.select([], [twin], [], 0)[1] == []  # full: not writable
    assert _drain(acc) > 0
    assert select.select([], [twin], [], TIMEOUT)[1] == [twin]
    stranger_peer.setblocking(False)
    with pytest.raises(BlockingIOError):  # nothing of ours went to the stranger
        stranger_peer.recv(10)
    twin.close()
    acc.settimeout(TIMEOUT)
    assert acc.recv(10) == b""


def test_dup_then_original_closed_keeps_readiness_right(make_pair: Callable[..., Pair],
                                                        closing: Callable[..., socket.socket]
                                                        ) -> None:
    cli, acc = make_pair()
    twin = closing(cli.dup())
    cli.close()
    closing(socket.socket())  # likely takes cli's old number
    assert _fill(twin) > 0
    assert select.select([], [twin], [], 0)[1] == []
    assert _drain(acc) > 0
    assert select.select([], [twin], [], TIMEOUT)[1] == [twin]


def test_os_write_on_the_fd_resets_both_ends_naming_the_cause(
        make_pair: Callable[..., Pair]) -> None:
    cli, acc = make_pair()
    cli.sendall(b"before")
    assert acc.recv(100) == b"before"
    os.write(cli.fileno(), b"GET / HTTP/1.1\r\n\r\n")
    assert select.select([acc], [], [], TIMEOUT)[0] == [acc]  # the peer is woken
    for sock in (acc, cli):
        for call in (lambda s=sock: s.recv(10), lambda s=sock: s.send(b"x")):
            with pytest.raises(ConnectionResetError, match=LOUD):
                call()


def _reader(pipe: Connection, port: int) -> None:
    with loopfast.create_connection(("127.0.0.1", port), timeout=TIMEOUT, fast_path=True) as c:
        pipe.send(c.fast_path_transport)
        try:
            pipe.send(("returned", c.recv(100)))  # blocked here when the writer misbehaves
        except OSError as exc:
            pipe.send((type(exc).__name__, str(exc)))


def test_os_write_wakes_a_peer_blocked_in_recv_in_another_process(
        make_server: Callable[..., loopfast.socket]) -> None:
    srv = make_server()
    srv.settimeout(TIMEOUT)
    with child(_reader, srv.getsockname()[1]) as (_proc, pipe):
        acc, _ = srv.accept()
        with acc:
            assert pipe.poll(TIMEOUT) and pipe.recv() == "ring"
            time.sleep(0.05)  # the child is in recv
            start = time.monotonic()
            os.write(acc.fileno(), b"data the ring cannot carry")
            assert pipe.poll(TIMEOUT)
            kind, text = pipe.recv()
            waited = time.monotonic() - start
            assert (kind, LOUD in text) == ("ConnectionResetError", True)
            with pytest.raises(ConnectionResetError, match=LOUD):
                acc.send(b"x")
    assert waited < 1.0


def test_a_writer_blocked_in_sendfile_on_the_fd_is_released(
        make_pair: Callable[..., Pair], tmp_path: pytest.TempPathFactory) -> None:
    """CPython's test_socket sendfile tests hung here: the reset must free the writer."""
    cli, acc = make_pair()
    cli.setblocking(True)  # os.sendfile blocks in the kernel, as in test_socket
    path = os.path.join(str(tmp_path), "big.bin")
    with open(path, "wb") as f:
        f.write(os.urandom(4 << 20))
    outcome: list[object] = []

    def write() -> None:
        with open(path, "rb") as f:
            try:
                outcome.append(os.sendfile(cli.fileno(), f.fileno(), 0, 4 << 20))
                outcome.append(os.sendfile(cli.fileno(), f.fileno(), 0, 4 << 20))
            except OSError as exc:
                outcome.append(type(exc))

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    with pytest.raises(ConnectionResetError, match=LOUD):
        for _ in range(1000):  # bounded: the reset comes with the first foreign bytes
            acc.recv(1 << 16)
    writer.join(TIMEOUT)
    assert not writer.is_alive(), "the writer is still blocked in os.sendfile"
    assert outcome[-1] is BrokenPipeError  # a short count first, then EPIPE: never all of it
    assert all(n < 4 << 20 for n in outcome if isinstance(n, int))
