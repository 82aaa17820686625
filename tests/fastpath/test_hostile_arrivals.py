"""A hostile local user against the accept path (_fastpath/listener.py, arrivals.py) and the
client's rendezvous (_fastpath/connector.py): issue 14, items 2-5 and 9-10.

Whatever arrives at a rendezvous name, the application's ``accept()`` never raises,
blocks or spins because of it, every fd the arrival brought is closed, and an honest
client that comes next is served. Each malformed arrival runs against a blocking, a
timeout, a selectors and an asyncio server.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import logging
import os
import resource
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import loopfast
from loopfast import _ring
from loopfast._core.addresses import name_for
from loopfast._fastpath import handshake
from loopfast._fastpath.arrivals import MAX_PER_UID

from .._streams import recv_exactly

TIMEOUT = 5.0
STYLES = ["blocking", "timeout", "selectors", "asyncio"]


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- servers: each accepts in a thread and hands what it accepted to the test ------------


class Server:
    """A fast-path listener served by one accept style in a thread; what accept() did."""

    def __init__(self, style: str) -> None:
        self.style = style
        self.listener = loopfast.create_server(("127.0.0.1", 0), fast_path=True)
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._arrived = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _keep(self, sock: socket.socket) -> None:
        with self._arrived:
            self.accepted.append(sock)
            self._arrived.notify_all()

    def _run(self) -> None:
        try:
            getattr(self, f"_serve_{self.style}")()
        except BaseException as exc:  # what the test asserts never happens
            self.errors.append(exc)

    def _serve_blocking(self) -> None:
        self.listener.settimeout(None)
        while not self._stop.is_set():
            conn, _ = self.listener.accept()
            self._keep(conn)

    def _serve_timeout(self) -> None:
        self.listener.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            self._keep(conn)

    def _serve_selectors(self) -> None:
        self.listener.setblocking(False)
        with selectors.DefaultSelector() as sel:
            sel.register(self.listener, selectors.EVENT_READ)
            while not self._stop.is_set():
                for _key, _events in sel.select(0.05):
                    try:
                        conn, _ = self.listener.accept()
                    except BlockingIOError:
                        continue  # a selector may wake for an arrival that came to nothing
                    self._keep(conn)

    def _serve_asyncio(self) -> None:
        async def main() -> None:
            loop = asyncio.get_running_loop()
            self.listener.setblocking(False)
            while not self._stop.is_set():
                try:
                    conn, _ = await asyncio.wait_for(loop.sock_accept(self.listener), 0.05)
                except TimeoutError:
                    continue
                self._keep(conn)

        asyncio.run(main())

    def wait_for(self, count: int, timeout: float = TIMEOUT) -> None:
        """Wait until *count* connections were accepted (AssertionError after *timeout*)."""
        with self._arrived:
            assert self._arrived.wait_for(lambda: len(self.accepted) >= count, timeout), (
                f"{self.style} server accepted {len(self.accepted)} of {count}; "
                f"errors: {self.errors}")

    def close_accepted(self, since: int) -> None:
        """Close the connections accepted after the first *since*."""
        with self._arrived:
            for conn in self.accepted[since:]:
                conn.close()

    def close(self) -> None:
        self._stop.set()
        if self.style == "blocking":  # wake the accept with one last, honest client
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), 1).close()
        self._thread.join(TIMEOUT)
        for conn in self.accepted:
            conn.close()
        self.listener.close()


@pytest.fixture(params=STYLES)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    srv = Server(request.param)
    try:
        yield srv
    finally:
        srv.close()


def _honest_exchange(srv: Server) -> None:
    """An honest fast-path client connects, is accepted, and bytes flow both ways."""
    before = len(srv.accepted)
    with loopfast.create_connection(("127.0.0.1", srv.port), TIMEOUT, fast_path=True) as cli:
        srv.wait_for(before + 1)
        conn = srv.accepted[before]
        conn.setblocking(True)
        conn.settimeout(TIMEOUT)
        cli.sendall(b"honest")
        assert recv_exactly(conn, 6) == b"honest"
        conn.sendall(b"served")
        assert recv_exactly(cli, 6) == b"served"
        assert cli.fast_path_active and conn.fast_path_active


# -- malformed arrivals -----------------------------------------------------------------


def _hello(ring: tuple[int, int] | None = None, **change: Any) -> bytes:
    fields = {"family": socket.AF_INET, "client_ip": "127.0.0.1", "client_port": 40000,
              "target_ip": "127.0.0.1", "target_port": 0, "ring": ring}
    fields.update(change)
    return handshake.encode(handshake.Hello(**fields))


def _ring_fds(stack: list[int], memfd: int | None = None) -> list[int]:
    """Three fds shaped like a ring hello's (memfd, server w, client w)."""
    if memfd is None:
        memfd = _ring.create_memfd(65536, 65536)
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    fds = [memfd, a.detach(), c.detach()]
    b.close()
    d.close()
    stack.extend(fds)
    return fds


