"""A ring-carried connection's kernel parts: the rings, its wake-up sockets, the watcher.

Per side there are three fds (see _ring.c for why): ``r`` (the application's
fileno), ``w`` (this side's bell writer, also held by the peer) and the peer's
``w``. The client makes its own pair (r, w) and claims a slot of an arena for
the rings (``RingOffer``, ``arenas``); the rendezvous stream is the server's
pair (its accepted end r, the client's end w), and the hello carries the
server's share (handshake.py).
"""

from __future__ import annotations

import _socket as _csocket
import errno
import functools
import logging
import os
import select
import socket as _stdsocket
import threading
import time
import weakref
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from .. import compat
from .._core import ringcore
from .._core.stdlib import PeerCredentials, close_fds
from . import arenas
from .background import background
from .connection import Connection, Inherited

if TYPE_CHECKING:  # the stub's types; at run time the C core comes from ringcore
    from .._ring import Channel

_T = TypeVar("_T")

DEFAULT_RING = 128 * 1024
AUTOTUNE_RING_MAX = 4 << 20  # about what loopback TCP holds in flight here once autotuned
_log = logging.getLogger("loopfast")


def _core() -> ModuleType:
    """The C core. The connector does not offer rings without it; a server refuses them.

    Raises:
        OSError: EOPNOTSUPP when this build of loopfast has no C core.
    """
    core = ringcore.ring
    if core is None:
        raise OSError(errno.EOPNOTSUPP, f"no ring transport here: {ringcore.missing}")
    return core


@functools.lru_cache(maxsize=256)  # a handful of distinct buffers; six calls a connection
def ring_size(rcvbuf: int | None) -> int:
    """The ring for a receiver whose SO_RCVBUF is *rcvbuf*: at most that, a power of two.

    Raises:
        OSError: EOPNOTSUPP without the C core.
    """
    core = _core()
    lowest: int = core.MIN_RING
    highest: int = core.MAX_RING
    if not rcvbuf:
        return DEFAULT_RING
    size = 1 << (max(int(rcvbuf), 1).bit_length() - 1)
    return min(max(size, lowest), highest)


_SYSCTL_TTL = 5.0  # seconds a sysctl read is trusted: reading one costs more than a connection
_sysctls: dict[str, tuple[float, tuple[int, ...]]] = {}


