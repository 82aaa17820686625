"""The rows of the table: which sockets each side of the echo uses.

A row says how to make the listening, accepted and connecting sockets for one line of
the table, and what ``fast_path_active`` must read on both ends. The echoer and the
sender each build their own side from the row's key (they are separate processes).

To add a row, add a :class:`SocketRow` (or another object with the same methods) to
``ROWS``; order there is order in the table. The first row is the baseline.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from .errors import BenchError

__all__ = [
    "BASELINE",
    "ROWS",
    "Address",
    "FastPathMismatchError",
    "RowUnavailableError",
    "SocketRow",
]

Address = str | tuple[str, int]
"""A listener's address as the sender needs it: ``(host, port)`` or an AF_UNIX name."""

SocketFactory = Callable[[socket.AddressFamily], socket.socket]


class RowUnavailableError(BenchError):
    """Raised when a row cannot run here (say, ``loopfast.socket`` is not built yet)."""


class FastPathMismatchError(BenchError):
    """Raised when ``fast_path_active`` on one end is not what the row requires."""


def _stdlib(family: socket.AddressFamily) -> socket.socket:
    return socket.socket(family, socket.SOCK_STREAM)


def _loopfast_class() -> Callable[..., socket.socket]:
    import loopfast

    cls = getattr(loopfast, "socket", None)
    if cls is None:
        raise RowUnavailableError("loopfast.socket does not exist yet (the fast path is not built)")
    return cast("Callable[..., socket.socket]", cls)


def _loopfast(fast_path: bool) -> SocketFactory:
    def make(family: socket.AddressFamily) -> socket.socket:
        return _loopfast_class()(family, socket.SOCK_STREAM, fast_path=fast_path)

    return make


@dataclass(frozen=True)
class SocketRow:
    """A row whose two ends are stream sockets made by ``factory``.

    Attributes:
        key: the name used by ``--rows`` and in the JSON document.
        label: the name shown in the table.
        family: AF_INET (loopback TCP, Nagle off) or AF_UNIX (an abstract name).
        factory: makes an unconnected stream socket of ``family``.
        fast_path: what ``fast_path_active`` must be on both ends; ``None`` for
            sockets that have no such attribute (the stdlib's).
    """

    key: str
    label: str
    family: socket.AddressFamily
    factory: SocketFactory
    fast_path: bool | None = None

    def unavailable(self) -> str | None:
        """Return why this row cannot run here, or ``None`` when it can."""
        if self.fast_path is None:
            return None
        try:
            _loopfast_class()
        except RowUnavailableError as exc:
            return str(exc)
        return None

    def listen(self) -> tuple[socket.socket, Address]:
        """Make the echoer's listening socket on loopback and return it with its address.

        Raises:
            RowUnavailableError: if the row's socket class does not exist.
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
            sock.listen(1)
        except BaseException:
            sock.close()
            raise
        return sock, address

    def accept(self, listener: socket.socket, timeout: float) -> socket.socket:
        """Accept the sender's connection within ``timeout`` seconds; return it blocking.

        Raises:
            TimeoutError: if nobody connects in time.
            OSError: whatever accept or setsockopt raises.
        """
        listener.settimeout(timeout)
        conn, _ = listener.accept()
        return self._prepare(conn)

    def connect(self, address: Address, timeout: float) -> socket.socket:
        """Connect to the echoer within ``timeout`` seconds; return the socket blocking.

        Raises:
            TimeoutError: if the connection is not made in time.
            OSError: whatever connect or setsockopt raises.
        """
        sock = self.factory(self.family)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            return self._prepare(sock)
        except BaseException:
            sock.close()
            raise

    def check(self, conn: socket.socket, side: str) -> bool | None:
        """Return ``conn.fast_path_active`` (``None`` for stdlib sockets), as the row requires.

        Raises:
            FastPathMismatchError: if the value is not the row's ``fast_path``.
        """
        if self.fast_path is None:
            return None
        active = getattr(conn, "fast_path_active", None)
        if active is None:
            raise FastPathMismatchError(f"row {self.key!r}: the {side}'s socket has no "
                                        "fast_path_active attribute")
        active = bool(active)
        if active != self.fast_path:
            raise FastPathMismatchError(
                f"row {self.key!r}: fast_path_active is {active} on the {side}, "
                f"the row requires {self.fast_path}"
            )
        return active

    def _prepare(self, conn: socket.socket) -> socket.socket:
        conn.settimeout(None)
        if self.family != socket.AF_UNIX:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn


ROWS: dict[str, SocketRow] = {
    row.key: row
    for row in (
        SocketRow("tcp", "stdlib TCP", socket.AF_INET, _stdlib),
        SocketRow("fastpath-off", "loopfast fast path off", socket.AF_INET, _loopfast(False),
                  fast_path=False),
        SocketRow("fastpath", "loopfast fast path", socket.AF_INET, _loopfast(True),
                  fast_path=True),
        SocketRow("unix", "stdlib AF_UNIX", socket.AF_UNIX, _stdlib),
    )
}
BASELINE = "tcp"
