"""Completion styles for kernel sockets, done in the loop that waits (as user-mode polling).

A kernel socket (stdlib TCP, AF_UNIX, loopfast with the fast path off) has one way
to wait: the blocking call parks the thread ("wait"). The Windows table's "poll"
rows kept the thread on the CPU instead; on Linux loopback the kernel's
``SO_BUSY_POLL`` does nothing (there is no NIC queue to poll), so here the thread
spins on ``recv_into(..., MSG_DONTWAIT)`` itself:

- :class:`SpinChannel` ("poll"): spin until data, end of stream or an error;
- :class:`AdaptiveChannel` ("adaptive"): spin up to ``budget_ns``, then park in the
  blocking call, as the ring's default spin-then-park does.

Ring sockets need neither: their completion style is ``SO_BUSY_POLL`` (see rows).
"""

from __future__ import annotations

import socket
import time
from typing import Any

__all__ = ["ADAPTIVE_BUDGET_NS", "AdaptiveChannel", "SpinChannel"]

ADAPTIVE_BUDGET_NS = 50_000
"""The spin budget of :class:`AdaptiveChannel`: the ring's adaptive ceiling (50 µs)."""

_DONTWAIT = socket.MSG_DONTWAIT


class SpinChannel:
    """A blocking socket's ``sendall``, with a ``recv_into`` that never parks.

    Args:
        sock: a connected, blocking stream socket.
    """

    __slots__ = ("_recv", "sendall")

    def __init__(self, sock: socket.socket) -> None:
        self.sendall = sock.sendall
        self._recv = sock.recv_into

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """``recv_into`` with MSG_DONTWAIT in a loop until something (or EOF) arrives."""
        recv, flags = self._recv, flags | _DONTWAIT
        while True:
            try:
                return recv(buffer, nbytes, flags)
            except BlockingIOError:
                continue


class AdaptiveChannel:
    """A blocking socket's ``sendall``, with a ``recv_into`` that spins, then parks.

    Args:
        sock: a connected, blocking stream socket.
        budget_ns: how long to spin on MSG_DONTWAIT before the blocking call.
    """

    __slots__ = ("_budget", "_recv", "sendall")

    def __init__(self, sock: socket.socket, budget_ns: int = ADAPTIVE_BUDGET_NS) -> None:
        self.sendall = sock.sendall
        self._recv = sock.recv_into
        self._budget = budget_ns

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """``recv_into``: spin with MSG_DONTWAIT for the budget, then block."""
        recv, clock = self._recv, time.perf_counter_ns
        deadline = clock() + self._budget
        while True:
            try:
                return recv(buffer, nbytes, flags | _DONTWAIT)
            except BlockingIOError:
                if clock() >= deadline:
                    return recv(buffer, nbytes, flags)
