"""The client side of the rendezvous: find the listener, check its owner, say hello.

Order of events, each step able to send the client back to plain TCP:

1. learn who owns the TCP listener the address reaches (SPEC F10), from a
   recent check (``OWNER_TTL``) or one sock_diag lookup now, unless nobody
   answered at this port's names lately (``ABSENT_TTL``: plain TCP servers
   pay no lookup);
2. with an owner known, make everything the hello needs (``Prepared``): the
   TCP-style local address (the application's own TCP socket, bound if it was
   not, kept open so the address stays unique and visible to ss), the rings
   and the encoded hello;
3. connect an AF_UNIX stream to the rendezvous names, exact bind first, read
   the peer's uid (SO_PEERCRED) and, when it is the owner's, send the hello at
   once: the server finds the hello queued with the connection. A peer of
   another uid gets the full check as before (a fresh lookup, a warning, the
   next name, then TCP), and never a byte;
4. the connection is established (see handshake.py: no answer); move the
   carrier (the AF_UNIX stream, or the ring's wake-up socket) to the
   application's own fd number, and return the connection's state.

Without a known owner (first contact after ``ABSENT_TTL``, a failed lookup)
steps 2 and 3 swap: the hello follows the owner check, some tens of µs after
the connection. A server that does not take part then costs its clients the
look alone: one C call (``_ring.rendezvous``) that finds nobody at any name.

The caller (the socket class) turns the socket into the kind that state
describes; nothing here knows the socket classes.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import socket as _stdsocket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from .. import compat
from .._core import addresses, ringcore
from .._core.stdlib import (
    PeerCredentials,
    StdSocket,
    close_fds,
    peer_credentials,
    raw_family,
    send_fds,
    tcp_unused,
)
from . import handshake, owner, ring_link, transport_choice
from .connection import Connection
from .ring_link import (
    RingConnection,
    RingOffer,
    receive_ring,
    receive_window,
    ring_size,
    tcp_rmem,
)

_log = logging.getLogger("loopfast")

# A listener's owner, once checked, is trusted for OWNER_TTL seconds: a peer of
# that uid at the port's names gets the hello without another lookup. A squatter
# of another uid misses (its uid is compared); one of the same uid could pass the
# check anyway (F10 is a uid check).
OWNER_TTL = 1.0
# Nobody answered at a port's names: for ABSENT_TTL seconds connections there
# look first and ask the kernel for the owner only if somebody answers (a plain
# TCP server's clients pay no lookup). It decides the order of steps, never trust.
ABSENT_TTL = 5.0
# How long a client waits for room in a rendezvous backlog before it takes TCP:
# the client does not choose it, so a squatter with a full backlog costs this, no more.
RENDEZVOUS_WAIT = 0.05
_OwnerKey = tuple[int, str, int]
_recent_owners: dict[_OwnerKey, tuple[float, owner.Owner]] = {}
_absent: dict[_OwnerKey, float] = {}
_SNDTIMEO = (_stdsocket.SOL_SOCKET, _stdsocket.SO_SNDTIMEO)
_NONBLOCKING_STREAM = _stdsocket.SOCK_STREAM | _stdsocket.SOCK_NONBLOCK
_no_core_warned = False
_no_core_lock = threading.Lock()


class Rendezvous:
    """An AF_UNIX stream to a listener that passed the owner check.

    Attributes:
        stream: the AF_UNIX stream; None when the C core made it and said the
            hello (``greeted``): the stream is then ``fd``, already at the
            application's fd number for the stream transport (``moved``).
        fd: the stream's fd.
        credentials: the listener's process.
        server_rcvbuf: the TCP listener's SO_RCVBUF (None when unknown): the
            server's receive ring is sized from it.
    """

    def __init__(self, stream: _stdsocket.socket | None, credentials: PeerCredentials,
                 server_rcvbuf: int | None, fd: int = -1) -> None:
        self.stream = stream
        self.fd = stream.fileno() if stream is not None else fd
        self.credentials = credentials
        self.server_rcvbuf = server_rcvbuf
        self.greeted = False  # find() sent the prepared hello already
        self.moved = False  # ... and put the stream at the application's fd number

    def say_hello(self, family: int, local: tuple[Any, ...], target: tuple[Any, ...],
                  reserved: int, ring: tuple[int, int] | None = None,
                  fds: list[int] | None = None, slot: int = 0) -> None:
        """Send the hello presenting *local* as the client's address and *target* as the server's.

        *reserved* is the client's TCP socket holding *local*'s port: it travels
        with the hello, so the server can see the address for itself. With
        *ring* (sizes) the rings, in arena slot *slot*, carry the data and *fds*
        travel too, before it.

        Raises:
            OSError: the listener went away in between; EALREADY when the hello went.
        """
        if self.stream is None:
            raise OSError(errno.EALREADY, "the hello went already")
        send_fds(self.stream, _hello_wire(family, local, target, ring, slot),
                 [*(fds or ()), reserved])

    def keep(self) -> int:
        """The stream's fd, which the caller now owns (``close`` leaves it open)."""
        fd, self.fd = self.fd, -1
        if self.stream is not None:
            self.stream.detach()
        return fd

    def close(self) -> None:
        """Close the stream unless it was kept or moved to the application's fd number."""
        if self.stream is not None:
            self.stream.close()
        elif self.fd >= 0 and not self.moved:
            close_fds([self.fd])
        self.fd = -1


