"""The server side of the rendezvous: one listening socket, two kinds of arrival.

A fast-path listener is a TCP listener (for every client that does not take
the fast path, and as the proof of ownership clients check) plus AF_UNIX
listeners on the rendezvous names. Both, and every arrival whose hello has not
come in yet, sit in one epoll instance, and that epoll instance is what the
application's socket fd refers to: ``select``/``selectors`` on ``fileno()`` see
the listener readable when any kind of connection waits.

Invariants:
- ``self.tcp`` is the only reference to the TCP listener's file description;
  the application's fd number refers to the epoll instance until ``close`` or
  ``restore_tcp``.
- An arrival moves from ``pending`` to the caller only with a whole, valid
  hello consumed from its stream and nothing more.
- Nothing an arrival sends or fails to send makes ``next_arrival`` raise,
  block or spin: a bad hello is refused (its stream and every fd it brought
  closed, the refusal logged rate-limited per uid); a slow one waits in
  ``arrivals.Pending``, bounded per uid and in time, and is looked at only
  when epoll says its stream moved; one call accepts at most
  ``ACCEPT_BURST`` arrivals per name, so a flood never holds up the caller.
- A hello normally comes with its connection (the client sends it right
  after its connect). One that is not queued yet is waited for, but at most
  ``HELLO_GRACE`` seconds in all per ``Grace`` (one per accept() call, across
  all arrivals), then the arrival is held: so a
  listener that select() reported readable accepts an honest client without
  BlockingIOError, and silent arrivals cannot make a call wait longer.
- ``accept`` is called only on a listening socket epoll reported ready
  (``_ready``); with none known, one ``epoll.poll(0)`` asks which are.
- At the fd limit (EMFILE/ENFILE on a rendezvous accept) the names are
  withdrawn for ``EXHAUSTED_BACKOFF`` seconds: new clients take TCP (one fd
  here instead of several), and nothing keeps the bundle readable meanwhile.
  The names come back at the first accept() after that (a blocked accept()
  wakes for it); arrivals queued when they were withdrawn see a reset.
"""

from __future__ import annotations

import _socket as _csocket
import dataclasses
import errno
import functools
import logging
import os
import select
import socket as _stdsocket
import time
import weakref
from typing import Any, NamedTuple

from .. import compat, filters, policy
from .._core import addresses, options, ringcore
from .._core.stdlib import PeerCredentials, StdSocket, close_fds
from . import handshake, owner
from .arrivals import HELLO_DEADLINE, Pending, Refusals
from .connection import Connection, Inherited
from .hello_io import recv_hello, take_hello, tcp_name
from .ring_link import RingConnection, receive_window, ring_limits, server_link

ACCEPT_BURST = 64  # arrivals one call takes from one rendezvous name at most
# What one accept() call waits, in all, for hellos not queued with their connection
# (the kernel's timer slack, 50 µs by default, comes on top when none comes).
HELLO_GRACE = 50e-6
EXHAUSTED_BACKOFF = 1.0
_JUDGED_MAX = 256  # hellos judged kept per listener: a process or two per client
_SELECT_LIMIT = 1024  # FD_SETSIZE
_FD_LIMIT = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)

_log = logging.getLogger("loopfast")



class Grace:
    """What one accept() call may still wait, in all, for hellos not queued yet."""

    __slots__ = ("left",)

    def __init__(self, seconds: float = HELLO_GRACE) -> None:
        self.left = seconds

    def wait(self, conn: _csocket.socket) -> bool:
        """Wait for *conn* to turn readable within what is left; True if it did."""
        if self.left <= 0:
            return False
        began = time.monotonic()
        ready = _wait_readable(conn, self.left)
        self.left -= time.monotonic() - began
        return ready


class TcpArrival(NamedTuple):
    """A TCP connection the kernel accepted: its fd and the client's address."""

    fd: int
    address: Any


