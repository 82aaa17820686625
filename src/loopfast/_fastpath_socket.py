"""Fast-path sockets: making a connection, the stream transport, the bundled listener.

``connect_fast`` turns a client socket into a fast-path connection: after the
rendezvous, ``dup2`` puts the carrier at the application's own fd number,
either the AF_UNIX stream itself (``fast_path="stream"``: the stdlib's C
methods then work unchanged, at kernel speed) or the ring's wake-up socket
(the default; ``_ring_socket.RingSocket`` carries the data). What the stream
transport does differently from TCP is overridden in ``FastPathSocket`` and
nowhere else: addresses, options and ancillary data. A connection stays on
the fast path until closed (F5). ``FastPathListener`` accepts both kinds.
"""

from __future__ import annotations

import _socket as _csocket  # the C socket type, as socket.py's own _real_close uses
import contextlib
import errno
import os
import socket as _stdsocket
import time
from typing import Any, Self, cast

from . import _addresses, _busy_poll, _options, _stat, compat
from ._socket import socket
from ._std import StdSocket
from .fastpath import _connector, _ring_link
from .fastpath._connection import Connection, PeerCredentials
from .fastpath._listener import Listener

_ANC_IGNORED = {_stdsocket.SCM_RIGHTS, getattr(_stdsocket, "SCM_CREDENTIALS", 2)}


def connect_fast(sock: socket, host: str, port: int) -> bool:
    """Make *sock* a fast-path connection to *host*:*port*; False to use TCP instead.

    Raises:
        TimeoutError: the rendezvous did not answer within the socket's timeout.
    """
    found = _connector.find(sock.family, host, port, sock.gettimeout())
    if found is None:
        return False
    with found.stream:
        offer = None
        try:
            local = _reserve_local(sock, host)
            target = _addresses.tcp_style(sock.family, host, port)
            if sock._transport == "ring":
                rcvbuf = sock.getsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_RCVBUF)
                offer = _ring_link.RingOffer(
                    _ring_link.ring_size(found.server_rcvbuf),
                    _ring_link.ring_size(compat.ring_capacity(rcvbuf, sock._compat)))
                found.say_hello(sock.family, local, target, offer.sizes,
                                offer.fds_for_server())
            else:
                found.say_hello(sock.family, local, target)
        except OSError:
            if offer is not None:
                offer.close()
                offer.client_w.close()
                offer.server_w.close()
            return False
        reservation = StdSocket(sock.family, _stdsocket.SOCK_STREAM, sock.proto,
                                fileno=os.dup(sock.fileno()))
        carrier = offer.client_r if offer is not None else found.stream
        os.dup2(carrier.fileno(), sock.fileno(), inheritable=False)
    timeout = sock.gettimeout()
    sock.settimeout(timeout)  # the new file description needs O_NONBLOCK again
    if offer is None:
        sock._state = Connection(sock.family, local, target, found.credentials, reservation)
        sock.__class__ = FastPathSocket
        _stat.register(sock)
        return True
    from ._ring_socket import RingSocket

    try:
        link = _ring_link.client_link(offer, sock.fileno())
    finally:
        offer.close()
    sock._state = _ring_link.RingConnection(sock.family, local, target, found.credentials,
                                            reservation, link)
    sock.__class__ = RingSocket
    link.channel.timeout = timeout
    cast(RingSocket, sock)._apply_busy_poll()
    _stat.register(sock)
    return True


def _reserve_local(sock: socket, host: str) -> tuple[Any, ...]:
    """Bind *sock* (still TCP) to a loopback port unless bound; its TCP-style address."""
    bound = StdSocket.getsockname(sock)
    if bound[1] == 0:
        if sock.family == _stdsocket.AF_INET:
            loop = "127.0.0.1"
        else:
            loop = "::ffff:127.0.0.1" if _addresses.ipv4_of(sock.family, host) else "::1"
        StdSocket.bind(sock, (loop, 0))
        bound = StdSocket.getsockname(sock)
    if bound[0] in ("0.0.0.0", "::"):
        v4 = _addresses.ipv4_of(sock.family, host)
        return _addresses.tcp_style(sock.family, v4 or "::1", bound[1])
    return cast(tuple[Any, ...], bound)


