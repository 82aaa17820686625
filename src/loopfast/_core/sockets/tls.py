"""Blocking TLS on fast-path sockets: ``SSLContext.wrap_socket`` of a ring connection.

The stdlib's ``wrap_socket`` hands the fd to OpenSSL (``sock.detach()``),
which a ring's fd cannot carry. Importing loopfast installs a hook on
``ssl.SSLContext.wrap_socket`` (every context, whatever its
``sslsocket_class``) that only looks at loopfast's own kinds:

- a ``RingSocket`` becomes a ``RingTLSSocket``: an ``ssl.SSLSocket`` whose
  ``_sslobj`` is ``tls_bio.RingTLS`` (an SSLObject over memory BIOs and the
  rings), so every ``SSLSocket`` method runs unchanged above it;
- a stream-transport connection (``FastPathSocket``) becomes a
  ``StreamTLSSocket``: the stdlib's SSLSocket on the AF_UNIX stream, as the
  stdlib's ``wrap_socket`` makes it, but naming the connection's TCP-style
  addresses (``getsockname``/``getpeername``) instead of the stream's;
- a ``FastPathListener`` becomes a ``TLSListener``, whose ``accept()`` wraps
  each connection as above (ring, stream) or as the stdlib does (TCP);
- anything else goes to the stdlib's ``wrap_socket``, untouched.

As with the stdlib, the wrapped socket takes the connection over and the
original object is left detached (``fileno() == -1``). ``uninstall()`` puts
the stdlib's method back; ``wrap()`` does the same without the hook.

A socket wrapped before connect() (``ctx.wrap_socket(socket.socket())``) is
the stdlib's SSLSocket and connects over TCP: its class would have to change
at connect (``become()``), and an SSLSocket's layout (it has a ``__dict__``)
cannot take loopfast's classes, so such clients keep TCP (docs: README).
"""

from __future__ import annotations

import errno
import os
import socket as _stdsocket
import ssl
from typing import Any, Self

from ..._fastpath import registry
from ..stdlib import StdSocket
from .base import become
from .listener import FastPathListener
from .ring import RingSocket
from .stream import FastPathSocket
from .tls_bio import RingTLS

__all__ = ["RingTLSSocket", "StreamTLSSocket", "TLSListener", "install", "uninstall", "wrap"]

_stdlib_wrap_socket = ssl.SSLContext.wrap_socket


class _Wrapped(ssl.SSLSocket):
    """What the stdlib's ``SSLSocket._create`` sets up, for a kind made by this module."""

    def _tls_init(self, context: ssl.SSLContext, server_side: bool,
                  do_handshake_on_connect: bool, suppress_ragged_eofs: bool,
                  server_hostname: str | None, session: ssl.SSLSession | None) -> None:
        self._context = context
        self._session = session
        self._closed = False
        self._sslobj = None
        self.server_side = server_side
        self.server_hostname = context._encode_hostname(server_hostname)  # type: ignore[attr-defined]
        self.do_handshake_on_connect = do_handshake_on_connect
        self.suppress_ragged_eofs = suppress_ragged_eofs


def _refuse_reset_with_data(sock: RingSocket) -> None:
    """What ``SSLSocket._create`` does with a socket that is no longer connected.

    A reset connection (``getpeername()`` raises ENOTCONN, as TCP's after a
    reset) with bytes still queued must not hand them to a caller who would
    take them for TLS: the stdlib reads one byte and raises SSLError(ENOTCONN,
    "Closed before TLS handshake with data in recv buffer."); with none queued
    its recv raises the reset.

    Raises:
        ssl.SSLError: bytes were queued (the socket is closed then).
        OSError: the reset itself, or what getpeername/recv raise.
    """
    try:
        sock.getpeername()
        return
    except OSError as exc:
        if exc.errno != errno.ENOTCONN:
            raise
        notconn = exc.errno
    try:
        data = sock.recv(1, _stdsocket.MSG_DONTWAIT)
    except OSError as exc:
        if exc.errno not in (errno.ENOTCONN, errno.EINVAL):
            raise
        data = b""
    if data:
        reason = "Closed before TLS handshake with data in recv buffer."
        error = ssl.SSLError(notconn, reason)
        error.reason = reason  # the attributes _ssl.c always adds
        error.library = None  # type: ignore[assignment]  # as the stdlib sets it
        sock.close()
        raise error


