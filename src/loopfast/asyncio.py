"""loopfast.asyncio: asyncio streams over the loopback fast path (SPEC A1).

``open_connection`` and ``start_server`` take the arguments of their asyncio
namesakes plus ``fast_path`` and return the standard ``StreamReader``,
``StreamWriter`` and ``asyncio.Server``. The sockets underneath are
``loopfast.socket`` objects, so a connection falls back to TCP exactly as a
socket does: when the peer did not opt in, the address is not loopback, or a
policy or filter covers the port.

How the connection is carried depends on the loop (docs/asyncio.md):

- asyncio's selector loop (the default on Linux) carries it with its own
  transport, which calls the socket object's ``recv_into``/``send`` when
  ``fileno()`` is ready: that is all a ring-carried connection needs. TLS is
  asyncio's memory-BIO TLS, as always; ``drain()`` waits while the ring is full.
- Other loops (uvloop) read and write the fd themselves, which the fast path's
  fd does not carry, so fast-path connections there go through
  ``loopfast._core.aio_transport``, driven by the loop's ``add_reader``/``add_writer``;
  TCP connections keep the loop's native transport. The listener is served by
  an ``add_reader`` on its fd (an epoll fd, which libuv cannot ``accept()`` on).

``new_event_loop()``, ``run()`` and ``EventLoopPolicy`` give asyncio's own
selector loop with ``RingSelector`` (``_core/aio_selector.py``): before it
sleeps in epoll it watches its ring connections' rings for an adaptive while,
with the GIL released, so a message on a ring costs no wake-up and no syscall.
``loopfast.patch()`` (and so ``loopfast run``) gives every default selector
loop that selector.

This module shadows the stdlib's ``asyncio`` inside the package; it imports it
absolutely as ``_asyncio``.
"""

from __future__ import annotations

import asyncio as _asyncio
import logging
import socket as _stdsocket
import ssl as _ssl
from asyncio import base_events, selector_events
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

from ._core import aio_transport
from ._core.aio_selector import RingSelector
from ._core.sockets import socket

__all__ = ["EventLoopPolicy", "create_connection", "create_server",
           "fast_path_active", "new_event_loop", "open_connection", "run", "start_server"]

_T = TypeVar("_T")
_P = TypeVar("_P", bound=_asyncio.BaseProtocol)

_LIMIT = 2 ** 16  # asyncio.streams' default buffer limit
_log = logging.getLogger("loopfast")
ClientConnected = Callable[[_asyncio.StreamReader, _asyncio.StreamWriter], Awaitable[None] | None]
SSLArg = _ssl.SSLContext | bool | None


def new_event_loop() -> _asyncio.AbstractEventLoop:
    """asyncio's selector loop with ``RingSelector``: ring connections at ring speed.

    The loop is the stdlib's (``asyncio.SelectorEventLoop``); only its selector
    differs: it spins on the rings of its ring connections before it sleeps
    (adaptive, at most their ``busy_poll_us``; 0 turns it off), and is an
    ``EpollSelector`` for everything else.
    """
    return _asyncio.SelectorEventLoop(RingSelector())


def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None) -> _T:
    """``asyncio.run(main)`` on ``new_event_loop()``."""
    with _asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main)


class EventLoopPolicy(_asyncio.DefaultEventLoopPolicy):
    """asyncio's default policy whose loops are ``new_event_loop()``'s.

    ``asyncio.set_event_loop_policy(loopfast.asyncio.EventLoopPolicy())`` makes
    ``asyncio.run``, ``asyncio.new_event_loop`` and ``get_event_loop`` use it.
    """

    def new_event_loop(self) -> _asyncio.AbstractEventLoop:
        """A loop from ``loopfast.asyncio.new_event_loop()``."""
        return new_event_loop()


def _native(loop: _asyncio.AbstractEventLoop) -> bool:
    """True when the loop's own transports call the socket object (selector loops)."""
    return isinstance(loop, selector_events.BaseSelectorEventLoop)


def fast_path_active(stream: _asyncio.StreamWriter | _asyncio.BaseTransport) -> bool:
    """True when the connection under *stream* (a StreamWriter or transport) is on the fast path.

    Works for TLS transports too (their ``socket`` extra is the connection's).
    """
    transport = stream.transport if isinstance(stream, _asyncio.StreamWriter) else stream
    sock = transport.get_extra_info("socket")
    sock = getattr(sock, "_sock", sock)  # asyncio.trsock.TransportSocket wraps the object
    return isinstance(sock, socket) and sock.fast_path_active