def _sysctl(name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    """The integers of /proc/sys/*name*, read at most once per ``_SYSCTL_TTL``."""
    now = time.monotonic()
    known = _sysctls.get(name)
    if known is not None and known[0] > now:
        return known[1]
    try:
        with open(f"/proc/sys/{name}", "rb") as f:
            value = tuple(int(x) for x in f.read().split())
    except (OSError, ValueError):
        value = default
    if len(value) != len(default):
        value = default
    _sysctls[name] = (now + _SYSCTL_TTL, value)
    return value


def tcp_rmem() -> tuple[int, ...]:
    """net.ipv4.tcp_rmem: (min, default, max) of a TCP receive buffer."""
    return _sysctl("net/ipv4/tcp_rmem", (4096, 131_072, 6_291_456))  # the kernel's defaults


def autotune_ring() -> int:
    """The ring of a receiver whose buffer TCP would autotune: min(tcp_rmem[2], 4 MiB).

    Its pages are touched only as bytes pass and given back when it idles
    empty (``Channel.trim``), so an idle connection does not pay for its size.

    Raises:
        OSError: EOPNOTSUPP without the C core.
    """
    return ring_size(min(tcp_rmem()[2], AUTOTUNE_RING_MAX))


def receive_ring(rcvbuf: int | None, rcvbuf_set: bool | None) -> int:
    """The ring for a receiver whose SO_RCVBUF is *rcvbuf*.

    *rcvbuf_set* says whether its program set SO_RCVBUF (the kernel then locks
    it, as TCP does, and the ring follows it); None when only the value is
    known (a server's, learned over sock_diag): a value equal to tcp_rmem[1]
    may then be a buffer TCP would autotune, and the ring is made big enough
    for that. The receiver's window (``receive_window``) says how much of it
    the producer may fill. An unknown *rcvbuf* gives DEFAULT_RING.

    Raises:
        OSError: EOPNOTSUPP without the C core.
    """
    if not rcvbuf:
        return DEFAULT_RING
    if rcvbuf_set is False or (rcvbuf_set is None and rcvbuf == tcp_rmem()[1]):
        return max(autotune_ring(), ring_size(rcvbuf))
    return ring_size(rcvbuf)


def receive_window(ring: int, rcvbuf: int, rcvbuf_set: bool,
                   settings: compat.CompatibilitySettings | None) -> int:
    """The window a receiver publishes for its *ring*: bytes it lets the producer have in flight.

    The whole ring when its program left SO_RCVBUF alone (TCP would
    autotune), else ``ring_size(rcvbuf)`` (SPEC F7); never more than the
    compatibility mode's cap (``compat.ring_capacity``).

    Raises:
        OSError: EOPNOTSUPP without the C core.
    """
    window = min(ring, ring_size(rcvbuf)) if rcvbuf_set else ring
    return compat.ring_capacity(window, settings)


def _kernel_rcvbuf_cap() -> int:
    """The largest SO_RCVBUF an unprivileged socket can get: twice net.core.rmem_max."""
    return 2 * _sysctl("net/core/rmem_max", (212_992,))[0]  # the kernel's default


def ring_limits(server: _stdsocket.socket) -> tuple[int, int]:
    """The largest (receive, send) rings a listening *server* maps for one client.

    A client sizes the server's receive ring from the listener's SO_RCVBUF
    (``connector``, ``receive_ring``: an autotune-sized ring when the value
    looks like TCP's default), or takes DEFAULT_RING when it could not learn
    it; its own receive ring, which the server fills and so keeps resident,
    from its own SO_RCVBUF, which an unprivileged process cannot raise above
    twice net.core.rmem_max, or autotune-sized. Larger rings are a client
    asking the server to hold memory on its behalf, and are refused
    (``check_ring_sizes``).

    Raises:
        OSError: EOPNOTSUPP without the C core; getsockopt's errors.
    """
    rcvbuf = server.getsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_RCVBUF)
    sndbuf = server.getsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_SNDBUF)
    receive = max(receive_ring(rcvbuf, None), DEFAULT_RING)
    send = max(ring_size(sndbuf), ring_size(_kernel_rcvbuf_cap()), autotune_ring(), DEFAULT_RING)
    return receive, send


def check_ring_sizes(sizes: tuple[int, int], server: _stdsocket.socket) -> None:
    """Refuse a hello whose rings (c2s, s2c) exceed what *server* maps for a client.

    Raises:
        ConnectionRefusedError: a ring is larger than ``ring_limits(server)``.
    """
    c2s, s2c = sizes
    receive, send = ring_limits(server)
    if c2s > receive or s2c > send:
        raise ConnectionRefusedError(
            errno.ECONNREFUSED, f"hello asks for rings of {c2s} and {s2c} bytes; this server "
            f"maps at most {receive} and {send}")


class _Parts:
    """The client's wake-up socket pair (r, w), made ahead of need by one process.

    ``forks`` is ``_ring.forks()`` then.
    """

    __slots__ = ("forks", "socks")

    def __init__(self) -> None:
        self.forks = _core().forks()
        self.socks: list[_csocket.socket] = []
        # The C socket type: the wrapper's enum conversions showed in the profile.
        self.socks.extend(_csocket.socketpair(
            _csocket.AF_UNIX, _csocket.SOCK_STREAM | _csocket.SOCK_CLOEXEC))

    def close(self) -> None:
        """Close every fd still held here. Idempotent."""
        for sock in self.socks:
            sock.close()
        self.socks.clear()