def _hello_wire(family: int, local: tuple[Any, ...], target: tuple[Any, ...],
                ring: tuple[int, int] | None, slot: int = 0) -> bytes:
    wire = handshake.with_client_port(_wire_for(family, local[0], target[0], target[1], ring),
                                      local[1])
    return handshake.with_slot(wire, slot) if ring is not None else wire


@functools.lru_cache(maxsize=64)  # a process talks to a handful of destinations
def _wire_for(family: int, cip: str, tip: str, tport: int,
              ring: tuple[int, int] | None) -> bytes:
    """The hello for these addresses and rings, client port 0 (``_hello_wire`` sets it)."""
    fam = _stdsocket.AF_INET6
    v4c, v4t = addresses.ipv4_of(family, cip), addresses.ipv4_of(family, tip)
    if v4c is not None and v4t is not None:
        fam, cip, tip = _stdsocket.AF_INET, v4c, v4t
    return handshake.encode(handshake.Hello(fam, cip, 0, tip, tport, ring))


class Prepared:
    """Everything a hello needs, made before the rendezvous connect.

    Owns the reservation (the fd of a duplicate of the application's TCP
    socket, bound to the local port it keeps) and the ring offer until
    ``connection`` hands them on or ``discard`` closes them; a failure while
    making it closes what was made.

    Raises:
        OSError: binding, duplicating, or making the rings failed (EMFILE, ...).
    """

    def __init__(self, app: _stdsocket.socket, host: str, port: int, transport: str,
                 settings: compat.CompatibilitySettings | None,
                 server_rcvbuf: int | None, server_uid: int) -> None:
        self.server_rcvbuf = server_rcvbuf
        self.server_uid = server_uid  # whose server gets the rings' arena
        self.offer: RingOffer | None = None
        family = raw_family(app)
        self.local = _reserve_local(app, family, host)
        self.target = addresses.tcp_style(family, host, port)
        # The TCP socket keeps the local port reserved (unique, visible to ss); it
        # becomes the connection's shadow (Connection.shadow), a socket object
        # only if an option needs one.
        self.reservation = os.dup(app.fileno())
        try:
            if transport == "ring":
                # c2s: big enough for an autotuning server, its window what its
                # SO_RCVBUF says until it attaches and sets its own; s2c: ours.
                rcvbuf_set = bool(getattr(app, "_rcvbuf_set", False))
                # Left alone, a TCP socket's SO_RCVBUF is tcp_rmem[1] (tcp_init_sock):
                # no syscall to learn it.
                rcvbuf = (StdSocket.getsockopt(app, _stdsocket.SOL_SOCKET, _stdsocket.SO_RCVBUF)
                          if rcvbuf_set else tcp_rmem()[1])
                s2c = ring_size(compat.ring_capacity(receive_ring(rcvbuf, rcvbuf_set), settings))
                self.offer = RingOffer((family, host, port, server_uid),
                                       receive_ring(server_rcvbuf, None), s2c,
                                       ring_size(server_rcvbuf),
                                       receive_window(s2c, rcvbuf, rcvbuf_set, settings))
            sizes, slot = (self.offer.sizes, self.offer.slot) if self.offer else (None, 0)
            self.wire = _hello_wire(family, self.local, self.target, sizes, slot)
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        """Close what this still owns. Idempotent."""
        if self.offer is not None:
            self.offer.discard()
        if self.reservation >= 0:
            close_fds([self.reservation])
            self.reservation = -1

    def fds(self, stream: int) -> list[int]:
        """The fds the hello on the rendezvous stream *stream* carries (handshake.py)."""
        ring = self.offer.fds_for_server(stream) if self.offer is not None else []
        return [*ring, self.reservation]

    def send(self, stream: _stdsocket.socket) -> None:
        """Send the hello on *stream*.

        Raises:
            OSError: the listener went away in between.
        """
        send_fds(stream, self.wire, self.fds(stream.fileno()))
        self.sent()

    def sent(self) -> None:
        """The hello went: the ring pool makes the next connection's parts now."""
        refill = getattr(ring_link, "refill", None)
        if self.offer is not None:
            self.offer.offered = True  # the server may hold its slot from now on
            if refill is not None:
                refill()


