"""Peers as extra rows: multiprocessing's Pipe and pyzmq's ipc transport.

Both are message-based, so a message sent is a message received whole, and the end
of the data is an empty message (``finish``). When a peer's package is missing, the
row is skipped with the reason, never failed (``optional``).

- ``mp-pipe``: ``multiprocessing.connection.Connection`` over an AF_UNIX stream, the
  object ``multiprocessing.Pipe()`` returns (there on a socketpair; here the two
  processes are unrelated, so the stream is connected through an abstract name, as
  ``multiprocessing.connection.Listener`` does). Each message: a 4-byte length, then
  the bytes.
- ``zmq-ipc``: two zmq PAIR sockets over ``ipc://@name`` (an abstract AF_UNIX name);
  libzmq's I/O thread carries the data, so each process has two threads here.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import socket
from dataclasses import dataclass, field
from typing import Any

from .conn import Address, Conn

__all__ = ["PEER_ROWS", "MpPipeRow", "ZmqRow"]

_PEER_MODES = frozenset({"echo", "throughput"})


def _abstract_name(prefix: str) -> str:
    return f"loopfast-bench/{prefix}/{os.getpid()}/{secrets.token_hex(8)}"


class _MpChannel:
    __slots__ = ("_recv", "sendall")

    def __init__(self, conn: Any) -> None:
        self.sendall = conn.send_bytes
        self._recv = conn.recv_bytes_into

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        return int(self._recv(buffer))


@dataclass(frozen=True)
class MpPipeRow:
    """``multiprocessing.Pipe``'s Connection between the two processes."""

    key: str = "mp-pipe"
    label: str = "multiprocessing.Pipe"
    modes: frozenset[str] = field(default=_PEER_MODES)
    optional = True

    def unavailable(self) -> str | None:
        """Return why the row cannot run here (never: multiprocessing is the stdlib's)."""
        return None

    def listen(self, backlog: int = 1) -> tuple[socket.socket, Address]:
        """Listen on an abstract AF_UNIX name."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            address = "\0" + _abstract_name("mp")
            sock.bind(address)
            sock.listen(backlog)
        except BaseException:
            sock.close()
            raise
        return sock, address

    def accept(self, listener: Any, timeout: float) -> Conn:
        """Accept the client; wrap the stream as multiprocessing's Listener.accept does."""
        listener.settimeout(timeout)
        sock, _ = listener.accept()
        return self._wrap(sock)

    def connect(self, address: Address, timeout: float) -> Conn:
        """Connect; wrap the stream as multiprocessing's Client does."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
        return self._wrap(sock)

    def check(self, conn: Conn, side: str) -> bool | None:
        """No fast path here."""
        return None

    @staticmethod
    def _wrap(sock: socket.socket) -> Conn:
        from multiprocessing.connection import Connection

        sock.settimeout(None)
        conn = Connection(sock.detach())
        return Conn(_MpChannel(conn), conn, lambda: conn.send_bytes(b""), conn.close)


class _ZmqChannel:
    __slots__ = ("_recv", "_recv_into", "_send")

    def __init__(self, sock: Any) -> None:
        self._send = sock.send
        self._recv_into = getattr(sock, "recv_into", None)  # pyzmq >= 26.4
        self._recv = sock.recv

    def sendall(self, data: Any, flags: int = 0) -> None:
        self._send(data, copy=True)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        if self._recv_into is not None:
            return int(self._recv_into(buffer))
        data = self._recv(copy=True)
        memoryview(buffer)[: len(data)] = data
        return len(data)


@dataclass(frozen=True)
class ZmqRow:
    """Two pyzmq PAIR sockets over ipc (skipped with the reason when pyzmq is missing)."""

    key: str = "zmq-ipc"
    label: str = "pyzmq PAIR ipc"
    module: str = "zmq"
    modes: frozenset[str] = field(default=_PEER_MODES)
    optional = True

    def unavailable(self) -> str | None:
        """Return why pyzmq cannot be used here, or ``None``."""
        try:
            found = importlib.util.find_spec(self.module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return (f"pyzmq is not installed (pip install 'loopfast[bench]'; module "
                    f"{self.module!r} not found)")
        zmq = importlib.import_module(self.module)
        if not zmq.has("ipc"):
            return "this libzmq has no ipc transport"
        return None

    def _socket(self) -> Any:
        zmq = importlib.import_module(self.module)
        sock = zmq.Context.instance().socket(zmq.PAIR)
        sock.setsockopt(zmq.LINGER, 0)
        return sock

    def listen(self, backlog: int = 1) -> tuple[Any, Address]:
        """Bind a PAIR socket to ``ipc://@name``."""
        sock = self._socket()
        address = "ipc://@" + _abstract_name("zmq")
        try:
            sock.bind(address)
        except BaseException:
            sock.close()
            raise
        return sock, address

    def accept(self, listener: Any, timeout: float) -> Conn:
        """The bound PAIR socket is the server's end (zmq has no accept)."""
        return self._wrap(listener)

    def connect(self, address: Address, timeout: float) -> Conn:
        """Connect a PAIR socket (zmq connects in the background)."""
        sock = self._socket()
        try:
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
        return self._wrap(sock)

    def check(self, conn: Conn, side: str) -> bool | None:
        """No fast path here."""
        return None

    @staticmethod
    def _wrap(sock: Any) -> Conn:
        return Conn(_ZmqChannel(sock), sock, lambda: sock.send(b""), sock.close)


PEER_ROWS = (MpPipeRow(), ZmqRow())
