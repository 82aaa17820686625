"""Fast-path arrivals whose hello has not come in yet, and what a listener says of refusals.

Every local user can connect to a rendezvous name and then say nothing, or
half a hello. Such arrivals are held here, bounded so that no peer can make a
listener hold more than a little, for long, or spend time on it:

- at most ``MAX_PER_UID`` per client uid and ``MAX_PENDING`` in all; holding
  one more drops the oldest of that uid (or the oldest of all), so a flood of
  silent arrivals rotates out of the table while honest clients, whose hello
  comes with the connection, are served at once;
- each for at most ``HELLO_DEADLINE`` seconds after it arrived (arrivals are
  kept in arrival order, so expiry looks only at the oldest);
- each registered edge-triggered in the listener's epoll: the listener looks
  at an arrival only when the kernel says more bytes came, never by scanning.

``Refusals`` logs a refused or dropped arrival at most once per client uid per
``LOG_PERIOD`` seconds, with a count of those it did not log.
"""

from __future__ import annotations

import _socket as _csocket
import logging
import select
import time
from collections import OrderedDict

from .._core.stdlib import PeerCredentials

HELLO_DEADLINE = 5.0
MAX_PENDING = 1024
MAX_PER_UID = 64
LOG_PERIOD = 10.0

_log = logging.getLogger("loopfast")
_EDGE = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET


class Pending:
    """The arrivals a listener holds until their hello is whole (see the module docstring)."""

    def __init__(self, epoll: select.epoll) -> None:
        self._epoll = epoll
        # fd -> (stream, deadline, the client's SO_PEERCRED), oldest first.
        self._held: OrderedDict[int, tuple[_csocket.socket, float, PeerCredentials]] = (
            OrderedDict())
        self._by_uid: dict[int, OrderedDict[int, None]] = {}

    def __contains__(self, fd: object) -> bool:
        return fd in self._held

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, conn: _csocket.socket,
             credentials: PeerCredentials) -> list[tuple[_csocket.socket, int]]:
        """Hold *conn* of the client *credentials* names (read once, kept for the hello's
        check); the (stream, uid) of arrivals dropped to make room.

        The caller closes what is returned.

        Raises:
            OSError: the epoll registration failed (*conn* is not held then).
        """
        dropped = []
        uid = credentials.uid
        mine = self._by_uid.get(uid)
        if mine is not None and len(mine) >= MAX_PER_UID:
            dropped.append(self._drop_uid(next(iter(mine))))
        if len(self._held) >= MAX_PENDING:
            dropped.append(self._drop_uid(next(iter(self._held))))
        fd = conn.fileno()
        self._epoll.register(fd, _EDGE)
        self._held[fd] = (conn, time.monotonic() + HELLO_DEADLINE, credentials)
        self._by_uid.setdefault(uid, OrderedDict())[fd] = None
        return dropped

    def get(self, fd: int) -> _csocket.socket | None:
        """The held stream at *fd*, or None."""
        entry = self._held.get(fd)
        return None if entry is None else entry[0]

    def take(self, fd: int) -> tuple[_csocket.socket, PeerCredentials]:
        """Stop holding the arrival at *fd*; its (stream, credentials). The caller owns
        the stream."""
        return self._drop(fd)

    def expired(self, now: float) -> list[tuple[_csocket.socket, int]]:
        """Stop holding every arrival past its deadline; their (stream, uid), to be closed."""
        gone = []
        while self._held:
            fd, (_conn, deadline, _uid) = next(iter(self._held.items()))
            if deadline > now:
                break
            gone.append(self._drop_uid(fd))
        return gone

    def clear(self, unregister: bool) -> None:
        """Close every held arrival. *unregister* False leaves the epoll instance alone
        (after fork() it is shared with the other process)."""
        for fd, (conn, _deadline, _uid) in list(self._held.items()):
            if unregister:
                self._epoll.unregister(fd)
            conn.close()
        self._held.clear()
        self._by_uid.clear()

    def _drop(self, fd: int) -> tuple[_csocket.socket, PeerCredentials]:
        conn, _deadline, credentials = self._held.pop(fd)
        mine = self._by_uid[credentials.uid]
        del mine[fd]
        if not mine:
            del self._by_uid[credentials.uid]
        self._epoll.unregister(fd)
        return conn, credentials

    def _drop_uid(self, fd: int) -> tuple[_csocket.socket, int]:
        conn, credentials = self._drop(fd)
        return conn, credentials.uid


class Refusals:
    """Logs refused and dropped fast-path arrivals of one listener, rate-limited per uid."""

    def __init__(self, host: str, port: int) -> None:
        self._where = f"{host}:{port}"
        self._last: dict[int, float] = {}
        self._quiet: dict[int, int] = {}

    def note(self, uid: int | None, why: object) -> None:
        """Say that an arrival of client *uid* (None: unknown) was refused or dropped, and why."""
        key = -1 if uid is None else uid
        now = time.monotonic()
        if now - self._last.get(key, -LOG_PERIOD) < LOG_PERIOD:
            self._quiet[key] = self._quiet.get(key, 0) + 1
            return
        if len(self._last) > 4096:  # many uids: forget the old ones, keep logging bounded
            self._last.clear()
            self._quiet.clear()
        self._last[key] = now
        more = self._quiet.pop(key, 0)
        who = "uid unknown" if uid is None else f"uid {uid}"
        _log.warning("loopfast: refused a fast-path client of %s (%s): %s%s", self._where, who,
                     why, f" (and {more} more in the last {LOG_PERIOD:.0f} s)" if more else "")
