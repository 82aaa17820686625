"""_winsock/poll.py, flags.py and socket_poll.py: loopfast.poll (SPEC P1-P9) and
``sock.poll`` over real sockets, pipes, fds and processes.

The only stand-in here is ``_RingProbe``: a small class of ours that speaks the
ring-state protocol (``_loopfast_ready``) over a real socket, to test how poll
consults it before ring-carried sockets implement it. It mocks nothing of the
platform: its fd is a real socket with real kernel readiness.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import loopfast
from loopfast import (
    POLLERR,
    POLLHUP,
    POLLIN,
    POLLNVAL,
    POLLOUT,
    POLLPRI,
    POLLRDBAND,
    POLLRDNORM,
    POLLWRBAND,
    POLLWRNORM,
    PollFD,
)

from .._procs import child, receive

Pair = tuple[loopfast.socket, loopfast.socket]


@pytest.fixture(params=["tcp", "fastpath"])
def pair(request: pytest.FixtureRequest, make_pair: Callable[..., Pair]) -> Pair:
    """A connected (client, server) pair, over TCP or over the fast path."""
    fast = request.param == "fastpath"
    cli, srv = make_pair(fast, fast)
    assert cli.fast_path_active is fast
    return cli, srv


def _one(sock: Any, events: int, timeout: float = 2000) -> int:
    entry = PollFD(sock, events)
    loopfast.poll([entry], timeout)
    return entry.revents


def _eventually(sock: Any, events: int, want: int) -> int:
    """revents once every bit of *want* shows (a peer's action may take a moment)."""
    deadline = time.monotonic() + 5
    got = 0
    while time.monotonic() < deadline and got & want != want:  # bounded by the deadline
        got = _one(sock, events, 100)
    return got


# -- P2: each revents flag from a real event -------------------------------------------

def test_rdnorm_from_data_and_wrnorm_from_room(pair: Pair) -> None:
    cli, srv = pair
    assert _one(srv, POLLRDNORM, 0) == 0
    assert _one(cli, POLLOUT, 0) == POLLWRNORM
    assert _one(cli, POLLWRBAND, 0) == POLLWRBAND
    cli.sendall(b"hello")
    assert _eventually(srv, POLLIN | POLLOUT, POLLRDNORM) == POLLRDNORM | POLLWRNORM
    assert srv.recv(5) == b"hello"
    assert _one(srv, POLLRDNORM, 0) == 0


def test_rdband_and_pri_from_out_of_band_data(make_pair: Callable[..., Pair]) -> None:
    cli, srv = make_pair(False, False)
    cli.send(b"!", socket.MSG_OOB)
    assert _eventually(srv, POLLRDBAND, POLLRDBAND) == POLLRDBAND
    assert _one(srv, POLLPRI) == POLLPRI
    assert _one(srv, POLLIN | POLLPRI) & (POLLRDBAND | POLLPRI) == POLLRDBAND | POLLPRI


def test_hup_when_the_peer_closed(pair: Pair) -> None:
    cli, srv = pair
    cli.sendall(b"last")
    cli.close()
    got = _eventually(srv, POLLRDNORM, POLLHUP)
    assert got == POLLRDNORM | POLLHUP  # the data (then EOF) can be read; the peer is gone
    assert srv.recv(10) == b"last" and srv.recv(10) == b""


def test_hup_is_reported_when_only_writing_was_asked(pair: Pair) -> None:
    cli, srv = pair
    cli.shutdown(socket.SHUT_WR)
    assert _eventually(srv, POLLWRNORM, POLLHUP) & POLLHUP


def test_err_and_hup_from_a_reset(make_pair: Callable[..., Pair]) -> None:
    cli, srv = make_pair(False, False)
    cli.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    cli.close()  # RST
    got = _eventually(srv, POLLRDNORM, POLLERR | POLLHUP)
    assert got & (POLLERR | POLLHUP) == POLLERR | POLLHUP
    assert srv.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNRESET


def test_nval_for_a_closed_socket_and_a_closed_fd(make_pair: Callable[..., Pair]) -> None:
    cli, _srv = make_pair(False, False)
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    dead = loopfast.socket()
    dead.close()
    fdarray = [PollFD(dead, POLLRDNORM), PollFD(r, POLLRDNORM), PollFD(cli, POLLWRNORM)]
    assert loopfast.poll(fdarray, 0) == 3
    assert [e.revents for e in fdarray] == [POLLNVAL, POLLNVAL, POLLWRNORM]


# -- P6: a failed non-blocking connect -------------------------------------------------

@pytest.mark.parametrize("fast", [False, True])
def test_failed_connect_gives_err_and_hup(fast: bool) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nobody listens on port now
    with loopfast.socket(fast_path=fast) as sock:
        sock.setblocking(False)
        assert sock.connect_ex(("127.0.0.1", port)) in (errno.EINPROGRESS, errno.ECONNREFUSED)
        got = _eventually(sock, POLLWRNORM, POLLERR | POLLHUP)
        assert got & (POLLERR | POLLHUP) == POLLERR | POLLHUP
        assert sock.poll(0, loopfast.SELECT_ERROR) is True
        assert sock.poll(0, loopfast.SELECT_WRITE) is False
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNREFUSED


def test_non_blocking_connect_becomes_writable() -> None:
    for fast in (False, True):
        with loopfast.create_server(("127.0.0.1", 0), fast_path=fast) as srv, \
                loopfast.socket(fast_path=fast) as sock:
            sock.setblocking(False)
            sock.connect_ex(srv.getsockname())
            assert _eventually(sock, POLLWRNORM, POLLWRNORM) == POLLWRNORM
            assert sock.poll(0, loopfast.SELECT_WRITE) is True
            srv.accept()[0].close()


# -- P5: a listening socket is readable when a connection waits --------------------------

@pytest.mark.parametrize(("listener_fp", "client_fp"),
                         [(False, False), (True, False), (True, True)])
def test_listener_readable_when_a_connection_waits(listener_fp: bool, client_fp: bool) -> None:
    with loopfast.create_server(("127.0.0.1", 0), fast_path=listener_fp) as srv:
        assert _one(srv, POLLRDNORM, 0) == 0
        assert srv.poll(0, loopfast.SELECT_READ) is False
        with loopfast.socket(fast_path=client_fp) as cli:
            cli.connect(srv.getsockname())
            assert _eventually(srv, POLLRDNORM, POLLRDNORM) == POLLRDNORM
            assert srv.poll(1_000_000, loopfast.SELECT_READ) is True
            conn, _ = srv.accept()
            with conn:
                assert conn.fast_path_active is client_fp
        assert _one(srv, POLLRDNORM, 0) == 0


# -- P3: timeouts -------------------------------------------------------------------------

def test_timeouts_zero_positive_negative(pair: Pair) -> None:
    cli, srv = pair
    entry = [PollFD(srv, POLLRDNORM)]
    start = time.monotonic()
    assert loopfast.poll(entry, 0) == 0
    assert time.monotonic() - start < 0.05
    start = time.monotonic()
    assert loopfast.poll(entry, 30.2) == 0  # rounded up: at least 30.2 ms
    assert time.monotonic() - start >= 0.0302
    timer = threading.Timer(0.1, cli.sendall, (b"x",))
    timer.start()
    try:
        start = time.monotonic()
        assert loopfast.poll(entry, -1) == 1
        assert time.monotonic() - start >= 0.09
        assert entry[0].revents == POLLRDNORM
    finally:
        timer.join(5)


def test_a_signal_does_not_cut_the_wait_short(pair: Pair) -> None:
    _, srv = pair
    seen: list[int] = []
    old = signal.signal(signal.SIGALRM, lambda signum, frame: seen.append(signum))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.02)
        start = time.monotonic()
        assert loopfast.poll([PollFD(srv, POLLRDNORM)], 150) == 0
        assert time.monotonic() - start >= 0.15
        assert seen == [signal.SIGALRM]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_ctrl_c_interrupts_a_waiting_poll(pair: Pair) -> None:
    _, srv = pair
    old = signal.signal(signal.SIGALRM, signal.default_int_handler)  # SIGINT's own handler
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            loopfast.poll([PollFD(srv, POLLRDNORM)], -1)
        assert time.monotonic() - start < 2
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# -- P4: skipped entries and bad events ------------------------------------------------

