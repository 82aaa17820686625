"""loopfast.poll: WSAPoll over any mix of sockets, pipes and raw fds (SPEC P1-P9).

Every loopfast socket's ``fileno()`` is a kernel fd with true readiness (a
fast-path listener's is an epoll bundle, readable when a TCP or fast-path
connection waits; a ring-carried connection's is an AF_UNIX socket the ring
keeps level-true), so one ``select.poll`` over the fds answers for all of them.
Flags are Winsock's outside and Linux's inside (``flags``).

The ring-state protocol: an object in the array may define
``_loopfast_ready(events: int) -> int``, taking the *native* ``select.POLL*``
bits asked for and returning those it can report without a system call (0 if
none), and optionally ``_loopfast_busy_poll_us() -> int``. poll() asks these
first; if any reports readiness it returns at once (the other fds looked at
with a zero timeout). Otherwise, if one asked for busy-polling, poll() spins on
them that many microseconds (kernel fds are looked at when the spin ends), then
parks in the kernel on the fds. Both methods are looked up on the type, once
per distinct array (see the cache below).

Invariants of the per-thread cache (P8: 10,000 entries near select.poll's cost):
- A plan (registered ``select.poll`` object, fd -> entry index) is reused only
  for the same entries in the same order, no PollFD changed since (a global
  generation bumped by the PollFD setters), and every socket object still
  answering ``fileno()`` with the same number (a closed socket gets POLLNVAL,
  never the fd number's next owner).
- Entries we set non-zero are remembered and reset on the next call, so each
  call's revents are its own.
"""

from __future__ import annotations

import _socket
import errno
import math
import operator
import select
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, TypeAlias

from ..constants import POLLNVAL
from .flags import _REVENTS as _REVENTS_MEMO
from .flags import INPUT_FLAGS, NATIVE_EVENTS, winsock_revents

__all__ = ["FileLike", "PollFD", "poll", "poll_objects"]

_MAX_MS = 2**31 - 1
_MAX_FD = 2**31 - 1
_C_FILENO = _socket.socket.fileno


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


FileLike: TypeAlias = "int | _HasFileno | None"

_generation = 0
_KINDS: dict[type, int] = {}  # type -> _kind(type); classes are few, and fixed once made


def _changed() -> None:
    global _generation
    _generation += 1


def _check_fd(fd: object) -> Any:
    if fd is None or type(fd) is int:
        return fd
    if isinstance(fd, int) and not isinstance(fd, bool):
        return operator.index(fd)
    if isinstance(fd, bool) or not callable(getattr(fd, "fileno", None)):
        raise TypeError(f"PollFD.fd takes an int, None or an object with fileno(), "
                        f"got {type(fd).__name__}")
    return fd


class PollFD:
    """One WSAPOLLFD: ``fd`` (socket object, object with fileno(), int or None), flags.

    ``fd`` None or a negative int is skipped (revents 0), as INVALID_SOCKET in
    Winsock. ``events`` takes Winsock's input flags (POLLRDNORM, POLLRDBAND,
    POLLIN, POLLPRI, POLLWRNORM, POLLOUT, POLLWRBAND); ``poll`` sets ``revents``.

    Raises:
        TypeError: ``fd`` is none of the kinds above, or a flag is not an int.
    """

    __slots__ = ("_events", "_fd", "_revents")

    def __init__(self, fd: FileLike, events: int, revents: int = 0) -> None:
        self._fd = _check_fd(fd)
        self._events = operator.index(events)
        self._revents = operator.index(revents)

    @property
    def fd(self) -> FileLike:
        """The socket (or object with fileno(), or int fd); None or -1 to skip the entry."""
        return self._fd  # type: ignore[no-any-return]

    @fd.setter
    def fd(self, value: FileLike) -> None:
        self._fd = _check_fd(value)
        _changed()

    @property
    def events(self) -> int:
        """The Winsock flags asked for."""
        return self._events

    @events.setter
    def events(self, value: int) -> None:
        self._events = operator.index(value)
        _changed()

    @property
    def revents(self) -> int:
        """The Winsock flags poll() found (0 when none)."""
        return self._revents

    @revents.setter
    def revents(self, value: int) -> None:
        self._revents = operator.index(value)
        if self._revents:
            _changed()

    def __repr__(self) -> str:
        return f"PollFD(fd={self._fd!r}, events={self._events:#x}, revents={self._revents:#x})"


