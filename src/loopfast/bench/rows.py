"""The rows of the table: which sockets each side uses, and how it waits.

A row says how to make the listening, accepted and connecting ends for one line of
the table, how each end waits for data (its completion style), and what
``fast_path_active`` must read on both ends. The two sides each build their own end
from the row's key (they are separate processes).

Completion styles: "wait" parks in the blocking call; "poll" spins; "adaptive"
spins a little, then parks. Ring sockets get theirs from ``SO_BUSY_POLL`` (0: park
at once; 1,000,000 µs: spin up to a second; unset: the ring's adaptive default),
set on both connected ends after connect/accept (a listener's value is not what an
accepted ring socket reads, and 0 set before connect is not carried over). Kernel
sockets get theirs from :mod:`.channels`.

To add a row, add a :class:`SocketRow` (or a :mod:`.peers` row) to ``ROWS``; order
there is order in the table. ``modes`` says which modes run the row by default.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import socket as _LoopfastSocket
from .channels import AdaptiveChannel, SpinChannel
from .conn import Address, Conn, FastPathMismatchError, Row, RowUnavailableError

__all__ = [
    "ALL_MODES",
    "BASELINE",
    "ROWS",
    "SO_BUSY_POLL",
    "STYLES",
    "Address",
    "Conn",
    "FastPathMismatchError",
    "Row",
    "RowUnavailableError",
    "SocketRow",
]

SO_BUSY_POLL = 46
STYLES = ("wait", "adaptive", "poll")
ALL_MODES = frozenset({"echo", "throughput", "setup", "many", "idle"})
_RING_BUSY_POLL = {"wait": 0, "poll": 1_000_000}  # adaptive: leave the ring's default

SocketFactory = Callable[[socket.AddressFamily], socket.socket]


# The ring needs loopfast's C core; the bench asks the import system, not loopfast's
# internals (it uses the public API only), and skips the ring rows without it.
_C_CORE = importlib.util.find_spec("loopfast._ring") is not None


def _stdlib(family: socket.AddressFamily) -> socket.socket:
    return socket.socket(family, socket.SOCK_STREAM)


def _loopfast(fast_path: bool | str) -> SocketFactory:
    def make(family: socket.AddressFamily) -> socket.socket:
        return _LoopfastSocket(family, socket.SOCK_STREAM, fast_path=fast_path)

    return make


@dataclass(frozen=True)
class SocketRow:
    """A row whose two ends are stream sockets made by ``factory``.

    Attributes:
        key: the name used by ``--rows`` and in the JSON document.
        label: the name shown in the table.
        family: AF_INET (loopback TCP, Nagle off) or AF_UNIX (an abstract name).
        factory: makes an unconnected stream socket of ``family``.
        style: the completion style, one of :data:`STYLES`.
        fast_path: what ``fast_path_active`` must be on both ends; ``None`` for
            sockets that have no such attribute (the stdlib's).
        transport: the ``fast_path_transport`` both ends must report ("ring",
            "stream"), or ``None``.
        modes: the modes that run this row unless ``--rows`` says otherwise.
    """

    key: str
    label: str
    family: socket.AddressFamily
    factory: SocketFactory
    style: str = "wait"
    fast_path: bool | None = None
    transport: str | None = None
    modes: frozenset[str] = field(default=frozenset({"echo"}))

    @property
    def optional(self) -> bool:
        """True for a ring row where loopfast has no C core: skipped, not failed."""
        return self.transport == "ring" and not _C_CORE

    def unavailable(self) -> str | None:
        """Return why this row cannot run here (a ring row without the C core), or ``None``."""
        if self.transport == "ring" and not _C_CORE:
            return ("no ring transport here: loopfast was installed without its C core "
                    "(loopfast._ring); `loopfast info` says why")
        return None

    def listen(self, backlog: int = 1) -> tuple[socket.socket, Address]:
        """Make the server's listening socket on loopback; return it with its address.

        Raises:
            OSError: if the socket cannot be made, bound or put in listening state.
        """
        sock = self.factory(self.family)
        try:
            if self.family == socket.AF_UNIX:
                address: Address = f"\0loopfast-bench/{os.getpid()}/{secrets.token_hex(8)}"
                sock.bind(address)
            else:
                sock.bind(("127.0.0.1", 0))
                host, port = sock.getsockname()[:2]
                address = (host, port)
            sock.listen(backlog)
        except BaseException:
            sock.close()
            raise
        return sock, address

    def accept(self, listener: Any, timeout: float) -> Conn:
        """Accept a connection within ``timeout`` seconds; return it blocking, styled.

        Raises:
            TimeoutError: if nobody connects in time.
            OSError: whatever accept or setsockopt raises.
        """
        listener.settimeout(timeout)
        sock, _ = listener.accept()
        return self._prepare(sock)

    def connect(self, address: Address, timeout: float) -> Conn:
        """Connect to the server within ``timeout`` seconds; return the end blocking, styled.

        Raises:
            TimeoutError: if the connection is not made in time.
            OSError: whatever connect or setsockopt raises.
        """
        sock = self.factory(self.family)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
        return self._prepare(sock)

    def check(self, conn: Conn, side: str) -> bool | None:
        """Return ``fast_path_active`` of the end (``None`` for stdlib sockets), as required.

        Raises:
            FastPathMismatchError: if it (or the transport) is not the row's.
        """
        if self.fast_path is None:
            return None
        active = getattr(conn.handle, "fast_path_active", None)
        if active is None:
            raise FastPathMismatchError(f"row {self.key!r}: the {side}'s socket has no "
                                        "fast_path_active attribute")
        if bool(active) != self.fast_path:
            raise FastPathMismatchError(
                f"row {self.key!r}: fast_path_active is {bool(active)} on the {side}, "
                f"the row requires {self.fast_path}")
        transport = getattr(conn.handle, "fast_path_transport", None)
        if self.transport is not None and transport != self.transport:
            raise FastPathMismatchError(
                f"row {self.key!r}: fast_path_transport is {transport!r} on the {side}, "
                f"the row requires {self.transport!r}")
        return bool(active)

    def _prepare(self, sock: socket.socket) -> Conn:
        try:
            sock.settimeout(None)
            if self.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            channel: Any = sock
            if self.transport == "ring":
                if self.style in _RING_BUSY_POLL:
                    sock.setsockopt(socket.SOL_SOCKET, SO_BUSY_POLL, _RING_BUSY_POLL[self.style])
            elif self.style == "poll":
                channel = SpinChannel(sock)
            elif self.style == "adaptive":
                channel = AdaptiveChannel(sock)
        except BaseException:
            sock.close()
            raise
        return Conn(channel, sock, lambda: sock.shutdown(socket.SHUT_WR), sock.close)


_TCP, _UNIX = socket.AF_INET, socket.AF_UNIX
_EVERY = ALL_MODES - {"idle"}
_SOME = frozenset({"echo", "throughput", "setup"})


def _socket_rows() -> list[SocketRow]:
    rows = [
        SocketRow("tcp", "stdlib TCP blocking", _TCP, _stdlib, modes=ALL_MODES),
        SocketRow("tcp-busy", "stdlib TCP busy-poll", _TCP, _stdlib, "poll",
                  modes=frozenset({"echo", "throughput"})),
        SocketRow("unix", "stdlib AF_UNIX blocking", _UNIX, _stdlib, modes=_EVERY),
    ]
    for style in STYLES:
        rows.append(SocketRow(f"off-{style}", f"loopfast off, {style}", _TCP, _loopfast(False),
                              style, fast_path=False,
                              modes=_SOME if style == "wait" else frozenset({"echo"})))
    for style in STYLES:
        modes = {"wait": frozenset({"echo", "many"}), "adaptive": ALL_MODES,
                 "poll": frozenset({"echo", "throughput"})}[style]
        rows.append(SocketRow(f"ring-{style}", f"loopfast ring, {style}", _TCP,
                              _loopfast("ring"), style, fast_path=True, transport="ring",
                              modes=modes))
    rows.append(SocketRow("stream", "loopfast stream, wait", _TCP, _loopfast("stream"),
                          fast_path=True, transport="stream", modes=_EVERY))
    return rows


def _all_rows() -> dict[str, Row]:
    from .peers import PEER_ROWS

    rows: list[Row] = [*_socket_rows(), *PEER_ROWS]
    return {row.key: row for row in rows}


ROWS: dict[str, Row] = _all_rows()
BASELINE = "tcp"
