"""LoopSpinner: spin on ring connections before a loop that is not a selector loop sleeps.

asyncio's selector loop asks its selector before it sleeps, and
``RingSelector`` spins there (aio_selector.py). uvloop sleeps inside libuv,
where no Python code runs, so it cannot be asked. Its ring connections ride
``aio_transport.SocketTransport``, and this spinner gives them the same
spin from the only place Python has in such a loop: a ``call_soon`` callback.

When a watched connection delivers data or writes (``kick()``), the spinner
queues itself once. When it runs it watches the rings of the loop's reading
ring connections with the GIL released (``_ring.spin_ready``, in C) for an
adaptive budget, looking at the loop's own epoll instance (libuv's backend
fd) every few microseconds. A ring that turns readable is handed straight to
its transport's reader, which queues the application's work and kicks the
spinner again, behind that work. An event on the loop's epoll ends the spin
at once, and the next run only queues itself again (a *pass*), so the I/O
callbacks the loop is about to run, and what they queue, run before the next
spin. When the budget runs out with nothing, the spinner stops: the loop
sleeps in epoll and the rings' bells wake it, as without it.

The budget is RingSelector's (``SpinBudget``): it grows while spinning pays,
halves when it does not, is nothing once the loop idles (then a kick queues
nothing) and is probed again every few waits. Its ceiling is the largest
``busy_poll_us`` among the watched connections (adaptive ones: 200 µs, as in
RingSelector); 0 on all of them turns spinning off.

Bounds: a timer due during a spin, or a callback queued behind the spinner
by another callback of the same round, runs at most one budget (200 µs by
default) late; I/O on the loop's other fds ends the spin within
``EPOLL_EVERY_NS``.

Invariants: ``_readers`` holds exactly the transports that are reading on a
live ring connection of this loop; ``_plan`` is None whenever it changed; at
most one run is queued (``_queued``); a ring reported readable is read (its
transport's reader) or settled before the run returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from typing import Any, Protocol

from . import ringcore
from .aio_selector import SpinBudget, channel_of

__all__ = ["EPOLL_EVERY_NS", "LoopSpinner", "RingReader", "spinner_for"]

EPOLL_EVERY_NS = 5_000  # how often a spin looks at the loop's epoll
_WANT_READ = 1
_spin_ready: Any = getattr(ringcore.ring, "spin_ready", None)  # None: no C core, no rings


class RingReader(Protocol):
    """What the spinner needs of a transport: its reader, called when its ring has data."""

    def _read_ready(self) -> None: ...


def _backend_fd(loop: asyncio.AbstractEventLoop) -> int:
    """The epoll fd the loop sleeps in, or -1 when it does not say.

    uvloop answers with libuv's ``uv_backend_fd`` (``Loop._get_backend_id``,
    which its own tests use); without it a spin cannot see the loop's other
    fds and only its budget bounds it.
    """
    get = getattr(loop, "_get_backend_id", None)
    try:
        fd = get() if get is not None else -1
    except Exception:  # a loop that cannot say is served without it
        return -1
    return fd if isinstance(fd, int) and fd >= 0 else -1


class LoopSpinner:
    """Spin-before-sleep for one event loop's ring connections (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)  # the registry's value must not keep its key alive
        self._epfd = _backend_fd(loop)
        self._readers: dict[Any, RingReader] = {}  # Channel -> transport
        self._plan: tuple[tuple[tuple[Any, int], ...], list[RingReader]] | None = None
        self._budget = SpinBudget()
        self._queued = False
        self._pass = False
        self._next = 0  # the queued run's budget, ns

    def watch(self, channel: Any, reader: RingReader) -> None:
        """Watch *channel* for *reader* (a transport that is reading)."""
        if self._readers.get(channel) is not reader:
            self._readers[channel] = reader
            self._plan = None

    def unwatch(self, channel: Any) -> None:
        """Stop watching *channel* (its transport paused, closed or lost)."""
        if self._readers.pop(channel, None) is not None:
            self._plan = None

    def kick(self) -> None:
        """Something moved on a watched connection: spin once the loop's queued work ran."""
        if self._queued or not self._readers:
            return
        budget = self._budget.next()
        if budget is None:  # the loop idles and this is no probe: sleep in epoll
            return
        self._next = budget
        self._requeue()

    def _requeue(self) -> None:
        loop = self._loop()
        if loop is not None and not loop.is_closed():
            self._queued = True
            loop.call_soon(self._run)

    def _run(self) -> None:
        self._queued = False
        if not self._readers:
            return
        if self._pass:  # let what the loop's I/O callbacks queued run first
            self._pass = False
            self._requeue()
            return
        budget = self._next
        if self._plan is None:
            readers = list(self._readers.values())
            self._plan = (tuple((channel, _WANT_READ) for channel in self._readers), readers)
        entries, readers = self._plan
        hits, epoll_ready, _at, spun, cap = _spin_ready(entries, self._epfd, budget,
                                                        EPOLL_EVERY_NS)
        if spun or not hits:  # a first look that found something changes nothing
            self._budget.spun(budget, bool(hits) or epoll_ready, cap)
        if epoll_ready:  # libuv runs its I/O callbacks next: they, and what they queue, first
            self._pass = True
            if not hits:  # (a hit's reader kicks us again)
                self._requeue()
        for index, _bits in hits:
            channel, _want = entries[index]
            reader = readers[index]
            if self._readers.get(channel) is reader is not None:
                reader._read_ready()  # reads (settling the ring) and kicks us again
            else:  # stopped reading meanwhile (an earlier reader's callback): give it its bell
                with contextlib.suppress(OSError):
                    channel.settle()


_spinners: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopSpinner] = (
    weakref.WeakKeyDictionary())


def spinner_for(loop: asyncio.AbstractEventLoop, sock: Any) -> tuple[LoopSpinner, Any] | None:
    """The loop's spinner and *sock*'s Channel, or None when *sock* is no ring connection.

    Only for loops that are not selector loops (those spin in RingSelector).
    """
    if _spin_ready is None:
        return None
    channel = channel_of(sock, sock.fileno())
    if channel is None:
        return None
    spinner = _spinners.get(loop)
    if spinner is None:
        spinner = _spinners[loop] = LoopSpinner(loop)
    return spinner, channel