def _ssl_context(ssl: SSLArg, server_side: bool) -> _ssl.SSLContext | None:
    if ssl is True:
        purpose = _ssl.Purpose.CLIENT_AUTH if server_side else _ssl.Purpose.SERVER_AUTH
        return _ssl.create_default_context(purpose)
    return ssl or None


async def _connected_socket(loop: _asyncio.AbstractEventLoop, host: str | None, port: int | None,
                            fast_path: bool | str, family: int, proto: int, flags: int,
                            local_addr: tuple[str, int] | None) -> socket:
    """A loopfast socket connected to the first address of *host*:*port* that answers."""
    infos = await loop.getaddrinfo(host, port, family=family, type=_stdsocket.SOCK_STREAM,
                                   proto=proto, flags=flags)
    if not infos:
        raise OSError("getaddrinfo() returned empty list")
    errors: list[OSError] = []
    for fam, kind, prot, _canon, address in infos:
        sock = socket(fam, kind, prot, fast_path=fast_path)
        try:
            sock.setblocking(False)
            if local_addr is not None:
                sock.bind(local_addr)
            await loop.sock_connect(sock, address)
            return sock
        except OSError as exc:
            sock.close()
            errors.append(exc)
        except BaseException:
            sock.close()
            raise
    try:
        if len(errors) == 1 or len({str(e) for e in errors}) == 1:
            raise errors[0]
        raise OSError(f"Multiple exceptions: {', '.join(str(e) for e in errors)}")
    finally:
        errors.clear()


async def create_connection(protocol_factory: Callable[[], _P], host: str | None = None,
                            port: int | None = None, *, fast_path: bool | str = True,
                            ssl: SSLArg = None, family: int = 0, proto: int = 0, flags: int = 0,
                            sock: _stdsocket.socket | None = None,
                            local_addr: tuple[str, int] | None = None,
                            server_hostname: str | None = None,
                            ssl_handshake_timeout: float | None = None,
                            ssl_shutdown_timeout: float | None = None,
                            ) -> tuple[_asyncio.Transport, _P]:
    """``loop.create_connection`` on the running loop, over the fast path when both sides
    opted in.

    On asyncio's selector loop the transport is the loop's own; on other loops
    (uvloop) a fast-path connection gets ``aio_transport.SocketTransport`` and a
    TCP one the loop's own.

    Args:
        fast_path: True (or "ring") for the shared-memory rings, "stream" for the
            AF_UNIX stream transport, False for plain TCP. A peer that did not
            opt in, or an address that is not loopback, gives TCP, silently.
        sock: an already connected socket, used as it is (``fast_path`` is then its own).
        Others: as ``loop.create_connection``.

    Returns:
        ``(transport, protocol)``, as ``loop.create_connection``.

    Raises:
        OSError: as ``loop.create_connection`` (ConnectionRefusedError, gaierror, ...);
            EINVAL for an unknown ``fast_path`` word. ssl.SSLError: the TLS handshake failed.
    """
    loop = _asyncio.get_running_loop()
    if sock is None:
        sock = await _connected_socket(loop, host, port, fast_path, family, proto, flags,
                                       local_addr)
    context = _ssl_context(ssl, server_side=False)
    if context is not None and server_hostname is None:
        server_hostname = host
    protocol = protocol_factory()
    try:
        if _native(loop) or not (isinstance(sock, socket) and sock.fast_path_active):
            transport, _ = await loop.create_connection(
                lambda: protocol, sock=sock, ssl=context, server_hostname=server_hostname,
                ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout)
        else:
            transport = await aio_transport.connect(
                loop, protocol, sock, ssl=context, server_hostname=server_hostname,
                ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout)
    except BaseException:
        sock.close()
        raise
    return transport, protocol