class _Plan:
    """One array's registered poll object and what is needed to answer it."""

    __slots__ = (
        "busy_us",
        "dirty",
        "entries",
        "generation",
        "index",
        "nval",
        "other_fds",
        "others",
        "poller",
        "ring",
        "sock_fds",
        "socks",
    )

    def __init__(self, entries: tuple[Any, ...]) -> None:
        self.entries = entries
        self.generation = _generation
        self.poller = select.poll()
        self.index: dict[int, Any] = {}  # fd -> PollFD, or list of PollFD for duplicates
        self.nval: list[PollFD] = []
        self.socks: list[Any] = []
        self.sock_fds: list[int] = []
        self.others: list[Any] = []
        self.other_fds: list[int] = []
        self.ring: list[tuple[int, Any, int]] = []  # (fd, object, native events)
        self.busy_us = 0
        self.dirty: list[PollFD] = []


_C_SOCKET, _OTHER, _RING = 1, 2, 4  # what _kind says of a type


def _kind(cls: type) -> int:
    kind = _C_SOCKET if getattr(cls, "fileno", None) is _C_FILENO else _OTHER
    return kind | (_RING if getattr(cls, "_loopfast_ready", None) is not None else 0)


def _other_fileno(obj: Any) -> int:
    try:
        return operator.index(obj.fileno())
    except (OSError, ValueError):  # a closed file object: POLLNVAL
        return -1


def _add_ring(plan: _Plan, fd: int, obj: Any, native: int) -> None:
    plan.ring.append((fd, obj, native))
    busy = getattr(obj, "_loopfast_busy_poll_us", None)
    if busy is not None:
        plan.busy_us = max(plan.busy_us, int(busy()))


def _build(entries: tuple[Any, ...]) -> _Plan:
    plan = _Plan(entries)
    index, register, kinds = plan.index, plan.poller.register, _KINDS
    add_sock, add_sock_fd = plan.socks.append, plan.sock_fds.append
    named = 0
    for pos, entry in enumerate(entries):
        if type(entry) is not PollFD:
            raise TypeError(f"fdarray[{pos}] is {type(entry).__name__}, not a PollFD")
        entry._revents = 0
        obj = entry._fd
        if obj is None or (type(obj) is int and obj < 0):
            continue
        native = NATIVE_EVENTS.get(entry._events)
        if native is None:
            raise _bad_events(pos, entry._events)
        named += 1
        if type(obj) is int:
            fd = obj
        else:
            kind = kinds.get(type(obj))
            if kind is None:
                kind = kinds[type(obj)] = _kind(type(obj))
            if kind & _C_SOCKET:
                fd = _C_FILENO(obj)
                add_sock(obj)
                add_sock_fd(fd)
            else:
                fd = _other_fileno(obj)
                plan.others.append(obj)
                plan.other_fds.append(fd)
            if kind & _RING and fd >= 0:
                _add_ring(plan, fd, obj, native)
        if fd < 0 or fd > _MAX_FD:
            plan.nval.append(entry)
            continue
        prev = index.get(fd)
        if prev is None:
            index[fd] = entry
            register(fd, native)
            continue
        _share(plan, fd, prev, entry)
    if not named:
        raise OSError(errno.EINVAL, "poll: no entry names a socket (every fd is None or "
                      "negative); WSAPoll refuses such an array with WSAEINVAL")
    return plan


def _share(plan: _Plan, fd: int, prev: Any, entry: PollFD) -> None:
    """A second entry for the same fd: ask the kernel for the union of their events."""
    group = [prev, entry] if type(prev) is PollFD else [*prev, entry]
    plan.index[fd] = group
    mask = 0
    for member in group:
        mask |= NATIVE_EVENTS[member._events]
    plan.poller.register(fd, mask)


def _bad_events(pos: int, events: int) -> OSError:
    if not events:
        what = "no event flag"
    else:
        what = f"flags {events & ~INPUT_FLAGS:#x} that are not input flags"
    return OSError(errno.EINVAL, f"poll: fdarray[{pos}].events={events:#x} has {what}; give "
                   "one or more of POLLRDNORM, POLLRDBAND, POLLPRI, POLLWRNORM, POLLWRBAND")


_tls = threading.local()


def _cached(entries: tuple[Any, ...]) -> _Plan | None:
    plan: _Plan | None = getattr(_tls, "plan", None)
    if plan is None or plan.generation != _generation or plan.entries != entries:
        return None
    if list(map(_C_FILENO, plan.socks)) != plan.sock_fds:
        return None
    if plan.others:
        try:
            if [operator.index(obj.fileno()) for obj in plan.others] != plan.other_fds:
                return None
        except (OSError, ValueError):
            return None
    for entry in plan.dirty:
        entry._revents = 0
    return plan