def connect(app: _stdsocket.socket, host: str, port: int, transport: str,
            settings: compat.CompatibilitySettings | None) -> Connection | None:
    """Connect the unconnected TCP socket *app* over the fast path; None to use TCP instead.

    On success *app*'s fd number refers to the carrier and the returned state
    describes the connection (a ``RingConnection`` when *transport* is "ring";
    without the C core "ring" means "stream", see ``available_transport``;
    "auto" is one of the two, chosen by ``transport_choice``).

    Everything that can fail for want of resources (fds, memory) is made
    before the hello goes out, and such a failure means TCP, which needs
    nothing more than the socket the application has.

    Raises:
        OSError: the rings could not be mapped after the hello went out.
    """
    family = raw_family(app)
    expected = _expected_owner(family, host, port)
    ready = None
    if expected is None:
        # Nobody known here: look first. A server that does not take part (a plain
        # TCP one) costs its clients that look alone: no transport chosen, no probe.
        looked = find(family, host, port, app.gettimeout())
        if looked is None:
            return None
        if not tcp_unused(app):  # connected or listening: TCP's connect() says what it says
            looked.close()
            return None
        found = looked
        transport, auto = _transport_for(transport, (family, host, port))
    else:
        transport, auto = _transport_for(transport, (family, host, port))
        try:  # which tells an unused socket by binding it (_reserve_local)
            ready = Prepared(app, host, port, transport, settings, expected.rcvbuf,
                             expected.uid)
        except OSError as exc:
            _log.debug("loopfast: fast path to %s:%s not taken (%s); using TCP", host, port, exc)
            return None
        onto = app.fileno() if ready.offer is None else -1
        try:
            greeted = find(family, host, port, app.gettimeout(), expected, ready, onto)
        except BaseException:
            ready.discard()
            raise
        if greeted is None:
            ready.discard()
            return None
        found = greeted
    # The stream is made non-blocking (find): the socket's own mode then needs a
    # syscall only when it is blocking, or the stream was made to wait for room.
    nonblocking = found.stream is None or found.stream.gettimeout() == 0.0
    try:
        if ready is None or not found.greeted:  # greeted: find() sent ready's hello
            ready = _greet(found, ready, lambda rcvbuf, uid: Prepared(
                app, host, port, transport, settings, rcvbuf, uid))
            if ready is None:
                return None
        offer, reservation = ready.offer, ready.reservation
        if not found.moved:
            carrier = offer.client_r.fileno() if offer is not None else found.fd
            os.dup2(carrier, app.fileno(), inheritable=False)
        # The rings keep the stream: it is the server's wake-up pair (handshake.py).
        stream = found.keep() if offer is not None else -1
    finally:
        found.close()
    # The new file description needs the socket's O_NONBLOCK: the rendezvous
    # stream is made non-blocking, the ring's r blocking.
    if offer is None:
        if not nonblocking or app.gettimeout() is None:
            StdSocket.settimeout(app, app.gettimeout())
        made = Connection(family, ready.local, ready.target, found.credentials, reservation)
        made.auto = auto
        return made
    try:
        if app.gettimeout() is not None:
            StdSocket.settimeout(app, app.gettimeout())
    except BaseException:
        offer.discard()
        close_fds([reservation, stream])
        raise
    try:
        link = offer.client_link(app.fileno(), stream)  # which closes all it has on failure
    except BaseException:
        close_fds([reservation])
        raise
    made = RingConnection(family, ready.local, ready.target, found.credentials,
                          reservation, link)
    made.auto = auto
    return made


