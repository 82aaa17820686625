"""The echo workload: the message, the echoer's loop and the sender's timed loop.

The experiment is the Windows team's: the sender writes a 64-byte message whose first
8 bytes are its origination timestamp, the echoer sends every message back unchanged,
and the sender, having read all 64 bytes of the echo, takes the time again and
subtracts the timestamp carried back in the message.

Message layout (little-endian):

    offset 0   int64  origination timestamp, ``time.perf_counter_ns()`` (CLOCK_MONOTONIC)
    offset 8   int64  sequence number, 0 for the first warm-up message
    offset 16  bytes  48 bytes of a fixed pattern, up to MESSAGE_SIZE

Only the interval between the timestamp and the second clock read is measured; the
integrity check (the echo must equal what was sent) and the bookkeeping run outside it.

The throughput mode's loops are here too: :func:`pour` sends messages of a chosen
size for a while, :func:`drain` reads them and times the arrival of the bytes.
"""

from __future__ import annotations

import struct
import time
from array import array
from collections.abc import Callable
from typing import Protocol

__all__ = [
    "MESSAGE_SIZE",
    "Channel",
    "EchoMismatchError",
    "drain",
    "echo",
    "measure",
    "pour",
]

MESSAGE_SIZE = 64
_HEADER = struct.Struct("<qq")
_PATTERN = bytes(range(MESSAGE_SIZE - _HEADER.size))


class Channel(Protocol):
    """What the workload needs of a connection: the two calls of a stream socket."""

    def sendall(self, data: bytes | bytearray | memoryview, flags: int = ..., /) -> None:
        """Send all of ``data``, as :meth:`socket.socket.sendall`."""

    def recv_into(self, buffer: bytearray | memoryview, nbytes: int = ..., flags: int = ...,
                  /) -> int:
        """Receive into ``buffer``, as :meth:`socket.socket.recv_into`."""


class EchoMismatchError(ConnectionError):
    """Raised when an echo differs from the message sent, or the peer closes mid-message."""


def _recv_exact(recv_into: Callable[..., int], view: memoryview, got: int) -> None:
    """Finish reading a message of which ``got`` bytes (fewer than all) have arrived."""
    while got < MESSAGE_SIZE:
        n = recv_into(view[got:], MESSAGE_SIZE - got)
        if n == 0:
            raise EchoMismatchError(f"peer closed the connection after {got} of a message's "
                                    f"{MESSAGE_SIZE} bytes")
        got += n


def echo(conn: Channel) -> int:
    """Echo every 64-byte message back until the peer closes the connection.

    Args:
        conn: a connected stream socket (blocking).

    Returns:
        The number of messages echoed.

    Raises:
        EchoMismatchError: if the peer closes in the middle of a message.
        OSError: whatever the socket raises.
    """
    buf = bytearray(MESSAGE_SIZE)
    view = memoryview(buf)
    recv_into, sendall = conn.recv_into, conn.sendall
    echoed = 0
    while True:
        got = recv_into(view, MESSAGE_SIZE)
        if got == 0:
            return echoed
        if got < MESSAGE_SIZE:
            _recv_exact(recv_into, view, got)
        sendall(buf)
        echoed += 1


def measure(conn: Channel, first_seq: int, rounds: int, out: array[int] | None) -> None:
    """Run ``rounds`` timed round trips and append each RTT (ns) to ``out``.

    Args:
        conn: a connected stream socket (blocking) whose peer runs :func:`echo`.
        first_seq: the sequence number of the first message.
        rounds: how many round trips to run.
        out: where the RTTs go, or ``None`` to discard them (warm-up).

    Raises:
        EchoMismatchError: if an echo differs from the message sent or the peer closes.
        OSError: whatever the socket raises.
    """
    sent = bytearray(MESSAGE_SIZE)
    sent[_HEADER.size :] = _PATTERN
    back = bytearray(MESSAGE_SIZE)
    view = memoryview(back)
    clock, pack, unpack = time.perf_counter_ns, _HEADER.pack_into, _HEADER.unpack_from
    recv_into, sendall = conn.recv_into, conn.sendall
    keep = out.append if out is not None else None
    for seq in range(first_seq, first_seq + rounds):
        pack(sent, 0, clock(), seq)
        sendall(sent)
        got = recv_into(view, MESSAGE_SIZE)
        if got < MESSAGE_SIZE:
            _recv_exact(recv_into, view, got)
        now = clock()
        if back != sent:
            raise EchoMismatchError(f"echo of message {seq} differs from what was sent")
        if keep is not None:
            keep(now - unpack(back)[0])


def pour(conn: Channel, size: int, duration_ns: int) -> int:
    """Send ``size``-byte messages for ``duration_ns``; return the bytes sent.

    The clock is read once per message; the caller ends the data afterwards (``finish``).

    Raises:
        OSError: whatever the socket raises.
    """
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    sendall, clock = conn.sendall, time.perf_counter_ns
    deadline = clock() + duration_ns
    sent = 0
    while clock() < deadline:
        sendall(data)
        sent += size
    return sent


def drain(conn: Channel, size: int) -> tuple[int, int, int, int]:
    """Read until the end of the data, ``size`` bytes at a time at most.

    Returns:
        ``(bytes, first_bytes, first_ns, last_ns)``: all bytes read, the bytes of the
        first read, the clock (``perf_counter_ns``) after the first read and after the
        last one; zeros if nothing came. The rate is
        ``(bytes - first_bytes) / (last_ns - first_ns)``.

    Raises:
        OSError: whatever the socket raises.
    """
    buf = bytearray(size)
    view = memoryview(buf)
    recv_into, clock = conn.recv_into, time.perf_counter_ns
    total = first_bytes = first = last = 0
    while got := recv_into(view, size):
        last = clock()
        if not total:
            first_bytes, first = got, last
        total += got
    return total, first_bytes, first, last