class _Pool:
    """Ring offers' socket pairs made ahead of need, so a connect does not wait for them.

    ``refill()`` (the connector calls it once its hello is out, while the server
    works on it) makes up to ``DEPTH`` pairs; ``take()`` hands one out. Pairs
    are this process's alone: a child of fork() starts with none (the parent's
    would give two connections one pair), and a pair made before a fork, by
    whatever code forked (``_ring.forks``), is never handed out. A failure to
    make pairs (EMFILE...) empties the pool, so it never holds fds a connection
    needs. The rings come from an arena (``arenas``).
    """

    DEPTH = 2

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parts: list[_Parts] = []
        self._wanted = False
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        for parts in self._parts:  # the child's copies of the parent's fds
            parts.close()
        self._parts = []

    def take(self) -> _Parts | None:
        """A pair made ahead of need, or None (then the caller makes its own)."""
        with self._lock:
            self._wanted = True
            while self._parts:
                parts = self._parts.pop()
                if parts.forks == _core().forks():
                    return parts
                parts.close()
        return None

    def refill(self) -> None:
        """Make pairs up to DEPTH once a ring offer asked for one. Never raises."""
        with self._lock:
            if not self._wanted:
                return
            forks = _core().forks()
            self._parts = [parts for parts in self._parts if self._keep(parts, forks)]
            missing = self.DEPTH - len(self._parts)
        for _ in range(missing):
            try:
                parts = _Parts()
            except OSError:
                self.clear()
                return
            with self._lock:
                self._parts.append(parts)

    def fds(self) -> int:
        """Fds held by the pairs in the pool."""
        with self._lock:
            return sum(len(parts.socks) for parts in self._parts)

    def clear(self) -> None:
        """Close every pair held (at the fd limit, before trying again)."""
        with self._lock:
            held, self._parts = self._parts, []
        for parts in held:
            parts.close()

    @staticmethod
    def _keep(parts: _Parts, forks: int) -> bool:
        if parts.forks == forks:
            return True
        parts.close()
        return False


_pool = _Pool()


def refill() -> None:
    """Make ring offers' parts ahead of the next connect (see ``_Pool``). Never raises."""
    _pool.refill()


def pooled_fds() -> int:
    """How many fds this process holds ahead of need (for fd accounting: they belong to no
    connection): the pool's, the arenas' (``arenas``), and the stream the rendezvous
    keeps for its next look."""
    core = ringcore.ring
    return _pool.fds() + arenas.client_fds() + (core.probe_held() if core is not None else 0)


def drop_pooled() -> None:
    """Give back every fd held ahead of need (at the fd limit: a connection needs them now);
    a slot an offer holds keeps its arena's fd until the offer is done."""
    _pool.clear()
    arenas.drop_client_arenas()


def _at_fd_limit_again(make: Callable[[], _T]) -> _T:
    """``make()``; at the fd limit (EMFILE, ENFILE), once more after ``drop_pooled()``: the
    fds held ahead of need are better spent on this connection."""
    try:
        return make()
    except OSError as exc:
        if exc.errno not in (errno.EMFILE, errno.ENFILE):
            raise
    drop_pooled()
    return make()


class RingOffer:
    """What a client creates before its hello: a slot for the rings and its wake-up pair.

    The slot is one of the arena of *destination* (family, host, port, the
    owner's uid: see ``arenas``). Each ring's receive window starts at the one
    given (-1: the whole ring): the server's, a guess from its SO_RCVBUF, until
    it attaches and sets its own. The pair comes from this process's pool when
    it has one (``refill``).

    The offer owns its slot and every fd it made until ``client_link`` hands
    them on or ``discard`` gives them up; a failure while making it gives up
    what was made.

    Raises:
        OSError: an arena or socket pair could not be made (EMFILE, ENOMEM, ...);
            EOPNOTSUPP without the C core.
    """

    def __init__(self, destination: arenas.Destination, c2s: int, s2c: int,
                 c2s_window: int = -1, s2c_window: int = -1) -> None:
        self.sizes = (c2s, s2c)
        self.offered = False  # the hello naming the slot went (the connector says so)
        _core()
        self._arena, self.slot = _at_fd_limit_again(lambda: arenas.claim(
            destination, self.sizes, (c2s_window, s2c_window)))
        try:
            parts = _pool.take() or _at_fd_limit_again(_Parts)
        except BaseException:
            self._give_up_slot()
            raise
        self._parts: _Parts | None = parts
        self.client_r, self.client_w = parts.socks

    def fds_for_server(self, stream: int) -> list[int]:
        """The fds the hello on the rendezvous *stream* carries, in handshake.py's order
        (the reserved socket, last, is the connector's)."""
        return [self._arena.fd, stream, self.client_w.fileno()]

    def client_link(self, own_r: int, stream: int) -> RingLink:
        """The client's link once its r was copied to fd number *own_r*; the offer is used up.

        *stream* (the rendezvous stream's fd, the server's w) becomes the link's.

        Raises:
            OSError: the rings could not be set up (everything is closed then,
                *stream* too).
        """
        try:  # trusted: this process made every fd, for these sizes
            channel = _core().Channel(self._arena.arena, *self.sizes, False, own_r,
                                      self.client_w.fileno(), stream, True, self.slot)
        except BaseException:
            self.discard()
            close_fds([stream])
            raise
        arenas.done(self._arena)
        parts, self._parts = self._parts, None
        assert parts is not None
        parts.socks.remove(self.client_w)
        parts.close()  # our r (copied to own_r)
        return RingLink(channel, own_r, self.client_w.detach(), stream)

    def discard(self) -> None:
        """Give up the slot and close every fd the offer still owns. Idempotent."""
        if self._parts is None:
            return
        self._give_up_slot()
        self._parts.close()
        self._parts = None

    def _give_up_slot(self) -> None:
        self._arena.arena.unclaim(self.slot, self.offered)
        arenas.done(self._arena)