def test_invalid_socket_and_none_are_skipped(pair: Pair) -> None:
    cli, _ = pair
    fdarray = [PollFD(None, 0), PollFD(-1, 0), PollFD(cli, POLLWRNORM), PollFD(None, POLLIN)]
    fdarray[1].revents = 7  # whatever was there is cleared
    assert loopfast.poll(fdarray, 0) == 1
    assert [e.revents for e in fdarray] == [0, 0, POLLWRNORM, 0]


@pytest.mark.parametrize("events", [0, POLLERR, POLLHUP | POLLRDNORM, POLLNVAL, 0x8000, 0x1])
def test_bad_events_are_einval(pair: Pair, events: int) -> None:
    cli, _ = pair
    with pytest.raises(OSError) as info:
        loopfast.poll([PollFD(cli, POLLRDNORM), PollFD(cli, events)], 0)
    assert info.value.errno == errno.EINVAL
    assert "fdarray[1]" in str(info.value)


def test_nothing_to_poll_is_einval() -> None:
    for fdarray in ([], [PollFD(None, POLLIN), PollFD(-1, POLLIN)]):
        with pytest.raises(OSError) as info:
            loopfast.poll(fdarray, 0)
        assert info.value.errno == errno.EINVAL


def test_wrong_types_are_type_errors(pair: Pair) -> None:
    cli, _ = pair
    with pytest.raises(TypeError):
        PollFD("not a socket", POLLIN)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        loopfast.poll([(cli, POLLIN)], 0)  # type: ignore[list-item]
    with pytest.raises(TypeError):
        loopfast.poll([PollFD(cli, POLLIN)], "1")  # type: ignore[arg-type]


