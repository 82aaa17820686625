"""RingSelector: an epoll selector that watches its ring connections' rings before it sleeps.

asyncio's selector loop asks its selector for events once per iteration. With
a plain ``EpollSelector`` every message on a ring connection then costs a bell
(a byte into the consumer's fd, one syscall), an epoll wake-up (a cross-CPU
wake-up, tens of microseconds) and a drain. ``RingSelector`` first looks at
the rings of the ring connections registered with it (no syscall) and, when
none is ready and the caller would block, spins on them for an adaptive budget
with the GIL released (``_ring.spin_ready``, in C), looking at epoll every few
microseconds for the other fds; only then does it sleep in epoll as before.
While it spins its rings are marked so producers publish without a bell.

The budget follows the blocking calls' (``wait_for`` in ``_ring.c``): it grows
while spinning pays (something arrives within it), halves when it does not,
is nothing once the loop idles, and is probed again every ``PROBE_EVERY``
waits. Its ceiling is the largest ``busy_poll_us`` (SO_BUSY_POLL) among the
watched connections; adaptive ones (the default) count 200 µs here, more than
a blocking call's 50 µs: a loop waits for a peer that runs Python between
messages (50-200 µs a request for an HTTP framework), and a spin that ends
before the answer costs a wake-up on both sides. 0 on all of them turns
spinning off.

Invariants:
- ``_rings`` maps every registered fd that is a live ring connection's fileno
  to its Channel; ``_plan`` (what spin_ready takes) is None whenever a ring
  fd's registration changed since it was built.
- A channel reported readable from its ring alone has no bell in its fd: it is
  in ``_owed`` until the next select, and settled (``Channel.settle``: its fd
  level-true again) if the caller stops watching it for reading before then.
- The spin never outlasts the select's timeout; a select with a timeout of 0
  never spins. While rings keep the loop busy, epoll is still looked at at
  least every ``FAIR_NS``, so other fds are served.
"""

from __future__ import annotations

import contextlib
import selectors
import time
from collections.abc import Callable
from typing import Any

from .._fastpath import ring_link
from . import ringcore

__all__ = ["RingSelector", "SpinBudget", "channel_of", "install", "installed", "uninstall"]

DEFAULT_CAP_NS = 200_000  # an adaptive channel's ceiling in a loop (_ring.c's LOOP_SPIN_MAX_NS)
EPOLL_EVERY_NS = 10_000  # how often the spin looks at epoll
FAIR_NS = 50_000  # longest time ring readiness may be reported without a look at epoll
PROBE_EVERY = 16  # waits between probes once the budget shrank to nothing
_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
_spin_ready: Any = getattr(ringcore.ring, "spin_ready", None)  # None: no C core, no rings