def to_ms(timeout: float | None) -> int | None:
    """Milliseconds to wait, rounded up; None to wait until something happens (P3).

    Raises:
        TypeError: not a number; OSError: EINVAL for NaN.
    """
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout is a number of milliseconds, got {type(timeout).__name__}")
    if math.isnan(timeout):
        raise OSError(errno.EINVAL, "poll: timeout is NaN")
    if timeout < 0 or math.isinf(timeout):
        return None
    return math.ceil(timeout)


def _kernel(plan: _Plan, ms: int | None) -> list[tuple[int, int]]:
    if ms is None or ms <= _MAX_MS:
        return plan.poller.poll(ms)
    deadline = time.monotonic() + ms / 1000
    while True:  # ends at the deadline: each turn waits for what is left of it
        left = math.ceil((deadline - time.monotonic()) * 1000)
        ready = plan.poller.poll(max(0, min(left, _MAX_MS)))
        if ready or left <= _MAX_MS:
            return ready


def _ring_hits(ring: list[tuple[int, Any, int]]) -> dict[int, int] | None:
    hits: dict[int, int] | None = None
    for fd, obj, native in ring:
        bits = obj._loopfast_ready(native)
        if bits:
            hits = hits or {}
            hits[fd] = hits.get(fd, 0) | bits
    return hits


def _wait(plan: _Plan, ms: int | None) -> list[tuple[int, int]]:
    if not plan.ring:
        return _kernel(plan, ms)
    start = time.monotonic()
    hits = _ring_hits(plan.ring)
    if hits is None and ms != 0 and plan.busy_us > 0:
        spin = plan.busy_us / 1e6 if ms is None else min(plan.busy_us / 1e6, ms / 1000)
        while hits is None and time.monotonic() - start < spin:  # bounded by the spin time
            hits = _ring_hits(plan.ring)
    if hits is None:
        if ms is not None and ms > 0:
            ms = max(0, math.ceil(ms - (time.monotonic() - start) * 1000))
        return _kernel(plan, ms)
    merged = dict(plan.poller.poll(0))
    for fd, bits in hits.items():
        merged[fd] = merged.get(fd, 0) | bits
    return list(merged.items())


def _answer(plan: _Plan, ready: list[tuple[int, int]]) -> int:
    dirty = plan.dirty = list(plan.nval)
    for entry in dirty:
        entry._revents = POLLNVAL
    index, memo = plan.index, _REVENTS_MEMO
    for fd, native in ready:
        hit = index[fd]
        for entry in (hit,) if type(hit) is PollFD else hit:
            events = entry._events
            got = memo.get(events << 16 | native)
            if got is None:
                got = winsock_revents(events, native)
            if got:
                entry._revents = got
                dirty.append(entry)
    return len(dirty)


def _run(entries: tuple[Any, ...], ms: int | None, cache: bool) -> int:
    plan = _cached(entries) if cache else None
    if plan is None:
        if cache:
            _tls.plan = None
        plan = _build(entries)
        if cache:
            _tls.plan = plan
    return _answer(plan, _wait(plan, ms))


def poll(fdarray: Sequence[PollFD], timeout_ms: float | None) -> int:
    """WSAPoll: wait until an entry of *fdarray* is ready; set each ``revents`` in place.

    Args:
        fdarray: PollFD entries; socket objects (loopfast, fast path or not,
            ring-carried, stdlib), pipes and raw int fds may be mixed (P7).
        timeout_ms: > 0 waits up to that many ms (rounded up), 0 returns at
            once, < 0 or None waits until something happens (P3).

    Returns:
        The number of entries whose revents is non-zero; 0 on timeout.

    Raises:
        OSError: EINVAL for an entry (fd not skipped) whose events is zero or
            holds a flag other than the input flags, or when every fd is skipped (P4).
        TypeError: an entry is not a PollFD, or the timeout is not a number.
        KeyboardInterrupt: Ctrl-C while waiting (other signals retry, PEP 475).
    """
    entries = fdarray if type(fdarray) is tuple else tuple(fdarray)
    return _run(entries, to_ms(timeout_ms), cache=True)


def poll_objects(pairs: Iterable[tuple[FileLike, int]],
                 timeout_ms: float | None) -> list[tuple[FileLike, int]]:
    """The Pythonic form: ``[(obj, events), ...]`` in, ``[(obj, revents), ...]`` out.

    Only entries with a non-zero revents are returned, in the order given.

    Raises:
        OSError, TypeError: as ``poll``.
    """
    entries = tuple(PollFD(obj, events) for obj, events in pairs)
    _run(entries, to_ms(timeout_ms), cache=False)
    return [(entry.fd, entry.revents) for entry in entries if entry.revents]
