"""The C core's ``rendezvous``: the client's connect, owner check and hello in one call.

Over real AF_UNIX listeners in this process; each case also checks that no fd is
left open behind a call that failed.
"""

from __future__ import annotations

import array
import errno
import fcntl
import os
import socket
from collections.abc import Iterator

import pytest

from loopfast._core import ringcore

from .._fds import open_fds

TIMEOUT = 5.0
HELLO = b"H" * 48
core = ringcore.ring
pytestmark = pytest.mark.skipif(core is None, reason="needs the C core (make test builds it)")


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lst.bind(b"\0loopfast-test-rendezvous-%d" % os.getpid())
    lst.listen(8)
    lst.settimeout(TIMEOUT)
    yield lst
    lst.close()


def _name(lst: socket.socket) -> bytes:
    name = lst.getsockname()
    return name if isinstance(name, bytes) else name.encode()


def _receive(conn: socket.socket, fds: int) -> tuple[bytes, list[int]]:
    data, ancdata, _flags, _addr = conn.recvmsg(256, socket.CMSG_SPACE(4 * fds))
    got: list[int] = []
    for _level, _kind, payload in ancdata:
        got.extend(array.array("i", payload))
    return data, got


def test_nobody_at_the_name_is_none_and_leaves_nothing_open() -> None:
    assert core is not None
    before = open_fds()
    assert core.rendezvous(b"\0loopfast-test-nobody-%d" % os.getpid(), os.getuid(), HELLO,
                           [], -1) is None
    assert open_fds() == before


def test_another_uid_gets_no_hello(listener: socket.socket) -> None:
    assert core is not None
    got = core.rendezvous(_name(listener), os.getuid() + 1, HELLO, [], -1)
    assert got is not None
    fd, pid, uid, gid, sent = got
    try:
        assert (pid, uid, gid, sent) == (os.getpid(), os.getuid(), os.getgid(), False)
        conn, _ = listener.accept()
        with conn:
            conn.setblocking(False)
            with pytest.raises(BlockingIOError):  # not a byte, not an fd
                conn.recv(64)
    finally:
        os.close(fd)


def test_the_owners_uid_gets_the_hello_and_its_fds_in_order(listener: socket.socket) -> None:
    assert core is not None
    r, w = os.pipe()
    try:
        got = core.rendezvous(_name(listener), os.getuid(), HELLO, [r, -1, w], -1)
        assert got is not None
        fd, _pid, _uid, _gid, sent = got
        assert sent
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(TIMEOUT)
            data, fds = _receive(conn, 4)
            assert data == HELLO and len(fds) == 3
            os.write(fds[2], b"p")  # the pipe's own ends, in the order given
            assert os.read(r, 1) == b"p"
            os.write(fds[1], b"s")  # -1 stood for the stream itself: the client's end
            assert conn.recv(1) == b"s"
            for each in fds:
                os.close(each)
            os.close(fd)
    finally:
        os.close(r)
        os.close(w)


def test_onto_moves_the_stream_to_the_given_fd_number(listener: socket.socket) -> None:
    assert core is not None
    app = socket.socket()  # the application's TCP socket, as connect() hands it over
    onto = app.fileno()
    before = open_fds()
    got = core.rendezvous(_name(listener), os.getuid(), HELLO, [], onto)
    assert got is not None and got[0] == onto and got[4]
    assert open_fds() == before  # the new stream went to onto's number
    assert app.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN) == socket.AF_UNIX
    assert fcntl.fcntl(onto, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    conn, _ = listener.accept()
    with conn, app:
        conn.settimeout(TIMEOUT)
        assert conn.recv(64) == HELLO
        os.write(onto, b"x")
        assert conn.recv(1) == b"x"


def test_a_full_backlog_is_blocking_io_error_and_leaves_nothing_open() -> None:
    assert core is not None
    lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lst.bind(b"\0loopfast-test-rendezvous-full-%d" % os.getpid())
    lst.listen(0)
    queued = []
    try:
        for _ in range(8):  # fill the backlog (a listen(0) one holds one or two)
            filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            filler.setblocking(False)
            queued.append(filler)
            try:
                filler.connect(_name(lst))
            except BlockingIOError:
                break
        before = open_fds()
        with pytest.raises(BlockingIOError):
            core.rendezvous(_name(lst), os.getuid(), HELLO, [], -1)
        assert open_fds() == before
    finally:
        for each in queued:
            each.close()
        lst.close()


@pytest.mark.parametrize(("name", "fds", "code"), [
    (b"", [], errno.EINVAL),
    (b"\0" + b"n" * 200, [], errno.EINVAL),
    (b"\0x", [-2], errno.EBADF),
    (b"\0x", [0] * 17, errno.EINVAL),
])
def test_bad_arguments_are_refused_before_anything_is_made(name: bytes, fds: list[int],
                                                           code: int) -> None:
    assert core is not None
    before = open_fds()
    with pytest.raises(OSError) as raised:
        core.rendezvous(name, os.getuid(), HELLO, fds, -1)
    assert raised.value.errno == code
    assert open_fds() == before


def test_a_hello_that_cannot_go_closes_the_stream(listener: socket.socket) -> None:
    assert core is not None
    gone = 1_000_000  # an fd number nobody holds (not the new stream's): sendmsg's EBADF
    before = open_fds()
    with pytest.raises(OSError) as raised:
        core.rendezvous(_name(listener), os.getuid(), HELLO, [gone], -1)
    assert raised.value.errno == errno.EBADF
    assert open_fds() == before
    conn, _ = listener.accept()  # the connection came, and was closed: no hello
    with conn:
        conn.settimeout(TIMEOUT)
        assert conn.recv(64) == b""
