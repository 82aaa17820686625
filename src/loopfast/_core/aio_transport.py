"""An asyncio transport for fast-path connections on loops that are not selector loops.

asyncio's own selector loop (the default on Linux) carries a loopfast socket
with its own transport: it calls ``sock.recv_into``/``sock.send`` on the
object when ``fileno()`` is ready, which is all a ring-carried connection
needs. Other loops (uvloop) read and write the fd themselves, which a ring's
fd does not carry. For them this transport drives the socket object through
the loop's public ``add_reader``/``add_writer`` callbacks, as
``selector_events._SelectorSocketTransport`` does, and TLS runs over it in
asyncio's memory-BIO ``sslproto.SSLProtocol``.

Invariants: the reader is registered exactly while reading is wanted (not
paused, not closing); the writer exactly while ``_buffer`` is non-empty;
``connection_lost`` is scheduled once; the socket is closed right after it.
"""

from __future__ import annotations

import asyncio as _asyncio
import socket as _stdsocket
import ssl as _ssl
import warnings
from asyncio import sslproto, transports, trsock
from typing import Any

from . import aio_spin

MAX_READ = 256 * 1024


class SocketTransport(transports._FlowControlMixin, _asyncio.Transport):
    """A stream transport over any socket object, driven by ``add_reader``/``add_writer``."""

    def __init__(self, loop: _asyncio.AbstractEventLoop, sock: _stdsocket.socket,
                 protocol: _asyncio.BaseProtocol, waiter: _asyncio.Future[None] | None = None,
                 server: Any = None) -> None:
        super().__init__({"socket": trsock.TransportSocket(sock), "sockname": sock.getsockname(),
                          "peername": sock.getpeername()}, loop)
        self._loop: _asyncio.AbstractEventLoop = loop
        self._sock: _stdsocket.socket | None = sock
        self._fd = sock.fileno()
        self._protocol: Any = protocol
        self._server = server
        self._buffer = bytearray()
        self._closing = self._paused = self._eof = False
        self._lost = False
        # A ring connection's loop spins on its ring before it sleeps (aio_spin.py).
        spin = aio_spin.spinner_for(loop, sock)
        self._spinner: aio_spin.LoopSpinner | None = spin[0] if spin is not None else None
        self._channel: Any = spin[1] if spin is not None else None
        sock.setblocking(False)
        if server is not None:
            server._attach()
        loop.call_soon(protocol.connection_made, self)
        loop.call_soon(self._start_reading)
        if waiter is not None:
            loop.call_soon(_set_result, waiter)

    def __repr__(self) -> str:
        state = "closed" if self._sock is None else ("closing" if self._closing else "open")
        return f"<loopfast SocketTransport fd={self._fd} {state} bufsize={len(self._buffer)}>"

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if self._sock is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._sock.close()

    # -- protocol and reading ---------------------------------------------------

    def set_protocol(self, protocol: _asyncio.BaseProtocol) -> None:
        """Hand the data to *protocol* from now on."""
        self._protocol = protocol

    def get_protocol(self) -> _asyncio.BaseProtocol:
        """The current protocol."""
        return self._protocol  # type: ignore[no-any-return]

    def is_closing(self) -> bool:
        """True once close() or abort() was called, or the connection failed."""
        return self._closing

    def is_reading(self) -> bool:
        """True while data is delivered to the protocol."""
        return not self._closing and not self._paused

    def pause_reading(self) -> None:
        """Stop delivering data until resume_reading()."""
        if self.is_reading():
            self._paused = True
            self._stop_reading()

    def resume_reading(self) -> None:
        """Deliver data again."""
        if not self._closing and self._paused:
            self._paused = False
            self._start_reading()

    def _start_reading(self) -> None:
        if self.is_reading():
            self._loop.add_reader(self._fd, self._read_ready)
            if self._spinner is not None:
                self._spinner.watch(self._channel, self)

    def _stop_reading(self) -> None:
        self._loop.remove_reader(self._fd)
        if self._spinner is not None:
            self._spinner.unwatch(self._channel)

    def _read_ready(self) -> None:
        if self._lost or self._sock is None:
            return
        try:
            if isinstance(self._protocol, _asyncio.BufferedProtocol):
                buf = self._protocol.get_buffer(-1)
                n = self._sock.recv_into(buf)
                if n:
                    self._protocol.buffer_updated(n)
                    if self._spinner is not None:
                        self._spinner.kick()
                    return
            else:
                data = self._sock.recv(MAX_READ)
                if data:
                    self._protocol.data_received(data)
                    if self._spinner is not None:
                        self._spinner.kick()
                    return
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on loopfast transport")
            return
        self._read_eof()

    def _read_eof(self) -> None:
        self.pause_reading()
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return
        if not keep_open:
            self.close()

    # -- writing ----------------------------------------------------------------

    def write(self, data: Any) -> None:
        """Send *data* now as far as the peer has room, buffer the rest (pausing the protocol
        above the high-water mark)."""
        if self._eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data or self._lost or self._sock is None:
            return
        if not self._buffer:
            try:
                sent = self._sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal write error on loopfast transport")
                return
            if self._spinner is not None:
                self._spinner.kick()  # an answer may come within the spin
            data = memoryview(data)[sent:]
            if not data:
                return
            self._loop.add_writer(self._fd, self._write_ready)
        self._buffer.extend(data)
        self._maybe_pause_protocol()  # type: ignore[attr-defined]

    def _write_ready(self) -> None:
        if self._lost or self._sock is None:
            return
        try:
            sent = self._sock.send(self._buffer)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.remove_writer(self._fd)
            self._buffer.clear()
            self._fatal_error(exc, "Fatal write error on loopfast transport")
            return
        del self._buffer[:sent]
        self._maybe_resume_protocol()  # type: ignore[attr-defined]
        if self._buffer:
            return
        self._loop.remove_writer(self._fd)
        if self._closing:
            self._lose(None)
        elif self._eof:
            self._sock.shutdown(_stdsocket.SHUT_WR)

    def write_eof(self) -> None:
        """Shut the sending half once the buffer is sent (the peer reads end of stream)."""
        if self._closing or self._eof or self._sock is None:
            return
        self._eof = True
        if not self._buffer:
            self._sock.shutdown(_stdsocket.SHUT_WR)

    def can_write_eof(self) -> bool:
        """True: a stream can be half-closed."""
        return True

    def get_write_buffer_size(self) -> int:
        """Bytes written but not yet taken by the connection."""
        return len(self._buffer)

    # -- closing ----------------------------------------------------------------

    def close(self) -> None:
        """Close after the buffered data is sent; the protocol's connection_lost(None) follows."""
        if self._closing:
            return
        self._closing = True
        self._stop_reading()
        if not self._buffer:
            self._lose(None)

    def abort(self) -> None:
        """Close at once, dropping buffered data."""
        self._force_close(None)

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        if not isinstance(exc, OSError):
            self._loop.call_exception_handler({"message": message, "exception": exc,
                                               "transport": self, "protocol": self._protocol})
        self._force_close(exc)

    def _force_close(self, exc: BaseException | None) -> None:
        if self._lost:
            return
        if self._buffer:
            self._buffer.clear()
            self._loop.remove_writer(self._fd)
        if not self._closing:
            self._closing = True
            self._stop_reading()
        self._lose(exc)

    def _lose(self, exc: BaseException | None) -> None:
        if not self._lost:
            self._lost = True
            self._loop.call_soon(self._connection_lost, exc)

    def _connection_lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            if self._server is not None:
                self._server._detach()
                self._server = None