class RingLink:
    """The channel and its two w sockets' fds, shared by every socket object of one connection.

    Socket objects (the first, its dup()s, and ``socket(fileno=...)`` of any of
    their fds) each hold an fd number that refers to our r; ``holders`` lists
    them, and the channel uses one of them (``channel_fd``), which it is moved
    off before that number is closed.
    """

    def __init__(self, channel: Channel, r: int, own_w: int, peer_w: int) -> None:
        self.channel = channel
        self.channel_fd = r
        self.own_w = own_w
        self.peer_w = peer_w
        self.users = 1
        self.holders: list[int] = []
        self.first: RingConnection | None = None  # what socket(fileno=...) copies
        self.watched = False
        _watcher.track(peer_w, channel)

    def watch_peer(self) -> None:
        """Have the background thread watch the peer from now on (idempotent).

        Needed once the application may wait on our fd in select/poll/epoll (it
        asked for ``fileno()``): a killed peer cannot ring our bell. A peer that
        closes tells us in the header (``Channel.hang_up``), and blocking calls
        look at the peer themselves: neither needs the thread.
        """
        if self.watched:
            return
        self.watched = True
        try:
            _watcher.watch(self.peer_w, self.own_w, self.channel)
        except OSError as exc:  # e.g. EMFILE: blocked calls still see the peer's death
            _log.warning("loopfast: cannot watch a ring connection's peer (%s); select() "
                         "will learn of its death only at the next call", exc)

    def rcvbuf_changed(self, rcvbuf: int, settings: compat.CompatibilitySettings | None) -> None:
        """Our program set SO_RCVBUF (the kernel now reports *rcvbuf*): follow it with our window.

        Within the receive ring; a smaller window only where the compatibility
        mode lets SO_RCVBUF shrink (otherwise it stays, as TCP never takes back
        a window it advertised).
        """
        channel = self.channel
        window = receive_window(channel.stats()["rx_size"], rcvbuf, True, settings)
        if window < channel.window and not compat.shrink_allowed(settings):
            return
        channel.window = window

    def hold(self, fd: int) -> None:
        """A socket object of this connection now uses fd number *fd* (our r or a dup).

        The first one makes the connection findable by ``adopt`` (any fd that
        refers to our r finds it); its inode is read only when one is looked for.
        """
        if not self.holders:
            _unindexed.add(self)
        self.holders.append(fd)

    def let_go(self, fd: int) -> bool:
        """A socket object stops using *fd*; True when nobody else uses that number.

        The channel moves to another holder's number first, so it never uses a
        closed (or reused) one.
        """
        if fd in self.holders:
            self.holders.remove(fd)
        if fd in self.holders:
            return False
        if self.holders and self.channel_fd == fd:
            self.moved(fd, self.holders[0])
        return True

    def moved(self, old: int, new: int) -> None:
        """The holder at *old* moved to *new* (a dup)."""
        self.holders = [new if held == old else held for held in self.holders]
        if self.channel_fd == old:
            self.channel.rehome(new)
            self.channel_fd = new

    def release(self) -> None:
        """One socket object less; the last one closes the rings and the fds.

        Socket objects close their fd before they release, so the last release
        can tell whether our r's last copy anywhere is gone, and if so tell the
        peer (``Channel.hang_up``), as TCP's last close sends its FIN.
        """
        self.users -= 1
        if self.users == 0:
            _watcher.forget(self.peer_w, self.own_w)
            self.channel.hang_up()
            self.channel.close()
            close_fds([self.own_w, self.peer_w])