# -- P7: any mix in one call -------------------------------------------------------------

def test_mixed_array_of_every_kind(make_pair: Callable[..., Pair]) -> None:
    tcp_cli, tcp_srv = make_pair(False, False)      # loopfast socket, fast path off
    fp_cli, fp_srv = make_pair(True, True)          # fast-path (or ring-carried) connection
    std_a, std_b = socket.socketpair()              # stdlib sockets
    r, w = os.pipe()                                # a pipe, as raw int fds
    efd = os.eventfd(0)                             # some other raw fd
    try:
        fdarray = [PollFD(tcp_srv, POLLRDNORM), PollFD(fp_srv, POLLRDNORM),
                   PollFD(std_b, POLLRDNORM), PollFD(r, POLLRDNORM), PollFD(efd, POLLRDNORM),
                   PollFD(None, 0), PollFD(w, POLLWRNORM)]
        assert loopfast.poll(fdarray, 0) == 1  # only the pipe's write end
        assert fdarray[6].revents == POLLWRNORM
        for make_ready in (lambda: tcp_cli.sendall(b"a"), lambda: fp_cli.sendall(b"b"),
                           lambda: std_a.sendall(b"c"), lambda: os.write(w, b"d"),
                           lambda: os.eventfd_write(efd, 1)):
            make_ready()
        deadline = time.monotonic() + 5
        while loopfast.poll(fdarray, 100) < 6 and time.monotonic() < deadline:
            pass
        assert [e.revents for e in fdarray] == [POLLRDNORM] * 5 + [0, POLLWRNORM]
        os.close(w)
        w = -1
        fdarray[6].fd = None
        got = loopfast.poll_objects([(r, POLLRDNORM), (fp_srv, POLLRDNORM)], 0)
        assert got == [(r, POLLRDNORM | POLLHUP), (fp_srv, POLLRDNORM)]  # writer gone
        os.read(r, 1)
        assert loopfast.poll_objects([(r, POLLRDNORM)], 0) == [(r, POLLHUP)]
    finally:
        for fd in (r, w, efd):
            if fd >= 0:
                os.close(fd)
        std_a.close()
        std_b.close()


def test_the_same_socket_twice_with_different_events(pair: Pair) -> None:
    cli, srv = pair
    fdarray = [PollFD(cli, POLLRDNORM), PollFD(cli, POLLWRNORM), PollFD(srv, POLLWRNORM)]
    assert loopfast.poll(fdarray, 0) == 2
    assert [e.revents for e in fdarray] == [0, POLLWRNORM, POLLWRNORM]


# -- P8: 10,000 entries, and the same array polled again --------------------------------

def test_ten_thousand_entries() -> None:
    pairs = [socket.socketpair() for _ in range(5000)]
    try:
        fdarray = [PollFD(s, POLLRDNORM) for pair in pairs for s in pair]
        assert len(fdarray) == 10_000
        assert loopfast.poll(fdarray, 0) == 0
        for a, _ in pairs[::50]:
            a.sendall(b"x")  # their b ends, entries 1, 101, 201, ... become readable
        assert loopfast.poll(fdarray, 1000) == 100
        assert [i for i, e in enumerate(fdarray) if e.revents] == list(range(1, 10_000, 100))
        for _, b in pairs[::50]:
            b.recv(1)
        pairs[1][0].sendall(b"y")  # entry 3; the same array again
        assert loopfast.poll(fdarray, 1000) == 1
        assert [i for i, e in enumerate(fdarray) if e.revents] == [3]
        fdarray[2].events = POLLWRNORM
        assert loopfast.poll(fdarray, 1000) == 2
        assert fdarray[2].revents == POLLWRNORM
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_a_closed_socket_in_a_polled_array_is_nval_not_its_fds_next_owner() -> None:
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    fdarray = [PollFD(a, POLLRDNORM), PollFD(c, POLLRDNORM)]
    try:
        assert loopfast.poll(fdarray, 0) == 0
        number = a.fileno()
        a.close()
        b.close()
        e, f = socket.socketpair()  # takes a's number
        with e, f:
            assert number in (e.fileno(), f.fileno())
            f.sendall(b"x")
            e.sendall(b"x")
            assert loopfast.poll(fdarray, 0) == 1
            assert [x.revents for x in fdarray] == [POLLNVAL, 0]
    finally:
        for s in (a, b, c, d):
            s.close()