def _transport_for(transport: str,
                   destination: tuple[int, str, int]) -> tuple[str, transport_choice.Auto | None]:
    """The transport a connection to *destination* takes, and for "auto" what judges it."""
    auto = None
    if transport == "auto":
        auto = transport_choice.Auto(destination)
        transport = transport_choice.choose(destination)
    return available_transport(transport), auto


def _greet(found: Rendezvous, ready: Prepared | None,
           prepare: Callable[[int | None, int], Prepared]) -> Prepared | None:
    """Send the hello to *found* after the owner check: *ready*'s if it was made for this
    owner (its uid and SO_RCVBUF), else a new one. None (everything closed) to use TCP."""
    uid = found.credentials.uid
    try:
        if ready is not None and (ready.server_rcvbuf != found.server_rcvbuf
                                  or ready.server_uid != uid):
            ready.discard()  # the owner changed since it was made: the rings may differ
            ready = None
        if ready is None:
            ready = prepare(found.server_rcvbuf, uid)
        if found.stream is None:  # only a greeted rendezvous has none (find)
            raise OSError(errno.EALREADY, "the hello went already")
        ready.send(found.stream)
    except OSError as exc:
        if ready is not None:
            ready.discard()
        _log.debug("loopfast: fast path not taken (%s); using TCP", exc)
        return None
    return ready


def available_transport(transport: str) -> str:
    """*transport*, or "stream" for "ring" when this build has no C core.

    The first fallback in a process logs a warning saying why and what to do.
    """
    global _no_core_warned
    if transport != "ring" or ringcore.ring is not None:
        return transport
    with _no_core_lock:
        if not _no_core_warned:
            _no_core_warned = True
            _log.warning("loopfast: the ring transport is unavailable, so fast-path connections "
                         "use the stream transport (AF_UNIX): %s. To get the rings, %s.",
                         ringcore.missing, ringcore.REMEDY)
    return "stream"


def _reserve_local(app: _stdsocket.socket, family: int, host: str) -> tuple[Any, ...]:
    """Bind *app* (still TCP, of *family*) to a loopback port unless bound; its TCP-style
    address.

    A bind that succeeds also proves *app* unused: a connected, connecting or
    listening socket is bound. One that fails with EINVAL finds it bound.

    Raises:
        OSError: EISCONN when *app* is connected, connecting or listening; as bind.
    """
    if family == _stdsocket.AF_INET:
        loop = "127.0.0.1"
    else:
        loop = "::ffff:127.0.0.1" if addresses.ipv4_of(family, host) else "::1"
    try:
        StdSocket.bind(app, (loop, 0))
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        if not tcp_unused(app):
            raise OSError(errno.EISCONN, "the socket is connected or listening") from None
    bound: tuple[Any, ...] = StdSocket.getsockname(app)
    if bound[1] == 0:  # bound with IP_BIND_ADDRESS_NO_PORT: the port comes with connect()
        raise OSError(errno.EADDRNOTAVAIL, "the socket is bound without a port")
    if bound[0] in ("0.0.0.0", "::"):
        v4 = addresses.ipv4_of(family, host)
        return addresses.tcp_style(family, v4 or "::1", bound[1])
    return bound


