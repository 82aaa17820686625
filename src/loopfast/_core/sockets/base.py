"""loopfast.socket: a stdlib TCP socket that can opt in to the loopback fast path.

The class of a socket object says which transport carries it, and changes at
most when its connection is made (docs/architecture.md):

- ``socket``: a kernel TCP socket, every data method the stdlib's own (SPEC F1).
- ``ring.RingSocket``: a fast-path connection carried by shared-memory rings
  (the default transport); its fd is a wake-up socket that carries no data.
- ``stream.FastPathSocket``: a fast-path connection carried by an AF_UNIX
  stream at the application's own fd number, so the stdlib's C methods run
  on it unchanged.
- ``listener.FastPathListener``: a listener that also accepts fast-path
  clients; its fd refers to an epoll instance bundling both kinds of arrival.
- ``filtered.FilteredSocket``: a TCP connection that a connection filter sees.

Rule: ``become()`` below is the only code that changes a socket's class. The
class follows the type of the socket's state (``_state``), which the fast
path and the filters build and return; each subclass names its state type
when it is defined (``class RingSocket(FastPathSocket, state=RingConnection)``),
so this module never imports its subclasses. Swapping ``__class__`` (all share
one layout) keeps the common path free of "which transport am I" checks.
"""

from __future__ import annotations

import _socket as _csocket
import contextlib
import errno
import os
import socket as _stdsocket
from typing import Any, Self

from ... import compat, filters, policy
from ..._fastpath import connector, registry, ring_link
from ..._fastpath.connection import Connection
from ..._fastpath.listener import Listener
from ..._winsock.socket_poll import socket_poll
from ...constants import SIO_LOOPBACK_FAST_PATH, SIO_SET_COMPATIBILITY_MODE, SO_BUSY_POLL
from .. import addresses, filtering, options
from ..stdlib import StdSocket, is_tcp, raw_family

_BOOL_SIZE = 4  # Winsock's BOOL
TRANSPORTS = ("ring", "stream", "auto")  # auto: _fastpath/transport_choice.py

_KIND = _csocket.socket.type  # the type as a plain int (socket.socket.type makes an enum)
# The class for each type of state: filled in by the subclasses' definitions.
_KINDS: dict[type, type[socket]] = {}


def parse_switch(option: object) -> bool:
    """The boolean a SIO_LOOPBACK_FAST_PATH input carries.

    Raises:
        OSError: EINVAL for anything but a bool, 0/1 or 4 raw bytes.
    """
    if isinstance(option, bool) or (type(option) is int and option in (0, 1)):
        return bool(option)
    if isinstance(option, (bytes, bytearray, memoryview)):
        raw = bytes(option)
        if len(raw) != _BOOL_SIZE:
            raise OSError(errno.EINVAL, f"SIO_LOOPBACK_FAST_PATH takes a BOOL of {_BOOL_SIZE} "
                          f"bytes, got {len(raw)} bytes")
        return int.from_bytes(raw, "little") != 0
    raise OSError(errno.EINVAL, "SIO_LOOPBACK_FAST_PATH takes True or False (or a 4-byte BOOL), "
                  f"got {option!r}")


def become(sock: socket, state: Any) -> None:
    """Make *sock* the kind of socket *state* describes (None: a plain TCP socket).

    The only place a socket changes class. A fast-path connection is
    registered with ``loopfast stat`` here, once.
    """
    sock._state = state
    sock.__class__ = _KINDS[type(state)]
    sock._kind_changed()
    if isinstance(state, Connection):
        registry.register(sock)


def _carried_by_unix_stream(sock: _stdsocket.socket) -> bool:
    # The fd's own domain: socket.fromfd(fd, AF_INET, ...) names the family it wants.
    try:
        domain = StdSocket.getsockopt(sock, _stdsocket.SOL_SOCKET, _stdsocket.SO_DOMAIN)
    except OSError:
        return False
    return bool(domain == _stdsocket.AF_UNIX and sock.type == _stdsocket.SOCK_STREAM)