class RingTLSSocket(_Wrapped, RingSocket):  # type: ignore[misc]
    """An ``ssl.SSLSocket`` over a ring connection (its records travel through the rings).

    ``fileno()`` is the ring's wake-up socket: selectors see it readable when
    records wait (``pending()`` counts what was already decrypted, as with
    the stdlib). ``detach()`` and ``dup()`` are refused; after ``unwrap()``
    the socket carries plaintext over the same rings.
    """

    _plaintext_after_tls: bytes

    @classmethod
    def _wrap(cls, sock: RingSocket, context: ssl.SSLContext, server_side: bool,
              do_handshake_on_connect: bool, suppress_ragged_eofs: bool,
              server_hostname: str | None, session: ssl.SSLSession | None) -> RingTLSSocket:
        _refuse_reset_with_data(sock)
        timeout = sock.gettimeout()
        self = cls.__new__(cls)
        # The same fd number, as the stdlib's wrap_socket keeps it; sock is left detached.
        StdSocket.__init__(self, sock.family, sock.type, sock.proto, sock.fileno())
        self._take_settings(sock)
        self._state = sock._state
        self._state.link.let_go(sock.fileno())  # self holds the number from here on
        become(sock, None)
        StdSocket.detach(sock)
        self._kind_changed()
        self.settimeout(timeout)
        registry.register(self)
        self._tls_init(context, server_side, do_handshake_on_connect, suppress_ragged_eofs,
                       server_hostname, session)
        self._plaintext_after_tls = b""
        try:
            engine = RingTLS(self, self._state, context, server_side, server_hostname, session)
            self._sslobj = engine  # type: ignore[assignment]  # SSLSocket's _sslobj, by interface
            if do_handshake_on_connect:
                if timeout == 0.0:
                    raise ValueError("do_handshake_on_connect should not be specified for "
                                     "non-blocking sockets")
                self.do_handshake()
        except (OSError, ValueError):
            self.close()
            raise
        return self

    def _check_connected(self) -> None:
        """A ring connection is made connected: nothing to check."""

    def _real_connect(self, addr: Any, connect_ex: bool) -> int | None:
        raise ValueError("attempt to connect already-connected SSLSocket!")

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        """``SSLSocket.recv``; after ``unwrap()``, first the plaintext that followed the TLS end."""
        if self._sslobj is None and self._plaintext_after_tls:
            data, self._plaintext_after_tls = (self._plaintext_after_tls[:buflen],
                                               self._plaintext_after_tls[buflen:])
            return data
        return super().recv(buflen, flags)

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        """``SSLSocket.recv_into``; after ``unwrap()``, as ``recv``."""
        if self._sslobj is None and self._plaintext_after_tls:
            with memoryview(buffer) as view, view.cast("B") as out:
                data = self.recv(min(nbytes or len(out), len(out)))
                out[:len(data)] = data
            return len(data)
        return super().recv_into(buffer, nbytes, flags)

    def detach(self) -> int:
        """Refused, as ``RingSocket.detach`` (the fd carries no data).

        Raises:
            OSError: EOPNOTSUPP on an open socket.
        """
        return RingSocket.detach(self)


class StreamTLSSocket(ssl.SSLSocket):
    """The stdlib's ``ssl.SSLSocket`` on a stream-transport connection.

    Its records travel in the AF_UNIX stream, where the stdlib's
    ``wrap_socket`` puts them; only the names differ: ``getsockname()`` and
    ``getpeername()`` answer the connection's TCP-style addresses, as the
    socket it wrapped did, not the stream's AF_UNIX ones.
    """

    _tcp_names: tuple[Any, Any] | None = None  # (local, peer), set once the stdlib made it

    @classmethod
    def _wrap(cls, sock: FastPathSocket, context: ssl.SSLContext, server_side: bool,
              do_handshake_on_connect: bool, suppress_ragged_eofs: bool,
              server_hostname: str | None, session: ssl.SSLSession | None) -> StreamTLSSocket:
        names = (sock._state.local, sock._state.peer)
        self = cls._create(sock=sock, server_side=server_side,  # type: ignore[attr-defined]
                           do_handshake_on_connect=do_handshake_on_connect,
                           suppress_ragged_eofs=suppress_ragged_eofs,
                           server_hostname=server_hostname, context=context, session=session)
        self._tcp_names = names
        return self  # type: ignore[no-any-return]

    def getsockname(self) -> Any:
        """This end's TCP-style address.

        Raises:
            OSError: EBADF once closed.
        """
        local = super().getsockname()  # the stream's (EBADF once closed)
        return local if self._tcp_names is None else self._tcp_names[0]

    def getpeername(self) -> Any:
        """The peer's TCP-style address.

        Raises:
            OSError: EBADF once closed; ENOTCONN as the stream's own getpeername.
        """
        peer = super().getpeername()  # the stream's: connected? (the stdlib asks in _create)
        return peer if self._tcp_names is None else self._tcp_names[1]


