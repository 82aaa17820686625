"""Which transport an ``"auto"`` connection takes: the ring, unless its destination's
connections are short.

The ring's per-message speed is paid for at set-up (a memfd, its mapping and its
pages, two more fds: about 0.5-0.6x TCP's connections/s, against the stream's
0.75-0.8x). A connection that carries one request and closes never earns that
back: programs that open a connection per request (``requests.get``,
``urllib``) ran at 0.73-0.89x of TCP's requests/s on the ring and 0.87-1.0x on
the stream (``loopfast bench apps``). So an
``"auto"`` connection (``loopfast run``'s default) takes the ring unless the
last ``STREAK`` connections this process made to the same destination were
short, and then the stream.

Short: closed within ``SHORT_S`` of its connect, having carried less than
``SHORT_BYTES`` both ways. A stream connection's bytes are in the kernel, so a
stream connection counts by its lifetime alone; to see a destination whose
connections grew busier (many round trips in a short life, where the ring
gains most), every ``PROBE_EVERY``-th connection in stream mode takes the
ring again and is judged by its bytes.

Invariants: ``_streaks`` maps a destination to (short connections in a row,
connections since the last probe); it holds at most ``MAX_DESTINATIONS``
entries (then it starts over: the cost of forgetting is a ring connection or
two). A race between threads can only make one choice the other one.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["MAX_DESTINATIONS", "PROBE_EVERY", "SHORT_BYTES", "SHORT_S", "STREAK", "Auto",
           "choose", "forget", "note"]

SHORT_S = 0.05
SHORT_BYTES = 64 * 1024
STREAK = 2
PROBE_EVERY = 32
MAX_DESTINATIONS = 1024

Destination = tuple[Any, ...]
_streaks: dict[Destination, tuple[int, int]] = {}


class Auto:
    """What an ``"auto"`` connection remembers to be judged when it closes."""

    __slots__ = ("born", "destination")

    def __init__(self, destination: Destination) -> None:
        self.destination = destination
        self.born = time.monotonic()


def choose(destination: Destination) -> str:
    """"ring" or "stream" for the next connection to *destination* (see the module
    docstring)."""
    short, since_probe = _streaks.get(destination, (0, 0))
    if short < STREAK:
        return "ring"
    since_probe += 1
    if since_probe >= PROBE_EVERY:
        _streaks[destination] = (short, 0)
        return "ring"
    _streaks[destination] = (short, since_probe)
    return "stream"


def note(auto: Auto, carried: int | None) -> None:
    """The connection *auto* describes closed, having carried *carried* bytes both ways
    (None: not known, a stream)."""
    short = time.monotonic() - auto.born < SHORT_S and (carried is None
                                                         or carried < SHORT_BYTES)
    before, since_probe = _streaks.get(auto.destination, (0, 0))
    if len(_streaks) >= MAX_DESTINATIONS and auto.destination not in _streaks:
        _streaks.clear()
    _streaks[auto.destination] = (before + 1 if short else 0, since_probe)


def forget() -> None:
    """Forget every destination (tests; a fresh start)."""
    _streaks.clear()
