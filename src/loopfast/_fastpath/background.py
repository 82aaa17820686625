"""The one background thread of a process using the fast path, and only while it does.

Two things cannot wait for the application to call into loopfast: a ring peer
that dies cannot ring our bell (so an application in ``select()`` would never
see it), and ``loopfast stat`` asks a process for its connections at any time.
Both, and the periodic give-back of idle rings' pages, are served by one
daemon thread with one epoll instance:

- ``watch(fd, handler)`` registers *fd*; the thread calls ``handler(events)``
  when epoll reports it (peer death: EPOLLHUP, which comes unasked);
- ``every(tick)`` adds a function called each ``TICK`` seconds (ring trims,
  the stat registry's check for connections still open).

The thread starts with the first ``watch`` and ends, closing its epoll
instance, at the first tick that finds nothing watched. The stat endpoint
(``registry.py``) stays watched ``registry.LINGER`` seconds after the last
fast-path connection closed, so within ``registry.CLOSED_WITHIN`` (2 s) of
that nothing of loopfast runs in the process (CPython's own tests check that no
thread outlives a test), and a process connecting once a second keeps one
thread instead of starting one per connection. A forked child has no thread;
it starts its own when it needs one.
"""

from __future__ import annotations

import logging
import os
import select
import threading
from collections.abc import Callable

TICK = 0.5

Handler = Callable[[int], None]
_log = logging.getLogger("loopfast")


class Background:
    """The thread and its epoll instance (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._epoll: select.epoll | None = None
        self._handlers: dict[int, Handler] = {}
        self._ticks: list[Callable[[], None]] = []
        self._kept = 0
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        # The thread did not come along; what the parent watched is the parent's.
        self._lock = threading.Lock()
        self._epoll = None
        self._handlers = {}
        self._kept = 0

    def watch(self, fd: int, handler: Handler, events: int = 0) -> None:
        """Call ``handler(events)`` in the thread when epoll reports *fd* (started if need be).

        Raises:
            OSError: the epoll instance could not be made or *fd* registered (EMFILE...).
        """
        with self._lock:
            epoll = self._running_locked()
            epoll.register(fd, events)
            self._handlers[fd] = handler

    def forget(self, fd: int, handler: Handler | None = None) -> None:
        """Stop watching *fd* (only if *handler* is its handler, when given).

        Call it before *fd* is closed. A no-op for an fd not watched.
        """
        with self._lock:
            if fd not in self._handlers or handler not in (None, self._handlers[fd]):
                return
            del self._handlers[fd]
            if self._epoll is not None:
                self._epoll.unregister(fd)

    def every(self, tick: Callable[[], None]) -> None:
        """Call *tick* every ``TICK`` seconds while the thread runs (for good, once added)."""
        with self._lock:
            self._ticks.append(tick)

    def keep(self) -> None:
        """Keep the thread running even with nothing watched (tests that count fds)."""
        with self._lock:
            self._kept += 1
            self._running_locked()

    def running(self) -> bool:
        """True while the thread runs."""
        with self._lock:
            return self._epoll is not None

    def _running_locked(self) -> select.epoll:
        if self._epoll is None:
            self._epoll = select.epoll()
            threading.Thread(target=self._run, args=(self._epoll,), daemon=True,
                             name="loopfast").start()
        return self._epoll

    def _run(self, epoll: select.epoll) -> None:
        while True:
            for fd, events in epoll.poll(TICK):
                with self._lock:
                    handler = self._handlers.get(fd)
                if handler is not None:
                    self._call(handler, events)
            with self._lock:
                ticks = list(self._ticks)
            for tick in ticks:
                self._call(tick)
            with self._lock:
                if not self._handlers and not self._kept and self._epoll is epoll:
                    self._epoll = None
                    epoll.close()
                    return

    @staticmethod
    def _call(fn: Callable[..., None], *args: int) -> None:
        try:
            fn(*args)
        except Exception:  # one failing duty must not end the others
            _log.exception("loopfast: background task %r failed", fn)


background = Background()
