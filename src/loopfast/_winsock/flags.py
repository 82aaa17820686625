"""Winsock's WSAPoll flags to Linux's poll(2) flags and back, precomputed.

Invariants:
- ``NATIVE_EVENTS`` has a key for every valid ``events`` value: a non-empty
  combination of the five input flags (POLLRDNORM, POLLRDBAND, POLLPRI,
  POLLWRNORM, POLLWRBAND). Anything else in ``events`` is WSAEINVAL, as WSAPoll
  says ("invalid flags were specified in the events member").
- Every native mask asked for includes POLLRDHUP, so a peer's FIN is seen
  (Winsock reports it as POLLHUP; Linux TCP gives POLLHUP only when both
  halves are closed).
- ``winsock_revents`` reports an input flag only if the entry asked for it, and
  POLLERR/POLLHUP/POLLNVAL always, as poll(2) and WSAPoll do.
"""

from __future__ import annotations

import itertools
import select

from ..constants import (
    POLLERR,
    POLLHUP,
    POLLNVAL,
    POLLPRI,
    POLLRDBAND,
    POLLRDNORM,
    POLLWRBAND,
    POLLWRNORM,
)

__all__ = ["INPUT_FLAGS", "NATIVE_EVENTS", "native_events", "winsock_revents"]

_N_IN, _N_PRI, _N_OUT = select.POLLIN, select.POLLPRI, select.POLLOUT
_N_ERR, _N_HUP, _N_NVAL = select.POLLERR, select.POLLHUP, select.POLLNVAL
_N_RDHUP = getattr(select, "POLLRDHUP", 0x2000)
_N_RDNORM, _N_RDBAND = select.POLLRDNORM, select.POLLRDBAND
_N_WRNORM, _N_WRBAND = select.POLLWRNORM, select.POLLWRBAND

# Winsock input flag -> (native bits to ask for, native bits that mean "ready").
# POLLRDBAND is out-of-band data, which Linux TCP reports as POLLPRI (urgent data).
_INPUT: dict[int, tuple[int, int]] = {
    POLLRDNORM: (_N_IN, _N_IN | _N_RDNORM),
    POLLRDBAND: (_N_PRI, _N_PRI | _N_RDBAND),
    POLLPRI: (_N_PRI, _N_PRI),
    POLLWRNORM: (_N_OUT, _N_OUT | _N_WRNORM),
    POLLWRBAND: (_N_OUT, _N_OUT | _N_WRBAND),
}
# Output-only flags, reported whatever was asked.
_OUTPUT: tuple[tuple[int, int], ...] = (
    (POLLERR, _N_ERR), (POLLHUP, _N_HUP | _N_RDHUP), (POLLNVAL, _N_NVAL))

INPUT_FLAGS = POLLRDNORM | POLLRDBAND | POLLPRI | POLLWRNORM | POLLWRBAND


def _native(events: int) -> int:
    mask = _N_RDHUP
    for flag, (ask, _ready) in _INPUT.items():
        if events & flag:
            mask |= ask
    return mask


NATIVE_EVENTS: dict[int, int] = {
    sum(combo): _native(sum(combo))
    for size in range(1, len(_INPUT) + 1)
    for combo in itertools.combinations(_INPUT, size)
}

_REVENTS: dict[int, int] = {}  # (events << 16 | native revents) -> Winsock revents, memoised


def native_events(events: int) -> int | None:
    """The native poll mask for Winsock *events*; None when *events* is not valid."""
    return NATIVE_EVENTS.get(events)


def _translate(events: int, native: int) -> int:
    out = 0
    for flag, (_ask, ready) in _INPUT.items():
        if events & flag and native & ready:
            out |= flag
    for flag, bits in _OUTPUT:
        if native & bits:
            out |= flag
    return out


def winsock_revents(events: int, native: int) -> int:
    """Winsock revents for an entry that asked for *events* and got native *native*."""
    key = events << 16 | native
    found = _REVENTS.get(key)
    if found is None:
        found = _REVENTS[key] = _translate(events, native)
    return found