class TLSListener(_Wrapped, FastPathListener):  # type: ignore[misc]
    """A wrapped fast-path listener: ``accept()`` returns TLS sockets (ring or stdlib)."""

    @classmethod
    def _wrap(cls, sock: FastPathListener, context: ssl.SSLContext, server_side: bool,
              do_handshake_on_connect: bool, suppress_ragged_eofs: bool,
              server_hostname: str | None, session: ssl.SSLSession | None) -> TLSListener:
        timeout = sock.gettimeout()
        state = sock._state
        # As FastPathListener.dup: CPython builds the object on a socket fd, the bundle follows.
        fd = os.dup(state.tcp.fileno())
        self = cls.__new__(cls)
        StdSocket.__init__(self, sock.family, sock.type, sock.proto, fd)
        os.dup2(state.epoll.fileno(), fd, inheritable=False)
        self._take_settings(sock)
        self._state = state
        state.users += 1
        sock.close()  # the listener is this object's now, as a stdlib wrap_socket leaves it
        self.settimeout(timeout)
        self._tls_init(context, server_side, do_handshake_on_connect, suppress_ragged_eofs,
                       server_hostname, session)
        return self

    def detach(self) -> int:
        """Refused: a wrapped fast-path listener stays one.

        Raises:
            OSError: EOPNOTSUPP.
        """
        raise OSError(errno.EOPNOTSUPP, "a TLS-wrapped fast-path listener cannot be detached")

    def dup(self) -> Self:
        """Refused, as ``SSLSocket.dup``.

        Raises:
            NotImplementedError: always.
        """
        raise NotImplementedError(f"Can't dup() {type(self).__name__} instances")


def wrap(context: ssl.SSLContext, sock: Any, server_side: bool = False,
         do_handshake_on_connect: bool = True, suppress_ragged_eofs: bool = True,
         server_hostname: str | None = None, session: ssl.SSLSession | None = None) -> Any:
    """``context.wrap_socket(sock, ...)``, fast-path connections and listeners included.

    Raises:
        ValueError: as ``SSLContext.wrap_socket`` (server_hostname or session with
            server_side; check_hostname without server_hostname).
        ssl.SSLError, OSError: a failed handshake; the wrapped socket is closed then.
    """
    kind: Any = None
    if not isinstance(sock, ssl.SSLSocket):
        if isinstance(sock, RingSocket):
            kind = RingTLSSocket
        elif isinstance(sock, FastPathListener):
            kind = TLSListener
        elif isinstance(sock, FastPathSocket):
            kind = StreamTLSSocket
    if kind is None:
        return _stdlib_wrap_socket(context, sock, server_side, do_handshake_on_connect,
                                   suppress_ragged_eofs, server_hostname, session)
    if server_side and server_hostname:
        raise ValueError("server_hostname can only be specified in client mode")
    if server_side and session is not None:
        raise ValueError("session can only be specified in client mode")
    if context.check_hostname and not server_hostname:
        raise ValueError("check_hostname requires server_hostname")
    return kind._wrap(sock, context, server_side, do_handshake_on_connect,
                      suppress_ragged_eofs, server_hostname, session)


def _wrap_socket(self: ssl.SSLContext, sock: Any, server_side: bool = False,
                 do_handshake_on_connect: bool = True, suppress_ragged_eofs: bool = True,
                 server_hostname: str | None = None,
                 session: ssl.SSLSession | None = None) -> Any:
    return wrap(self, sock, server_side, do_handshake_on_connect, suppress_ragged_eofs,
                server_hostname, session)


_wrap_socket.__doc__ = _stdlib_wrap_socket.__doc__
_wrap_socket.__qualname__ = "SSLContext.wrap_socket"


def install() -> None:
    """Make ``ssl.SSLContext.wrap_socket`` take ring connections and fast-path listeners."""
    ssl.SSLContext.wrap_socket = _wrap_socket  # type: ignore[method-assign, assignment]


def uninstall() -> None:
    """Put the stdlib's ``ssl.SSLContext.wrap_socket`` back."""
    ssl.SSLContext.wrap_socket = _stdlib_wrap_socket  # type: ignore[method-assign]


def installed() -> bool:
    """True while the hook is in place."""
    return ssl.SSLContext.wrap_socket is _wrap_socket


# Ring connections exist only in processes that imported loopfast: the hook
# comes with it, so every blocking TLS library finds it whatever context it makes.
install()