class FastArrival(NamedTuple):
    """A fast-path client whose whole, valid hello was consumed from its stream."""

    stream: int  # the AF_UNIX stream's fd (blocking, as accept(2) makes it), the caller's
    ring: tuple[int, int, int] | None  # the hello's rings (c2s, s2c, arena slot); None: stream
    credentials: PeerCredentials
    fds: list[int]  # the ring's fds the hello carried, in handshake.py's order
    local: tuple[Any, ...]  # getsockname() of the accepted socket
    peer: tuple[Any, ...]  # getpeername(): what the client's reserved socket is bound to


class Listener:
    """The kernel parts of a fast-path listener (see the module docstring)."""

    def __init__(self, tcp: _stdsocket.socket, host: str, port: int, dual_stack: bool) -> None:
        self.tcp = tcp
        self.family = tcp.family
        self.host, self.port, self.dual_stack = host, port, dual_stack
        self.rendezvous: list[_stdsocket.socket] = []
        self.epoll = select.epoll()
        self.epoll.register(tcp.fileno(), select.EPOLLIN)
        self.pending = Pending(self.epoll)
        self.refusals = Refusals(host, port)
        self._moved: set[int] = set()  # held arrivals epoll reported, not yet looked at
        self._ready: set[int] = set()  # listening fds epoll reported, not yet drained
        self._limits: tuple[int, int, int] | None = None  # ring_limits and SO_RCVBUF
        self._backlog = _stdsocket.SOMAXCONN
        self._exhausted_until: float | None = None
        self._tcp_turn = False
        self._inherit: Inherited | None = None
        # Hellos judged, by their bytes without the client's port (_judge).
        self._judged: dict[bytes, tuple[handshake.Hello, tuple[Any, ...]]] = {}
        self._overflow_uid = owner.overflow_uid()  # only this uid can be an unmapped one
        # The C core's calls straight, without hello_io's choice on every arrival.
        core = ringcore.ring
        self._take_hello = take_hello if core is None else core.take_hello
        self._tcp_name = tcp_name if core is None else core.tcp_name
        self.users = 1  # socket objects sharing this listener (dup)
        self._watch = _weak_withdraw(self)
        filters.watch(self._watch)

    @classmethod
    def start(cls, sock: _stdsocket.socket, backlog: int) -> Listener | None:
        """Publish *sock*'s rendezvous names and bundle it; None when the fast path is not offered.

        *sock* must be listening. On success the fd number of *sock* refers to
        the bundle's epoll instance and the TCP listener lives on in ``tcp``.

        Raises:
            OSError: creating the epoll instance or duplicating fds failed.
        """
        host, port = sock.getsockname()[:2]
        dual = sock.family == _stdsocket.AF_INET6 and not sock.getsockopt(
            _stdsocket.IPPROTO_IPV6, _stdsocket.IPV6_V6ONLY)
        if not addresses.listener_names(sock.family, host, port, dual):
            return None
        tcp = StdSocket(sock.family, _stdsocket.SOCK_STREAM, sock.proto,
                        fileno=os.dup(sock.fileno()))
        tcp.setblocking(False)
        self = cls(tcp, host, port, dual)
        if not self.offer(backlog):
            self.close()
            return None
        os.dup2(self.epoll.fileno(), sock.fileno(), inheritable=False)
        return self

    def offer(self, backlog: int) -> bool:
        """Publish the rendezvous names if the policy and filters allow; True if any is held.

        Raises:
            OSError: a name's socket could not be made (EMFILE, ...).
        """
        self._backlog = backlog
        if not self.rendezvous and _offer_allowed(self.host, self.port):
            for name in addresses.listener_names(self.family, self.host, self.port,
                                                  self.dual_stack):
                self._publish(name, backlog)
        return bool(self.rendezvous)

    def _publish(self, name: bytes, backlog: int) -> None:
        kind = _stdsocket.SOCK_STREAM | _stdsocket.SOCK_NONBLOCK
        unix = StdSocket(_stdsocket.AF_UNIX, kind)
        try:
            unix.bind(name)
        except OSError as exc:
            unix.close()
            if exc.errno != errno.EADDRINUSE:
                raise
            _log.warning(
                "loopfast: rendezvous name %r is taken by another process; %s:%s serves "
                "TCP only to clients that look it up", name[1:].decode(), self.host, self.port)
            return
        unix.listen(backlog)
        self.epoll.register(unix.fileno(), select.EPOLLIN)
        self.rendezvous.append(unix)

    def next_arrival(self, grace: Grace | None = None,
                     look: bool = True) -> TcpArrival | FastArrival | None:
        """One waiting connection, or None: a TCP ``(fd, addr)`` or a fast-path arrival.

        Never blocks, but waits for a hello not yet queued as long as *grace*
        allows (see the module docstring). TCP and fast-path arrivals take
        turns so neither starves. *look* False: what epoll reported before is
        taken, but epoll is not asked again (a caller that will ``wait()``
        next, which reports the same at once, saves the syscall).

        Raises:
            OSError: the TCP listener's accept failed (e.g. EMFILE).
        """
        if self._exhausted_until is not None or self.pending:
            now = time.monotonic()
            self._offer_again(now)
            for conn, uid in self.pending.expired(now):
                conn.close()
                self.refusals.note(uid, f"no whole hello within {HELLO_DEADLINE:.0f} s")
        polled = not self._ready and not self._moved
        if polled:
            if not look:
                return None
            self._note(self.epoll.poll(0, ACCEPT_BURST))  # what is ready now, in one call
        grace = grace or Grace(0.0)
        arrival = self._take(grace)
        if arrival is None and not polled and look:  # what was known is drained: anything new?
            self._note(self.epoll.poll(0, ACCEPT_BURST))
            arrival = self._take(grace)
        return arrival

    def _take(self, grace: Grace) -> TcpArrival | FastArrival | None:
        if not self._ready and not self._moved:
            return None
        self._tcp_turn = not self._tcp_turn
        if self._tcp_turn:
            return self._accept_tcp() or self._accept_fast(grace)
        return self._accept_fast(grace) or self._accept_tcp()

    def inherited(self) -> Inherited:
        """The options accepted connections take from the TCP listener (cached)."""
        if self._inherit is None:
            self._inherit = options.inheritable(self.tcp)
        return self._inherit

    def options_changed(self) -> None:
        """Forget the cached options of the TCP listener (the program set one)."""
        self._inherit = None
        self._limits = None
        self._judged.clear()  # a ring size judged against the old limits

    def ring_limits(self) -> tuple[int, int, int]:
        """``ring_link.ring_limits`` of the TCP listener and its SO_RCVBUF (cached until
        ``options_changed``)."""
        if self._limits is None:
            receive, send = ring_limits(self.tcp)
            self._limits = (receive, send, self.tcp.getsockopt(_stdsocket.SOL_SOCKET,
                                                               _stdsocket.SO_RCVBUF))
        return self._limits

    def wait(self, timeout: float | None) -> None:
        """Park until something may be ready, or *timeout* seconds pass (None: no limit)."""
        if self._exhausted_until is not None:  # wake to offer the names again
            until = self._exhausted_until - time.monotonic()
            timeout = max(until, 0.0) if timeout is None else min(timeout, max(until, 0.0))
        self._note(self.epoll.poll(-1 if timeout is None else timeout, ACCEPT_BURST))

    def _note(self, events: list[tuple[int, int]]) -> None:
        # A held arrival is edge-triggered: an event taken from the epoll instance
        # is its only word that bytes came, so it is kept until looked at. A
        # listening socket is level-triggered: reported again while it has more.
        for fd, _ in events:
            (self._moved if fd in self.pending else self._ready).add(fd)

    def accepted(self, arrival: FastArrival, rcvbuf_set: bool = False,
                 settings: compat.CompatibilitySettings | None = None) -> tuple[int, Connection]:
        """The fd an accepted socket takes for *arrival*, and its connection state.

        A ring's receive window is set here (``ring_link.receive_window``): the
        whole ring unless the listener's program set SO_RCVBUF (*rcvbuf_set*),
        under its compatibility *settings*' cap.

        Every fd the arrival holds is either handed on (the returned fd, the
        state's) or closed, whatever happens.

        Raises:
            OSError: EINVAL when the hello's fds are not what the handshake promises.
        """
        ring, local, peer = arrival.ring, arrival.local, arrival.peer
        try:
            inherit = self.inherited()
            if ring is not None:
                rcvbuf = self.ring_limits()[2]
                window = receive_window(ring[0], rcvbuf, rcvbuf_set, settings)
        except BaseException:
            close_fds([arrival.stream, *arrival.fds])
            raise
        if ring is None:
            return arrival.stream, Connection(self.family, local, peer,
                                              arrival.credentials, None, inherit)
        link = server_link(arrival.stream, arrival.fds, ring, window)
        return arrival.stream, RingConnection(self.family, local, peer, arrival.credentials,
                                              None, link, inherit)

    def listen(self, backlog: int) -> None:
        """Change the backlog of the TCP listener and of the rendezvous names."""
        self.tcp.listen(backlog)
        for unix in self.rendezvous:
            unix.listen(backlog)

    def _accept_tcp(self) -> TcpArrival | None:
        fd = self.tcp.fileno()
        if fd not in self._ready:
            return None
        try:
            return TcpArrival(*self.tcp._accept())  # type: ignore[attr-defined]
        except (BlockingIOError, InterruptedError):
            self._ready.discard(fd)
            return None
        except OSError as exc:
            # accept4() takes an fd number before it looks at the queue, so at the fd
            # limit it fails with nothing queued; a TCP listener would not have been
            # readable then, and the application would not have called accept().
            if exc.errno in _FD_LIMIT and not _readable(self.tcp):
                self._ready.discard(fd)
                return None
            raise

    def _accept_fast(self, grace: Grace) -> FastArrival | None:
        while self._moved:
            arrival = self._look_at(self._moved.pop())
            if arrival is not None:
                return arrival
        for unix in list(self.rendezvous):
            if self._exhausted_until is not None:
                break  # the names were withdrawn meanwhile
            if unix.fileno() in self._ready:
                arrival = self._accept_from(unix, grace)
                if arrival is not None:
                    return arrival
        return None

    def _look_at(self, fd: int) -> FastArrival | None:
        conn = self.pending.get(fd)
        if conn is None:
            return None  # dropped since epoll reported it
        size = _hello_size(conn)
        if size == 0:
            return None  # half a hello: the next edge says more came
        conn, credentials = self.pending.take(fd)
        if size < 0:
            conn.close()
            self.refusals.note(credentials.uid, "the stream ended before a whole hello")
            return None
        return self._receive(conn, size, credentials)

    def _accept_from(self, unix: _stdsocket.socket, grace: Grace) -> FastArrival | None:
        for _ in range(ACCEPT_BURST):
            try:
                taken = self._take_hello(unix.fileno(), handshake.HELLO_SIZE,
                                         handshake.RING_EXT.size, handshake.RING_FDS)
            except OSError as exc:
                if exc.errno in _FD_LIMIT:
                    self._exhausted(exc)
                else:
                    self.refusals.note(None, f"accepting it failed: {exc}")
                return None
            if taken is None:
                self._ready.discard(unix.fileno())
                return None
            fd, pid, uid, gid, data, fds, truncated = taken
            credentials = PeerCredentials(pid, uid, gid)
            if data:  # the usual case: the hello came with the connection
                arrival = self._validate(fd, credentials, data, fds, truncated)
                if arrival is not None:
                    return arrival
                continue
            if data is not None:  # the stream ended before a hello
                os.close(fd)
                continue
            conn = _csocket.socket(_csocket.AF_UNIX, _csocket.SOCK_STREAM, 0, fd)
            conn.setblocking(False)  # held: looked at, never waited on
            if grace.wait(conn):
                size = _hello_size(conn)
                if size > 0:
                    arrival = self._receive(conn, size, credentials)
                    if arrival is not None:
                        return arrival
                    continue
                if size < 0:
                    conn.close()
                    continue
            self._hold(conn, credentials)
        return None

    def _hold(self, conn: _csocket.socket, credentials: PeerCredentials) -> None:
        try:
            dropped = self.pending.hold(conn, credentials)
        except OSError as exc:
            conn.close()
            self.refusals.note(None, f"it could not be held: {exc}")
            return
        for old, old_uid in dropped:
            old.close()
            self.refusals.note(old_uid, "too many arrivals without a whole hello; dropped the "
                               "oldest")

    def _exhausted(self, exc: OSError) -> None:
        """At the fd limit: stop offering the fast path for a while (see the module docstring)."""
        self.withdraw()
        self._exhausted_until = time.monotonic() + EXHAUSTED_BACKOFF
        self.refusals.note(None, f"this process is at its fd limit ({exc}); fast-path clients "
                           f"use TCP for {EXHAUSTED_BACKOFF:.0f} s")

    def _offer_again(self, now: float) -> None:
        if self._exhausted_until is None or now < self._exhausted_until:
            return
        self._exhausted_until = None
        try:
            self.offer(self._backlog)
        except OSError as exc:
            if exc.errno not in _FD_LIMIT:
                raise
            self._exhausted(exc)

    def _receive(self, conn: _csocket.socket, size: int,
                 credentials: PeerCredentials) -> FastArrival | None:
        """Take the whole hello (*size* bytes, queued) of a held arrival, and validate it."""
        try:
            data, fds, truncated = recv_hello(conn, size, handshake.RING_FDS)
        except OSError as exc:
            conn.close()
            self.refusals.note(credentials.uid, exc)
            return None
        conn.setblocking(True)  # as take_hello hands streams on
        return self._validate(conn.detach(), credentials, data, fds, truncated)

    def _validate(self, conn: int, credentials: PeerCredentials, data: bytes, fds: list[int],
                  truncated: bool) -> FastArrival | None:
        """The arrival of the stream *conn* whose hello *data* brought *fds*, or None (and
        everything closed, the refusal noted) when it is refused."""
        uid = credentials.uid
        try:
            if truncated:
                came = len(fds)
                close_fds(fds)
                fds = []
                if came < handshake.RING_FDS:  # room was left: the kernel could not install them
                    raise OSError(errno.EMFILE, "the fds a hello carried could not be received: "
                                  "this process is at its limit of open files")
                raise handshake.HandshakeError(
                    errno.ECONNREFUSED, f"hello carried more than {handshake.RING_FDS} fds")
            if uid == self._overflow_uid and owner.unmapped(uid):
                raise handshake.HandshakeError(
                    errno.ECONNREFUSED, f"the client's uid is not mapped in this user namespace "
                    f"(it shows as the overflow uid {uid}), so it cannot be told apart")
            key = handshake.judged_part(data)
            judged = self._judged.get(key)
            if judged is None:
                judged = self._judge(key, data)
            hello, local = judged
            want = handshake.RING_FDS if hello.ring else handshake.STREAM_FDS
            if len(fds) != want:
                raise handshake.HandshakeError(
                    errno.ECONNREFUSED, f"hello carried {len(fds)} fds, the handshake says {want}")
            peer = self._client_address(fds[-1], hello, handshake.CLIENT_PORT.unpack_from(
                data, handshake.CLIENT_PORT_AT)[0])
            if not _offer_allowed(self.host, self.port):
                raise handshake.HandshakeError(errno.ECONNREFUSED, "a filter now covers this port")
            reserved = fds.pop()  # it said what it had to
            try:  # noqa: SIM105 (contextlib.suppress: three calls more on every accept)
                os.close(reserved)
            except OSError:  # closed all the same (close(2) on Linux)
                pass
            ring = None
            if hello.ring is not None:
                ring = (*hello.ring, handshake.SLOT.unpack_from(data, handshake.SLOT_AT)[0])
            return FastArrival(conn, ring, credentials, fds, local, peer)
        except OSError as exc:
            close_fds([conn, *fds])
            self.refusals.note(uid, exc)
            return None

    def _judge(self, key: bytes, data: bytes) -> tuple[handshake.Hello, tuple[Any, ...]]:
        """Decode the hello *data* and check what it says but the client's port and
        its slot: the hello (port and slot 0) and the accepted socket's address, kept
        under *key* (``handshake.judged_part``). Every connection of one client process
        says the same.

        Raises:
            HandshakeError: see ``handshake.decode``, ``_local_address`` and
                ``_check_ring_sizes``; nothing is kept then.
        """
        hello = handshake.decode(data)
        local = self._local_address(hello)
        if hello.ring is not None:  # rings larger than this server maps for a client
            self._check_ring_sizes(hello.ring)
        if len(self._judged) >= _JUDGED_MAX:
            self._judged.clear()
        judged = (dataclasses.replace(hello, client_port=0, slot=0), local)
        self._judged[key] = judged
        return judged

    def _check_ring_sizes(self, sizes: tuple[int, int]) -> None:
        """Refuse rings (c2s, s2c) larger than this listener maps for a client.

        Raises:
            ConnectionRefusedError: a ring is larger than ``ring_link.ring_limits``.
        """
        receive, send, _rcvbuf = self.ring_limits()
        if sizes[0] > receive or sizes[1] > send:
            raise ConnectionRefusedError(
                errno.ECONNREFUSED, f"hello asks for rings of {sizes[0]} and {sizes[1]} bytes; "
                f"this server maps at most {receive} and {send}")

    def _client_address(self, reserved: int, hello: handshake.Hello,
                         claimed: int) -> tuple[Any, ...]:
        """The client's address, read from the TCP socket it keeps reserved (not from the hello,
        which claims the port *claimed*).

        Raises:
            HandshakeError: *reserved* is no bound TCP socket on loopback, holds another
                port than the hello names, or is of a family this listener does not take.
        """
        refuse = handshake.HandshakeError
        try:
            bound = self._tcp_name(reserved)
        except OSError as exc:
            raise refuse(errno.ECONNREFUSED, f"the hello's last fd is no socket ({exc})") from None
        if bound is None:
            raise refuse(errno.ECONNREFUSED, "the hello's last fd is not the client's TCP socket")
        family, host, port = bound
        if port == 0 or port != claimed:
            raise refuse(errno.ECONNREFUSED, f"the client claims port {claimed} but "
                         f"holds {port}")
        return addresses.tcp_style(self.family, _client_host(
            self.family, self.dual_stack, family, host, hello.family, hello.client_ip), port)

    def _local_address(self, hello: handshake.Hello) -> tuple[Any, ...]:
        """The accepted socket's own address: the listener's, or for a wildcard listener
        the loopback address the client connected to.

        Raises:
            HandshakeError: a hello for another port, or a target that is not loopback.
        """
        refuse = handshake.HandshakeError
        if hello.target_port != self.port:
            raise refuse(errno.ECONNREFUSED, f"hello is for port {hello.target_port}")
        host, family = self.host.split("%", 1)[0], int(self.family)
        if host in ("0.0.0.0", "::"):
            host, family = hello.target_ip, hello.family
            if not addresses.is_loopback(family, host):
                raise refuse(errno.ECONNREFUSED, f"target address {host} is not loopback")
        v4 = addresses.ipv4_of(family, host)
        if self.family == _stdsocket.AF_INET and v4 is None:
            raise refuse(errno.ECONNREFUSED, f"target address {host} at an IPv4 listener")
        return addresses.tcp_style(self.family, v4 or host, self.port)

    def withdraw(self, unregister: bool = True) -> None:
        """Stop offering the fast path: close the rendezvous names and pending arrivals.

        *unregister* False leaves the epoll instance alone: after fork() it is
        shared with the other process, whose listener must keep working.
        """
        for unix in self.rendezvous:
            if unregister:
                self.epoll.unregister(unix.fileno())
            unix.close()
        self.rendezvous.clear()
        self.pending.clear(unregister)
        self._moved.clear()
        self._ready.intersection_update({self.tcp.fileno()})

    def shutdown(self, how: int) -> None:
        """shutdown() the TCP listener and the rendezvous: a blocked accept() wakes with EINVAL."""
        self.tcp.shutdown(how)
        for unix in self.rendezvous:
            unix.shutdown(how)

    def restore_tcp(self, fd: int) -> None:
        """Put the TCP listener at fd number *fd* (no longer this bundle's) and release it."""
        os.dup2(self.tcp.fileno(), fd, inheritable=False)
        self.release()

    def release(self) -> None:
        """One socket object less shares this bundle; the last one closes it."""
        self.users -= 1
        if self.users == 0:
            self.close()

    def close(self) -> None:
        """Release every fd of the bundle except the application's own fd numbers."""
        filters.unwatch(self._watch)
        # Closing an fd drops its epoll registration once no process holds it;
        # unregistering here would also take it from a forked twin's listener.
        self.withdraw(unregister=False)
        self.epoll.close()
        self.tcp.close()


