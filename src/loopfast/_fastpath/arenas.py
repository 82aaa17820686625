"""Arenas: memfds that hold the rings of many connections (``_ring.c``, "arenas").

A client keeps one arena per destination: the listener's address, the uid of
the process that answered there (the listener's owner), and the ring sizes
(a slot's layout), so no other user's server ever maps rings of ours. Every
ring hello to that destination carries the arena's fd and names a slot
(handshake.py). A slot whose connection ended on both sides is claimed again
with its pages in place.

A server process keeps the arenas it was offered mapped, found again by the
memfd's inode (the mapping holds the file, so the inode cannot be reused
while it is cached): a client's later connections cost it one ``fstat``, no
mapping and no page fault. It keeps the last ``SERVER_ARENAS`` so; an arena
it drops stays mapped while one of its connections lives. A slot's pages but
each ring's first go back when both sides are done with it (``_ring.c``); a
slot whose client died keeps its pages until the server drops the arena.

Both are this process's alone. A fork()ed child starts without the client's
arenas (their slots are its parent's to hand out); an arena made before a fork
is never claimed from after it, whoever forked (``_ring.forks``).
"""

from __future__ import annotations

import collections
import errno
import os
import threading
from typing import TYPE_CHECKING

from .._core import ringcore
from .._core.stdlib import close_fds

if TYPE_CHECKING:  # the stub's types; at run time the C core comes from ringcore
    from .._ring import Arena

SLOTS = 32  # slots of a client's arena: 32 connections to one destination share a mapping
CLIENT_ARENAS = 16  # destinations a client keeps an arena (and its fd) for
SERVER_ARENAS = 16  # arenas a server process keeps mapped beyond those its connections use

Destination = tuple[int, str, int, int]  # family, host, port, the owner's uid


class ClientArena:
    """An arena this client made, its fd (what a hello carries) and who still needs that fd.

    ``offers`` counts claimed slots whose hello is not sent or abandoned yet;
    the fd is closed once the arena is retired (full, replaced, evicted) and
    no offer needs it. The mapping lives as long as a connection uses a slot.
    """

    __slots__ = ("arena", "fd", "forks", "offers", "retired")

    def __init__(self, sizes: tuple[int, int]) -> None:
        core = ringcore.ring
        assert core is not None  # RingOffer checked
        self.forks = core.forks()
        self.fd = core.create_memfd(*sizes, -1, -1, SLOTS)
        try:
            self.arena: Arena = core.Arena(self.fd, *sizes, SLOTS, True)
        except BaseException:
            close_fds([self.fd])
            raise
        self.offers = 0
        self.retired = False

    def close_fd(self) -> None:
        """Close the fd (idempotent); the mapping stays while a connection uses it."""
        if self.fd >= 0:
            close_fds([self.fd])
            self.fd = -1


class _ClientArenas:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._arenas: collections.OrderedDict[tuple[Destination, tuple[int, int]],
                                              ClientArena] = collections.OrderedDict()
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        for entry in self._arenas.values():  # the child's copies of the parent's fds
            entry.close_fd()
        self._arenas.clear()

    def claim(self, destination: Destination, sizes: tuple[int, int],
              windows: tuple[int, int]) -> tuple[ClientArena, int]:
        key = (destination, sizes)
        core = ringcore.ring
        assert core is not None
        with self._lock:
            entry = self._arenas.get(key)
            if entry is not None and entry.forks == core.forks():
                slot = entry.arena.claim(*windows)
                if slot is not None:
                    entry.offers += 1
                    self._arenas.move_to_end(key)
                    return entry, slot
            fresh = ClientArena(sizes)  # OSError (EMFILE...) goes to the caller
            slot = fresh.arena.claim(*windows)
            assert slot is not None  # a new arena's slots are all free
            fresh.offers = 1
            if entry is not None:
                self._retire(self._arenas.pop(key))
            self._arenas[key] = fresh
            while len(self._arenas) > CLIENT_ARENAS:
                self._retire(self._arenas.popitem(last=False)[1])
            return fresh, slot

    def done(self, entry: ClientArena) -> None:
        with self._lock:
            entry.offers -= 1
            if entry.retired and entry.offers == 0:
                entry.close_fd()

    @staticmethod
    def _retire(entry: ClientArena) -> None:
        entry.retired = True
        if entry.offers == 0:
            entry.close_fd()

    def fds(self) -> int:
        with self._lock:
            return sum(entry.fd >= 0 for entry in self._arenas.values())

    def clear(self) -> None:
        with self._lock:
            held = list(self._arenas.values())
            self._arenas.clear()
            for entry in held:
                self._retire(entry)


_client = _ClientArenas()


def claim(destination: Destination, sizes: tuple[int, int],
          windows: tuple[int, int]) -> tuple[ClientArena, int]:
    """A free slot for a connection to *destination* with rings of *sizes* (c2s, s2c), its
    header fresh with the receive *windows*; from the destination's arena, or a new one
    when it has none free. Call ``done`` once the hello went or the slot was given up.

    Raises:
        OSError: a new arena could not be made (EMFILE, ENOMEM...).
    """
    return _client.claim(destination, sizes, windows)


def done(entry: ClientArena) -> None:
    """A slot claimed from *entry* no longer needs its fd (its hello went, or was dropped)."""
    _client.done(entry)


def client_fds() -> int:
    """Fds this process holds for its arenas (ahead of need: they belong to no connection)."""
    return _client.fds()


def drop_client_arenas() -> None:
    """Give up every arena's fd (at the fd limit); connections keep their slots."""
    _client.clear()


class _ServerArenas:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mapped: collections.OrderedDict[tuple[int, int], Arena] = collections.OrderedDict()

    def find(self, memfd: int, sizes: tuple[int, int]) -> Arena:
        info = os.fstat(memfd)
        key = (info.st_dev, info.st_ino)
        with self._lock:
            arena = self._mapped.get(key)
            if arena is not None:
                self._mapped.move_to_end(key)
                return arena
        core = ringcore.ring
        assert core is not None
        slot = core.HEADER_SIZE + sizes[0] + sizes[1]
        slots, rest = divmod(info.st_size, slot)
        if rest:
            raise OSError(errno.EINVAL, "the shared memory is not a whole number of slots of the "
                          "hello's ring sizes")
        made: Arena = core.Arena(memfd, *sizes, slots)  # checks seals, size and slot count
        with self._lock:
            self._mapped[key] = made
            while len(self._mapped) > SERVER_ARENAS:
                self._mapped.popitem(last=False)  # its connections keep their own references
        return made


_server = _ServerArenas()


def server_arena(memfd: int, sizes: tuple[int, int]) -> Arena:
    """The arena the hello's *memfd* is, mapped once per process (see the module docstring).

    Raises:
        OSError: EINVAL when it is no sealed memfd of a whole number (1 to 64) of slots
            of *sizes*; what ``fstat`` or ``mmap`` raise.
    """
    return _server.find(memfd, sizes)