def find(family: int, host: str, port: int, timeout: float | None,
         expected: owner.Owner | None = None, ready: Prepared | None = None,
         onto: int = -1) -> Rendezvous | None:
    """Reach a fast-path listener of *host*:*port* (numeric, loopback), or None for TCP.

    Every name is tried, most specific first, until one's peer passes the
    owner check: a squatter on one name costs its clients nothing but the
    look. A name whose backlog stays full for ``RENDEZVOUS_WAIT`` seconds
    (or at once when *timeout*, the application's, is 0.0), and any failure
    to make the stream (EMFILE, ...), mean TCP: no peer and no limit can make
    a client hang or fail where TCP would connect.

    With *expected* (the TCP listener's owner, known) and *ready*, a peer of
    the owner's uid gets *ready*'s hello right after the connect (the
    returned rendezvous is ``greeted`` then, its stream moved to fd number
    *onto* when that is given and the C core did it); any other peer the
    full check.
    """
    key = _owner_key(family, host, port)
    names = addresses.client_names(family, host, port)
    answered = False
    # The C core tries the names, checks the uid and says the hello in one call.
    core = ringcore.ring
    at = 0
    while at < len(names):
        reached: tuple[_stdsocket.socket, PeerCredentials] | None = None
        if core is not None:
            try:
                if ready is not None and expected is not None:
                    got = core.rendezvous(names[at:], expected.uid, ready.wire, ready.fds(-1),
                                          onto)
                else:
                    got = core.rendezvous(names[at:], -1, b"", [], -1)
            except BlockingIOError:
                got = False  # a backlog is full: _reach waits for room, name by name
            except OSError:
                return None  # e.g. EMFILE (TCP needs no new fd), or the peer went away
            if got is None:
                break  # nobody at the names left
            if got:
                fd, pid, uid, gid, sent, index = got
                at += index
                credentials = PeerCredentials(pid, uid, gid)
                if sent and ready is not None and expected is not None:
                    ready.sent()  # back to back with the connect: see the module docstring
                    _trust(key, expected)
                    found = Rendezvous(None, credentials, expected.rcvbuf, fd)
                    found.greeted, found.moved = True, onto >= 0 and fd == onto
                    return found
                reached = (_stream_of(fd), credentials)
        if reached is None:
            try:
                reached = _reach(names[at], timeout)
            except OSError:
                return None  # backlog full for too long, the peer went away, EMFILE
            if reached is None:
                at += 1
                continue  # nobody there
        stream, credentials = reached
        if (ready is not None and expected is not None and credentials.uid == expected.uid
                and not owner.unmapped(credentials.uid)):
            try:
                ready.send(stream)  # back to back with the connect: see the module docstring
            except OSError:
                stream.close()
                return None  # the peer went away
            except BaseException:
                stream.close()
                raise
            _trust(key, expected)
            found = Rendezvous(stream, credentials, expected.rcvbuf)
            found.greeted = True
            return found
        answered = True
        holder = _owner_matching(family, host, port, credentials)
        if holder is not None:
            return Rendezvous(stream, credentials, holder.rcvbuf)
        stream.close()
        at += 1
    if not answered:
        _absent[key] = time.monotonic() + ABSENT_TTL
        if len(_absent) > 1024:
            _absent.clear()
    return None


def _stream_of(fd: int) -> _stdsocket.socket:
    """A socket object for the C core's non-blocking rendezvous stream *fd*, which it owns."""
    try:
        stream = StdSocket(_stdsocket.AF_UNIX, _stdsocket.SOCK_STREAM, 0, fileno=fd)
    except BaseException:
        close_fds([fd])
        raise
    stream.setblocking(False)
    return stream


def _reach(name: bytes, timeout: float | None) -> tuple[_stdsocket.socket,
                                                         PeerCredentials] | None:
    """A new AF_UNIX stream connected to *name* and its peer's credentials; None when
    nobody listens there.

    Raises:
        OSError: the stream could not be made (EMFILE), the backlog stayed full
            (see ``_connect``), or the peer went away.
    """
    stream = StdSocket(_stdsocket.AF_UNIX, _NONBLOCKING_STREAM)
    try:
        _connect(stream, name, timeout)
        return stream, peer_credentials(stream)
    except (ConnectionRefusedError, FileNotFoundError):
        stream.close()
        return None
    except BaseException:
        stream.close()
        raise