@functools.lru_cache(maxsize=256)  # a listener sees a handful of client addresses
def _client_host(listener_family: int, dual_stack: bool, family: int, host: str,
                 claimed_family: int, claimed: str) -> str:
    """The host of a client whose reserved socket is bound to *host* (of *family*) and whose
    hello claims *claimed*: IPv4 when it is IPv4 or IPv4-mapped (``tcp_style`` makes it the
    listener family's form).

    Raises:
        HandshakeError: the claim is not what the socket holds, not loopback, or of a
            family the listener (*listener_family*, *dual_stack*) does not take.
    """
    refuse = handshake.HandshakeError
    if host in ("0.0.0.0", "::"):  # bound to a wildcard: it may present any loopback
        host, family = claimed, claimed_family
    elif not addresses.same_host(family, host, claimed_family, claimed):
        raise refuse(errno.ECONNREFUSED, f"the client claims address {claimed} but holds {host}")
    if not addresses.is_loopback(family, host):
        raise refuse(errno.ECONNREFUSED, f"client address {host} is not loopback")
    v4 = addresses.ipv4_of(family, host)
    if listener_family == _stdsocket.AF_INET and v4 is None:
        raise refuse(errno.ECONNREFUSED, "IPv6 client at an IPv4 listener")
    if listener_family == _stdsocket.AF_INET6 and v4 is not None and not dual_stack:
        raise refuse(errno.ECONNREFUSED, "IPv4 client at an IPv6-only listener")
    return v4 or host