def _pipe_fds(stack: list[int], count: int) -> list[int]:
    fds = []
    for _ in range((count + 1) // 2):
        fds.extend(os.pipe())
    stack.extend(fds)
    return fds[:count]


def _unsealed_memfd() -> int:
    fd = os.memfd_create("not-sealed")
    os.ftruncate(fd, 4096 + 65536 * 2)
    return fd


def _small_sealed_memfd() -> int:
    return int(_ring.create_memfd(4096, 4096))  # sealed, but the hello claims bigger rings


def _part_slot_memfd() -> int:
    """Sealed, but one and a half slots of the hello's sizes long: no arena."""
    fd = os.memfd_create("half-a-slot", os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, (4096 + 2 * 65536) * 3 // 2)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
    return fd


# name -> (port, fd stack) -> (bytes to send, fds to pass)
Attack = Callable[[int, list[int]], tuple[bytes, list[int]]]


def _reserved(stack: list[int], kind: int = socket.SOCK_STREAM,
              bind: bool = True) -> tuple[int, int]:
    """A socket as a client keeps its port with (TCP on 127.0.0.1): (fd, port)."""
    sock = socket.socket(socket.AF_INET, kind)
    if bind:
        sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    fd = sock.detach()
    stack.append(fd)
    return fd, port


def _well_formed(port: int, st: list[int], ring: tuple[int, int] | None = None,
                 fds: list[int] | None = None, **change: Any) -> tuple[bytes, list[int]]:
    """A hello whose client address is its own reserved socket's, and that socket last."""
    fd, mine = _reserved(st)
    fields: dict[str, Any] = {"client_port": mine, "target_port": port}
    fields.update(change)
    return _hello(ring, **fields), [*(fds or []), fd]


def _with_last(port: int, st: list[int], last: int, claimed: int) -> tuple[bytes, list[int]]:
    return _hello(client_port=claimed, target_port=port), [last]


def _hello_bytes(port: int, st: list[int], at: int, patch: bytes) -> tuple[bytes, list[int]]:
    data, fds = _well_formed(port, st)
    return data[:at] + patch + data[at + len(patch):], fds


ATTACKS: dict[str, Attack] = {
    "connect-and-close": lambda port, st: (b"", []),
    "garbage": lambda port, st: (b"GET / HTTP/1.0\r\n\r\n".ljust(48, b"\0"), []),
    "bad-magic": lambda port, st: _hello_bytes(port, st, 0, b"XXXX"),
    "bad-version": lambda port, st: _hello_bytes(port, st, 4, b"\x00\x63"),
    "reserved-flags": lambda port, st: _hello_bytes(port, st, 6, b"\x00\x06"),
    "bad-family": lambda port, st: _hello_bytes(port, st, 8, b"\x05"),
    "other-port": lambda port, st: _well_formed(port, st, target_port=port ^ 1),
    "no-reserved-socket": lambda port, st: (_hello(target_port=port), []),
    "spoofed-client-port": lambda port, st: _well_formed(port, st, client_port=22),
    "spoofed-client-ip": lambda port, st: _well_formed(port, st, client_ip="127.66.66.66"),
    "reserved-is-a-pipe": lambda port, st: _with_last(port, st, _pipe_fds(st, 1)[0], 40000),
    "reserved-is-udp": lambda port, st: _with_last(
        port, st, *_reserved(st, socket.SOCK_DGRAM)),
    "reserved-unbound": lambda port, st: _with_last(port, st, _reserved(st, bind=False)[0], 0),
    "ipv6-at-ipv4": lambda port, st: _well_formed(port, st, family=socket.AF_INET6,
                                                  client_ip="::1", target_ip="::1"),
    "ring-without-fds": lambda port, st: _well_formed(port, st, (65536, 65536)),
    "ring-one-fd": lambda port, st: _well_formed(port, st, (65536, 65536), _pipe_fds(st, 1)),
    "ring-pipes": lambda port, st: _well_formed(port, st, (65536, 65536), _pipe_fds(st, 3)),
    "ring-too-many-fds": lambda port, st: _well_formed(port, st, (65536, 65536),
                                                       _ring_fds(st) + _pipe_fds(st, 4)),
    "ring-unsealed-memfd": lambda port, st: _well_formed(port, st, (65536, 65536),
                                                         _ring_fds(st, _unsealed_memfd())),
    "ring-memfd-too-small": lambda port, st: _well_formed(port, st, (65536, 65536),
                                                          _ring_fds(st, _small_sealed_memfd())),
    "ring-sizes-not-powers": lambda port, st: _well_formed(port, st, (65537, 65536),
                                                           _ring_fds(st)),
    "ring-sizes-huge": lambda port, st: _well_formed(port, st, (1 << 30, 1 << 30),
                                                     _ring_fds(st)),
    "ring-slot-past-the-arena": lambda port, st: _well_formed(port, st, (65536, 65536),
                                                              _ring_fds(st), slot=1),
    "ring-slot-huge": lambda port, st: _well_formed(port, st, (65536, 65536),
                                                    _ring_fds(st), slot=(1 << 32) - 1),
    "ring-arena-of-part-slots": lambda port, st: _well_formed(port, st, (65536, 65536),
                                                              _ring_fds(st, _part_slot_memfd())),
    "stream-with-fds": lambda port, st: _well_formed(port, st, None, _pipe_fds(st, 2)),
}


def _attack(port: int, name: str) -> socket.socket:
    """Connect to the rendezvous of *port* and send what attack *name* sends; the stream."""
    stack: list[int] = []
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.settimeout(TIMEOUT)
    raw.connect(name_for("127.0.0.1", port))
    try:
        data, fds = ATTACKS[name](port, stack)
        if fds:
            raw.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                  array.array("i", fds).tobytes())])
        elif data:
            raw.sendall(data)
    finally:
        for fd in stack:
            os.close(fd)
    return raw


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_malformed_arrival_never_breaks_accept(server: Server, attack: str) -> None:
    _honest_exchange(server)  # warm: the connection's own threads and caches exist
    start, kept = _fds(), len(server.accepted)
    raw = _attack(server.port, attack)
    _honest_exchange(server)
    raw.close()
    _honest_exchange(server)
    assert server.errors == []
    # Nothing the arrival brought stays open once the honest connections are closed too.
    server.close_accepted(since=kept)
    deadline = time.monotonic() + 2.0
    while _fds() > start and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _fds() <= start, f"{_fds() - start} fds leaked by {attack!r}"