def _connect(stream: _stdsocket.socket, name: bytes, timeout: float | None) -> None:
    """Connect the non-blocking *stream* to *name*, waiting for backlog room at most
    ``RENDEZVOUS_WAIT`` (not at all when *timeout* is 0.0).

    A non-blocking AF_UNIX connect completes at once or fails with EAGAIN when
    the backlog is full, so the common case costs one syscall; only then is the
    wait given to the kernel, as SO_SNDTIMEO, which bounds a blocking
    connect's wait for room.

    Raises:
        BlockingIOError: the backlog stayed full; OSError: as ``connect``.
    """
    try:
        stream.connect(name)
        return
    except BlockingIOError:
        if timeout == 0.0:
            raise
    stream.setblocking(True)
    wait = RENDEZVOUS_WAIT if timeout is None else min(timeout, RENDEZVOUS_WAIT)
    stream.setsockopt(*_SNDTIMEO, struct.pack("ll", 0, max(int(wait * 1e6), 1)))
    stream.connect(name)
    # The stream may become the application's socket: no kernel send timeout of ours on it.
    stream.setsockopt(*_SNDTIMEO, bytes(16))


def _owner_key(family: int, host: str, port: int) -> _OwnerKey:
    v4 = addresses.ipv4_of(family, host)
    return (_stdsocket.AF_INET, v4, port) if v4 else (_stdsocket.AF_INET6, host, port)


def _expected_owner(family: int, host: str, port: int) -> owner.Owner | None:
    """The owner of the TCP listener *host*:*port* reaches, if known without connecting:
    checked within ``OWNER_TTL``, or looked up now unless nobody answered at the
    port's names within ``ABSENT_TTL``. None: connect first (see the module docstring)."""
    key = _owner_key(family, host, port)
    now = time.monotonic()
    known = _recent_owners.get(key)
    if known is not None and known[0] > now:
        return known[1]
    if _absent.get(key, 0.0) > now:
        return None
    try:
        holder = owner.listener_owner(*key)
    except OSError:
        return None  # the full check after the connect says why
    if holder is None or owner.unmapped(holder.uid):
        return None
    return holder


def _trust(key: _OwnerKey, holder: owner.Owner) -> None:
    _absent.pop(key, None)
    if len(_recent_owners) > 1024:
        _recent_owners.clear()
    _recent_owners[key] = (time.monotonic() + OWNER_TTL, holder)


def _owner_matching(family: int, host: str, port: int,
                    creds: PeerCredentials) -> owner.Owner | None:
    """The TCP listener's owner when it is the peer's uid (asked of the kernel now);
    None (and a warning) otherwise."""
    key = _owner_key(family, host, port)
    try:
        holder = owner.listener_owner(*key)
    except OSError as exc:
        _log.warning("loopfast: cannot tell who owns %s:%s (%s); using TCP", host, port, exc)
        return None
    if holder is None:
        _log.warning(
            "loopfast: a process (pid %d, uid %d) holds the fast-path name of %s:%s but no "
            "TCP listener is there; using TCP", creds.pid, creds.uid, host, port)
        return None
    if owner.unmapped(creds.uid) or owner.unmapped(holder.uid):
        _log.warning(
            "loopfast: the fast-path peer of %s:%s (pid %d) or its TCP listener shows the "
            "overflow uid %d: this process is in a user namespace that does not map it, so "
            "the owner cannot be proven; using TCP", host, port, creds.pid, owner.overflow_uid())
        return None
    if holder.uid != creds.uid:
        _log.warning(
            "loopfast: the fast-path peer of %s:%s (pid %d, uid %d) does not own its TCP "
            "listener (uid %d); using TCP", host, port, creds.pid, creds.uid, holder.uid)
        return None
    _trust(key, holder)
    return holder