def _readable(sock: _stdsocket.socket) -> bool:
    probe = select.poll()
    probe.register(sock.fileno(), select.POLLIN)
    return bool(probe.poll(0))


def _wait_readable(conn: _csocket.socket, seconds: float) -> bool:
    """Wait at most *seconds* for *conn* to turn readable; False at once when <= 0."""
    if seconds <= 0:
        return False
    fd = conn.fileno()
    if fd < _SELECT_LIMIT:  # select() takes microseconds, poll() and epoll milliseconds
        return bool(select.select([fd], [], [], seconds)[0])
    probe = select.poll()  # above FD_SETSIZE: one look, no wait
    probe.register(fd, select.POLLIN)
    return bool(probe.poll(0))


def _hello_size(conn: _csocket.socket) -> int:
    """The whole hello's size once it is all queued; 0 until then; -1 when the stream
    ended. A head that is no hello reports its own size, so _validate refuses it."""
    try:
        head = conn.recv(handshake.HELLO_SIZE + handshake.RING_EXT.size, _stdsocket.MSG_PEEK)
    except BlockingIOError:
        return 0
    except OSError:
        return -1
    if not head:
        return -1
    if len(head) < handshake.HELLO_SIZE:
        return 0
    try:
        want = handshake.wire_size(head[:handshake.HELLO_SIZE])
    except handshake.HandshakeError:
        return handshake.HELLO_SIZE
    return want if len(head) >= want else 0


def _offer_allowed(host: str, port: int) -> bool:
    if not policy.current().allows(port):
        return False
    return not filters.covering("server", (host, port))


def _weak_withdraw(listener: Listener) -> Any:
    ref = weakref.ref(listener)

    def withdraw_if_covered() -> None:
        target = ref()
        if target is not None and target.rendezvous and not _offer_allowed(target.host,
                                                                            target.port):
            target.withdraw()

    return withdraw_if_covered