def _offer_slot(port: int, memfd: int, sizes: tuple[int, int], slot: int,
                cut: int = 0) -> socket.socket:
    """A ring hello naming *slot* of the arena *memfd* (a copy of it travels), less its last
    *cut* bytes: its stream."""
    stack: list[int] = []
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.settimeout(TIMEOUT)
    raw.connect(name_for("127.0.0.1", port))
    try:
        data, fds = _well_formed(port, stack, sizes, _ring_fds(stack, os.dup(memfd)), slot=slot)
        raw.sendmsg([data[:len(data) - cut]],
                    [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    finally:
        for fd in stack:
            os.close(fd)
    return raw


@pytest.mark.timeout(30)
def test_a_slot_in_use_or_an_arena_offered_with_other_sizes_is_refused(
        caplog: pytest.LogCaptureFixture) -> None:
    srv = Server("blocking")
    memfd = _ring.create_memfd(65536, 65536, -1, -1, 2)
    streams = []
    try:
        _honest_exchange(srv)
        start, kept = _fds(), len(srv.accepted)
        streams.append(_offer_slot(srv.port, memfd, (65536, 65536), 0))
        srv.wait_for(kept + 1)  # the server holds slot 0 of it now
        with caplog.at_level(logging.WARNING, logger="loopfast"):
            streams.append(_offer_slot(srv.port, memfd, (65536, 65536), 0))
            streams.append(_offer_slot(srv.port, memfd, (4096, 4096), 1))
            _honest_exchange(srv)
        assert [raw.recv(1) for raw in streams[1:]] == [b"", b""]  # refused: closed
        messages = [r.getMessage() for r in caplog.records]
        assert any("slot named is out of range or in use" in m for m in messages), messages
        assert any("holds rings of other sizes" in m for m in messages), messages
        assert srv.errors == [] and len(srv.accepted) == kept + 2  # the first, the honest one
        for raw in streams:
            raw.close()
        srv.close_accepted(since=kept)
        deadline = time.monotonic() + 2.0
        while _fds() > start and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _fds() <= start
    finally:
        os.close(memfd)
        srv.close()


@pytest.mark.timeout(30)
def test_a_hello_cut_short_after_a_whole_one_is_refused() -> None:
    # The listener judges a client's hellos once (listener._judge): one of the same bytes,
    # cut short, must not pass for the whole one it was judged by.
    srv = Server("blocking")
    memfd = _ring.create_memfd(65536, 65536, -1, -1, 2)
    try:
        _honest_exchange(srv)
        kept = len(srv.accepted)
        whole = _offer_slot(srv.port, memfd, (65536, 65536), 0)
        srv.wait_for(kept + 1)
        for cut in (3, 4, 12):
            with _offer_slot(srv.port, memfd, (65536, 65536), 1, cut) as short:
                assert short.recv(1) == b""  # refused: closed
        _honest_exchange(srv)
        whole.close()
        assert srv.errors == [] and len(srv.accepted) == kept + 2
    finally:
        os.close(memfd)
        srv.close()


@pytest.mark.parametrize("style", ["selectors", "asyncio"])
def test_half_a_hello_does_not_make_the_loop_spin(style: str) -> None:
    srv = Server(style)
    try:
        _honest_exchange(srv)
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.connect(name_for("127.0.0.1", srv.port))
        raw.sendall(_hello(target_port=srv.port)[:10])  # and then nothing
        time.sleep(0.2)
        before = _cpu()
        time.sleep(1.0)
        used = _cpu() - before
        _honest_exchange(srv)
        raw.close()
        assert srv.errors == []
        assert used < 0.25, f"{style} server used {used:.2f} s of CPU in 1 s of a silent client"
    finally:
        srv.close()


def test_a_flood_of_silent_arrivals_neither_stalls_honest_clients_nor_spins() -> None:
    srv = Server("selectors")
    silent: list[socket.socket] = []
    try:
        _honest_exchange(srv)
        name = name_for("127.0.0.1", srv.port)
        for _ in range(3 * MAX_PER_UID):
            raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            raw.setblocking(False)
            try:
                raw.connect(name)
            except BlockingIOError:
                raw.close()  # the backlog is full: the flood is as big as it gets
                break
            silent.append(raw)
        before = _cpu()
        slowest = 0.0
        for _ in range(10):
            began = time.monotonic()
            _honest_exchange(srv)
            slowest = max(slowest, time.monotonic() - began)
        time.sleep(0.5)
        used = _cpu() - before
        assert srv.errors == []
        assert slowest < 0.5, f"an honest client took {slowest:.2f} s during the flood"
        assert used < 1.5, f"{used:.2f} s of CPU for 10 honest clients and 0.5 s of flood"
        assert len(srv.listener._state.pending) <= MAX_PER_UID
    finally:
        for raw in silent:
            raw.close()
        srv.close()


def test_a_squatter_with_a_full_backlog_sends_a_blocking_client_to_tcp(
        closing: Callable[[socket.socket], socket.socket]) -> None:
    # A plain TCP server (no fast path) and, on its rendezvous name, a listener that never
    # accepts, its backlog full: the client must not wait on it.
    server = closing(socket.create_server(("127.0.0.1", 0)))
    server.settimeout(TIMEOUT)
    port = server.getsockname()[1]
    squat = closing(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
    squat.bind(name_for("127.0.0.1", port))
    squat.listen(0)
    fillers = []
    for _ in range(4):
        filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        filler.setblocking(False)
        try:
            filler.connect(name_for("127.0.0.1", port))
        except BlockingIOError:
            filler.close()
            break
        fillers.append(closing(filler))
    result: dict[str, Any] = {}

    def connect() -> None:
        began = time.monotonic()
        try:
            cli = loopfast.socket(socket.AF_INET, socket.SOCK_STREAM, fast_path=True)
            cli.connect(("127.0.0.1", port))  # blocking: no timeout of its own
            result["client"] = cli
        except BaseException as exc:
            result["error"] = exc
        result["took"] = time.monotonic() - began

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    assert not thread.is_alive(), "the client hung on the squatter's full backlog"
    assert "error" not in result, result.get("error")
    cli = closing(result["client"])
    assert result["took"] < 1.0
    assert cli.fast_path_active is False
    conn, _ = server.accept()
    with conn:
        cli.sendall(b"tcp")
        assert recv_exactly(conn, 3) == b"tcp"


def test_a_client_at_its_fd_limit_connects_over_tcp(
        closing: Callable[[socket.socket], socket.socket]) -> None:
    srv = closing(loopfast.create_server(("127.0.0.1", 0), fast_path=True))
    srv.settimeout(TIMEOUT)
    cli = closing(loopfast.socket(socket.AF_INET, socket.SOCK_STREAM, fast_path=True))
    cli.settimeout(TIMEOUT)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    hogs = []
    start = _fds()
    try:
        # Fill every fd number up to a limit just above the highest open one.
        top = max(int(fd) for fd in os.listdir("/proc/self/fd")) + 8
        resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))
        while True:
            try:
                hogs.append(os.open("/dev/null", os.O_RDONLY))
            except OSError:
                break
        cli.connect(srv.getsockname())  # TCP needs no new fd; the fast path would
    finally:
        for fd in hogs:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert cli.fast_path_active is False
    assert _fds() == start, "the failed fast-path attempt left fds behind"
    conn, _ = srv.accept()
    with conn:
        cli.sendall(b"over tcp")
        conn.settimeout(TIMEOUT)
        assert recv_exactly(conn, 8) == b"over tcp"


def test_a_server_at_its_fd_limit_sends_clients_to_tcp_and_recovers(
        closing: Callable[[socket.socket], socket.socket]) -> None:
    srv = closing(loopfast.create_server(("127.0.0.1", 0), fast_path=True))
    srv.setblocking(False)
    port = srv.getsockname()[1]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    clients = []
    try:
        # An honest client queues at the rendezvous; then the server process runs out of fds.
        first = closing(loopfast.create_connection(("127.0.0.1", port), TIMEOUT,
                                                   fast_path=True))
        clients.append(first)
        hogs = []
        top = max(int(fd) for fd in os.listdir("/proc/self/fd")) + 1
        resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))
        try:
            while True:  # every free number below the limit, too
                try:
                    hogs.append(os.open("/dev/null", os.O_RDONLY))
                except OSError:
                    break
            began = _cpu()
            for _ in range(200):  # a selectors-style loop: it must not spin on EMFILE
                with contextlib.suppress(BlockingIOError):
                    closing(srv.accept()[0])
            spent = _cpu() - began
        finally:
            for fd in hogs:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert spent < 0.5
        # The fast path comes back at the first accept() after the backoff (one with
        # nothing to accept, as a selectors loop makes when a TCP client comes).
        time.sleep(1.2)
        with pytest.raises(BlockingIOError):
            srv.accept()
        srv.settimeout(TIMEOUT)
        later = closing(loopfast.create_connection(("127.0.0.1", port), TIMEOUT,
                                                   fast_path=True))
        conn, _ = srv.accept()
        closing(conn)
        assert later.fast_path_active and conn.fast_path_active
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))



def test_a_wildcard_server_refuses_a_made_up_local_address(
        closing: Callable[[socket.socket], socket.socket],
        caplog: pytest.LogCaptureFixture) -> None:
    srv = closing(loopfast.create_server(("0.0.0.0", 0), fast_path=True))
    port = srv.getsockname()[1]
    stack: list[int] = []
    raw = closing(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
    raw.settimeout(TIMEOUT)
    raw.connect(name_for("0.0.0.0", port))
    try:
        data, fds = _well_formed(port, stack, target_ip="203.0.113.9")
        raw.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                              array.array("i", fds).tobytes())])
    finally:
        for fd in stack:
            os.close(fd)
    srv.settimeout(0.3)
    with caplog.at_level("WARNING", logger="loopfast"), pytest.raises(TimeoutError):
        srv.accept()
    assert any("203.0.113.9 is not loopback" in r.getMessage() for r in caplog.records)
    assert raw.recv(10) == b""  # refused: the stream is closed
