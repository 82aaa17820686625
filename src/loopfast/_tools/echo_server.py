"""The seed's WSAPoll echo server (SPEC P10): one listening socket, up to N clients, one array.

As in the seed: ``fdarray[0]`` is the listener with POLLRDNORM, the other N
slots start as INVALID_SOCKET (None here); POLLRDNORM on the listener means
accept, on a client means receive (and echo), POLLHUP means close.

Decisions the seed leaves open:
- A full server *queues* the next client: the listener's slot is skipped (fd
  None) while all N slots are taken, so the kernel holds new connections in the
  listen backlog; they are accepted, and answered, as soon as a slot frees.
- Clients are non-blocking. What a client sent but does not read back waits in
  a per-client buffer (POLLWRNORM is asked for while it is not empty); past
  ``MAX_PENDING`` bytes the server stops reading that client until it drains.
- A client that vanishes (closes mid-message, resets, or errs) is closed; the
  others are not disturbed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import cast

from .._core.sockets import socket
from .._winsock.poll import PollFD, poll
from ..constants import POLLERR, POLLHUP, POLLNVAL, POLLRDNORM, POLLWRNORM

__all__ = ["MAX_PENDING", "EchoServer"]

MAX_PENDING = 1 << 20
_CHUNK = 65536


class EchoServer:
    """The seed's example: serve *listener* (listening) to at most *max_clients* at once.

    Args:
        listener: a listening socket (a loopfast one may have the fast path on).
        max_clients: N, the client slots (the seed's 15).
        poll_timeout_ms: the seed's 500; how often ``stop`` is looked at.
        log: called with one line per event (accept, close), if given.
    """

    def __init__(self, listener: socket, max_clients: int, poll_timeout_ms: int = 500,
                 log: Callable[[str], None] | None = None) -> None:
        if max_clients < 1:
            raise ValueError(f"max_clients must be at least 1, got {max_clients}")
        listener.setblocking(False)
        self.listener = listener
        self.fdarray = [PollFD(listener, POLLRDNORM)] + [
            PollFD(None, 0) for _ in range(max_clients)]
        self.pending: dict[int, bytearray] = {}  # slot -> bytes not yet echoed
        self.timeout = poll_timeout_ms
        self.log = log or (lambda _line: None)
        self.stop = threading.Event()

    @property
    def clients(self) -> int:
        """Clients being served now."""
        return sum(1 for entry in self.fdarray[1:] if entry.fd is not None)

    def serve_forever(self) -> None:
        """Poll and serve until ``stop`` is set; close every client on the way out.

        Raises:
            OSError: the listener failed (a client's failure closes only that client).
        """
        try:
            while not self.stop.is_set():
                self.serve_once()
        finally:
            for slot in range(1, len(self.fdarray)):
                if self.fdarray[slot].fd is not None:
                    self._close(slot, "server stopping")

    def serve_once(self) -> int:
        """One WSAPoll round (the seed's loop body); the number of entries that were ready."""
        wanted = None if self.clients == len(self.fdarray) - 1 else self.listener
        if self.fdarray[0].fd is not wanted:  # unchanged entries keep poll's cache warm
            self.fdarray[0].fd = wanted
        ready = poll(self.fdarray, self.timeout)
        if ready <= 0:
            return 0
        for slot, entry in enumerate(self.fdarray):
            revents = entry.revents
            if not revents:
                continue
            if slot == 0:
                self._accept()
            elif revents & (POLLRDNORM | POLLWRNORM):
                self._serve(slot, revents)
            elif revents & (POLLHUP | POLLERR | POLLNVAL):
                self._close(slot, "hung up")
        return ready

    def _accept(self) -> None:
        try:
            conn, addr = self.listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # gone before we came (or a fast-path hello not complete yet)
        slot = next(i for i, entry in enumerate(self.fdarray) if i and entry.fd is None)
        conn.setblocking(False)
        self.fdarray[slot].fd = conn
        self.fdarray[slot].events = POLLRDNORM
        self.pending[slot] = bytearray()
        self.log(f"accepted {addr} in slot {slot}")

    def _serve(self, slot: int, revents: int) -> None:
        entry = self.fdarray[slot]
        conn = cast(socket, entry.fd)
        out = self.pending[slot]
        try:
            if revents & POLLRDNORM:
                data = conn.recv(_CHUNK)
                if not data:
                    self._close(slot, "closed by the client")
                    return
                out += data
            if out:
                sent = conn.send(out)
                del out[:sent]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:  # reset, broken pipe: the client vanished
            self._close(slot, f"lost ({exc.strerror or exc})")
            return
        entry.events = (POLLRDNORM if len(out) < MAX_PENDING else 0) | (
            POLLWRNORM if out else 0)

    def _close(self, slot: int, why: str) -> None:
        entry = self.fdarray[slot]
        conn = entry.fd
        if isinstance(conn, socket):
            conn.close()
        entry.fd, entry.events = None, 0
        self.pending.pop(slot, None)
        self.log(f"slot {slot} {why}")