class SpinBudget:
    """The adaptive spin budget, in ns (see the module docstring)."""

    __slots__ = ("cap", "ns", "waits")

    def __init__(self) -> None:
        self.cap = DEFAULT_CAP_NS
        self.ns = DEFAULT_CAP_NS
        self.waits = 0

    def next(self) -> int | None:
        """This wait's budget; None when the loop idles and this is no probe."""
        if self.ns:
            return self.ns
        self.waits += 1
        return self.cap if self.waits % PROBE_EVERY == 0 else None

    def spun(self, used: int, paid: bool, cap: int) -> None:
        self.cap = cap
        if paid:
            self.ns = min(cap, used * 2 + 1000)
        else:
            half = min(cap, self.ns // 2)
            self.ns = half if half >= 1000 else 0


def channel_of(fileobj: Any, fd: int) -> Any:
    """The Channel of the live ring connection whose fileno *fd* is, or None."""
    if ringcore.ring is None:
        return None
    channel = getattr(fileobj, "_channel", None)
    if isinstance(channel, ringcore.ring.Channel):
        return channel
    link = ring_link.link_of(fd)
    return None if link is None else link.channel


class RingSelector(selectors.EpollSelector):
    """``selectors.EpollSelector`` that spins on registered ring connections before it sleeps."""

    # _BaseSelectorImpl's own state and helper (typeshed leaves them out)
    _fd_to_key: dict[int, selectors.SelectorKey]
    _fileobj_lookup: Callable[[Any], int]

    def __init__(self) -> None:
        super().__init__()
        self._epfd = self.fileno()
        self._rings: dict[int, Any] = {}  # fd -> Channel
        self._plan: tuple[tuple[tuple[Any, int], ...], list[int]] | None = None
        self._owed: set[int] = set()
        self._budget = SpinBudget()
        self._epoll_at = 0

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        """As ``EpollSelector.register``; a ring connection's fd is watched on its rings too."""
        key = super().register(fileobj, events, data)
        channel = channel_of(fileobj, key.fd)
        if channel is not None:
            self._rings[key.fd] = channel
            self._plan = None
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        """As ``EpollSelector.unregister``."""
        key = super().unregister(fileobj)
        channel = self._rings.pop(key.fd, None)
        if channel is not None:
            self._plan = None
            self._settle(key.fd, channel)
        return key

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        """As ``EpollSelector.modify``."""
        before = self._fd_to_key.get(self._fileobj_lookup(fileobj))
        key = super().modify(fileobj, events, data)
        channel = self._rings.get(key.fd)
        if channel is not None and (before is None or before.events != events):
            self._plan = None
            if not events & _READ:
                self._settle(key.fd, channel)
        return key

    def close(self) -> None:
        """As ``EpollSelector.close``; rings reported readable get their bells back."""
        for fd in list(self._owed):
            channel = self._rings.get(fd)
            if channel is not None:
                self._settle(fd, channel)
        self._rings.clear()
        self._plan = None
        super().close()

    def _settle(self, fd: int, channel: Any) -> None:
        # Reported readable without a bell, and nobody will read it here now.
        if fd in self._owed:
            self._owed.discard(fd)
            with contextlib.suppress(OSError):  # closed meanwhile: nothing to make level-true
                channel.settle()

    def _make_plan(self) -> tuple[tuple[tuple[Any, int], ...], list[int]]:
        fds = list(self._rings)
        entries = tuple((self._rings[fd], self._fd_to_key[fd].events) for fd in fds)
        self._plan = (entries, fds)
        return self._plan

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        """As ``EpollSelector.select``; ring connections are looked at (and spun on) first."""
        if not self._rings:
            return super().select(timeout)
        wait = None if timeout is None else max(0, int(timeout * 1e9))
        budget = self._budget.next() if wait != 0 else None
        if budget is None and not self._owed:
            # No spin, and no ring holds data its fd does not show (only a spin, or
            # a hit not read yet, leaves such data): epoll alone answers, and the
            # rings' pages are not touched (an idle loop's rings are cold).
            return self._epoll(timeout)
        budget = budget or 0
        if wait is not None and budget > wait:
            budget = wait
        entries, fds = self._plan or self._make_plan()
        start = time.monotonic_ns()
        hits, epoll_ready, epoll_at, spun, cap = _spin_ready(entries, self._epfd, budget,
                                                             EPOLL_EVERY_NS)
        if epoll_at:
            self._epoll_at = epoll_at
        if spun or (wait != 0 and not hits):  # a first look that found something changes nothing
            self._budget.spun(budget, bool(hits) or epoll_ready, cap)
        if not hits and not epoll_ready:
            self._owed.clear()
            now = time.monotonic_ns()
            if wait == 0 and now - self._epoll_at < FAIR_NS:
                return []  # the loop has work; epoll was looked at lately
            if wait:
                timeout = max(0.0, (wait - (now - start)) / 1e9)
            return self._epoll(timeout)
        return self._merge(hits, fds, epoll_ready)

    def _epoll(self, timeout: float | None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(timeout)
        self._epoll_at = time.monotonic_ns()
        return events

    def _merge(self, hits: list[tuple[int, int]], fds: list[int],
               epoll_ready: bool) -> list[tuple[selectors.SelectorKey, int]]:
        """The ring hits, and epoll's events when it has some or was not looked at lately."""
        ready: dict[int, tuple[selectors.SelectorKey, int]] = {}
        now = time.monotonic_ns()
        if epoll_ready or now - self._epoll_at >= FAIR_NS:
            self._epoll_at = now
            for key, events in super().select(0):
                ready[key.fd] = (key, events)
        owed = self._owed
        owed.clear()
        to_key = self._fd_to_key
        for index, bits in hits:
            fd = fds[index]
            key = to_key[fd]
            if bits & _READ:
                owed.add(fd)
            seen = ready.get(fd)
            ready[fd] = (key, (bits | (seen[1] if seen else 0)) & key.events)
        return list(ready.values())


_selectors: Any = selectors  # DefaultSelector is rebound: a name the stubs fix to one class
_previous: Any = None


def install() -> None:
    """Make ``selectors.DefaultSelector`` RingSelector (asyncio's selector loop makes one)."""
    global _previous
    if _selectors.DefaultSelector is not RingSelector:
        _previous = _selectors.DefaultSelector
        _selectors.DefaultSelector = RingSelector


def uninstall() -> None:
    """Put back the ``selectors.DefaultSelector`` that install() replaced."""
    global _previous
    if _previous is not None and _selectors.DefaultSelector is RingSelector:
        _selectors.DefaultSelector = _previous
    _previous = None


def installed() -> bool:
    """True while ``selectors.DefaultSelector`` is RingSelector."""
    return _selectors.DefaultSelector is RingSelector
