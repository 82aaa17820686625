"""Conformance scenarios: one script of socket calls, run over any transport.

Each scenario is ``def scenario_xxx(t: Transport, rec: Recorder) -> None``. It
gets its sockets from ``t`` (which knows whether they are stdlib TCP sockets,
loopfast sockets on the fast path, or loopfast sockets off it) and records
every observable result through ``rec``. The test runs a scenario over stdlib
TCP and over another transport and asserts that the two transcripts are equal.

Rules every scenario keeps:

- Only deterministic observables go into the transcript: data, return values,
  exception class and errno, booleans about timing with wide margins. Never a
  raw port, fd number, buffer size or byte count that the kernel may tune
  (a value set and read back, like SO_RCVBUF, is deterministic and recorded).
- Addresses are recorded by shape (``addr_shape``) and by how they relate to
  the other end (``rec.note("a == b", a == b)``).
- Every blocking call is bounded: sockets from ``t`` carry a timeout, sockets
  deliberately in blocking mode run under ``t.watchdog``, threads are joined
  with a timeout, and every loop has an upper bound.
- Every socket is made or adopted by ``t``, which closes it afterwards.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import random
import select
import selectors
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from enum import Enum
from pathlib import Path
from typing import Any

from .._streams import recv_exactly
from .._tls import self_signed

V4 = "127.0.0.1"
V6 = "::1"
IO_TIMEOUT = 1.5  # no progress for this long on loopback is a failure
WAIT = 1.0  # readiness waits that should end at once
WAIT_MS = int(WAIT * 1000)
JOIN_TIMEOUT = 20.0
MiB = 1 << 20
SOL = socket.SOL_SOCKET

TRANSPORTS = ("tcp", "fastpath", "fastpath-stream", "loopfast-off")
# The fast_path= argument each loopfast transport passes: the ring (default) or
# the AF_UNIX stream.
FAST_PATH_ARG: dict[str, bool | str] = {
    "fastpath": True,
    "fastpath-stream": "stream",
    "loopfast-off": False,
}
# What fast_path_transport must say on a connection of each transport.
CARRIER: dict[str, str | None] = {"fastpath": "ring", "fastpath-stream": "stream"}

Scenario = Callable[["Transport", "Recorder"], None]
SCENARIOS: dict[str, Scenario] = {}


def scenario(fn: Scenario) -> Scenario:
    """Register ``scenario_xxx`` under the name ``xxx``."""
    name = fn.__name__.removeprefix("scenario_")
    if name in SCENARIOS:
        raise ValueError(f"duplicate scenario {name}")
    SCENARIOS[name] = fn
    return fn


class TransportViolation(AssertionError):
    """A transport did not deliver what it promises (e.g. fast path not active)."""


# ---------------------------------------------------------------- recording


def exc_token(exc: BaseException) -> tuple[str, str, Any]:
    """An exception as the transcript sees it: class and errno name."""
    code = getattr(exc, "errno", None)
    name = errno.errorcode.get(code, code) if isinstance(code, int) else code
    return ("raise", type(exc).__name__, name)


def norm(value: Any) -> Any:
    """Make a value comparable across transports and readable in a diff."""
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        if len(data) <= 64:
            return data
        return ("bytes", len(data), hashlib.sha256(data).hexdigest()[:16])
    if isinstance(value, Enum):
        return f"{type(value).__name__}.{value.name}"
    if isinstance(value, tuple):
        return tuple(norm(v) for v in value)
    if isinstance(value, list):
        return [norm(v) for v in value]
    if isinstance(value, socket.socket):
        raise TypeError("record a property of the socket, not the socket")
    if isinstance(value, float):
        return round(value, 6)
    return value


def addr_shape(addr: Any) -> Any:
    """An address without its port number: family, host, port set or not."""
    if isinstance(addr, tuple) and len(addr) == 2:
        return ("inet", addr[0], isinstance(addr[1], int) and addr[1] > 0)
    if isinstance(addr, tuple) and len(addr) == 4:
        return ("inet6", addr[0], isinstance(addr[1], int) and addr[1] > 0, addr[2], addr[3])
    if addr is None:
        return None
    return ("other", type(addr).__name__)


class Recorder:
    """The transcript of one scenario run."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, Any]] = []
        self.failures: list[str] = []
        self.aborted: str | None = None

    def call(self, label: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``fn``; record its (normalised) result or its exception."""
        try:
            value = fn(*args, **kwargs)
        except TransportViolation:
            raise
        except Exception as exc:
            self.entries.append((label, exc_token(exc)))
            return None
        self.entries.append((label, norm(value)))
        return value

    def note(self, label: str, value: Any) -> Any:
        self.entries.append((label, norm(value)))
        return value

    def expect(self, label: str, value: Any, expected: Any) -> Any:
        """Record ``value``; also note a failure when it is not ``expected``."""
        self.note(label, value)
        if norm(value) != norm(expected):
            self.failures.append(f"{label}: got {norm(value)!r}, expected {norm(expected)!r}")
        return value

    def addr(self, label: str, fn: Callable[[], Any]) -> Any:
        """Call an address-returning ``fn``; record the address's shape."""
        try:
            value = fn()
        except TransportViolation:
            raise
        except Exception as exc:
            self.entries.append((label, exc_token(exc)))
            return None
        self.entries.append((label, addr_shape(value)))
        return value

    def lines(self) -> list[str]:
        out = [f"{label}: {value!r}" for label, value in self.entries]
        if self.aborted is not None:
            out.append(f"<aborted>: {self.aborted}")
        return out


# ---------------------------------------------------------------- transports


class Task:
    """A daemon thread whose result or exception ``join`` hands back."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self._fn, self._args = fn, args
        self._result: Any = None
        self._exc: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self._result = self._fn(*self._args)
        except BaseException as exc:
            self._exc = exc

    def join(self, timeout: float = JOIN_TIMEOUT) -> Any:
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise TimeoutError("thread did not finish")
        if self._exc is not None:
            raise self._exc
        return self._result


def _loopfast() -> Any:
    import loopfast

    return loopfast


class Transport:
    """Makes sockets of one kind and closes them all at the end."""

    def __init__(self, name: str) -> None:
        if name not in TRANSPORTS:
            raise ValueError(name)
        self.name = name
        self._socks: list[socket.socket] = []
        self._files: list[Any] = []
        self._tasks: list[Task] = []
        self._fds: list[int] = []
        self._procs: list[subprocess.Popen[bytes]] = []

    # -- construction

    def _new(self, family: int, *, via_ioctl: bool = False) -> socket.socket:
        if self.name == "tcp":
            sock = socket.socket(family, socket.SOCK_STREAM)
        else:
            lf = _loopfast()
            if self.name == "fastpath" and via_ioctl:  # ioctl opts in to the default, the ring
                sock = lf.socket(family, socket.SOCK_STREAM)
                self.track(sock)
                sock.ioctl(lf.SIO_LOOPBACK_FAST_PATH, True)
            else:
                sock = lf.socket(family, socket.SOCK_STREAM, fast_path=FAST_PATH_ARG[self.name])
        return self.track(sock)

    def host(self, family: int = socket.AF_INET) -> str:
        return V6 if family == socket.AF_INET6 else V4

    def listener(self, family: int = socket.AF_INET, backlog: int = 8) -> socket.socket:
        """A listening socket on loopback (fast path opted in by ioctl)."""
        lst = self._new(family, via_ioctl=True)
        lst.settimeout(IO_TIMEOUT)
        lst.bind((self.host(family), 0))
        lst.listen(backlog)
        return lst

    def client_socket(self, family: int = socket.AF_INET) -> socket.socket:
        """An unconnected client socket (fast path opted in by keyword)."""
        return self._new(family)

    def connect(self, lst: socket.socket, family: int = socket.AF_INET) -> socket.socket:
        """A client socket with IO_TIMEOUT, connected to the listener ``lst`` (not accepted)."""
        client = self.client_socket(family)
        client.settimeout(IO_TIMEOUT)
        client.connect(lst.getsockname()[:2])
        return client

    def accept(self, lst: socket.socket) -> tuple[socket.socket, Any]:
        conn, addr = lst.accept()
        self.track(conn)
        return conn, addr

    def accept_checked(self, lst: socket.socket,
                       *clients: socket.socket) -> tuple[socket.socket, Any]:
        """``accept`` on ``lst``; the accepted socket and ``clients`` are this transport's."""
        conn, addr = self.accept(lst)
        self.check_connected(*clients, conn)
        return conn, addr

    def pair(self, family: int = socket.AF_INET) -> tuple[socket.socket, socket.socket]:
        """(client, server): a connected pair, both with IO_TIMEOUT."""
        lst = self.listener(family)
        client = self.connect(lst, family)
        server, _ = self.accept_checked(lst, client)
        lst.close()
        server.settimeout(IO_TIMEOUT)
        return client, server

    def create_server(self, address: Any, **kwargs: Any) -> socket.socket:
        if self.name == "tcp":
            srv = socket.create_server(address, **kwargs)
        else:
            fast = FAST_PATH_ARG[self.name]
            srv = _loopfast().create_server(address, fast_path=fast, **kwargs)
        self.track(srv)
        srv.settimeout(IO_TIMEOUT)
        return srv

    def create_connection(self, address: Any, **kwargs: Any) -> socket.socket:
        kwargs.setdefault("timeout", IO_TIMEOUT)
        if self.name == "tcp":
            return self.track(socket.create_connection(address, **kwargs))
        fast = FAST_PATH_ARG[self.name]
        return self.track(_loopfast().create_connection(address, fast_path=fast, **kwargs))

    def check_connected(self, *socks: socket.socket) -> None:
        """Each socket is of this transport's class and on (or off) the fast path."""
        for sock in socks:
            if self.name == "tcp":
                if type(sock) is not socket.socket:
                    raise TransportViolation(f"tcp transport made a {type(sock)!r}")
                continue
            if not isinstance(sock, _loopfast().socket):
                raise TransportViolation(f"{self.name}: {type(sock)!r} is not loopfast.socket")
            want = self.name.startswith("fastpath")
            if sock.fast_path_active is not want:
                raise TransportViolation(
                    f"{self.name}: fast_path_active is {sock.fast_path_active!r} on {sock!r}"
                )
            carrier = CARRIER.get(self.name)
            if sock.fast_path_transport != carrier:
                raise TransportViolation(
                    f"{self.name}: fast_path_transport is {sock.fast_path_transport!r}, "
                    f"not {carrier!r}, on {sock!r}"
                )

    # -- bookkeeping

    def track(self, sock: socket.socket) -> socket.socket:
        self._socks.append(sock)
        return sock

    def track_file(self, f: Any) -> Any:
        self._files.append(f)
        return f

    def track_fd(self, fd: int) -> int:
        self._fds.append(fd)
        return fd

    def task(self, fn: Callable[..., Any], *args: Any) -> Task:
        task = Task(fn, *args)
        self._tasks.append(task)
        return task

    def spawn_client(self, address: Any, mode: str) -> subprocess.Popen[bytes]:
        """A child process that connects to ``address`` with this transport (see CHILD)."""
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        argv = [sys.executable, "-c", CHILD, self.name, str(int(family)), address[0]]
        proc = subprocess.Popen(
            [*argv, str(address[1]), mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self._procs.append(proc)
        return proc

    def closed_port(self, family: int = socket.AF_INET) -> int:
        """A loopback port nobody listens on (bound, then released)."""
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((self.host(family), 0))
            port: int = probe.getsockname()[1]
        return port

    @contextmanager
    def watchdog(self, sock: socket.socket, seconds: float = IO_TIMEOUT) -> Iterator[None]:
        """Bound a call on a blocking-mode socket: shut it down if it overruns."""

        def fire() -> None:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

        timer = threading.Timer(seconds, fire)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
            timer.join(1.0)

    def close_all(self) -> None:
        """Close files and sockets, then make sure every thread ended."""
        for f in self._files:
            with suppress(OSError):
                f.close()
        for fd in self._fds:
            with suppress(OSError):
                os.close(fd)
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=JOIN_TIMEOUT)
        for sock in self._socks:
            if sock.fileno() != -1 and any(t.thread.is_alive() for t in self._tasks):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        stuck = []
        for task in self._tasks:
            task.thread.join(JOIN_TIMEOUT)
            if task.thread.is_alive():
                stuck.append(task)
        if stuck:
            raise TransportViolation(f"{len(stuck)} thread(s) still running after close")


def run(name: str, transport: Transport) -> Recorder:
    """Run scenario ``name`` over ``transport``; an unexpected error ends the transcript."""
    rec = Recorder()
    try:
        SCENARIOS[name](transport, rec)
    except TransportViolation:
        raise
    except Exception as exc:
        rec.aborted = f"{exc_token(exc)} {exc!r}"
    return rec


# ---------------------------------------------------------------- helpers


def recv_until_eof(sock: socket.socket, limit: int = 100_000) -> tuple[int, str]:
    """Read to EOF: (length, sha256 hex), bounded by ``limit`` recv calls."""
    digest, total = hashlib.sha256(), 0
    for _ in range(limit):
        chunk = sock.recv(256 * 1024)
        if not chunk:
            return total, digest.hexdigest()
        digest.update(chunk)
        total += len(chunk)
    raise RuntimeError("recv_until_eof: limit reached")


def recv_nowait(sock: socket.socket, n: int) -> bytes:
    """``recv`` that never waits, whatever the socket's timeout (``BlockingIOError`` if empty).

    ``MSG_DONTWAIT`` alone is not enough: with a timeout set, Python waits for
    readability before it calls recv.
    """
    old = sock.gettimeout()
    sock.setblocking(False)
    try:
        return sock.recv(n)
    finally:
        sock.settimeout(old)


def recv_nowait_flags(sock: socket.socket, n: int, flags: int) -> bytes:
    """``recv(n, flags)`` that never waits (see ``recv_nowait``)."""
    old = sock.gettimeout()
    sock.setblocking(False)
    try:
        return sock.recv(n, flags)
    finally:
        sock.settimeout(old)


@functools.lru_cache(maxsize=16)
def payload(size: int, seed: int = 1) -> bytes:
    """Deterministic pseudo-random bytes (cached: transports share them)."""
    return random.Random(seed).randbytes(size)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def readable(sock: Any, timeout: float) -> bool:
    return bool(select.select([sock], [], [], timeout)[0])


def writable(sock: Any, timeout: float) -> bool:
    return bool(select.select([], [sock], [], timeout)[1])


def elapsed_between(fn: Callable[[], Any], low: float, high: float) -> Callable[[], Any]:
    """Wrap ``fn`` so the call's result is (outcome, low <= seconds < high)."""

    def wrapped() -> Any:
        start = time.monotonic()
        try:
            fn()
            outcome: Any = "returned"
        except Exception as exc:
            outcome = exc_token(exc)
        took = time.monotonic() - start
        return outcome, low <= took < high

    return wrapped


POLL_FLAGS = {
    name: getattr(select, name)
    for name in ("POLLIN", "POLLPRI", "POLLOUT", "POLLERR", "POLLHUP", "POLLNVAL", "POLLRDHUP")
    if hasattr(select, name)
}


def poll_names(sock: socket.socket, timeout_ms: int = 0) -> list[str]:
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLOUT | select.POLLPRI | select.POLLRDHUP)
    events = poller.poll(timeout_ms)
    mask = events[0][1] if events else 0
    return sorted(name for name, bit in POLL_FLAGS.items() if mask & bit)


def peer_gone(fn: Callable[[], Any]) -> Any:
    """BrokenPipeError and ConnectionResetError are one outcome: the peer is gone."""
    try:
        return ("returned", norm(fn()))
    except (BrokenPipeError, ConnectionResetError):
        return "peer-gone"


def send_until_peer_gone(sock: socket.socket) -> Any:
    """Up to 3 sends 20 ms apart; the outcome, with the peer-gone errors as one token.

    When the first send fails differs legitimately between transports (TCP learns
    of the dead peer from its RST only after a send), so only the end is recorded.
    """
    for _ in range(3):
        try:
            sock.send(b"x")
        except (BrokenPipeError, ConnectionResetError):
            return "peer-gone"
        except OSError as exc:
            return exc_token(exc)
        time.sleep(0.02)
    return "no error"


# ================================================================ scenarios
# ---------------------------------------------------------------- data


@scenario
def scenario_send_recv_small(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    rec.call("client send", c.send, b"hello")
    rec.call("server recv", s.recv, 100)
    rec.call("server send", s.send, b"world!")
    rec.call("client recv", c.recv, 100)


@scenario
def scenario_partial_reads(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    c.sendall(b"abcdefghij")
    rec.call("recv 3", s.recv, 3)
    rec.call("recv 3 again", s.recv, 3)
    rec.call("recv 1", s.recv, 1)
    rec.call("recv rest", s.recv, 100)
    rec.call("nothing left (dontwait)", recv_nowait, s, 10)


@scenario
def scenario_recv_into_nbytes(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    c.sendall(b"abcdef")
    buf = bytearray(b"........")
    rec.call("recv_into nbytes=4", s.recv_into, buf, 4)
    rec.note("buffer", buf)
    rec.call("recv_into memoryview slice", s.recv_into, memoryview(buf)[5:], 0)
    rec.note("buffer after slice", buf)
    rec.call("recv_into nbytes > len", s.recv_into, bytearray(2), 5)
    rec.call("recv_into negative", s.recv_into, bytearray(2), -1)


def _error_of(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """What calling ``fn`` raised, with its message; the data methods' own words count."""
    try:
        fn(*args, **kwargs)
    except Exception as exc:
        return type(exc).__name__, str(exc)
    return "no error"


@scenario
def scenario_data_method_argument_errors(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    for label, fn, args, kwargs in [
        ("send str", c.send, ("text",), {}),
        ("send nothing", c.send, (), {}),
        ("send three arguments", c.send, (b"x", 0, 1), {}),
        ("send flags by name", c.send, (b"x",), {"flags": 0}),
        ("send flags too big", c.send, (b"x", 2**40), {}),
        ("sendall str", c.sendall, ("text",), {}),
        ("sendall strided view", c.sendall, (memoryview(b"abcd")[::2],), {}),
        ("recv nothing", s.recv, (), {}),
        ("recv three arguments", s.recv, (1, 0, 1), {}),
        ("recv float", s.recv, (1.5,), {}),
        ("recv negative", s.recv, (-1,), {}),
        ("recv bufsize by name", s.recv, (), {"bufsize": 1}),
        ("recv_into bytes", s.recv_into, (b"xx",), {}),
        ("recv_into str", s.recv_into, ("xx",), {}),
        ("recv_into four arguments", s.recv_into, (bytearray(2), 1, 0, 1), {}),
        ("recv_into unknown name", s.recv_into, (bytearray(2),), {"size": 1}),
        ("recv_into buffer twice", s.recv_into, (bytearray(2),), {"buffer": bytearray(2)}),
        ("recv_into no buffer", s.recv_into, (), {"nbytes": 1}),
    ]:
        rec.note(label, _error_of(fn, *args, **kwargs))
    c.sendall(b"abc")
    buf = bytearray(b"....")
    rec.call("recv_into by name", s.recv_into, buffer=buf, nbytes=2, flags=0)
    rec.note("buffer", buf)
    rec.call("recv the rest", s.recv, 10)


@scenario
def scenario_message_call_argument_errors(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    for label, fn, args in [
        ("shutdown beyond a C int", c.shutdown, (2**31,)),
        ("shutdown below a C int", c.shutdown, (-(2**31) - 1,)),
        ("shutdown str", c.shutdown, ("x",)),
        ("recvmsg negative size", s.recvmsg, (-1,)),
        ("recvmsg negative ancillary size", s.recvmsg, (100, -1)),
        ("recvmsg flags too big", s.recvmsg, (100, 0, 2**40)),
        ("recvmsg_into read-only buffer", s.recvmsg_into, ([b"xx"],)),
        ("recvmsg_into negative ancillary size", s.recvmsg_into, ([bytearray(2)], -1)),
        ("sendmsg str buffer", c.sendmsg, (["x"],)),
        ("sendmsg ancillary object", c.sendmsg, ([b"x"], [object()])),
        ("sendmsg ancillary pair", c.sendmsg, ([b"x"], [(1, 2)])),
    ]:
        rec.note(label, _error_of(fn, *args))
    # Nothing was sent or consumed by the refused calls.
    c.sendall(b"after")
    rec.call("the peer reads what came after", lambda: readable(s, 1.0) and recv_nowait(s, 10))


@scenario
def scenario_recv_into_whole_buffer(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    c.sendall(b"0123456789")
    small = bytearray(4)
    rec.call("recv_into small buffer", s.recv_into, small)
    rec.note("small", small)
    big = bytearray(b"#" * 16)
    rec.call("recv_into big buffer", s.recv_into, big)
    rec.note("big", big)


@scenario
def scenario_peek_then_recv(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    c.sendall(b"peekaboo")
    rec.call("peek 4", s.recv, 4, socket.MSG_PEEK)
    rec.call("peek all", s.recv, 100, socket.MSG_PEEK)
    rec.call("peek into", s.recv_into, bytearray(3), 3, socket.MSG_PEEK)
    rec.call("recv", s.recv, 100)
    rec.call("then empty (dontwait)", recv_nowait, s, 100)


@scenario
def scenario_waitall_across_sends(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    chunks = [bytes([65 + i]) * 1000 for i in range(4)]

    def sender() -> None:
        for chunk in chunks:
            time.sleep(0.02)
            c.sendall(chunk)

    s.settimeout(None)
    task = t.task(sender)
    with t.watchdog(s):
        data = rec.call("recv MSG_WAITALL 4000 (blocking)", s.recv, 4000, socket.MSG_WAITALL)
    rec.call("sender", task.join)
    rec.expect("got all four chunks", data == b"".join(chunks), True)


@scenario
def scenario_waitall_stops_at_eof(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    c.sendall(b"short")
    c.shutdown(socket.SHUT_WR)
    s.settimeout(None)
    with t.watchdog(s):
        rec.call("recv MSG_WAITALL more than sent", s.recv, 100, socket.MSG_WAITALL)
        rec.call("then eof", s.recv, 100, socket.MSG_WAITALL)


@scenario
def scenario_dontwait_on_empty(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    s.settimeout(None)
    with t.watchdog(s):
        rec.call("recv MSG_DONTWAIT on empty", s.recv, 10, socket.MSG_DONTWAIT)
        c.sendall(b"now")
        rec.call("readable", readable, s, WAIT)
        rec.call("recv MSG_DONTWAIT with data", s.recv, 10, socket.MSG_DONTWAIT)
        rec.call("recv_into MSG_DONTWAIT empty", s.recv_into, bytearray(4), 4, socket.MSG_DONTWAIT)


@scenario
def scenario_zero_length_send_and_recv0(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    rec.call("send empty", c.send, b"")
    rec.call("sendall empty", c.sendall, b"")
    rec.call("peer sees nothing (dontwait)", recv_nowait, s, 10)
    s.settimeout(0.05)
    rec.call("recv(0) with nothing queued and a timeout", s.recv, 0)
    s.settimeout(IO_TIMEOUT)
    c.sendall(b"data")
    rec.call("recv(0) with data queued", s.recv, 0)
    rec.call("recv_into empty buffer", s.recv_into, bytearray(0))
    rec.call("data still there", s.recv, 100)


@scenario
def scenario_large_recv_buffer(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    c.sendall(b"x" * 100)
    rec.call("recv(8 MiB) of 100 bytes", lambda: len(s.recv(8 * MiB)))


@scenario
def scenario_send_accepts_buffers(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    rec.call("send bytearray", c.send, bytearray(b"ab"))
    rec.call("send memoryview slice", c.send, memoryview(b"xcdx")[1:3])
    rec.call("sendall bytearray", c.sendall, bytearray(b"ef"))
    rec.call("send str", c.send, "text")
    rec.call("recv", lambda: recv_exactly(s, 6))


@scenario
def scenario_sendmsg_multiple_buffers(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    parts = [b"ab", bytearray(b"cd"), memoryview(b"ef"), b""]
    rec.call("sendmsg 4 buffers", c.sendmsg, parts)
    rec.call("sendmsg no ancillary, flags 0", c.sendmsg, [b"gh"], [], 0)
    rec.call("recv", lambda: recv_exactly(s, 8))


@scenario
def scenario_addresses_given_to_a_connected_socket(t: Transport, rec: Recorder) -> None:
    """sendto/sendmsg parse the address as the stdlib does, then Linux TCP ignores it."""
    c, s = t.pair()
    host, port = s.getsockname()[:2]
    rec.call("sendto a valid address", c.sendto, b"a", (host, port))
    rec.call("sendto flags and address", c.sendto, b"b", 0, (host, port))
    rec.call("sendto an object", c.sendto, b"x", object())
    rec.call("sendto a bad port", c.sendto, b"x", (host, 99999))
    rec.call("sendto without an address", lambda: c.sendto(b"x"))  # type: ignore[call-overload]
    rec.call("sendmsg a valid address", c.sendmsg, [b"c"], [], 0, (host, port))
    rec.call("sendmsg an object", c.sendmsg, [b"x"], [], 0, object())
    rec.call("recv what was sent", lambda: recv_exactly(s, 3))


@scenario
def scenario_recvmsg_data(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    c.sendall(b"message!")

    def recvmsg(bufsize: int, flags: int = 0) -> Any:
        data, anc, msg_flags, addr = s.recvmsg(bufsize, 0, flags)
        return data, anc, msg_flags, addr_shape(addr)

    rec.call("recvmsg peek", recvmsg, 3, socket.MSG_PEEK)
    rec.call("recvmsg 3", recvmsg, 3)
    rec.call("recvmsg rest", recvmsg, 100)
    c.shutdown(socket.SHUT_WR)
    rec.call("recvmsg at eof", recvmsg, 100)


@scenario
def scenario_recvmsg_into_buffers(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    c.sendall(b"0123456789abc")
    bufs = [bytearray(3), bytearray(5), memoryview(bytearray(20))]

    def recvmsg_into() -> Any:
        n, anc, flags, addr = s.recvmsg_into(bufs)
        return n, anc, flags, addr_shape(addr)

    rec.call("recvmsg_into", recvmsg_into)
    rec.note("buffers", [bytes(b) for b in bufs])


@scenario
def scenario_recvfrom_and_sendto(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    c.sendall(b"from")
    rec.call("recvfrom", lambda: (lambda r: (r[0], addr_shape(r[1])))(s.recvfrom(100)))
    c.sendall(b"into")
    buf = bytearray(8)
    rec.call("recvfrom_into", lambda: (lambda r: (r[0], addr_shape(r[1])))(s.recvfrom_into(buf)))
    rec.note("buffer", buf)
    rec.call("sendto the peer's address", c.sendto, b"to", c.getpeername())
    rec.call("peer receives sendto data (dontwait)", recv_nowait, s, 10)


@scenario
def scenario_many_small_messages_in_order(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    count = 10_000

    def sender() -> None:
        for i in range(count):
            c.sendall(struct.pack("!I", i))

    task = t.task(sender)
    data = recv_exactly(s, 4 * count)
    rec.call("sender", task.join)
    numbers = [n for (n,) in struct.iter_unpack("!I", data[: len(data) // 4 * 4])]
    rec.note("received count", len(numbers))
    rec.expect("in order", numbers == list(range(count)), True)


@scenario
def scenario_sendall_16mib_with_reader(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    data = payload(16 * MiB)
    reader = t.task(recv_until_eof, s)
    rec.call("sendall 16 MiB", c.sendall, data)
    c.shutdown(socket.SHUT_WR)
    got = rec.call("reader (length, digest)", reader.join)
    rec.expect("digest matches", got == (len(data), sha(data)), True)


@scenario
def scenario_both_directions_at_once(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    up, down = payload(4 * MiB, seed=2), payload(4 * MiB, seed=3)

    def send_then_close(sock: socket.socket, data: bytes) -> None:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)

    readers = [t.task(recv_until_eof, s), t.task(recv_until_eof, c)]
    senders = [t.task(send_then_close, c, up), t.task(send_then_close, s, down)]
    for i, task in enumerate(senders):
        rec.call(f"sender {i}", task.join)
    got_up = rec.call("server reader", readers[0].join)
    got_down = rec.call("client reader", readers[1].join)
    rec.expect("upstream intact", got_up == (len(up), sha(up)), True)
    rec.expect("downstream intact", got_down == (len(down), sha(down)), True)


@scenario
def scenario_sendfile(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    data = payload(1 * MiB, seed=4)
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.seek(0)
        reader = t.task(recv_until_eof, s)
        rec.call("sendfile", c.sendfile, f)
        c.shutdown(socket.SHUT_WR)
        rec.expect("reader", reader.join(), (len(data), sha(data)))


@scenario
def scenario_os_level_read_write_on_fileno(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    rec.call("os.write on client fd", os.write, c.fileno(), b"raw bytes")
    rec.call("server recv", s.recv, 100)
    s.sendall(b"back")
    rec.call("client fd readable", readable, c.fileno(), WAIT)
    rec.call("os.read on client fd", os.read, c.fileno(), 100)


@scenario
def scenario_msg_oob(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    rec.call("send 'abc' MSG_OOB", c.send, b"abc", socket.MSG_OOB)
    rec.call("exceptional condition", lambda: bool(select.select([], [], [s], WAIT)[2]))
    rec.call("recv 1 MSG_OOB", s.recv, 1, socket.MSG_OOB)
    rec.call("recv normal data", s.recv, 10)


# ---------------------------------------------------------------- flow control


@scenario
def scenario_nonblocking_send_until_full_then_drain(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    c.setblocking(False)
    chunk = payload(64 * 1024, seed=5)
    sent = hashlib.sha256()
    total, error = 0, None
    for _ in range(4096):
        try:
            n = c.send(chunk)
        except BlockingIOError as exc:
            error = exc
            break
        sent.update(chunk[:n])
        total += n
    rec.note("send eventually would block", None if error is None else exc_token(error))
    rec.note("something was sent first", total > 0)
    got = hashlib.sha256()
    received = 0
    for _ in range(100_000):
        if received >= total:
            break
        data = s.recv(256 * 1024)
        if not data:
            break
        got.update(data)
        received += len(data)
    rec.expect(
        "drained exactly what was sent",
        (received, got.hexdigest()) == (total, sent.hexdigest()),
        True,
    )
    rec.call("writable again", writable, c, WAIT)
    rec.call("send after drain", c.send, b"z")
    rec.call("peer gets it", s.recv, 10)


@scenario
def scenario_nonblocking_send_partial(t: Transport, rec: Recorder) -> None:
    c, _s = t.pair()
    c.setblocking(False)
    data = payload(64 * MiB, seed=6)
    n = rec.call("send 64 MiB non-blocking is partial", lambda: 0 < c.send(data) < len(data))
    del n
    rec.call("then would block", lambda: c.send(data))


@scenario
def scenario_send_with_timeout_when_full(t: Transport, rec: Recorder) -> None:
    c, _s = t.pair()
    c.settimeout(0.2)
    data = payload(64 * MiB, seed=7)
    rec.call("send 64 MiB with timeout is partial", lambda: 0 < c.send(data) < len(data))
    rec.call("sendall 64 MiB, nobody reads", elapsed_between(lambda: c.sendall(data), 0.15, 3.0))


@scenario
def scenario_sendall_nonblocking_slow_reader(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    data = payload(64 * MiB, seed=8)
    s.settimeout(0.3)

    def slow_reader() -> bytes:
        got = bytearray()
        for _ in range(100_000):
            try:
                chunk = s.recv(256 * 1024)
            except TimeoutError:
                break  # the sender gave up: 0.3 s without data
            if not chunk:
                break
            got += chunk
            time.sleep(0.001)
        return bytes(got)

    reader = t.task(slow_reader)
    c.setblocking(False)
    rec.call("sendall non-blocking, slow reader", c.sendall, data)
    got = reader.join()
    rec.note("reader got a non-empty prefix", 0 < len(got) < len(data) and data.startswith(got))


@scenario
def scenario_sendall_blocks_for_slow_reader(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    data = payload(4 * MiB, seed=9)

    def slow_reader() -> tuple[int, str]:
        digest, total = hashlib.sha256(), 0
        for i in range(100_000):
            chunk = s.recv(64 * 1024)
            if not chunk:
                break
            digest.update(chunk)
            total += len(chunk)
            if i % 8 == 0:
                time.sleep(0.001)
        return total, digest.hexdigest()

    reader = t.task(slow_reader)
    rec.call("sendall 4 MiB (timeout 5 s)", c.sendall, data)
    c.shutdown(socket.SHUT_WR)
    rec.expect("reader", reader.join(), (len(data), sha(data)))


# ---------------------------------------------------------------- shutdown and close


@scenario
def scenario_half_close_client_write(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    c.sendall(b"request")
    rec.call("client shutdown SHUT_WR", c.shutdown, socket.SHUT_WR)
    rec.call("server reads data", lambda: recv_exactly(s, 7))
    rec.call("server reads eof", s.recv, 100)
    rec.call("server reads eof again", s.recv, 100)
    rec.call("server sends back", s.sendall, b"response")
    rec.call("client still reads", lambda: recv_exactly(c, 8))
    rec.call("client send after SHUT_WR", c.send, b"more")
    rec.call("server shutdown SHUT_WR", s.shutdown, socket.SHUT_WR)
    rec.call("client reads eof", c.recv, 100)


@scenario
def scenario_half_close_server_write(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    s.sendall(b"greeting")
    rec.call("server shutdown SHUT_WR", s.shutdown, socket.SHUT_WR)
    rec.call("client reads data", lambda: recv_exactly(c, 8))
    rec.call("client reads eof", c.recv, 100)
    rec.call("client sends back", c.sendall, b"thanks")
    rec.call("server still reads", lambda: recv_exactly(s, 6))
    rec.call("server sendall after SHUT_WR", s.sendall, b"x")


@scenario
def scenario_shut_rd(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    rec.call("client shutdown SHUT_RD", c.shutdown, socket.SHUT_RD)
    rec.call("client recv, nothing queued", c.recv, 10)
    rec.call("client can still send", c.sendall, b"out")
    rec.call("server gets it", s.recv, 10)


@scenario
def scenario_shut_rd_then_peer_sends(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    c.shutdown(socket.SHUT_RD)
    rec.call("peer sends after SHUT_RD", lambda: peer_gone(lambda: s.send(b"late")))
    time.sleep(0.02)
    rec.call("client recv", c.recv, 10)


@scenario
def scenario_shut_rdwr(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    rec.call("client shutdown SHUT_RDWR", c.shutdown, socket.SHUT_RDWR)
    rec.call("server reads eof", s.recv, 10)
    rec.call("client send", c.send, b"x")
    rec.call("client recv", c.recv, 10)
    rec.call("client SO_ERROR", c.getsockopt, socket.SOL_SOCKET, socket.SO_ERROR)
    rec.addr("client getpeername", c.getpeername)


@scenario
def scenario_shutdown_twice(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    rec.call("SHUT_WR", c.shutdown, socket.SHUT_WR)
    rec.call("SHUT_WR again", c.shutdown, socket.SHUT_WR)
    rec.call("SHUT_RDWR", c.shutdown, socket.SHUT_RDWR)
    rec.call("SHUT_RDWR again", c.shutdown, socket.SHUT_RDWR)
    rec.call("server reads eof", s.recv, 10)
    rec.call("invalid how", s.shutdown, 7)


@scenario
def scenario_close_with_unread_data_resets_peer(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    s.sendall(b"never read")
    rec.call("client readable", readable, c, WAIT)
    c.close()
    rec.call("server recv", s.recv, 10)
    rec.call("server recv again", s.recv, 10)
    rec.call("server send", lambda: peer_gone(lambda: s.send(b"x")))


@scenario
def scenario_send_after_peer_closed(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    c.close()
    rec.call("send loop outcome", send_until_peer_gone, s)


@scenario
def scenario_sends_after_peer_closed_one_by_one(t: Transport, rec: Recorder) -> None:
    """Linux TCP takes the first send after the peer's FIN (the peer answers it with a
    reset); every later send fails with EPIPE, and recv still reads end of stream."""
    c, s = t.pair()
    c.close()
    rec.call("server readable", readable, s, WAIT)
    rec.call("recv eof", s.recv, 10)
    for i in range(3):
        rec.call(f"send {i}", s.send, b"x")
        time.sleep(0.02)  # TCP's reset to the first one arrives meanwhile
    rec.call("recv after the sends", s.recv, 10)


@scenario
def scenario_send_after_peer_closed_leaving_data_unread(t: Transport, rec: Recorder) -> None:
    """A peer that closed with our bytes unread reset the connection: the first send
    reports it (ECONNRESET), later sends fail with EPIPE, recv reads end of stream."""
    c, s = t.pair()
    s.sendall(b"never read")
    rec.call("client readable", readable, c, WAIT)
    c.close()
    rec.call("server readable", readable, s, WAIT)
    for i in range(2):
        rec.call(f"send {i}", s.send, b"x")
        time.sleep(0.02)
    rec.call("recv after the sends", s.recv, 10)


@scenario
def scenario_recv_after_peer_close(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    c.sendall(b"last words")
    c.close()
    rec.call("recv data", lambda: recv_exactly(s, 10))
    for i in range(3):
        rec.call(f"recv eof {i}", s.recv, 10)
    rec.call("recv_into eof", s.recv_into, bytearray(4))
    rec.call("SO_ERROR", s.getsockopt, socket.SOL_SOCKET, socket.SO_ERROR)
    rec.addr("getpeername after peer close", s.getpeername)


@scenario
def scenario_accept_of_a_connection_reset_before_accept(t: Transport, rec: Recorder) -> None:
    """accept() still returns it with the address it had; then ENOTCONN, data, reset."""
    lst = t.listener()
    c = t.client_socket()
    c.settimeout(IO_TIMEOUT)
    rec.call("connect", c.connect, lst.getsockname())
    c.sendall(b"data")
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()  # abortive: a reset before the server accepts
    time.sleep(0.05)
    lst.settimeout(IO_TIMEOUT)
    s, address = lst.accept()
    t.track(s)
    s.settimeout(IO_TIMEOUT)
    rec.note("accept's address", addr_shape(address))
    rec.addr("getpeername", s.getpeername)
    rec.call("recv the data", s.recv, 10)
    rec.call("recv after it", s.recv, 10)


@scenario
def scenario_getpeername_after_a_reset(t: Transport, rec: Recorder) -> None:
    """A reset leaves a TCP socket CLOSE: getpeername() raises ENOTCONN (ssl uses it)."""
    c, s = t.pair()
    rec.addr("getpeername before", s.getpeername)
    s.sendall(b"never read")
    rec.call("client readable", readable, c, WAIT)
    c.close()  # leaves the bytes unread: a reset
    rec.call("server readable", readable, s, WAIT)
    rec.addr("getpeername after the reset", s.getpeername)
    rec.call("recv", s.recv, 10)
    rec.addr("getsockname after", s.getsockname)


@scenario
def scenario_linger_zero_close_resets_peer(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    linger = struct.pack("ii", 1, 0)
    rec.call("set SO_LINGER (1, 0)", c.setsockopt, socket.SOL_SOCKET, socket.SO_LINGER, linger)
    rec.call(
        "get SO_LINGER",
        lambda: struct.unpack("ii", c.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8)),
    )
    c.close()
    rec.call("server readable", readable, s, WAIT)
    rec.call("server recv", s.recv, 10)
    rec.call("server recv again", s.recv, 10)


@scenario
def scenario_context_manager_closes(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    with c as entered:
        rec.note("__enter__ returns the socket", entered is c)
        c.sendall(b"bye")
    rec.note("fileno after with", c.fileno())
    rec.note("repr says closed", "[closed]" in repr(c))
    rec.call("peer reads data", lambda: recv_exactly(s, 3))
    rec.call("peer reads eof", s.recv, 10)
    with s:
        pass
    rec.note("server fileno after with", s.fileno())


@scenario
def scenario_operations_after_close(t: Transport, rec: Recorder) -> None:
    c, _s = t.pair()
    c.close()
    rec.call("close again", c.close)
    rec.call("fileno", c.fileno)
    rec.call("send", c.send, b"x")
    rec.call("sendall", c.sendall, b"x")
    rec.call("recv", c.recv, 1)
    rec.call("recv_into", c.recv_into, bytearray(1))
    rec.call("getpeername", c.getpeername)
    rec.call("getsockname", c.getsockname)
    rec.call("shutdown", c.shutdown, socket.SHUT_RDWR)
    rec.call("getsockopt SO_ERROR", c.getsockopt, socket.SOL_SOCKET, socket.SO_ERROR)
    rec.call("setsockopt TCP_NODELAY", c.setsockopt, socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rec.call("settimeout", c.settimeout, 1.0)
    rec.call("gettimeout", c.gettimeout)
    rec.call("setblocking", c.setblocking, False)
    rec.call("dup", lambda: t.track(c.dup()).fileno())
    rec.call("connect", c.connect, (V4, 9))
    rec.call("detach", c.detach)


@scenario
def scenario_makefile_rwb_lines(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    fc = t.track_file(c.makefile("rwb"))
    fs = t.track_file(s.makefile("rwb"))
    fc.write(b"line one\nline two\n")
    rec.call("flush", fc.flush)
    rec.call("readline 1", fs.readline)
    rec.call("readline 2", fs.readline)
    fs.write(b"reply\n")
    fs.flush()
    rec.call("client readline", fc.readline)
    fc.write(b"a\nb\nc")
    fc.flush()
    c.shutdown(socket.SHUT_WR)
    rec.call("iterate to eof", lambda: list(fs))
    rec.call("readline at eof", fs.readline)
    fc.close()
    rec.note("socket still open after file close", c.fileno() != -1)


@scenario
def scenario_makefile_text_mode(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    w = t.track_file(c.makefile("w", encoding="utf-8", newline=""))
    r = t.track_file(s.makefile("r", encoding="utf-8", newline=""))
    w.write("héllo\r\nwörld\n€ end")
    w.flush()
    c.shutdown(socket.SHUT_WR)
    rec.call("readline", r.readline)
    rec.call("read rest", r.read)
    rec.note("mode", (w.mode, r.mode))


@scenario
def scenario_makefile_timeout(t: Transport, rec: Recorder) -> None:
    _c, s = t.pair()
    s.settimeout(0.05)
    f = t.track_file(s.makefile("rb"))
    rec.call("read times out", f.read1, 10)
    rec.call("read again after timeout", f.read1, 10)


@scenario
def scenario_makefile_outlives_socket_close(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    f = t.track_file(s.makefile("rb"))
    s.close()
    rec.note("fd kept while a file is open", s.fileno() != -1)
    c.sendall(b"still here")
    rec.call("file reads", f.read, 10)
    f.close()
    rec.note("closed with the last file", s.fileno())
    rec.call("peer sees eof", c.recv, 10)


# ---------------------------------------------------------------- timeouts and blocking


@scenario
def scenario_timeout_recv(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    rec.call("settimeout 0.05", c.settimeout, 0.05)
    rec.call("gettimeout", c.gettimeout)
    rec.call("getblocking", c.getblocking)
    rec.call("recv times out", elapsed_between(lambda: c.recv(10), 0.04, 2.0))
    rec.call("recv raises", c.recv, 10)
    rec.call("recv_into raises", c.recv_into, bytearray(1))
    s.sendall(b"after")
    rec.call("data after a timeout", c.recv, 10)


@scenario
def scenario_timeout_and_blocking_settings(t: Transport, rec: Recorder) -> None:
    c, _s = t.pair()
    for label, fn, arg in [
        ("settimeout None", c.settimeout, None),
        ("setblocking False", c.setblocking, False),
        ("setblocking True", c.setblocking, True),
        ("settimeout 0", c.settimeout, 0),
        ("settimeout 2.5", c.settimeout, 2.5),
    ]:
        rec.call(label, fn, arg)
        rec.note(f"{label}: gettimeout", c.gettimeout())
        rec.note(f"{label}: getblocking", c.getblocking())
        rec.note(f"{label}: fd is blocking", os.get_blocking(c.fileno()))
    rec.call("settimeout -1", c.settimeout, -1)
    rec.call("settimeout 'x'", c.settimeout, "x")
    rec.note("unchanged", c.gettimeout())


@scenario
def scenario_nonblocking_recv(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    c.setblocking(False)
    rec.call("recv on empty", c.recv, 10)
    rec.call("recv_into on empty", c.recv_into, bytearray(4))
    rec.call("recvmsg on empty", c.recvmsg, 10)
    s.sendall(b"ready")
    rec.call("readable", readable, c, WAIT)
    rec.call("recv with data", c.recv, 10)


@scenario
def scenario_fd_blocking_flag_follows_timeout(t: Transport, rec: Recorder) -> None:
    lst = t.listener()
    c = t.client_socket()
    rec.note("fresh client fd is blocking", os.get_blocking(c.fileno()))
    c.settimeout(IO_TIMEOUT)
    rec.note("fd non-blocking once a timeout is set", os.get_blocking(c.fileno()))
    c.connect(lst.getsockname())
    rec.note("still non-blocking after connect", os.get_blocking(c.fileno()))
    s, _ = t.accept_checked(lst, c)
    rec.note("accepted fd is blocking", os.get_blocking(s.fileno()))
    c.settimeout(None)
    rec.note("blocking again after settimeout(None)", os.get_blocking(c.fileno()))


@scenario
def scenario_accepted_socket_timeout_inheritance(t: Transport, rec: Recorder) -> None:
    lst = t.listener()
    lst.settimeout(2.5)
    c = t.connect(lst)
    s, _ = t.accept_checked(lst, c)
    rec.note("listener timeout 2.5: accepted gettimeout", s.gettimeout())
    rec.note("listener timeout 2.5: accepted getblocking", s.getblocking())
    lst.setblocking(False)
    c2 = t.connect(lst)
    rec.call("listener readable", readable, lst, WAIT)
    s2, _ = t.accept_checked(lst, c2)
    rec.note("non-blocking listener: accepted gettimeout", s2.gettimeout())
    rec.note("non-blocking listener: accepted getblocking", s2.getblocking())
    rec.note("non-blocking listener: accepted fd blocking", os.get_blocking(s2.fileno()))


# ---------------------------------------------------------------- readiness


@scenario
def scenario_select_readiness(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    rec.call("server readable before data", readable, s, 0)
    rec.call("client writable at once", writable, c, 0)
    c.sendall(b"ping")
    rec.call("server readable after send", readable, s, WAIT)
    rec.call("recv", s.recv, 10)
    rec.call("server readable after draining", readable, s, 0)
    c.close()
    rec.call("server readable on peer close", readable, s, WAIT)
    rec.call("recv eof", s.recv, 10)


@scenario
def scenario_selectors_readiness(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    with selectors.DefaultSelector() as sel:
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
        rec.call("events at once", lambda: [ev for _, ev in sel.select(0)])
        sel.modify(s, selectors.EVENT_READ)
        rec.call("no read event yet", lambda: [ev for _, ev in sel.select(0)])
        c.sendall(b"data")
        rec.call("read event after send", lambda: [ev for _, ev in sel.select(WAIT)])
        rec.call("recv", s.recv, 10)
        c.close()
        rec.call("read event on peer close", lambda: [ev for _, ev in sel.select(WAIT)])
        rec.call("recv eof", s.recv, 10)
        sel.unregister(s)


@scenario
def scenario_poll_flags_through_close(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    rec.call("idle", poll_names, s)
    c.sendall(b"x")
    rec.call("data queued", poll_names, s, WAIT_MS)
    s.recv(10)
    c.shutdown(socket.SHUT_WR)
    time.sleep(0.01)
    rec.call("peer SHUT_WR", poll_names, s, WAIT_MS)
    c.close()
    time.sleep(0.01)
    rec.call("peer closed", poll_names, s, WAIT_MS)
    s.shutdown(socket.SHUT_WR)
    rec.call("peer closed and own SHUT_WR", poll_names, s, WAIT_MS)


@scenario
def scenario_listener_readable_when_pending(t: Transport, rec: Recorder) -> None:
    lst = t.listener()
    rec.call("listener readable with nobody waiting", readable, lst, 0)
    c = t.connect(lst)
    rec.call("listener readable with a pending connection", readable, lst, WAIT)
    t.accept_checked(lst, c)
    rec.call("listener not readable after accept", readable, lst, 0)


# ---------------------------------------------------------------- socket options and attributes


@scenario
def scenario_so_error_and_so_type(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    for name, sock in (("client", c), ("server", s)):
        rec.call(f"{name} SO_ERROR", sock.getsockopt, socket.SOL_SOCKET, socket.SO_ERROR)
        rec.call(f"{name} SO_TYPE", sock.getsockopt, socket.SOL_SOCKET, socket.SO_TYPE)
        rec.call(f"{name} SO_ACCEPTCONN", sock.getsockopt, socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    lst = t.listener()
    rec.call("listener SO_ACCEPTCONN", lst.getsockopt, socket.SOL_SOCKET, socket.SO_ACCEPTCONN)


@scenario
def scenario_so_domain_and_protocol(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    for name, sock in (("client", c), ("server", s)):
        rec.call(f"{name} SO_DOMAIN", sock.getsockopt, socket.SOL_SOCKET, socket.SO_DOMAIN)
        rec.call(f"{name} SO_PROTOCOL", sock.getsockopt, socket.SOL_SOCKET, socket.SO_PROTOCOL)


@scenario
def scenario_family_type_proto_attributes(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    for name, sock in (("client", c), ("server", s)):
        rec.note(f"{name} family", sock.family)
        rec.note(f"{name} type", sock.type)
        rec.note(f"{name} proto", sock.proto)
        rec.note(f"{name} timeout", sock.timeout)


@scenario
def scenario_tcp_nodelay_and_keepalive(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    for name, sock in (("client", c), ("server", s)):
        get_nd = (socket.IPPROTO_TCP, socket.TCP_NODELAY)
        get_ka = (socket.SOL_SOCKET, socket.SO_KEEPALIVE)
        rec.call(f"{name} TCP_NODELAY default", sock.getsockopt, *get_nd)
        rec.call(f"{name} set TCP_NODELAY", sock.setsockopt, *get_nd, 1)
        rec.call(f"{name} TCP_NODELAY", sock.getsockopt, *get_nd)
        rec.call(f"{name} SO_KEEPALIVE default", sock.getsockopt, *get_ka)
        rec.call(f"{name} set SO_KEEPALIVE", sock.setsockopt, *get_ka, 1)
        rec.call(f"{name} SO_KEEPALIVE", sock.getsockopt, *get_ka)
    c.sendall(b"still works")
    rec.call("data", lambda: recv_exactly(s, 11))


@scenario
def scenario_so_rcvbuf_roundtrip(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    rec.call("set SO_RCVBUF 65536", s.setsockopt, socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    rec.call("get SO_RCVBUF (Linux doubles)", s.getsockopt, socket.SOL_SOCKET, socket.SO_RCVBUF)
    rec.call("set SO_SNDBUF 65536", c.setsockopt, socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    rec.call("get SO_SNDBUF", c.getsockopt, socket.SOL_SOCKET, socket.SO_SNDBUF)


@scenario
def scenario_setsockopt_bad_values(t: Transport, rec: Recorder) -> None:
    c, _ = t.pair()
    rec.call("setsockopt str value", c.setsockopt, socket.SOL_SOCKET, socket.SO_KEEPALIVE, "x")
    rec.call("getsockopt unknown option", c.getsockopt, socket.SOL_SOCKET, 9999)
    rec.call("setsockopt unknown level", c.setsockopt, 9999, 1, 1)


@scenario
def scenario_addresses_on_both_ends(t: Transport, rec: Recorder) -> None:
    lst = t.listener()
    c = t.connect(lst)
    s, accepted_addr = t.accept_checked(lst, c)
    rec.addr("client getsockname", c.getsockname)
    rec.addr("client getpeername", c.getpeername)
    rec.addr("server getsockname", s.getsockname)
    rec.addr("server getpeername", s.getpeername)
    rec.note("accept() address shape", addr_shape(accepted_addr))
    rec.note("client sockname == server peername", c.getsockname() == s.getpeername())
    rec.note("client peername == server sockname", c.getpeername() == s.getsockname())
    rec.note("accept() address == server peername", accepted_addr == s.getpeername())
    rec.note("server sockname == listener sockname", s.getsockname() == lst.getsockname())
    rec.note("client port differs from server port", c.getsockname()[1] != s.getsockname()[1])


@scenario
def scenario_client_bind_before_connect(t: Transport, rec: Recorder) -> None:
    lst = t.listener()
    c = t.client_socket()
    c.settimeout(IO_TIMEOUT)
    rec.call("bind", c.bind, (V4, 0))
    bound = c.getsockname()
    c.connect(lst.getsockname())
    s, _ = t.accept_checked(lst, c)
    rec.note("sockname kept after connect", c.getsockname() == bound)
    rec.note("server sees the bound address", s.getpeername() == bound)


@scenario
def scenario_fileno_stable_across_connect(t: Transport, rec: Recorder) -> None:
    lst = t.listener()
    c = t.client_socket()
    c.settimeout(IO_TIMEOUT)
    before = c.fileno()
    rec.note("fileno valid before connect", before >= 0)
    c.connect(lst.getsockname())
    s, _ = t.accept_checked(lst, c)
    rec.note("same fileno after connect", c.fileno() == before)
    rec.note("accepted fileno valid", s.fileno() >= 0)


@scenario
def scenario_unconnected_socket(t: Transport, rec: Recorder) -> None:
    x = t.client_socket()
    rec.call("getpeername", x.getpeername)
    rec.addr("getsockname", x.getsockname)
    rec.call("recv", x.recv, 1)
    rec.call("send", x.send, b"a")
    rec.call("shutdown", x.shutdown, socket.SHUT_RDWR)
    rec.call("SO_ERROR", x.getsockopt, socket.SOL_SOCKET, socket.SO_ERROR)
    rec.call("accept without listen", x.accept)


# ---------------------------------------------------------------- listeners and connecting


@scenario
def scenario_accept_timeout(t: Transport, rec: Recorder) -> None:
    lst = t.listener()
    lst.settimeout(0.05)
    rec.call("accept times out", elapsed_between(lst.accept, 0.04, 2.0))
    rec.call("accept raises", lst.accept)


@scenario
def scenario_accept_nonblocking(t: Transport, rec: Recorder) -> None:
    lst = t.listener()
    lst.setblocking(False)
    rec.call("accept with nobody waiting", lst.accept)
    c = t.connect(lst)
    rec.call("listener readable", readable, lst, WAIT)
    s, _ = t.accept_checked(lst, c)
    c.sendall(b"hi")
    rec.call("accepted socket works", s.recv, 10)


@scenario
def scenario_accept_order_of_clients(t: Transport, rec: Recorder) -> None:
    lst = t.listener()
    clients = []
    for i in range(3):
        c = t.connect(lst)
        c.sendall(bytes([48 + i]))
        clients.append(c)
    for i in range(3):
        s, _ = t.accept_checked(lst, clients[i])
        s.settimeout(IO_TIMEOUT)
        rec.call(f"accepted #{i} reads", s.recv, 10)
        rec.note(f"accepted #{i} is client #{i}", s.getpeername() == clients[i].getsockname())


@scenario
def scenario_connect_completes_before_accept(t: Transport, rec: Recorder) -> None:
    lst = t.listener()
    c = t.client_socket()
    c.settimeout(IO_TIMEOUT)
    rec.call("connect, nobody accepting yet", c.connect, lst.getsockname())
    rec.call("send before accept", c.send, b"early")
    s, _ = t.accept_checked(lst, c)
    s.settimeout(IO_TIMEOUT)
    rec.call("accepted socket reads early data", s.recv, 10)


@scenario
def scenario_listener_closed_with_pending_connection(t: Transport, rec: Recorder) -> None:
    lst = t.listener()
    c = t.client_socket()
    c.settimeout(IO_TIMEOUT)
    rec.call("connect", c.connect, lst.getsockname())
    lst.close()
    rec.call("client recv", c.recv, 10)
    rec.call("client recv again", c.recv, 10)


@scenario
def scenario_nonblocking_connect_ex(t: Transport, rec: Recorder) -> None:
    lst = t.listener()
    c = t.client_socket()
    c.setblocking(False)
    rc = c.connect_ex(lst.getsockname())
    rec.note("connect_ex", "EINPROGRESS-or-0" if rc in (0, errno.EINPROGRESS) else rc)
    rec.call("writable", writable, c, WAIT)
    rec.call("SO_ERROR once writable", c.getsockopt, socket.SOL_SOCKET, socket.SO_ERROR)
    rec.addr("getpeername", c.getpeername)
    s, _ = t.accept_checked(lst, c)
    s.settimeout(IO_TIMEOUT)
    rec.call("send", c.send, b"hi")
    rec.call("peer recv", s.recv, 10)


@scenario
def scenario_nonblocking_connect(t: Transport, rec: Recorder) -> None:
    lst = t.listener()
    c = t.client_socket()
    c.setblocking(False)

    def connect() -> str:
        try:
            c.connect(lst.getsockname())
        except BlockingIOError as exc:
            return f"BlockingIOError {errno.errorcode[exc.errno]}"
        return "BlockingIOError EINPROGRESS"  # completing at once is allowed too

    rec.call("connect", connect)
    rec.call("writable", writable, c, WAIT)
    rec.call("connect again when done", c.connect_ex, lst.getsockname())
    s, _ = t.accept_checked(lst, c)
    s.settimeout(IO_TIMEOUT)
    s.sendall(b"hello")
    rec.call("readable", readable, c, WAIT)
    rec.call("recv", c.recv, 10)


@scenario
def scenario_connect_refused(t: Transport, rec: Recorder) -> None:
    port = t.closed_port()
    c = t.client_socket()
    c.settimeout(IO_TIMEOUT)
    rec.call("connect_ex to a closed port", lambda: errno.errorcode.get(c.connect_ex((V4, port))))
    rec.call("SO_ERROR after", c.getsockopt, socket.SOL_SOCKET, socket.SO_ERROR)
    c2 = t.client_socket()
    c2.settimeout(IO_TIMEOUT)
    rec.call("connect to a closed port", c2.connect, (V4, port))
    rec.call("getpeername after failure", c2.getpeername)


@scenario
def scenario_connect_twice(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    rec.call("connect again", c.connect, c.getpeername())
    rec.call("connect_ex again", lambda: errno.errorcode.get(c.connect_ex(c.getpeername())))
    c.sendall(b"fine")
    rec.call("connection unharmed", s.recv, 10)


@scenario
def scenario_create_connection_and_server(t: Transport, rec: Recorder) -> None:
    srv = t.create_server((V4, 0))
    rec.addr("server address", srv.getsockname)
    rec.call(
        "SO_REUSEADDR set", lambda: srv.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0
    )
    rec.note("listener family", srv.family)
    c = t.create_connection(srv.getsockname(), timeout=2.5)
    s, _ = t.accept_checked(srv, c)
    s.settimeout(IO_TIMEOUT)
    rec.note("client gettimeout", c.gettimeout())
    rec.note("client family", c.family)
    rec.note("client peername == server sockname", c.getpeername() == s.getsockname())
    c.sendall(b"over create_connection")
    rec.call("server reads", lambda: recv_exactly(s, 22))
    s.sendall(b"ok")
    rec.call("client reads", c.recv, 10)


@scenario
def scenario_create_connection_source_address(t: Transport, rec: Recorder) -> None:
    srv = t.create_server((V4, 0))
    c = t.create_connection(srv.getsockname(), source_address=(V4, 0))
    s, _ = t.accept_checked(srv, c)
    rec.addr("client sockname", c.getsockname)
    rec.note("server sees client's sockname", s.getpeername() == c.getsockname())


@scenario
def scenario_create_server_options(t: Transport, rec: Recorder) -> None:
    srv = t.create_server((V4, 0), backlog=5, reuse_port=True)
    rec.call(
        "SO_REUSEPORT set", lambda: srv.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) != 0
    )
    rec.call("SO_ACCEPTCONN", srv.getsockopt, socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    srv6 = t.create_server((V6, 0), family=socket.AF_INET6)
    rec.addr("ipv6 server address", srv6.getsockname)
    rec.call("IPV6_V6ONLY", srv6.getsockopt, socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
    c = t.create_connection(srv6.getsockname()[:2])
    s, _ = t.accept_checked(srv6, c)
    rec.note("client family", c.family)
    rec.addr("server peername", s.getpeername)


@scenario
def scenario_create_connection_refused(t: Transport, rec: Recorder) -> None:
    port = t.closed_port()
    rec.call("create_connection to a closed port", t.create_connection, (V4, port))


# ---------------------------------------------------------------- descriptors


@scenario
def scenario_detach(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    fd = t.track_fd(c.detach())
    rec.note("detach returns an fd", isinstance(fd, int) and fd >= 0)
    rec.note("socket closed after detach", c.fileno())
    rec.call("close after detach", c.close)
    rec.call("os.write on detached fd", os.write, fd, b"via fd")
    rec.call("peer reads", s.recv, 100)
    s.sendall(b"back")
    rec.call("fd readable", readable, fd, WAIT)
    rec.call("os.read on detached fd", os.read, fd, 100)
    os.close(fd)
    rec.call("peer sees eof after os.close", s.recv, 10)


@scenario
def scenario_detach_rewrap_with_stdlib(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    fd = c.detach()
    w = t.track(socket.socket(fileno=fd))
    rec.note("family", w.family)
    rec.note("type", w.type)
    rec.note("proto", w.proto)
    rec.addr("getpeername", w.getpeername)
    rec.note("peername == server sockname", w.getpeername() == s.getsockname())
    w.settimeout(IO_TIMEOUT)
    w.sendall(b"rewrapped")
    rec.call("peer reads", s.recv, 100)


@scenario
def scenario_dup_carries_data(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    d = t.track(c.dup())
    t.check_connected(d)
    rec.note("same class", type(d) is type(c))
    rec.note("family", d.family)
    rec.note("dup gettimeout", d.gettimeout())
    d.settimeout(IO_TIMEOUT)
    rec.note("different fd", d.fileno() != c.fileno())
    c.close()
    rec.call("peer sees no eof while the dup lives (dontwait)", recv_nowait, s, 10)
    rec.call("dup sends", d.sendall, b"dup data")
    rec.call("peer reads", lambda: recv_exactly(s, 8))
    s.sendall(b"to dup")
    rec.call("dup reads", lambda: recv_exactly(d, 6))
    rec.addr("dup getpeername", d.getpeername)
    d.close()
    rec.call("peer sees eof", s.recv, 10)


# ---------------------------------------------------------------- IPv6


@scenario
def scenario_ipv6_pair(t: Transport, rec: Recorder) -> None:
    c, s = t.pair(socket.AF_INET6)
    rec.note("family", c.family)
    rec.addr("client getsockname", c.getsockname)
    rec.addr("client getpeername", c.getpeername)
    rec.addr("server getsockname", s.getsockname)
    rec.addr("server getpeername", s.getpeername)
    rec.note("client sockname == server peername", c.getsockname() == s.getpeername())
    rec.note("client peername == server sockname", c.getpeername() == s.getsockname())
    c.sendall(b"over ::1")
    rec.call("server reads", lambda: recv_exactly(s, 8))
    s.shutdown(socket.SHUT_WR)
    rec.call("client reads eof", c.recv, 10)


@scenario
def scenario_ipv6_connect_refused(t: Transport, rec: Recorder) -> None:
    port = t.closed_port(socket.AF_INET6)
    c = t.client_socket(socket.AF_INET6)
    c.settimeout(IO_TIMEOUT)
    rec.call("connect to a closed ::1 port", c.connect, (V6, port))


@scenario
def scenario_ipv4_client_to_ipv6_listener_fails(t: Transport, rec: Recorder) -> None:
    lst = t.listener(socket.AF_INET6)
    c = t.client_socket()
    c.settimeout(IO_TIMEOUT)
    rec.call("AF_INET client to ::1 port", c.connect_ex, (V4, lst.getsockname()[1]))
    rec.call("AF_INET client, AF_INET6 address", c.connect, lst.getsockname())


# ---------------------------------------------------------------- more shutdown


def _shutdown_wakes_blocked_reader(t: Transport, rec: Recorder, how: int, name: str) -> None:
    c, _s = t.pair()
    c.settimeout(1.5)

    def reader() -> Any:
        start = time.monotonic()
        data = c.recv(10)
        return data, time.monotonic() - start < 1.0

    task = t.task(reader)
    time.sleep(0.05)
    rec.call(f"shutdown {name} from another thread", c.shutdown, how)
    rec.call("blocked recv returns at once", task.join)


@scenario
def scenario_shutdown_rdwr_wakes_blocked_reader(t: Transport, rec: Recorder) -> None:
    _shutdown_wakes_blocked_reader(t, rec, socket.SHUT_RDWR, "SHUT_RDWR")


@scenario
def scenario_shut_rd_wakes_blocked_reader(t: Transport, rec: Recorder) -> None:
    _shutdown_wakes_blocked_reader(t, rec, socket.SHUT_RD, "SHUT_RD")


@scenario
def scenario_peer_close_wakes_blocked_reader(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    task = t.task(lambda: (s.recv(10), s.recv(10)))
    time.sleep(0.05)
    c.sendall(b"bye")
    c.close()
    rec.call("blocked reader gets data then eof", task.join)


@scenario
def scenario_shut_rd_readiness(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    rec.call("readable before", readable, c, 0)
    c.shutdown(socket.SHUT_RD)
    rec.call("select readable after own SHUT_RD", readable, c, 0.2)
    rec.call("poll flags after own SHUT_RD", poll_names, c, 200)
    rec.call("os.read on the fd", lambda: os.read(c.fileno(), 10))
    with selectors.DefaultSelector() as sel:
        sel.register(c, selectors.EVENT_READ)
        rec.call("selector read event", lambda: [ev for _, ev in sel.select(0.2)])
        sel.unregister(c)
    rec.call("own writes still work", c.sendall, b"w")
    rec.call("peer reads them", s.recv, 10)


@scenario
def scenario_shut_rd_with_data_queued(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    s.sendall(b"queued")
    rec.call("readable", readable, c, WAIT)
    rec.call("shutdown SHUT_RD", c.shutdown, socket.SHUT_RD)
    rec.call("recv after SHUT_RD with data queued", c.recv, 3)
    rec.call("recv again", c.recv, 10)
    rec.call("makefile read", lambda: t.track_file(c.makefile("rb")).read())


@scenario
def scenario_shut_wr_poll_flags_on_both_ends(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    c.shutdown(socket.SHUT_WR)
    time.sleep(0.01)
    rec.call("own SHUT_WR", poll_names, c, 200)
    rec.call("peer of SHUT_WR", poll_names, s, 200)
    s.shutdown(socket.SHUT_WR)
    time.sleep(0.01)
    rec.call("both shut: client", poll_names, c, 200)
    rec.call("both shut: server", poll_names, s, 200)


# ---------------------------------------------------------------- descriptors, more


@scenario
def scenario_fds_are_not_inheritable(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    rec.note("client fd inheritable", os.get_inheritable(c.fileno()))
    rec.note("server fd inheritable", os.get_inheritable(s.fileno()))
    d = t.track(c.dup())
    rec.note("dup fd inheritable", os.get_inheritable(d.fileno()))
    rec.call("set_inheritable True", c.set_inheritable, True)
    rec.note("client fd inheritable after", c.get_inheritable())
    c.sendall(b"ok")
    rec.call("still connected", s.recv, 10)


@scenario
def scenario_fromfd_dup(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    f = t.track(socket.fromfd(c.fileno(), socket.AF_INET, socket.SOCK_STREAM))
    rec.note("fromfd family", f.family)
    rec.addr("fromfd getpeername", f.getpeername)
    rec.addr("fromfd getsockname", f.getsockname)
    f.settimeout(IO_TIMEOUT)
    f.sendall(b"fromfd")
    rec.call("peer reads", s.recv, 10)


@scenario
def scenario_repr_shows_tcp_addresses(t: Transport, rec: Recorder) -> None:
    import re

    c, s = t.pair()
    for name, sock in (("client", c), ("server", s)):
        text = repr(sock)
        fields = re.findall(r"(family|type|proto)=([\w.]+)", text)
        hosts = re.findall(r"(laddr|raddr)=\('([^']*)', \d+", text)
        rec.note(f"{name} repr fields", fields)
        rec.note(f"{name} repr addresses", hosts)


@scenario
def scenario_sendmsg_scm_rights_ignored_as_tcp_does(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    r, w = os.pipe()
    t.track_fd(r)
    t.track_fd(w)
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", r))]
    rec.call("sendmsg with SCM_RIGHTS", c.sendmsg, [b"fd?"], anc)
    c.sendall(b"plain")

    def recvmsg() -> Any:
        data, anc, flags, _ = s.recvmsg(100, socket.CMSG_SPACE(4))
        return data, anc, flags

    rec.call("recvmsg with ancillary space", recvmsg)


# ---------------------------------------------------------------- addresses, more


@scenario
def scenario_pair_on_127_0_0_2(t: Transport, rec: Recorder) -> None:
    lst = t._new(socket.AF_INET, via_ioctl=True)
    lst.settimeout(IO_TIMEOUT)
    lst.bind(("127.0.0.2", 0))
    lst.listen(4)
    c = t.connect(lst)
    s, _ = t.accept_checked(lst, c)
    rec.addr("client getpeername", c.getpeername)
    rec.addr("client getsockname", c.getsockname)
    rec.addr("server getsockname", s.getsockname)
    rec.addr("server getpeername", s.getpeername)
    rec.note("client sockname == server peername", c.getsockname() == s.getpeername())
    c.sendall(b"127.0.0.2")
    rec.call("data", lambda: recv_exactly(s, 9))


@scenario
def scenario_v4_mapped_client_to_v4_listener(t: Transport, rec: Recorder) -> None:
    lst = t.listener()
    c = t.client_socket(socket.AF_INET6)
    c.settimeout(IO_TIMEOUT)
    rec.call("connect to ::ffff:127.0.0.1", c.connect, ("::ffff:127.0.0.1", lst.getsockname()[1]))
    s, _ = t.accept_checked(lst, c)
    rec.addr("client getpeername", c.getpeername)
    rec.addr("client getsockname", c.getsockname)
    rec.addr("server getpeername", s.getpeername)
    rec.note("server family", s.family)
    rec.note("client port == server's view of it", c.getsockname()[1] == s.getpeername()[1])
    c.sendall(b"mapped")
    rec.call("data", lambda: recv_exactly(s, 6))


@scenario
def scenario_create_connection_localhost(t: Transport, rec: Recorder) -> None:
    srv = t.create_server((V4, 0))
    c = t.create_connection(("localhost", srv.getsockname()[1]))
    s, _ = t.accept_checked(srv, c)
    rec.addr("client getpeername", c.getpeername)
    rec.note("client family", c.family)
    c.sendall(b"localhost")
    rec.call("data", lambda: recv_exactly(s, 9))


# ---------------------------------------------------------------- libraries on top


@scenario
def scenario_asyncio_sock_methods(t: Transport, rec: Recorder) -> None:
    import asyncio

    c, s = t.pair()
    c.setblocking(False)
    s.setblocking(False)
    data = payload(1 * MiB, seed=10)

    async def main() -> Any:
        loop = asyncio.get_running_loop()
        send = asyncio.ensure_future(loop.sock_sendall(c, data))
        got = bytearray()
        for _ in range(10_000):
            if len(got) >= len(data):
                break
            chunk = await loop.sock_recv(s, 256 * 1024)
            if not chunk:
                break
            got += chunk
        await send
        buf = bytearray(8)
        await loop.sock_sendall(s, b"back")
        n = await loop.sock_recv_into(c, buf)
        return sha(bytes(got)) == sha(data), bytes(buf[:n])

    async def bounded() -> Any:
        return await asyncio.wait_for(main(), 2 * IO_TIMEOUT)

    rec.call("asyncio sock_sendall / sock_recv / sock_recv_into", asyncio.run, bounded())


@scenario
def scenario_asyncio_streams(t: Transport, rec: Recorder) -> None:
    import asyncio

    lst = t.listener()
    lst.setblocking(False)
    c = t.client_socket()
    c.setblocking(False)
    addr = lst.getsockname()

    async def main() -> Any:
        seen: list[Any] = []
        done = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.append(addr_shape(writer.get_extra_info("peername")))
            line = await reader.readline()
            writer.write(line.upper())
            await writer.drain()
            writer.close()
            await writer.wait_closed()
            done.set()

        server = await asyncio.start_server(handle, sock=lst)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(c, addr)
        reader, writer = await asyncio.open_connection(sock=c)
        writer.write(b"hello streams\n")
        await writer.drain()
        reply = await reader.readline()
        eof = await reader.read()
        peer = addr_shape(writer.get_extra_info("peername"))
        writer.close()
        await writer.wait_closed()
        await done.wait()
        server.close()
        await server.wait_closed()
        return reply, eof, peer, seen

    async def bounded() -> Any:
        return await asyncio.wait_for(main(), 2 * IO_TIMEOUT)

    rec.call("echo over asyncio streams", asyncio.run, bounded())


@scenario
def scenario_tls_over_connection(t: Transport, rec: Recorder) -> None:
    import ssl

    c, s = t.pair()
    # Blocking ssl: the stdlib hands the fd to OpenSSL (detach()); on the ring,
    # loopfast's wrap_socket hook carries the records through the rings instead.
    with tempfile.TemporaryDirectory() as tmp:
        files = self_signed(Path(tmp))
        if files is None:
            rec.note("openssl missing: TLS not exercised", None)
            return
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(*files)
        client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client_ctx.check_hostname = False
        client_ctx.load_verify_locations(files[0])
    ts = t.track(server_ctx.wrap_socket(s, server_side=True, do_handshake_on_connect=False))
    tc = t.track(client_ctx.wrap_socket(c, do_handshake_on_connect=False))
    ts.settimeout(IO_TIMEOUT)
    tc.settimeout(IO_TIMEOUT)
    server_side = t.task(ts.do_handshake)
    rec.call("client handshake", tc.do_handshake)
    rec.call("server handshake", server_side.join)
    rec.note("version", tc.version())
    tc.sendall(b"secret")
    rec.call("server reads plaintext", ts.recv, 100)
    rec.note("wrapped family", tc.family)
    rec.addr("wrapped client getpeername", tc.getpeername)
    rec.addr("wrapped server getpeername", ts.getpeername)


# ---------------------------------------------------------------- listeners, more


@scenario
def scenario_listener_shutdown_wakes_accept(t: Transport, rec: Recorder) -> None:
    lst = t.listener()
    lst.settimeout(1.5)

    def acceptor() -> Any:
        start = time.monotonic()
        try:
            conn, _ = lst.accept()
        except OSError as exc:
            return exc_token(exc), time.monotonic() - start < 1.0
        t.track(conn)
        return "accepted", time.monotonic() - start < 1.0

    task = t.task(acceptor)
    time.sleep(0.05)
    rec.call("listener shutdown SHUT_RDWR", lst.shutdown, socket.SHUT_RDWR)
    rec.call("blocked accept", task.join)


@scenario
def scenario_listener_fromfd_accepts(t: Transport, rec: Recorder) -> None:
    lst = t.listener()
    rec.call("fd is a socket", lambda: stat.S_ISSOCK(os.fstat(lst.fileno()).st_mode))
    fd = os.dup(lst.fileno())  # what socket.fromfd does, without its leak on failure
    try:
        twin = t.track(socket.socket(lst.family, socket.SOCK_STREAM, fileno=fd))
    except OSError as exc:
        os.close(fd)
        rec.note("stdlib socket on a dup of the fd", exc_token(exc))
        return
    rec.note("stdlib socket on a dup of the fd", "ok")
    twin.settimeout(IO_TIMEOUT)
    rec.addr("fromfd getsockname", twin.getsockname)
    rec.call("fromfd SO_ACCEPTCONN", twin.getsockopt, socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    c = t.connect(lst)
    c.sendall(b"via twin")

    def accept_on_twin() -> Any:
        conn, _ = twin.accept()
        t.track(conn)
        conn.settimeout(IO_TIMEOUT)
        return recv_exactly(conn, 8)

    rec.call("accept on the stdlib twin", accept_on_twin)


@scenario
def scenario_listener_dup_accepts(t: Transport, rec: Recorder) -> None:
    lst = t.listener()
    twin: socket.socket | None = None
    try:
        twin = t.track(lst.dup())
    except OSError as exc:
        rec.note("dup listener", exc_token(exc))
    else:
        rec.note("dup listener", "ok")
    c = t.connect(lst)
    c.sendall(b"dup")
    if twin is None:
        rec.note("no twin", None)
        return
    twin.settimeout(IO_TIMEOUT)
    s, _ = t.accept_checked(twin, c)
    s.settimeout(IO_TIMEOUT)
    rec.call("accepted on the dup reads", s.recv, 10)


@scenario
def scenario_accepted_inherits_listener_options(t: Transport, rec: Recorder) -> None:
    lst = t.listener()
    lst.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    c = t.connect(lst)
    s, _ = t.accept_checked(lst, c)
    rec.call("accepted TCP_NODELAY", s.getsockopt, socket.IPPROTO_TCP, socket.TCP_NODELAY)
    rec.call("accepted SO_KEEPALIVE", s.getsockopt, socket.SOL_SOCKET, socket.SO_KEEPALIVE)
    rec.call("accepted SO_RCVBUF", s.getsockopt, socket.SOL_SOCKET, socket.SO_RCVBUF)
    rec.call("client TCP_NODELAY", c.getsockopt, socket.IPPROTO_TCP, socket.TCP_NODELAY)


# ---------------------------------------------------------------- honoured options


@scenario
def scenario_so_rcvlowat(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    rec.call("set SO_RCVLOWAT 5", s.setsockopt, socket.SOL_SOCKET, socket.SO_RCVLOWAT, 5)
    rec.call("get SO_RCVLOWAT", s.getsockopt, socket.SOL_SOCKET, socket.SO_RCVLOWAT)
    c.sendall(b"abc")
    time.sleep(0.02)
    rec.call("readable with 3 of 5 bytes", readable, s, 0.1)
    c.sendall(b"def")
    rec.call("readable with 6 of 5 bytes", readable, s, WAIT)
    rec.call("recv", lambda: recv_exactly(s, 6))


@scenario
def scenario_so_rcvtimeo_kernel_timeout(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    tv = struct.pack("ll", 0, 100_000)
    rec.call("set SO_RCVTIMEO 0.1 s", s.setsockopt, socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
    rec.call(
        "get SO_RCVTIMEO",
        lambda: struct.unpack("ll", s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)),
    )
    s.settimeout(None)
    with t.watchdog(s):
        rec.call("blocking recv, nothing sent", elapsed_between(lambda: s.recv(10), 0.08, 2.0))
        rec.call("the error", s.recv, 10)
        c.sendall(b"in time")
        rec.call("recv with data", s.recv, 10)


@scenario
def scenario_oob_inline(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    rec.call("set SO_OOBINLINE", s.setsockopt, socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
    rec.call("send 'xyz' MSG_OOB", c.send, b"xyz", socket.MSG_OOB)
    c.sendall(b"!")
    rec.call("recv in line", lambda: recv_exactly(s, 4))
    rec.call("recv MSG_OOB when inline", recv_nowait_flags, s, 1, socket.MSG_OOB)


@scenario
def scenario_sendall_fails_when_peer_closes_midway(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    data = payload(64 * MiB, seed=11)

    def read_some_then_close() -> int:
        got = len(recv_exactly(s, 1 * MiB))
        s.close()
        return got

    reader = t.task(read_some_then_close)
    rec.call("sendall 64 MiB", lambda: peer_gone(lambda: c.sendall(data)))
    rec.call("reader read 1 MiB", reader.join)


@scenario
def scenario_connect_to_full_backlog_times_out(t: Transport, rec: Recorder) -> None:
    lst = t.listener(backlog=0)
    first = t.client_socket()
    first.settimeout(IO_TIMEOUT)
    rec.call("first connect fills backlog 0", first.connect, lst.getsockname())
    second = t.client_socket()
    second.settimeout(0.3)
    rec.call("second connect times out", second.connect, lst.getsockname())
    s, _ = t.accept(lst)
    s.settimeout(IO_TIMEOUT)
    rec.note("accepted connection is the first client", s.getpeername() == first.getsockname())
    first.sendall(b"first")
    rec.call("first client's data", lambda: readable(s, 1.0) and recv_nowait(s, 10))
    t.check_connected(first)


# ---------------------------------------------------------------- a peer in another process

CHILD = """
import socket, sys, time
name, family, host, port, mode = sys.argv[1:6]
family = int(family)
if name == "tcp":
    s = socket.socket(family, socket.SOCK_STREAM)
else:
    import loopfast
    arg = {"fastpath": True, "fastpath-stream": "stream"}.get(name, False)
    s = loopfast.socket(family, socket.SOCK_STREAM, fast_path=arg)
s.settimeout(10)
s.connect((host, int(port)))
print(getattr(s, "fast_path_active", None), flush=True)
if mode == "echo":
    data = s.recv(100)
    s.sendall(data.upper())
    s.shutdown(socket.SHUT_WR)
    s.recv(1)
elif mode == "hang":
    s.sendall(b"alive")
    time.sleep(30)
s.close()
"""


def child_line(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> str:
    """The child's first stdout line (its fast_path_active), waiting at most ``timeout``."""
    assert proc.stdout is not None
    if not select.select([proc.stdout], [], [], timeout)[0]:
        raise TimeoutError("child process said nothing")
    return proc.stdout.readline().decode().strip()


def accept_child(
    t: Transport, lst: socket.socket, mode: str
) -> tuple[socket.socket, subprocess.Popen[bytes]]:
    """Start a child client in ``mode``; (accepted socket, child process)."""
    proc = t.spawn_client(lst.getsockname(), mode)
    s, _ = t.accept_checked(lst)
    s.settimeout(IO_TIMEOUT)
    reported = child_line(proc)
    want = {"tcp": "None", "fastpath": "True", "fastpath-stream": "True", "loopfast-off": "False"}[
        t.name
    ]
    if reported != want:
        raise TransportViolation(f"{t.name}: child reports fast_path_active={reported}")
    return s, proc


@scenario
def scenario_echo_with_child_process(t: Transport, rec: Recorder) -> None:
    lst = t.listener()
    s, proc = accept_child(t, lst, "echo")
    rec.call("send to child", s.sendall, b"hello child")
    rec.call("child's echo", lambda: recv_exactly(s, 11))
    rec.call("child's eof", s.recv, 10)
    s.shutdown(socket.SHUT_WR)
    rec.call("child exit status", proc.wait, JOIN_TIMEOUT)


@scenario
def scenario_peer_process_killed_while_reader_blocked(t: Transport, rec: Recorder) -> None:
    lst = t.listener()
    s, proc = accept_child(t, lst, "hang")
    rec.call("child's first words", lambda: recv_exactly(s, 5))

    def reader() -> Any:
        start = time.monotonic()
        try:
            result: Any = s.recv(10)
        except OSError as exc:
            result = exc_token(exc)
        return result, time.monotonic() - start < 1.5

    task = t.task(reader)
    time.sleep(0.05)
    proc.kill()
    rec.call("child killed", proc.wait, JOIN_TIMEOUT)
    rec.call("blocked recv wakes up", task.join)
    rec.call("send to the dead peer", send_until_peer_gone, s)


@scenario
def scenario_peer_process_killed_with_unread_data(t: Transport, rec: Recorder) -> None:
    lst = t.listener()
    s, proc = accept_child(t, lst, "hang")
    rec.call("child's first words", lambda: recv_exactly(s, 5))
    rec.call("send data the child never reads", s.sendall, b"unread" * 100)
    time.sleep(0.02)
    proc.kill()
    rec.call("child killed", proc.wait, JOIN_TIMEOUT)
    rec.call("readable", readable, s, WAIT)
    rec.call("recv", s.recv, 10)
    rec.call("recv again", s.recv, 10)


# ---------------------------------------------------------------- applications


@scenario
def scenario_selector_echo_server_many_clients(t: Transport, rec: Recorder) -> None:
    lst = t.listener(backlog=32)
    count = 20
    clients = []
    for _ in range(count):
        c = t.connect(lst)
        clients.append(c)
    conns = []
    for _ in range(count):
        s, _ = t.accept(lst)
        s.setblocking(False)
        conns.append(s)
    t.check_connected(*clients, *conns)

    def serve() -> int:
        echoed = 0
        open_conns = len(conns)
        with selectors.DefaultSelector() as sel:
            for s in conns:
                sel.register(s, selectors.EVENT_READ)
            for _ in range(100_000):
                if open_conns == 0:
                    break
                for key, _ in sel.select(IO_TIMEOUT):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    data = sock.recv(4096)
                    if not data:
                        sel.unregister(sock)
                        sock.shutdown(socket.SHUT_WR)
                        open_conns -= 1
                        continue
                    sock.settimeout(IO_TIMEOUT)
                    sock.sendall(data)
                    sock.setblocking(False)
                    echoed += len(data)
        return echoed

    server = t.task(serve)
    replies = []
    for i, c in enumerate(clients):
        c.sendall(f"client {i:02d}\n".encode() * 3)
    for c in clients:
        c.shutdown(socket.SHUT_WR)
    for c in clients:
        replies.append(recv_exactly(c, 30))
    rec.call("server echoed bytes", server.join)
    rec.note("every client got its own echo", [r.split(b"\n")[0] for r in replies])
    rec.call("each client then sees eof", lambda: [c.recv(1) for c in clients])


@scenario
def scenario_http_over_connection(t: Transport, rec: Recorder) -> None:
    import http.client
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"path={self.path} peer={addr_shape(self.client_address)}".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server:
        server_name = "conformance"

    c, s = t.pair()
    server = t.task(lambda: Handler(s, s.getpeername(), Server()) and None)
    conn = http.client.HTTPConnection(V4, 80, timeout=IO_TIMEOUT)
    conn.sock = c
    conn.request("GET", "/hello?x=1", headers={"Connection": "close"})
    resp = conn.getresponse()
    rec.note("status", resp.status)
    rec.note("content type", resp.getheader("Content-Type"))
    rec.call("body", resp.read)
    resp.close()
    rec.call("server handler", server.join)


# ---------------------------------------------------------------- options with documented treatment


@scenario
def scenario_ip_level_options(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    rec.call("set IP_TOS 0x10", c.setsockopt, socket.IPPROTO_IP, socket.IP_TOS, 0x10)
    rec.call("get IP_TOS", c.getsockopt, socket.IPPROTO_IP, socket.IP_TOS)
    rec.call("set IP_TTL 32", c.setsockopt, socket.IPPROTO_IP, socket.IP_TTL, 32)
    rec.call("get IP_TTL", c.getsockopt, socket.IPPROTO_IP, socket.IP_TTL)
    rec.call("set IP_TTL 0 (invalid)", c.setsockopt, socket.IPPROTO_IP, socket.IP_TTL, 0)
    c.sendall(b"tos")
    rec.call("data", s.recv, 10)


@scenario
def scenario_tcp_introspection_options(t: Transport, rec: Recorder) -> None:
    c, _s = t.pair()
    rec.call(
        "TCP_INFO tcpi_state",
        lambda: c.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)[0],
    )
    rec.call("TCP_MAXSEG > 0", lambda: c.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG) > 0)
    rec.call(
        "TCP_CONGESTION set",
        lambda: len(c.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).strip(b"\0")) > 0,
    )


@scenario
def scenario_so_peercred(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()

    def peercred(sock: socket.socket) -> Any:
        pid, uid, gid = struct.unpack(
            "3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        )
        return pid == os.getpid(), uid == os.getuid(), gid == os.getgid()

    rec.call("client SO_PEERCRED is this process", peercred, c)
    rec.call("server SO_PEERCRED is this process", peercred, s)


# ---------------------------------------------------------------- more listener and flow control


@scenario
def scenario_listener_operations_after_close(t: Transport, rec: Recorder) -> None:
    lst = t.listener()
    lst.close()
    rec.call("fileno", lst.fileno)
    rec.call("accept", lst.accept)
    rec.call("getsockname", lst.getsockname)
    rec.call("listen", lst.listen, 4)
    rec.call("getsockopt SO_ACCEPTCONN", lst.getsockopt, socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    rec.call("settimeout", lst.settimeout, 1.0)
    rec.call("close again", lst.close)


@scenario
def scenario_accept_connection_already_closed_by_client(t: Transport, rec: Recorder) -> None:
    lst = t.listener()
    c = t.connect(lst)
    c.sendall(b"gone")
    c.close()
    time.sleep(0.02)
    s, _ = t.accept_checked(lst)
    s.settimeout(IO_TIMEOUT)
    rec.addr("accepted getpeername", s.getpeername)
    rec.call("reads what the client sent", s.recv, 10)
    rec.call("then eof", s.recv, 10)
    rec.call("send to the departed client", send_until_peer_gone, s)


@scenario
def scenario_small_buffers_bound_bytes_in_flight(t: Transport, rec: Recorder) -> None:
    lst = t._new(socket.AF_INET, via_ioctl=True)
    lst.settimeout(IO_TIMEOUT)
    rec.call("listener SO_RCVBUF 16 KiB", lst.setsockopt, SOL, socket.SO_RCVBUF, 16 * 1024)
    lst.bind((V4, 0))
    lst.listen(4)
    c = t.client_socket()
    c.settimeout(IO_TIMEOUT)
    rec.call("client SO_SNDBUF 16 KiB", c.setsockopt, SOL, socket.SO_SNDBUF, 16 * 1024)
    c.connect(lst.getsockname())
    s, _ = t.accept_checked(lst, c)
    s.settimeout(IO_TIMEOUT)
    rec.call("accepted SO_RCVBUF", s.getsockopt, SOL, socket.SO_RCVBUF)
    c.setblocking(False)
    chunk = payload(4096, seed=12)
    total = 0
    outcome: Any = "never blocked"
    for _ in range(100_000):
        try:
            total += c.send(chunk)
        except BlockingIOError as exc:
            outcome = exc_token(exc)
            break
    rec.note("send blocks", outcome)
    rec.note("bytes in flight stay under 1 MiB", 0 < total < MiB)
    got = recv_exactly(s, total)
    rec.note("all of it arrives", len(got) == total)


@scenario
def scenario_so_rcvbuf_shrink_after_connect(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    before = s.getsockopt(SOL, socket.SO_RCVBUF)  # kernel-tuned: compared, never recorded
    rec.note("default SO_RCVBUF is above 32 KiB", before > 32 * 1024)
    rec.call("shrink SO_RCVBUF to 16 KiB", s.setsockopt, SOL, socket.SO_RCVBUF, 16 * 1024)
    rec.call("SO_RCVBUF after (Linux doubles)", s.getsockopt, SOL, socket.SO_RCVBUF)
    c.sendall(b"still fine")
    rec.call("data", lambda: recv_exactly(s, 10))


# ---------------------------------------------------------------- sharing one socket


@scenario
def scenario_two_threads_send_on_one_socket(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    per_thread = 5000

    def sender(tag: int) -> None:
        for seq in range(per_thread):
            sent = c.send(struct.pack("!II", tag, seq))
            if sent != 8:
                raise RuntimeError(f"short send of a record: {sent}")

    tasks = [t.task(sender, 1), t.task(sender, 2)]
    data = recv_exactly(s, 2 * 8 * per_thread)
    for i, task in enumerate(tasks):
        rec.call(f"sender {i}", task.join)
    rec.note("byte count", len(data))
    seen: dict[int, list[int]] = {1: [], 2: []}
    torn = 0
    for tag, seq in struct.iter_unpack("!II", data[: len(data) // 8 * 8]):
        if tag in seen:
            seen[tag].append(seq)
        else:
            torn += 1
    rec.expect("records intact", torn, 0)
    in_order = all(seen[tag] == list(range(per_thread)) for tag in seen)
    rec.expect("each thread's records complete and in order", in_order, True)


@scenario
def scenario_fork_child_handles_connection(t: Transport, rec: Recorder) -> None:
    c, s = t.pair()
    pid = os.fork()
    if pid == 0:  # the child: serve one exchange on the inherited socket, then leave
        code = 1
        try:
            s.sendall(b"child says hi")
            s.sendall(s.recv(100).upper())
            code = 0
        finally:
            os._exit(code)
    try:
        s.close()  # the parent's copy; the child's keeps the connection open
        rec.call("child's greeting", lambda: recv_exactly(c, 13))
        c.sendall(b"ping")
        rec.call("child's answer", lambda: recv_exactly(c, 4))
        rec.call("eof once the child exited", c.recv, 10)
    finally:
        deadline = time.monotonic() + JOIN_TIMEOUT
        status = None
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.01)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
    rec.note("child exit status", None if status is None else os.waitstatus_to_exitcode(status))
