"""loopfast.socket: a stdlib TCP socket that can opt in to the loopback fast path.

The class of a socket object says which transport carries it, and may change
once, when the connection is made:

- ``socket``: a kernel TCP socket, every method the stdlib's own (SPEC F1).
- ``_fastpath_socket.FastPathSocket``: a connection on the fast path. Its fd
  number is the application's original one, now referring to the AF_UNIX
  stream that carries the data, so send/recv/select/makefile run in the
  stdlib's C code with no Python frame on the way (SPEC F6).
- ``_fastpath_socket.FastPathListener``: a listener that also accepts
  fast-path clients; its fd refers to an epoll instance bundling both kinds
  of arrival, so selectors see it readable for either.
- ``_filtered.FilteredSocket``: a TCP connection that a connection filter
  sees (SPEC F9).

Swapping ``__class__`` (all share one layout) keeps the common path free of
"which transport am I" checks.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket as _stdsocket
from typing import Any, Self

from . import _addresses, _busy_poll, compat, filters, policy
from ._std import StdSocket
from .constants import SIO_LOOPBACK_FAST_PATH, SIO_SET_COMPATIBILITY_MODE

_BOOL_SIZE = 4  # Winsock's BOOL
TRANSPORTS = ("ring", "stream")


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
    long a blocked ring call spins before it parks (SPEC F13; see _busy_poll).

    Raises:
        OSError: EOPNOTSUPP when ``fast_path=True`` is asked of a non-TCP socket;
            whatever ``socket.socket`` raises.
    """

    __slots__ = ("_busy", "_compat", "_fast_path", "_state", "_transport")

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1,
                 fileno: int | None = None, *, fast_path: bool | str = False,
                 compatibility_mode: object = None, busy_poll_us: int | None = None) -> None:
        super().__init__(family, type, proto, fileno)
        self._fast_path = False
        self._transport = "ring"
        self._busy: int | None = None
        if busy_poll_us is not None:
            try:
                self._busy = _busy_poll.parse(busy_poll_us)
            except OSError:
                self.close()
                raise
        if isinstance(fast_path, str):
            if fast_path not in TRANSPORTS:
                self.close()
                raise OSError(errno.EINVAL, f"fast_path={fast_path!r}: use True, False, "
                              "'ring' (shared memory, the default) or 'stream' (AF_UNIX)")
            self._transport = fast_path
        self._state: Any = None
        self._compat: compat.CompatibilitySettings | None = None
        if fast_path or compatibility_mode is not None:
            try:
                if fast_path:
                    self.ioctl(SIO_LOOPBACK_FAST_PATH, True)
                if compatibility_mode is not None:
                    self.ioctl(SIO_SET_COMPATIBILITY_MODE, compatibility_mode)
            except BaseException:
                self.close()
                raise

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
            compat.apply(self, option)
            return
        if control != SIO_LOOPBACK_FAST_PATH:
            raise OSError(errno.EINVAL, f"unknown control code {control:#x}; loopfast "
                          "implements SIO_LOOPBACK_FAST_PATH and SIO_SET_COMPATIBILITY_MODE")
        on = parse_switch(option)
        if (self.family not in (_stdsocket.AF_INET, _stdsocket.AF_INET6)
                or self.type != _stdsocket.SOCK_STREAM
                or self.proto not in (0, _stdsocket.IPPROTO_TCP)):
            raise OSError(errno.EOPNOTSUPP, "SIO_LOOPBACK_FAST_PATH applies only to TCP sockets "
                          "(AF_INET/AF_INET6, SOCK_STREAM)")
        if self._connected():
            raise OSError(errno.EISCONN, "SIO_LOOPBACK_FAST_PATH must be set before connect() "
                          "on a client, or on the listening socket before accept(); this socket "
                          "is already connected")
        self._fast_path = on
        if on and self._listening():
            self._start_listener(_stdsocket.SOMAXCONN)

    def setsockopt(self, level: int, optname: int, *args: Any) -> None:
        """``socket.setsockopt``; SO_RCVBUF may not shrink after connect (SPEC C5).

        Raises:
            OSError: EINVAL for an SO_RCVBUF that would shrink a connected socket's
                buffer unless WsaBehaviorReceiveBuffering targets Vista or later
                (docs/compat.md); as ``socket.socket.setsockopt``.
        """
        if optname == _stdsocket.SO_RCVBUF and level == _stdsocket.SOL_SOCKET and args:
            compat.check_rcvbuf(self, args[0])
        if _busy_poll.addresses(level, optname) and len(args) == 1:
            self._busy = _busy_poll.parse(args[0])
            with contextlib.suppress(PermissionError):  # kernel busy polling is a bonus
                super().setsockopt(level, optname, *args)
            return
        super().setsockopt(level, optname, *args)

    def getsockopt(self, level: int, optname: int, *args: Any) -> Any:
        """``socket.getsockopt``; SO_BUSY_POLL reads what loopfast keeps."""
        if _busy_poll.addresses(level, optname) and not args and self._busy is not None:
            return self._busy
        return super().getsockopt(level, optname, *args)

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
        flts = self._filters_for(address)
        if not flts:
            super().connect(address)
            return
        from ._filtered import allowed, attach, info_for

        if not allowed(flts, info_for(self, "client", address)):
            raise ConnectionRefusedError(errno.ECONNREFUSED, "a loopfast connection filter "
                                         f"blocked the connection to {address!r}")
        try:
            super().connect(address)
        finally:
            attach(self, "client", flts, address)

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
        """Try the fast path; True when this socket is now a fast-path connection."""
        from ._fastpath_socket import connect_fast

        if (not isinstance(address, tuple) or len(address) < 2
                or not isinstance(address[0], str) or not isinstance(address[1], int)
                or self._listening() or self._connected()):
            return False
        host = _addresses.numeric_host(self.family, address[0], address[1])
        port = address[1]
        if (not _addresses.is_loopback(self.family, host) or not policy.current().allows(port)
                or filters.covering("client", (host, port))):
            return False
        return connect_fast(self, host, port)

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
        from ._fastpath_socket import start_listener

        start_listener(self, backlog)

    def accept(self) -> tuple[socket, Any]:
        """Accept a TCP connection; return ``(socket, address)`` as ``socket.socket.accept``.

        The accepted socket inherits this socket's fast-path setting (SPEC F3).

        Raises:
            OSError: as ``socket.socket.accept`` (TimeoutError, BlockingIOError, ...).
        """
        while True:
            fd, addr = self._accept()  # type: ignore[attr-defined]
            sock = self.adopt_tcp(fd, addr)
            if sock is not None:
                return sock, addr

    def adopt_tcp(self, fd: int, addr: Any) -> socket | None:
        """Wrap an accepted TCP fd; None when a connection filter blocked it."""
        sock = socket(self.family, self.type, self.proto, fileno=fd)
        sock._fast_path = self._fast_path
        sock._busy = self._busy
        sock._compat = self._compat  # the kernel copied the clamp and any SO_RCVBUF lock
        if _stdsocket.getdefaulttimeout() is None and self.gettimeout():
            sock.setblocking(True)
        service = self.getsockname()
        flts = filters.covering("server", service[:2])
        if flts:
            from ._filtered import allowed, attach, info_for

            if not allowed(flts, info_for(sock, "server", service)):
                sock.close()
                return None
            attach(sock, "server", flts, service)
        return sock

    # -- filters ----------------------------------------------------------------

    def _filters_for(self, address: Any) -> tuple[filters.ConnectionFilter, ...]:
        if not isinstance(address, tuple) or len(address) < 2:
            return ()
        return filters.covering("client", (address[0], address[1]))

    # -- the rest mirrors socket.socket -------------------------------------------

    def dup(self) -> Self:
        """Duplicate the socket, keeping its fast-path setting.

        Raises:
            OSError: as ``socket.socket.dup``.
        """
        twin = super().dup()
        twin._fast_path = self._fast_path
        twin._compat = self._compat
        return twin

    def __repr__(self) -> str:
        text = super().__repr__()
        state = "active" if self.fast_path_active else ("on" if self._fast_path else "off")
        prefix = f"<{type(self).__module__}.{type(self).__qualname__}"
        return text.replace(prefix, f"<loopfast.socket fast_path={state}", 1)

    def poll(self, microseconds: int, mode: int) -> bool:
        """.NET's ``Socket.Poll``: wait up to *microseconds* (< 0: forever) for *mode* (P9).

        *mode* is ``SELECT_READ``, ``SELECT_WRITE`` or ``SELECT_ERROR``; see
        ``loopfast._socket_poll`` for what each answers.

        Raises:
            OSError: EINVAL for an unknown mode; EBADF on a closed socket.
        """
        from ._socket_poll import socket_poll

        return socket_poll(self, microseconds, mode)