class socket(_stdsocket.socket):
    """A ``socket.socket`` that can carry loopback TCP over the fast path.

    Behaves as ``socket.socket`` until the application opts in, with
    ``fast_path=True`` or ``ioctl(SIO_LOOPBACK_FAST_PATH, True)``, before
    ``connect()`` (client) or ``accept()`` (listener). A connection uses the
    fast path when both sides opted in and the address is loopback; otherwise
    it is ordinary TCP and ``fast_path_active`` is False.

    The client chooses how the fast path carries data: ``fast_path=True`` or
    ``"ring"`` (shared-memory rings, the fastest), or ``"stream"`` (an AF_UNIX
    stream, for code that hands the fd to others: blocking ssl, os.sendfile).
    ``busy_poll_us`` (or ``setsockopt(SOL_SOCKET, SO_BUSY_POLL, µs)``) sets how
    long a blocked ring call spins before it parks (SPEC F13).

    Raises:
        OSError: EOPNOTSUPP when ``fast_path=True`` is asked of a non-TCP socket;
            EINVAL for an unknown ``fast_path`` word or a bad ``busy_poll_us``;
            whatever ``socket.socket`` raises.
    """

    # _rcvbuf_set: the program set SO_RCVBUF, which locks the buffer (no autotuning);
    # a listener's is inherited by the sockets it accepts, as the kernel's lock is.
    __slots__ = ("_busy", "_channel", "_compat", "_fast_path", "_rcvbuf_set", "_state",
                 "_transport")

    def __init_subclass__(cls, state: type | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if state is not None:
            _KINDS[state] = cls

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1,
                 fileno: int | None = None, *, fast_path: bool | str = False,
                 compatibility_mode: object = None, busy_poll_us: int | None = None) -> None:
        super().__init__(family, type, proto, fileno)
        self._fast_path = False
        self._transport = "ring"
        self._busy: int | None = None
        self._state: Any = None
        self._compat: compat.CompatibilitySettings | None = None
        self._rcvbuf_set = False
        if (fileno is not None and ring_link.any_live() and _carried_by_unix_stream(self)
                and self._share_ring(fileno)):
            return
        try:
            if busy_poll_us is not None:
                self._busy = options.parse_busy_poll(busy_poll_us)
            if isinstance(fast_path, str):
                if fast_path not in TRANSPORTS:
                    raise OSError(errno.EINVAL, f"fast_path={fast_path!r}: use True, False, "
                                  "'ring' (shared memory, the default), 'stream' (AF_UNIX) "
                                  "or 'auto' (the ring, the stream for short connections)")
                self._transport = fast_path
            if fast_path and fileno is None and is_tcp(self):
                self._fast_path = True  # a new TCP socket: what ioctl would check holds
            elif fast_path:
                self.ioctl(SIO_LOOPBACK_FAST_PATH, True)
            if compatibility_mode is not None:
                self.ioctl(SIO_SET_COMPATIBILITY_MODE, compatibility_mode)
        except BaseException:
            self.close()
            raise

    def _share_ring(self, fd: int) -> bool:
        """Become a holder of the live ring connection *fd* refers to, if there is one.

        ``socket(fileno=fd)`` of a ring connection's fd (``socket.socket`` under
        ``patch()``, as http.client's ``response.fileno()`` users do) must carry
        the connection's data, not write wake-up bytes to the fd.
        """
        shared = ring_link.adopt(fd)
        if shared is None:
            return False
        StdSocket.__init__(self, shared.family, _stdsocket.SOCK_STREAM, _stdsocket.IPPROTO_TCP, fd)
        self._fast_path = True
        timeout = shared.link.channel.timeout  # the rings' mode is shared, as O_NONBLOCK is
        become(self, shared)
        self.settimeout(timeout)
        return True

    def _take_settings(self, other: socket) -> None:
        """Take *other*'s loopfast settings (dup, accept): switch, transport, spin, mode."""
        self._fast_path = other._fast_path
        self._rcvbuf_set = other._rcvbuf_set
        self._transport = other._transport
        self._busy = other._busy
        self._compat = other._compat

    def _kind_changed(self) -> None:
        """Called by become() after the class changed; a kind sets up what it needs."""

    # -- the fast-path switch --------------------------------------------------

    @property
    def fast_path(self) -> bool:
        """True when this socket has opted in (or was accepted by a listener that had)."""
        return self._fast_path

    @property
    def fast_path_transport(self) -> str | None:
        """"ring" or "stream" on a fast-path connection; None otherwise."""
        return None

    @property
    def fast_path_active(self) -> bool:
        """True when this socket's connection is carried by the fast path."""
        return False

    @property
    def peer_credentials(self) -> Any:
        """The peer process (pid, uid, gid) of a fast-path connection; None otherwise."""
        return None

    def ioctl(self, control: int, option: object) -> None:
        """Winsock's ``WSAIoctl`` for the control codes loopfast implements.

        ``SIO_LOOPBACK_FAST_PATH`` with True/False opts in or out.
        ``SIO_SET_COMPATIBILITY_MODE`` with a ``WSACompatibilityMode`` (or its 8 raw
        bytes) selects a receive-window behaviour (docs/compat.md).

        Raises:
            OSError: EINVAL for an unknown control code or a bad input; EOPNOTSUPP
                on a socket that is not TCP; EISCONN on a connected socket.
        """
        if control == SIO_SET_COMPATIBILITY_MODE:
            self._compat = compat.apply(self, self._compat, option, self._connected())
            return
        if control != SIO_LOOPBACK_FAST_PATH:
            raise OSError(errno.EINVAL, f"unknown control code {control:#x}; loopfast "
                          "implements SIO_LOOPBACK_FAST_PATH and SIO_SET_COMPATIBILITY_MODE")
        on = parse_switch(option)
        if not is_tcp(self):
            raise OSError(errno.EOPNOTSUPP, "SIO_LOOPBACK_FAST_PATH applies only to TCP sockets "
                          "(AF_INET/AF_INET6, SOCK_STREAM)")
        if self._connected():
            raise OSError(errno.EISCONN, "SIO_LOOPBACK_FAST_PATH must be set before connect() "
                          "on a client, or on the listening socket before accept(); this socket "
                          "is already connected")
        self._fast_path = on
        self._switched()

    def _switched(self) -> None:
        """The fast-path switch changed: a listener starts (or stops) offering it."""
        if self._fast_path and self._listening():
            self._start_listener(_stdsocket.SOMAXCONN)

    # -- options ------------------------------------------------------------------

    def setsockopt(self, level: int, optname: int, *args: Any) -> None:
        """``socket.setsockopt``; SO_RCVBUF may not shrink after connect (SPEC C5).

        SO_BUSY_POLL is kept by loopfast on every kind of socket (see _core.options).

        Raises:
            OSError: EINVAL for an SO_RCVBUF that would shrink a connected socket's
                buffer unless WsaBehaviorReceiveBuffering targets Vista or later
                (docs/compat.md), or for a bad SO_BUSY_POLL; as ``socket.setsockopt``.
        """
        rcvbuf = optname == _stdsocket.SO_RCVBUF and level == _stdsocket.SOL_SOCKET and args
        if rcvbuf:
            compat.check_rcvbuf(self, self._compat, args[0], self._connected())
        if options.is_busy_poll(level, optname) and len(args) == 1:
            self._busy = options.parse_busy_poll(args[0])
            self._apply_busy_poll()
            return
        self._set_option(level, optname, *args)
        if rcvbuf:
            self._rcvbuf_set = True

    def getsockopt(self, level: int, optname: int, *args: Any) -> Any:
        """``socket.getsockopt``; SO_BUSY_POLL answers what loopfast keeps (0 when never set).

        Raises:
            OSError: as ``socket.getsockopt``.
        """
        if options.is_busy_poll(level, optname) and not args:
            if StdSocket.fileno(self) == -1:
                raise OSError(errno.EBADF, os.strerror(errno.EBADF))
            return self._busy or 0
        return self._get_option(level, optname, *args)

    def _set_option(self, level: int, optname: int, *args: Any) -> None:
        super().setsockopt(level, optname, *args)

    def _get_option(self, level: int, optname: int, *args: Any) -> Any:
        return super().getsockopt(level, optname, *args)

    def _apply_busy_poll(self) -> None:
        """Give the kept SO_BUSY_POLL to what carries the data (TCP: the kernel, if allowed)."""
        # Raising it needs CAP_NET_ADMIN; the kernel's busy polling is a bonus.
        with contextlib.suppress(PermissionError):
            self._set_option(_stdsocket.SOL_SOCKET, SO_BUSY_POLL, self._busy or 0)

    def _connected(self) -> bool:
        try:
            StdSocket.getpeername(self)
        except OSError:
            return False
        return True

    def _listening(self) -> bool:
        try:
            return bool(StdSocket.getsockopt(
                self, _stdsocket.SOL_SOCKET, _stdsocket.SO_ACCEPTCONN))
        except OSError:
            return False

    # -- connecting -------------------------------------------------------------

    def connect(self, address: Any) -> None:
        """Connect to *address*, over the fast path when both sides opted in (SPEC F2).

        Raises:
            OSError: as ``socket.socket.connect``; BlockingIOError(EINPROGRESS) on a
                non-blocking socket, as TCP; ConnectionRefusedError when a filter blocks.
        """
        if self._fast_path and self._connect_fast(address):
            if self.gettimeout() == 0.0:  # TCP never connects at once when non-blocking
                self._state.connect_pending = True
                raise BlockingIOError(errno.EINPROGRESS, os.strerror(errno.EINPROGRESS))
            return
        flts = filtering.covering("client", address)
        if not flts:
            super().connect(address)
            return
        if not filtering.allowed(flts, filtering.info_for(self, "client", address)):
            raise ConnectionRefusedError(errno.ECONNREFUSED, "a loopfast connection filter "
                                         f"blocked the connection to {address!r}")
        try:
            super().connect(address)
        finally:
            become(self, filtering.FilterState(
                flts, filtering.info_for(self, "client", address)))

    def connect_ex(self, address: Any) -> int:
        """Like ``connect`` but return an errno instead of raising it (0 on success)."""
        try:
            self.connect(address)
        except OSError as exc:
            if exc.errno is None:
                raise
            return exc.errno
        return 0

    def _connect_fast(self, address: Any) -> bool:
        """Try the fast path; True when this socket is now a fast-path connection.

        The connector makes sure the socket is unused (not connected, connecting or
        listening) before it contacts anybody.
        """
        if (not isinstance(address, tuple) or len(address) < 2
                or not isinstance(address[0], str) or not isinstance(address[1], int)):
            return False
        family = raw_family(self)
        host = addresses.numeric_host(family, address[0], address[1])
        port = address[1]
        if (not addresses.is_loopback(family, host) or not policy.current().allows(port)
                or filtering.covering("client", (host, port))):
            return False
        state = connector.connect(self, host, port, self._transport, self._compat)
        if state is None:
            return False
        become(self, state)
        return True

    # -- listening and accepting -------------------------------------------------

    def listen(self, backlog: int = _stdsocket.SOMAXCONN) -> None:
        """Listen; with the fast path on, also publish the rendezvous names (SPEC F2).

        Raises:
            OSError: as ``socket.socket.listen``.
        """
        super().listen(backlog)
        if self._fast_path:
            self._start_listener(backlog)

    def _start_listener(self, backlog: int) -> None:
        listener = Listener.start(self, backlog)
        if listener is not None:
            become(self, listener)

    def accept(self) -> tuple[socket, Any]:
        """Accept a TCP connection; return ``(socket, address)`` as ``socket.socket.accept``.

        The accepted socket inherits this socket's fast-path setting (SPEC F3).

        Raises:
            OSError: as ``socket.socket.accept`` (TimeoutError, BlockingIOError, ...).
        """
        while True:
            fd, addr = self._accept()  # type: ignore[attr-defined]
            sock = self._adopt_tcp(fd, addr)
            if sock is not None:
                return sock, addr

    def _adopt_tcp(self, fd: int, addr: Any) -> socket | None:
        """Wrap an accepted TCP fd; None when a connection filter blocked it."""
        # A fresh TCP connection: none of __init__'s questions about a given fd apply
        # (a ring connection's fd shared by socket(fileno=)). Plain ints: the family
        # and type properties make an enum on every read.
        sock = socket.__new__(socket)
        StdSocket.__init__(sock, raw_family(self), _KIND.__get__(self), self.proto, fd)
        sock._state = None
        sock._take_settings(self)  # the kernel copied the clamp and any SO_RCVBUF lock
        if _stdsocket.getdefaulttimeout() is None and self.gettimeout():
            sock.setblocking(True)
        if not filters.registered():  # no getsockname() for filters nobody registered
            return sock
        service = self.getsockname()
        flts = filtering.covering("server", service)
        if flts:
            info = filtering.info_for(sock, "server", service)
            if not filtering.allowed(flts, info):
                sock.close()
                return None
            become(sock, filtering.FilterState(flts, info))
        return sock

    # -- the rest mirrors socket.socket -------------------------------------------

    def dup(self) -> Self:
        """Duplicate the socket, keeping its loopfast settings (fast path, transport, ...).

        Raises:
            OSError: as ``socket.socket.dup``.
        """
        twin = super().dup()
        twin._take_settings(self)
        return twin

    def __repr__(self) -> str:
        text = super().__repr__()
        state = "active" if self.fast_path_active else ("on" if self._fast_path else "off")
        prefix = f"<{type(self).__module__}.{type(self).__qualname__}"
        return text.replace(prefix, f"<loopfast.socket fast_path={state}", 1)

    def poll(self, microseconds: int, mode: int) -> bool:
        """.NET's ``Socket.Poll``: wait up to *microseconds* (< 0: forever) for *mode* (P9).

        *mode* is ``SELECT_READ``, ``SELECT_WRITE`` or ``SELECT_ERROR``; see
        ``loopfast._winsock.socket_poll`` for what each answers.

        Raises:
            OSError: EINVAL for an unknown mode; EBADF on a closed socket.
        """
        return socket_poll(self, microseconds, mode)


_KINDS[type(None)] = socket