async def open_connection(host: str | None = None, port: int | None = None, *,
                          fast_path: bool | str = True, limit: int = _LIMIT,
                          ssl: SSLArg = None, family: int = 0, proto: int = 0, flags: int = 0,
                          sock: _stdsocket.socket | None = None,
                          local_addr: tuple[str, int] | None = None,
                          server_hostname: str | None = None,
                          ssl_handshake_timeout: float | None = None,
                          ssl_shutdown_timeout: float | None = None,
                          ) -> tuple[_asyncio.StreamReader, _asyncio.StreamWriter]:
    """``asyncio.open_connection`` over the fast path when both sides opted in.

    The arguments and the errors are ``create_connection``'s; *limit* is
    ``asyncio.open_connection``'s. Returns the standard ``(StreamReader,
    StreamWriter)``.
    """
    loop = _asyncio.get_running_loop()
    reader = _asyncio.StreamReader(limit=limit, loop=loop)
    transport, protocol = await create_connection(
        lambda: _asyncio.StreamReaderProtocol(reader, loop=loop), host, port,
        fast_path=fast_path, ssl=ssl, family=family, proto=proto, flags=flags, sock=sock,
        local_addr=local_addr, server_hostname=server_hostname,
        ssl_handshake_timeout=ssl_handshake_timeout, ssl_shutdown_timeout=ssl_shutdown_timeout)
    return reader, _asyncio.StreamWriter(transport, protocol, reader, loop)


async def start_server(client_connected_cb: ClientConnected, host: str | Sequence[str] | None
                       = None, port: int | None = None, *, fast_path: bool = True,
                       limit: int = _LIMIT, family: int = _stdsocket.AF_UNSPEC,
                       flags: int = _stdsocket.AI_PASSIVE, sock: _stdsocket.socket | None = None,
                       backlog: int = 100, ssl: SSLArg = None, reuse_address: bool | None = None,
                       reuse_port: bool | None = None, ssl_handshake_timeout: float | None = None,
                       ssl_shutdown_timeout: float | None = None,
                       start_serving: bool = True) -> base_events.Server:
    """``asyncio.start_server`` whose listeners also take fast-path clients.

    The arguments, the returned server and the errors are ``create_server``'s;
    *client_connected_cb* and *limit* are ``asyncio.start_server``'s.
    """
    loop = _asyncio.get_running_loop()

    def factory() -> _asyncio.StreamReaderProtocol:
        reader = _asyncio.StreamReader(limit=limit, loop=loop)
        return _asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)

    return await create_server(
        factory, host, port, fast_path=fast_path, family=family, flags=flags, sock=sock,
        backlog=backlog, ssl=ssl, reuse_address=reuse_address, reuse_port=reuse_port,
        ssl_handshake_timeout=ssl_handshake_timeout, ssl_shutdown_timeout=ssl_shutdown_timeout,
        start_serving=start_serving)


async def create_server(protocol_factory: Callable[[], _asyncio.BaseProtocol],
                        host: str | Sequence[str] | None = None, port: int | None = None, *,
                        fast_path: bool = True, family: int = _stdsocket.AF_UNSPEC,
                        flags: int = _stdsocket.AI_PASSIVE,
                        sock: _stdsocket.socket | None = None, backlog: int = 100,
                        ssl: SSLArg = None, reuse_address: bool | None = None,
                        reuse_port: bool | None = None,
                        ssl_handshake_timeout: float | None = None,
                        ssl_shutdown_timeout: float | None = None,
                        start_serving: bool = True) -> base_events.Server:
    """``loop.create_server`` on the running loop, whose listeners also take fast-path clients.

    On asyncio's selector loop the loop accepts and carries connections itself;
    on other loops (uvloop) the listeners are served by an ``add_reader``,
    fast-path connections get ``aio_transport.SocketTransport`` and TCP ones
    the loop's own transport.

    Args:
        fast_path: offer the fast path (True) or not (False). Clients that do not
            opt in are served over TCP by the same listeners.
        sock: a bound socket to serve, used as it is (a ``loopfast.socket`` with
            ``fast_path=True`` offers the fast path).
        Others: as ``loop.create_server``.

    Returns:
        An ``asyncio.Server``; ``server.sockets`` are the listeners.

    Raises:
        OSError: bind failed (the message names the address), as ``loop.create_server``.
    """
    loop = _asyncio.get_running_loop()
    if sock is not None:
        sockets = [sock]
    else:
        sockets = await _listeners(loop, host, port, family, flags, reuse_address, reuse_port,
                                   fast_path)
    for listener in sockets:
        listener.setblocking(False)
    kind = base_events.Server if _native(loop) else _Server
    server = kind(loop, sockets, protocol_factory, _ssl_context(ssl, server_side=True), backlog,
                  ssl_handshake_timeout, ssl_shutdown_timeout)
    if start_serving:
        await server.start_serving()
    return server