def _set_result(waiter: _asyncio.Future[None]) -> None:
    if not waiter.cancelled():
        waiter.set_result(None)


async def connect(loop: _asyncio.AbstractEventLoop, protocol: _asyncio.BaseProtocol,
                  sock: _stdsocket.socket, *, ssl: _ssl.SSLContext | None = None,
                  server_side: bool = False, server_hostname: str | None = None,
                  ssl_handshake_timeout: float | None = None,
                  ssl_shutdown_timeout: float | None = None,
                  server: Any = None) -> _asyncio.Transport:
    """Carry the connected *sock* with a SocketTransport (TLS in sslproto when *ssl*).

    Returns the transport the application uses (the TLS one when *ssl*), once
    the protocol has seen connection_made.

    Raises:
        OSError, ssl.SSLError: the TLS handshake failed (the socket is closed).
    """
    waiter: _asyncio.Future[None] = loop.create_future()
    app: _asyncio.Transport
    if ssl is None:
        app = raw = SocketTransport(loop, sock, protocol, waiter, server)
    else:
        tls = sslproto.SSLProtocol(
            loop, protocol, ssl, waiter, server_side, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,  # type: ignore[arg-type]
            ssl_shutdown_timeout=ssl_shutdown_timeout)
        raw = SocketTransport(loop, sock, tls, None, server)
        app = tls._app_transport
    try:
        await waiter
    except BaseException:
        raw.abort()
        raise
    return app
