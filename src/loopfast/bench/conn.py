"""What every row hands the workloads: one connected end (:class:`Conn`), and the row shape.

A :class:`Conn` pairs the object the measuring loops call (``channel``: ``sendall``
and ``recv_into``, nothing else on the hot path) with the underlying handle (a
socket, a multiprocessing Connection, a zmq socket), how to end the data one way
(``finish``: SHUT_WR, or an empty message for message-based peers) and how to close.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol

from .errors import BenchError

__all__ = ["Address", "Conn", "FastPathMismatchError", "Row", "RowUnavailableError"]

Address = str | tuple[str, int]
"""A listener's address as the client needs it: ``(host, port)`` or a name."""


class RowUnavailableError(BenchError):
    """Raised when a row cannot run here (its package is not installed, say)."""


class FastPathMismatchError(BenchError):
    """Raised when ``fast_path_active`` (or the transport) on one end is not the row's."""


class Conn:
    """One connected end of a row.

    Args:
        channel: what the loops call: ``sendall(data)`` and ``recv_into(buf, n)``;
            ``recv_into`` returns 0 at the end of the data.
        handle: the underlying object (its ``fileno()`` is used by selectors).
        finish: ends this side's data (the peer's ``recv_into`` then returns 0).
        close: releases the end.
    """

    __slots__ = ("_close", "channel", "finish", "handle")

    def __init__(self, channel: Any, handle: Any, finish: Callable[[], None],
                 close: Callable[[], None]) -> None:
        self.channel = channel
        self.handle = handle
        self.finish = finish
        self._close = close

    def fileno(self) -> int:
        """The handle's fd, for selectors."""
        return int(self.handle.fileno())

    def close(self) -> None:
        """Close the end (idempotent as the handle's close is)."""
        self._close()

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class Row(Protocol):
    """The shape of a row: a socket row (:mod:`.rows`) or a peer's (:mod:`.peers`)."""

    @property
    def key(self) -> str:
        """The name in ``--rows`` and the JSON document."""

    @property
    def label(self) -> str:
        """The name in the table."""

    @property
    def modes(self) -> frozenset[str]:
        """The modes that run this row by default."""

    @property
    def optional(self) -> bool:
        """True for peers: when unavailable the row is skipped, not failed."""

    def unavailable(self) -> str | None:
        """Why the row cannot run here, or ``None``."""

    def listen(self, backlog: int = 1) -> tuple[Any, Address]:
        """Start listening; return the listener and the address for the client."""

    def accept(self, listener: Any, timeout: float) -> Conn:
        """Accept one client within ``timeout`` seconds."""

    def connect(self, address: Address, timeout: float) -> Conn:
        """Connect to the server within ``timeout`` seconds."""

    def check(self, conn: Conn, side: str) -> bool | None:
        """``fast_path_active`` of the end, or ``None`` when the row has no fast path."""
