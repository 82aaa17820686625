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

from .._fds import open_fd_set, open_fds
from .._streams import unix_listener

TIMEOUT = 5.0
HELLO = b"H" * 48
core = ringcore.ring  # make test builds it: every case asserts it is there


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with unix_listener("rendezvous", TIMEOUT) as lst:
        yield lst


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
    name = b"\0loopfast-test-nobody-%d" % os.getpid()
    nobody = (name, name + b"-2")
    assert core.rendezvous(nobody, os.getuid(), HELLO, [], -1) is None
    assert open_fds() == before


def test_another_uid_gets_no_hello(listener: socket.socket) -> None:
    assert core is not None
    got = core.rendezvous((_name(listener),), os.getuid() + 1, HELLO, [], -1)
    assert got is not None
    fd, pid, uid, gid, sent, index = got
    try:
        assert (pid, uid, gid, sent, index) == (os.getpid(), os.getuid(), os.getgid(), False, 0)
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
        got = core.rendezvous((_name(listener),), os.getuid(), HELLO, [r, -1, w], -1)
        assert got is not None
        fd, _pid, _uid, _gid, sent, _index = got
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
    got = core.rendezvous((_name(listener),), os.getuid(), HELLO, [], onto)
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
            core.rendezvous((_name(lst),), os.getuid(), HELLO, [], -1)
        assert open_fds() == before
    finally:
        for each in queued:
            each.close()
        lst.close()


@pytest.mark.parametrize(("names", "fds", "code"), [
    ((), [], errno.EINVAL),
    ((b"",), [], errno.EINVAL),
    ((b"\0x", b"\0" + b"n" * 200), [], errno.EINVAL),
    ((b"\0x",) * 9, [], errno.EINVAL),
    ((b"\0x",), [-2], errno.EBADF),
    ((b"\0x",), [0] * 17, errno.EINVAL),
])
def test_bad_arguments_are_refused_before_anything_is_made(names: tuple[bytes, ...],
                                                           fds: list[int], code: int) -> None:
    assert core is not None
    before = open_fds()
    with pytest.raises(OSError) as raised:
        core.rendezvous(names, os.getuid(), HELLO, fds, -1)
    assert raised.value.errno == code
    assert open_fds() == before


def test_a_hello_that_cannot_go_closes_the_stream(listener: socket.socket) -> None:
    assert core is not None
    gone = 1_000_000  # an fd number nobody holds (not the new stream's): sendmsg's EBADF
    before = open_fds()
    with pytest.raises(OSError) as raised:
        core.rendezvous((_name(listener),), os.getuid(), HELLO, [gone], -1)
    assert raised.value.errno == errno.EBADF
    assert open_fds() == before
    conn, _ = listener.accept()  # the connection came, and was closed: no hello
    with conn:
        conn.settimeout(TIMEOUT)
        assert conn.recv(64) == b""


def test_the_first_name_where_somebody_listens_is_taken(listener: socket.socket) -> None:
    assert core is not None
    nobody = b"\0loopfast-test-nobody-%d" % os.getpid()
    before = open_fds()
    got = core.rendezvous((nobody, nobody + b"-2", _name(listener)), -1, b"", [], -1)
    assert got is not None
    fd, _pid, _uid, _gid, sent, index = got
    assert (sent, index) == (False, 2)  # uid -1: no hello, to nobody
    assert open_fds() == before + 1  # the stream alone
    conn, _ = listener.accept()
    with conn:
        os.write(fd, b"z")
        conn.settimeout(TIMEOUT)
        assert conn.recv(1) == b"z"
    os.close(fd)


def _nobody() -> tuple[bytes, ...]:
    name = b"\0loopfast-test-probe-nobody-%d" % os.getpid()
    return (name, name + b"-2")


def test_a_look_that_found_nobody_keeps_its_stream_for_the_next(
        listener: socket.socket) -> None:
    assert core is not None
    core.rendezvous(_nobody(), -1, b"", [], -1)  # now kept, whatever was before
    assert core.probe_held() == 1
    before = open_fd_set()
    for _ in range(3):
        assert core.rendezvous(_nobody(), -1, b"", [], -1) is None
        assert open_fd_set() == before  # the same stream, again and again
    got = core.rendezvous((_name(listener),), -1, b"", [], -1)
    assert got is not None and got[0] in before  # the kept stream is the connection now
    assert core.probe_held() == 0
    listener.accept()[0].close()
    os.close(got[0])


def test_a_kept_stream_whose_number_the_program_reused_is_left_alone(
        listener: socket.socket) -> None:
    assert core is not None
    got = core.rendezvous((_name(listener),), -1, b"", [], -1)  # takes any kept stream
    assert got is not None and core.probe_held() == 0
    os.close(got[0])
    listener.accept()[0].close()
    before = open_fd_set()
    core.rendezvous(_nobody(), -1, b"", [], -1)
    (kept,) = open_fd_set() - before
    os.close(kept)  # the program closes every fd it does not know (closerange) ...
    mine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    os.dup2(mine.fileno(), kept)  # ... and the number comes back as a socket of its own
    mine.close()
    try:
        assert core.rendezvous(_nobody(), -1, b"", [], -1) is None
        with socket.socket(fileno=os.dup(kept)) as check:
            check.settimeout(TIMEOUT)
            check.connect(_name(listener))  # untouched: free to connect, still open
            listener.accept()[0].close()
    finally:
        os.close(kept)


def test_a_child_makes_its_own_kept_stream() -> None:
    assert core is not None
    core.rendezvous(_nobody(), -1, b"", [], -1)
    assert core.probe_held() == 1
    before = open_fd_set()
    pid = os.fork()
    if pid == 0:  # the child: its copy of the parent's stream is not its to use
        code = 1
        try:
            if core.probe_held() == 0 and core.rendezvous(_nobody(), -1, b"", [], -1) is None:
                code = 0 if core.probe_held() == 1 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert core.probe_held() == 1
    assert core.rendezvous(_nobody(), -1, b"", [], -1) is None
    assert open_fd_set() == before  # the parent's kept stream is still its own
