"""_fastpath/hello_io.py: the C core's take_hello and tcp_name, and the same in Python.

Each case runs twice: with the C core, and with ``ringcore.ring`` set to None
(what a build without a compiler has), over real AF_UNIX listeners and sockets.
"""

from __future__ import annotations

import array
import os
import socket
from collections.abc import Iterator

import pytest

from loopfast._core import ringcore
from loopfast._fastpath import handshake, hello_io

from .._streams import unix_listener

BASE, EXT = handshake.HELLO_SIZE, handshake.RING_EXT.size
TIMEOUT = 5.0


@pytest.fixture(params=["c", "python"])
def core(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "python":
        monkeypatch.setattr(ringcore, "ring", None)
    else:
        assert ringcore.ring is not None, "the C core must build here (make test)"
    return str(request.param)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with unix_listener("hello-io", 0.0) as lst:
        yield lst


def _client(lst: socket.socket) -> socket.socket:
    cli = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    cli.settimeout(TIMEOUT)
    cli.connect(lst.getsockname())
    return cli


def _hello(ring: bool) -> bytes:
    return handshake.encode(handshake.Hello(
        socket.AF_INET, "127.0.0.1", 40000, "127.0.0.1", 8080,
        (65536, 65536) if ring else None))


def test_nothing_waiting_is_none(core: str, listener: socket.socket) -> None:
    assert hello_io.take_hello(listener.fileno(), BASE, EXT, 4) is None


@pytest.mark.parametrize("ring", [False, True])
def test_a_whole_hello_comes_with_its_fds_and_nothing_after_it(
        core: str, listener: socket.socket, ring: bool) -> None:
    with _client(listener) as cli:
        r, w = os.pipe()
        try:
            cli.sendmsg([_hello(ring)], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                          array.array("i", [r, w]).tobytes())])
            cli.sendall(b"after")  # the stream's data: not the hello's to take
        finally:
            os.close(r)
            os.close(w)
        taken = hello_io.take_hello(listener.fileno(), BASE, EXT, 4)
        assert taken is not None
        fd, pid, uid, gid, data, fds, truncated = taken
        try:
            assert (pid, uid, gid) == (os.getpid(), os.getuid(), os.getgid())
            assert data == _hello(ring) and len(fds) == 2 and not truncated
            os.write(fds[1], b"p")
            assert os.read(fds[0], 1) == b"p"  # the very pipe that was sent
            with socket.socket(fileno=os.dup(fd)) as conn:
                assert conn.getblocking()  # as accept(2) makes a socket
                conn.settimeout(TIMEOUT)
                assert conn.recv(16) == b"after"
        finally:
            for each in (fd, *fds):
                os.close(each)


def test_half_a_hello_is_taken_as_it_is(core: str, listener: socket.socket) -> None:
    # A loopfast client sends its hello as one message; a first message shorter than a
    # hello is somebody else's, taken whole for the listener to refuse.
    with _client(listener) as cli:
        cli.sendall(_hello(False)[:20])
        taken = hello_io.take_hello(listener.fileno(), BASE, EXT, 4)
        assert taken is not None
        fd, _pid, _uid, _gid, data, fds, _truncated = taken
        try:
            assert data == _hello(False)[:20] and fds == []
            cli.sendall(b"rest")
            with socket.socket(fileno=os.dup(fd)) as conn:
                conn.settimeout(TIMEOUT)
                assert conn.recv(64) == b"rest"  # only the first message was taken
        finally:
            os.close(fd)


def test_a_hello_not_sent_yet_is_none_and_nothing_is_consumed(
        core: str, listener: socket.socket) -> None:
    with _client(listener) as cli:
        taken = hello_io.take_hello(listener.fileno(), BASE, EXT, 4)
        assert taken is not None
        fd, _pid, _uid, _gid, data, fds, _truncated = taken
        try:
            assert data is None and fds == []
            cli.sendall(b"later")
            with socket.socket(fileno=os.dup(fd)) as conn:
                conn.settimeout(TIMEOUT)
                assert conn.recv(64) == b"later"
        finally:
            os.close(fd)


def test_a_stream_that_ended_first_is_empty(core: str, listener: socket.socket) -> None:
    _client(listener).close()
    taken = hello_io.take_hello(listener.fileno(), BASE, EXT, 4)
    assert taken is not None
    os.close(taken[0])
    assert taken[4] == b"" and taken[5] == []


def test_too_many_fds_are_cut_off_and_said_so(core: str, listener: socket.socket) -> None:
    with _client(listener) as cli:
        pipes = [os.pipe() for _ in range(3)]
        sent = [fd for pair in pipes for fd in pair]
        try:
            cli.sendmsg([_hello(True)], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                          array.array("i", sent).tobytes())])
        finally:
            for fd in sent:
                os.close(fd)
        before = len(os.listdir("/proc/self/fd"))
        taken = hello_io.take_hello(listener.fileno(), BASE, EXT, 4)
        assert taken is not None
        fd, *_, data, fds, truncated = taken
        for each in (fd, *fds):
            os.close(each)
        assert truncated or data == b""  # C says truncated; Python refuses the hello
        assert len(os.listdir("/proc/self/fd")) == before  # none of the 6 fds stayed


def test_tcp_name(core: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.bind(("127.0.0.1", 0))
        assert hello_io.tcp_name(tcp.fileno()) == (socket.AF_INET, "127.0.0.1",
                                                   tcp.getsockname()[1])
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as tcp6:
        tcp6.bind(("::1", 0))
        assert hello_io.tcp_name(tcp6.fileno()) == (socket.AF_INET6, "::1",
                                                    tcp6.getsockname()[1])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        assert hello_io.tcp_name(udp.fileno()) is None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix:
        assert hello_io.tcp_name(unix.fileno()) is None
    r, w = os.pipe()
    try:
        assert hello_io.tcp_name(r) is None
    finally:
        os.close(r)
        os.close(w)
    with pytest.raises(OSError):
        hello_io.tcp_name(w)  # closed