def start_listener(sock: socket, backlog: int) -> None:
    """Make the listening *sock* a fast-path listener, if its address and the policy allow."""
    listener = Listener.start(sock, backlog)
    if listener is not None:
        sock._state = listener
        sock.__class__ = FastPathListener


class FastPathSocket(socket):
    """A connection carried by the fast path (see the module docstring).

    shutdown() is the kernel's: SHUT_RD ends reads and wakes a blocked reader as
    on TCP; unlike Linux TCP, the peer's later sends fail with EPIPE instead of
    vanishing into a receive queue nobody reads.
    """

    __slots__ = ()
    _state: Connection

    @property
    def fast_path_active(self) -> bool:
        """True: this connection is carried by the fast path."""
        return True

    @property
    def fast_path_transport(self) -> str | None:
        """How the fast path carries this connection: "stream" (AF_UNIX) or "ring"."""
        return "ring" if isinstance(self._state, _ring_link.RingConnection) else "stream"

    @property
    def peer_credentials(self) -> PeerCredentials:
        """The peer process (pid, uid, gid), as the kernel vouches for it."""
        return self._state.credentials

    def connect(self, address: Any) -> None:
        """The connection is made: EISCONN, as a connected TCP socket answers.

        CPython's connect() with a timeout set treats the kernel's EISCONN as
        success and returns None; this mirrors it.

        Raises:
            OSError: EISCONN when the socket has no timeout (blocking or non-blocking).
        """
        err = self.connect_ex(address)
        if err == errno.EISCONN and self.gettimeout():
            return
        if err:
            raise OSError(err, os.strerror(err))

    def connect_ex(self, address: Any) -> int:
        """0 once after a non-blocking connect(), as the kernel answers; then EISCONN."""
        if self.fileno() == -1:
            return errno.EBADF
        if self._state.connect_pending:
            self._state.connect_pending = False
            return 0
        return errno.EISCONN

    def sendto(self, data: Any, *args: Any) -> int:
        """Send *data*; the address is ignored, as Linux TCP ignores it once connected."""
        flags = args[0] if len(args) == 2 else 0
        return self.send(data, flags)

    def getsockname(self) -> Any:
        """This end's TCP-style address."""
        self._check_open()
        return self._state.local

    def getpeername(self) -> Any:
        """The peer's TCP-style address.

        Raises:
            OSError: ENOTCONN after shutdown(SHUT_RDWR) ... as TCP would not; EBADF if closed.
        """
        self._check_open()
        return self._state.peer

    def _check_open(self) -> None:
        if self.fileno() == -1:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    def setsockopt(self, level: int, optname: int, *args: Any) -> None:
        """Set an option as the fast path treats it (docs/options.md).

        Raises:
            OSError: ENOPROTOOPT for an option the fast path refuses.
        """
        self._check_open()
        if optname == _stdsocket.SO_RCVBUF and level == _stdsocket.SOL_SOCKET and args:
            compat.check_rcvbuf(self, args[0])  # SPEC C5 holds on the fast path too
        if _busy_poll.addresses(level, optname) and len(args) == 1:
            self._busy = _busy_poll.parse(args[0])
            self._apply_busy_poll()
            return
        _options.setsockopt(self._state, self, level, optname, *args)

    def _apply_busy_poll(self) -> None:
        pass  # the AF_UNIX stream parks in the kernel; the ring spins (RingSocket)

    def getsockopt(self, level: int, optname: int, *args: Any) -> Any:
        """Read an option as the fast path treats it (docs/options.md).

        Raises:
            OSError: ENOPROTOOPT for an option the fast path refuses.
        """
        self._check_open()
        if _busy_poll.addresses(level, optname) and not args:
            return self._busy or 0
        return _options.getsockopt(self._state, self, level, optname, *args)

    def sendmsg(self, buffers: Any, ancdata: Any = (), flags: int = 0,
                address: Any = None) -> int:
        """``socket.sendmsg``; fds and credentials are left out, as TCP ignores them."""
        ancdata = [item for item in ancdata
                   if not (item[0] == _stdsocket.SOL_SOCKET and item[1] in _ANC_IGNORED)]
        if address is not None:
            return super().sendmsg(buffers, ancdata, flags, address)
        return super().sendmsg(buffers, ancdata, flags)

    def recvmsg(self, bufsize: int, ancbufsize: int = 0, flags: int = 0) -> Any:
        """``socket.recvmsg``; file descriptors a peer slipped in are closed, never handed on."""
        data, anc, msg_flags, _addr = super().recvmsg(bufsize, ancbufsize, flags)
        return data, _strip(anc), msg_flags, None

    def recvmsg_into(self, buffers: Any, ancbufsize: int = 0, flags: int = 0) -> Any:
        """``socket.recvmsg_into``; file descriptors a peer slipped in are closed."""
        n, anc, msg_flags, _addr = super().recvmsg_into(buffers, ancbufsize, flags)
        return n, _strip(anc), msg_flags, None

    def dup(self) -> Self:
        """Duplicate the connection (both objects carry the same stream, as with TCP)."""
        twin = super().dup()
        twin._state = self._state.copy()
        return twin

    def detach(self) -> int:
        """Close the socket object without closing its fd, which is returned.

        The fd is the AF_UNIX stream carrying the connection.
        """
        self._state.release()
        return super().detach()

    def _real_close(self, _ss: Any = _csocket.socket) -> None:
        self._state.release()
        _ss.close(self)