async def _listeners(loop: _asyncio.AbstractEventLoop, host: str | Sequence[str] | None,
                     port: int | None, family: int, flags: int, reuse_address: bool | None,
                     reuse_port: bool | None, fast_path: bool) -> list[_stdsocket.socket]:
    hosts: list[str | None] = [None] if host in (None, "") else (
        [host] if isinstance(host, str) else list(host or ()))
    infos: list[Any] = []
    for name in hosts:
        for info in await loop.getaddrinfo(name, port, family=family,
                                           type=_stdsocket.SOCK_STREAM, flags=flags):
            if info not in infos:
                infos.append(info)
    sockets: list[_stdsocket.socket] = []
    try:
        for fam, kind, proto, _canon, address in infos:
            sock = socket(fam, kind, proto, fast_path=fast_path)
            sockets.append(sock)
            if reuse_address is not False:
                sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_REUSEADDR, True)
            if reuse_port:
                sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_REUSEPORT, True)
            if fam == _stdsocket.AF_INET6:
                sock.setsockopt(_stdsocket.IPPROTO_IPV6, _stdsocket.IPV6_V6ONLY, True)
            try:
                sock.bind(address)
            except OSError as err:
                raise OSError(err.errno, f"error while attempting to bind on address "
                              f"{address!r}: {err.strerror.lower() if err.strerror else err}"
                              ) from None
    except BaseException:
        for made in sockets:
            made.close()
        raise
    if not sockets:
        raise OSError(f"no address to listen on for {host!r}")
    return sockets


class _Server(base_events.Server):
    """``asyncio.Server`` for loops that cannot accept on a fast-path listener's fd.

    Accepts with ``listener.accept()`` from an ``add_reader`` callback; TCP
    arrivals get the loop's own transport, fast-path ones ``_aio_transport``.
    """

    # base_events.Server's own state (typeshed leaves it out)
    _loop: _asyncio.AbstractEventLoop
    _sockets: list[Any] | None
    _serving: bool
    _serving_forever_fut: _asyncio.Future[None] | None
    _active_count: int
    _backlog: int
    _protocol_factory: Callable[[], _asyncio.BaseProtocol]
    _ssl_context: _ssl.SSLContext | None
    _ssl_handshake_timeout: float | None
    _ssl_shutdown_timeout: float | None
    _wakeup: Callable[[], None]

    def _start_serving(self) -> None:
        if self._serving:
            return
        self._serving = True
        for sock in self._sockets or ():
            sock.listen(self._backlog)
            self._loop.add_reader(sock.fileno(), self._accept_ready, sock)

    def close(self) -> None:
        """Stop listening and close the listeners; open connections stay open."""
        sockets = self._sockets
        if sockets is None:
            return
        for sock in sockets:
            if self._serving:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets = None
        self._serving = False
        if self._serving_forever_fut is not None and not self._serving_forever_fut.done():
            self._serving_forever_fut.cancel()
            self._serving_forever_fut = None
        if self._active_count == 0:
            self._wakeup()

    def _attach(self, *_transport: Any) -> None:
        self._active_count += 1

    def _detach(self, *_transport: Any) -> None:
        self._active_count -= 1
        if self._active_count == 0 and self._sockets is None:
            self._wakeup()

    def _accept_ready(self, listener: socket) -> None:
        for _ in range(self._backlog):
            try:
                conn, _addr = listener.accept()
                conn.setblocking(False)
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                self._loop.call_exception_handler({
                    "message": "socket.accept() failed", "exception": exc, "socket": listener})
                return
            self._loop.create_task(self._serve(conn))

    async def _serve(self, conn: socket) -> None:
        protocol = self._protocol_factory()
        try:
            if conn.fast_path_active:
                await aio_transport.connect(
                    self._loop, protocol, conn, ssl=self._ssl_context, server_side=True,
                    ssl_handshake_timeout=self._ssl_handshake_timeout,
                    ssl_shutdown_timeout=self._ssl_shutdown_timeout, server=self)
            else:
                await self._loop.connect_accepted_socket(
                    lambda: protocol, conn, ssl=self._ssl_context,
                    ssl_handshake_timeout=self._ssl_handshake_timeout,
                    ssl_shutdown_timeout=self._ssl_shutdown_timeout)
        except (OSError, _ssl.SSLError) as exc:  # a client that left or failed TLS
            _log.debug("loopfast.asyncio: incoming connection failed: %s", exc)
            conn.close()
        except BaseException:
            conn.close()
            raise