class RingConnection(Connection):
    """Connection state of a ring-carried socket."""

    __slots__ = ("link",)

    def __init__(self, family: int, local: tuple[Any, ...], peer: tuple[Any, ...],
                 credentials: PeerCredentials, shadow: _stdsocket.socket | int | None,
                 link: RingLink, inherit: Inherited = ()) -> None:
        super().__init__(family, local, peer, credentials, shadow, inherit)
        self.link = link
        if link.first is None:
            link.first = self

    @property
    def channel(self) -> Channel:
        """The rings."""
        return self.link.channel

    def copy(self) -> RingConnection:
        """A copy for dup(): the same rings, counted once more."""
        self.link.users += 1
        shadow = self._shadow_copy()
        made = RingConnection(self.family, self.local, self.peer, self.credentials, shadow,
                              self.link, self._inherit)
        made._noted = self.shares_notes()
        return made

    def carried(self) -> int | None:
        """Bytes carried both ways so far."""
        channel = self.link.channel
        return channel.bytes_out + channel.stats()["bytes_in"]

    def release(self) -> None:
        """Drop this object's share of the rings, and its shadow."""
        super().release()
        if self.link.users > 0:
            self.link.release()


# Live connections by the (device, inode) of their r: socket(fileno=fd) finds its own.
# A new one waits in _unindexed until a lookup reads its inode (an fstat per
# connection is a cost only reach-through needs).
_live: weakref.WeakValueDictionary[tuple[int, int], RingLink] = weakref.WeakValueDictionary()
_unindexed: weakref.WeakSet[RingLink] = weakref.WeakSet()


def any_live() -> bool:
    """Whether this process has a live ring connection (``adopt`` can find one)."""
    return bool(_live) or bool(_unindexed)


def _index() -> None:
    while _unindexed:
        link = _unindexed.pop()
        if link.users == 0 or not link.holders:
            continue
        try:
            info = os.fstat(link.channel_fd)
        except OSError:
            continue
        _live[(info.st_dev, info.st_ino)] = link


def link_of(fd: int) -> RingLink | None:
    """The live ring connection (in this process) whose r *fd* refers to, or None.

    Any fd number of it will do (a dup, one made by ``socket.fromfd``): the
    lookup is by the socket's inode. No syscall while no ring connection lives.
    """
    if not any_live():
        return None
    _index()
    try:
        info = os.fstat(fd)
    except OSError:
        return None
    link = _live.get((info.st_dev, info.st_ino))
    return None if link is None or link.users == 0 else link


def adopt(fd: int) -> RingConnection | None:
    """A share of the live ring connection whose r *fd* refers to, or None.

    What ``socket.socket(fileno=fd)`` of a ring connection's fd (in this
    process) needs to carry its data instead of writing wake-up bytes.
    """
    link = link_of(fd)
    if link is None or link.first is None:
        return None
    first = link.first
    link.users += 1
    made = RingConnection(first.family, first.local, first.peer, first.credentials, None,
                          link, first._inherit)
    made._noted = first.shares_notes()
    return made


def server_link(r: int, fds: list[int], rings: tuple[int, int, int],
                window: int | None = None) -> RingLink:
    """The server's link from its rendezvous stream *r* (its end) and the hello's fds
    (the arena's memfd, w: the stream's client end, client w); r stays at its number.
    *rings*: the hello's (c2s, s2c, slot).

    *window*: the server's receive window (``receive_window``), replacing the
    client's guess and waking a client that waits for room; None keeps the guess.
    The memfd is closed here whatever happens (the arena stays mapped,
    ``arenas.server_arena``); on failure every fd is.

    Raises:
        OSError: EINVAL when the fds are not what the handshake promises, or the
            slot is out of range or in use; EOPNOTSUPP when this build has no C
            core (a client of another build offered rings).
    """
    memfd, w, peer_w = fds
    c2s, s2c, slot = rings
    try:
        core = _core()
        channel = core.Channel(arenas.server_arena(memfd, (c2s, s2c)), c2s, s2c, True, r, w,
                               peer_w, False, slot)
    except BaseException:
        close_fds([r, w, peer_w])
        raise
    finally:
        close_fds([memfd])
    if window is not None:
        channel.window = window
    channel.settle()  # the client may have sent already
    return RingLink(channel, r, w, peer_w)