# -- item 4: ring state first ------------------------------------------------------------

class _RingProbe:
    """Speaks the ring-state protocol over a real socket (not a mock of the platform).

    ``ready`` plays the ring's state: bits it reports without a system call.
    """

    def __init__(self, sock: socket.socket, busy_us: int = 0) -> None:
        self.sock = sock
        self.ready = 0
        self.asked: list[int] = []
        self.busy_us = busy_us

    def fileno(self) -> int:
        return self.sock.fileno()

    def _loopfast_ready(self, events: int) -> int:
        self.asked.append(events)
        return self.ready & events

    def _loopfast_busy_poll_us(self) -> int:
        return self.busy_us


def test_ring_state_answers_without_the_kernel() -> None:
    import select

    a, b = socket.socketpair()
    with a, b:
        probe = _RingProbe(a)
        fdarray = [PollFD(probe, POLLRDNORM), PollFD(b, POLLWRNORM)]
        assert loopfast.poll(fdarray, 0) == 1  # b writable; probe: neither ring nor kernel
        probe.ready = select.POLLIN
        start = time.monotonic()
        assert loopfast.poll(fdarray, 5000) == 2  # the ring's word, at once
        assert time.monotonic() - start < 1
        assert fdarray[0].revents == POLLRDNORM and probe.asked[-1] & select.POLLIN


def test_busy_poll_spins_on_ring_state_before_parking() -> None:
    import select

    a, b = socket.socketpair()
    with a, b:
        probe = _RingProbe(a, busy_us=2_000_000)
        timer = threading.Timer(0.05, lambda: setattr(probe, "ready", select.POLLIN))
        timer.start()
        try:
            start = time.monotonic()
            assert loopfast.poll([PollFD(probe, POLLRDNORM)], 5000) == 1
            assert time.monotonic() - start < 1.5
            assert len(probe.asked) > 10  # it spun, asking the ring again and again
        finally:
            timer.join(5)
        probe.ready = 0
        probe.busy_us = 1000
        fdarray = [PollFD(probe, POLLRDNORM)]
        timer = threading.Timer(0.1, b.sendall, (b"x",))  # after the spin: the kernel wakes us
        timer.start()
        try:
            assert loopfast.poll(fdarray, 5000) == 1
            assert fdarray[0].revents == POLLRDNORM
        finally:
            timer.join(5)


def _send_later(pipe: Any, port: int, delay: float) -> None:
    with loopfast.socket(fast_path=True) as sock:
        sock.connect(("127.0.0.1", port))
        pipe.send(sock.fast_path_active)
        time.sleep(delay)
        sock.sendall(b"late")
        pipe.recv()


def test_fast_path_socket_becomes_readable_while_poll_waits() -> None:
    """A peer process sends while poll already waits on the (ring-carried) connection."""
    with loopfast.create_server(("127.0.0.1", 0), fast_path=True) as srv, \
            child(_send_later, srv.getsockname()[1], 0.2) as (_proc, pipe):
        srv.settimeout(5)
        conn, _ = srv.accept()
        with conn:
            assert receive(pipe) is True and conn.fast_path_active
            fdarray = [PollFD(conn, POLLRDNORM)]
            start = time.monotonic()
            assert loopfast.poll(fdarray, 5000) == 1
            assert time.monotonic() - start >= 0.1  # it was waiting when the data came
            assert fdarray[0].revents == POLLRDNORM and conn.recv(4) == b"late"
            pipe.send("done")


# -- P9: sock.poll ----------------------------------------------------------------------

def test_socket_poll_modes(pair: Pair) -> None:
    cli, srv = pair
    assert srv.poll(0, loopfast.SELECT_READ) is False
    assert srv.poll(0, loopfast.SELECT_WRITE) is True
    assert srv.poll(0, loopfast.SELECT_ERROR) is False
    start = time.monotonic()
    assert srv.poll(20_000, loopfast.SELECT_READ) is False
    assert time.monotonic() - start >= 0.02
    cli.sendall(b"x")
    assert srv.poll(2_000_000, loopfast.SELECT_READ) is True
    cli.close()
    srv.recv(1)
    assert srv.poll(2_000_000, loopfast.SELECT_READ) is True  # closed: recv will not block


def test_socket_poll_refusals() -> None:
    sock = loopfast.socket()
    with sock:
        with pytest.raises(OSError) as info:
            sock.poll(0, 3)
        assert info.value.errno == errno.EINVAL
    with pytest.raises(OSError) as info:
        sock.poll(0, loopfast.SELECT_READ)
    assert info.value.errno == errno.EBADF