def _strip(ancdata: list[tuple[int, int, bytes]]) -> list[tuple[int, int, bytes]]:
    kept = []
    for level, kind, data in ancdata:
        if level == _stdsocket.SOL_SOCKET and kind == _stdsocket.SCM_RIGHTS:
            usable = len(data) - len(data) % 4
            for fd in memoryview(data[:usable]).cast("i"):
                os.close(fd)
        else:
            kept.append((level, kind, data))
    return kept


class FastPathListener(socket):
    """A listener taking TCP and fast-path arrivals alike (see fastpath._listener)."""

    __slots__ = ()
    _state: Listener

    def accept(self) -> tuple[socket, Any]:
        """Accept the next connection, TCP or fast path, as ``socket.socket.accept``.

        Raises:
            TimeoutError: the socket's timeout passed; BlockingIOError: non-blocking
                and nothing waits; OSError: as ``socket.socket.accept``.
        """
        timeout = self.gettimeout()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            arrival = self._state.next_arrival()
            if arrival is not None:
                sock = self._adopt(arrival)
                if sock is not None:
                    return sock, sock.getpeername()
                continue
            if deadline is None:
                self._state.wait(None)
                continue
            remaining = deadline - time.monotonic()
            if timeout == 0.0:
                raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
            if remaining <= 0:
                raise TimeoutError("timed out")
            self._state.wait(remaining)

    def _adopt(self, arrival: Any) -> socket | None:
        if len(arrival) == 2:
            return self.adopt_tcp(*arrival)
        stream, hello, creds, fds = arrival
        local = _addresses.tcp_style(self.family, hello.target_ip, self._state.port)
        peer = _addresses.tcp_style(self.family, hello.client_ip, hello.client_port)
        inherit = self._state.inherited()
        settings = self._compat
        if hello.ring is None:
            stream.setblocking(True)
            sock = socket(self.family, _stdsocket.SOCK_STREAM, self.proto, fileno=stream.detach())
            sock._fast_path = True
            sock._compat = settings
            sock._state = Connection(self.family, local, peer, creds, None, inherit)
            sock.__class__ = FastPathSocket
            _stat.register(sock)
            return sock
        from ._ring_socket import RingSocket

        stream.close()  # the rings carry the data; the client has closed its end already
        sock = socket(self.family, _stdsocket.SOCK_STREAM, self.proto, fileno=fds[1])
        try:
            link = _ring_link.server_link(fds, hello.ring, sock.fileno())
        except OSError:
            sock.close()
            raise
        sock._fast_path = True
        sock._compat = settings
        sock._busy = self._busy
        sock._state = _ring_link.RingConnection(self.family, local, peer, creds, None, link,
                                                inherit)
        sock.__class__ = RingSocket
        link.channel.timeout = sock.gettimeout()
        cast(RingSocket, sock)._apply_busy_poll()
        _stat.register(sock)
        return sock

    def getsockname(self) -> Any:
        """The TCP listener's address."""
        return self._state.tcp.getsockname()

    def setsockopt(self, level: int, optname: int, *args: Any) -> None:
        """Set an option on the TCP listener; connections accepted later inherit it."""
        if _busy_poll.addresses(level, optname) and len(args) == 1:
            self._busy = _busy_poll.parse(args[0])
            with contextlib.suppress(PermissionError):  # kernel busy polling is a bonus
                self._state.tcp.setsockopt(level, optname, *args)
            return
        self._state.tcp.setsockopt(level, optname, *args)
        self._state.options_changed()

    def getsockopt(self, level: int, optname: int, *args: Any) -> Any:
        """Read an option of the TCP listener."""
        if _busy_poll.addresses(level, optname) and not args and self._busy is not None:
            return self._busy
        return self._state.tcp.getsockopt(level, optname, *args)

    def listen(self, backlog: int = _stdsocket.SOMAXCONN) -> None:
        """Change the backlog of the TCP listener and of the rendezvous."""
        self._state.tcp.listen(backlog)
        for unix in self._state.rendezvous:
            unix.listen(backlog)

    def shutdown(self, how: int) -> None:
        """Shut the listener down: a blocked accept() wakes with EINVAL, as on TCP."""
        self._state.shutdown(how)

    def ioctl(self, control: int, option: object) -> None:
        """``SIO_LOOPBACK_FAST_PATH`` False stops offering the fast path, True offers it again.

        Raises:
            OSError: as ``socket.ioctl``.
        """
        super().ioctl(control, option)
        if self._fast_path:
            self._state.offer(_stdsocket.SOMAXCONN)
        else:
            self._state.withdraw()

    def _listening(self) -> bool:
        return True

    def _connected(self) -> bool:
        return False

    def _start_listener(self, backlog: int) -> None:
        pass  # ioctl() above decides

    def dup(self) -> Self:
        """A second socket object for the same listener (both accept from it).

        Raises:
            OSError: as ``os.dup``.
        """
        # CPython wants a socket fd to build the object on; the bundle comes after.
        tcp = os.dup(self._state.tcp.fileno())
        twin = type(self)(self.family, self.type, self.proto, fileno=tcp)
        os.dup2(self._state.epoll.fileno(), tcp, inheritable=False)
        twin._fast_path = self._fast_path
        twin._state = self._state
        self._state.users += 1
        twin.settimeout(self.gettimeout())
        return twin

    def detach(self) -> int:
        """Return an fd of the TCP listener alone; fast-path clients are no longer served by it.

        Raises:
            OSError: as ``os.dup2``.
        """
        self._state.restore_tcp(self.fileno())
        demoted: socket = self
        demoted._state = None
        demoted.__class__ = socket
        return StdSocket.detach(self)

    def _real_close(self, _ss: Any = _csocket.socket) -> None:
        self._state.release()
        _ss.close(self)