class _Watcher:
    """Tells select/poll users when a ring's peer died, and gives idle rings' pages back
    every ``background.TICK`` (``Channel.trim``), from the process's background thread.

    A peer that is killed cannot ring our bell, so our fileno would never turn
    readable for an application waiting in select(). The background thread
    waits for POLLHUP on the copy of the peer's w of every link whose fileno()
    was asked for (select, poll, selectors and asyncio ask; only the peer holds
    that socket's other end, r) and then marks the channel's peer dead, which
    makes our fileno read end of stream, as a TCP socket does when the kernel
    closes its peer. Our own blocking calls do not need it: they poll the same
    socket themselves. So blocking request/response code, which never asks,
    never wakes the thread when a peer closes (a wake-up cost tens of µs per
    connection in the set-up profile); every link is tracked for trims.

    The same socket turns readable when the peer fills (NUL filler that makes
    its fd unwritable) or when the peer's program writes to its fd behind the
    socket object; ``Channel.inspect_wakeups`` tells them apart and resets the
    connection on both sides in the second case, naming the cause.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Every live link's channel, by its peer_w fd (trims); watched or not.
        self._channels: dict[int, weakref.ref[Channel]] = {}
        self._last_seen: dict[int, int] = {}  # fd -> bytes its channel had sent at the last tick
        background.every(self._sweep)
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        # Links inherited by the child stay unwatched (the thread did not come along).
        self._lock = threading.Lock()
        self._channels = {}

    def track(self, fd: int, channel: Channel) -> None:
        """Give *channel*'s idle rings' pages back at the ticks (*fd*: its peer_w)."""
        with self._lock:
            self._channels[fd] = weakref.ref(channel)

    def watch(self, fd: int, own_fd: int, channel: Channel) -> None:
        """Mark *channel*'s peer dead when *fd* (our copy of the peer's w) hangs up.

        Both w sockets (*fd*, and *own_fd*, ours) are looked at when they turn
        readable: what was written to either side's fd lands there.

        Raises:
            OSError: the background thread could not watch them (EMFILE...).
        """
        ref = weakref.ref(channel)

        def written(_events: int) -> None:  # filler, or bytes written to our own fd
            live = ref()
            if live is not None:
                live.inspect_wakeups()

        def hung_up(events: int) -> None:
            # The fd number may have been closed and reused since epoll reported it:
            # ask the fd as it is now, and forget only our own registration.
            if not _hung_up(fd):
                if events & select.EPOLLIN:  # filler, or bytes written to the peer's fd
                    live = ref()
                    if live is not None:
                        live.inspect_wakeups()
                return
            background.forget(fd, hung_up)
            with self._lock:
                if self._channels.get(fd) is ref:
                    del self._channels[fd]
            dead = ref()
            if dead is not None:
                dead.peer_dead = True

        with self._lock:
            self._channels[fd] = ref
        # EPOLLHUP comes unasked: the peer's r is closed. EPOLLIN, edge-triggered:
        # something new in a filler queue, once per time a side fills. Our own w
        # hangs up only when our r is closed, after forget().
        background.watch(fd, hung_up, select.EPOLLIN | select.EPOLLET)
        try:
            background.watch(own_fd, written, select.EPOLLIN | select.EPOLLET)
        except BaseException:
            background.forget(fd, hung_up)
            raise

    def forget(self, fd: int, own_fd: int) -> None:
        """Stop watching *fd* and *own_fd* (no-ops if never watched); call before closing."""
        with self._lock:
            self._channels.pop(fd, None)
        background.forget(fd)
        background.forget(own_fd)

    def _sweep(self) -> None:
        # Only a ring that carried nothing for a whole tick gives its pages back: a
        # busy one, empty between messages, would fault them in again at once.
        with self._lock:
            refs = list(self._channels.items())
        seen: dict[int, int] = {}
        for fd, ref in refs:
            channel = ref()
            if channel is None:
                continue
            moved = channel.bytes_out  # trim() gives the send ring back
            seen[fd] = moved
            if self._last_seen.get(fd) == moved:
                channel.trim()  # never waits; a closed channel says no
        self._last_seen = seen


def _hung_up(fd: int) -> bool:
    probe = select.poll()
    probe.register(fd, 0)
    return any(events & (select.POLLHUP | select.POLLERR) for _, events in probe.poll(0))


_watcher = _Watcher()
