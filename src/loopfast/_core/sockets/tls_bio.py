"""RingTLS: an ``ssl.SSLObject`` driven over memory BIOs and a ring's Channel.

It stands where ``ssl.SSLSocket`` keeps its ``_sslobj`` (the C object that
reads and writes the fd): the same methods (``read``, ``write``,
``do_handshake``, ``shutdown``, ``pending``, ``getpeercert``, ...), the same
exceptions, but the TLS records travel through the rings. So every method of
``ssl.SSLSocket`` above it (suppress_ragged_eofs, sendall, makefile, unwrap)
works unchanged.

Invariants:

- Records leave in the order OpenSSL made them: whoever takes bytes from the
  outgoing BIO holds ``_tx`` until they are in the ring or in ``_unsent``,
  and ``_unsent`` always goes first.
- Records arrive in ring order: ``_rx`` is held from the ring's recv until
  the bytes are in the incoming BIO. Only ``_ssl`` guards the SSLObject; no
  wait on the ring happens under it.
- The socket's timeout is the Channel's (``RingSocket`` keeps them equal):
  0.0 raises ``SSLWantReadError``/``SSLWantWriteError`` as the stdlib does;
  a timeout bounds each wait and the whole call, as ``_ssl`` does.
"""

from __future__ import annotations

import socket as _stdsocket
import ssl
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from ..._fastpath.ring_link import RingConnection

_T = TypeVar("_T")
CHUNK = 256 * 1024  # plaintext per write() call, ciphertext per ring recv


class RingTLS:
    """TLS over a ring connection, with the interface of ``SSLSocket._sslobj``."""

    def __init__(self, owner: Any, state: RingConnection, context: ssl.SSLContext,
                 server_side: bool, server_hostname: str | None,
                 session: ssl.SSLSession | None) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._obj = context.wrap_bio(self._incoming, self._outgoing, server_side,
                                     server_hostname, session)
        self._channel = state.link.channel
        self._owner = weakref.ref(owner)
        self._ssl = threading.Lock()
        self._tx = threading.Lock()
        self._rx = threading.Lock()
        self._unsent = bytearray()
        self._retry_len: int | None = None  # a write accepted, then SSLWantWriteError
        self._buffer = bytearray(CHUNK)

    # -- what SSLSocket calls ------------------------------------------------------

    def do_handshake(self) -> None:
        """``SSLObject.do_handshake`` with the records carried by the ring."""
        self._run(self._obj.do_handshake, "handshake")

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        """``SSLObject.read``: waits for records as the socket's timeout allows."""
        if buffer is None:
            return self._run(lambda: self._obj.read(len), "read")
        return self._run(lambda: self._obj.read(len, buffer), "read")

    def write(self, data: Any) -> int:
        """``SSLObject.write`` of up to CHUNK bytes; returns how many were taken."""
        nonblocking = self._channel.timeout == 0.0
        if self._unsent or self._retry_len is not None:
            self._flush(nonblocking, self._deadline(), "write")
            taken, self._retry_len = self._retry_len, None
            if taken is not None:
                return taken  # OpenSSL's rule: the retry carries the same data
        with memoryview(data) as view, view.cast("B") as chunk, self._ssl:
            taken = self._obj.write(chunk[:CHUNK])
        try:
            self._flush(nonblocking, self._deadline(), "write")
        except ssl.SSLWantWriteError:
            self._retry_len = taken
            raise
        return taken

    def shutdown(self) -> Any:
        """``SSLObject.unwrap``: returns the owner socket, now carrying plaintext."""
        self._run(self._obj.unwrap, "shutdown")
        owner = self._owner()
        if owner is not None:
            with self._ssl:
                owner._plaintext_after_tls = bytes(self._incoming.read())
        return owner

    def pending(self) -> int:
        """Decrypted bytes ready to read without touching the ring."""
        with self._ssl:
            return self._obj.pending()

    def verify_client_post_handshake(self) -> None:
        """``SSLObject.verify_client_post_handshake``; the request leaves at the next flush."""
        with self._ssl:
            self._obj.verify_client_post_handshake()
        self._flush(self._channel.timeout == 0.0, self._deadline(), "write")

    @property
    def context(self) -> ssl.SSLContext:
        """The SSLContext of the connection."""
        return self._obj.context

    @context.setter
    def context(self, ctx: ssl.SSLContext) -> None:
        self._obj.context = ctx

    @property
    def session(self) -> ssl.SSLSession | None:
        """The TLS session (to resume on another connection)."""
        return self._obj.session

    @session.setter
    def session(self, session: ssl.SSLSession | None) -> None:
        self._obj.session = session

    def __getattr__(self, name: str) -> Any:
        # getpeercert, cipher, version, selected_alpn_protocol, session_reused, ...:
        # answered by the SSLObject from what it already knows.
        return getattr(self._obj, name)

    # -- the engine -----------------------------------------------------------------

    def _deadline(self) -> float | None:
        timeout = self._channel.timeout
        return None if not timeout else time.monotonic() + timeout

    def _run(self, op: Callable[[], _T], what: str) -> _T:
        """Run *op* on the SSLObject until it needs no more records from the peer."""
        nonblocking = self._channel.timeout == 0.0
        deadline = self._deadline()
        while True:
            try:
                with self._ssl:
                    result = op()
            except ssl.SSLWantReadError as want:
                self._flush(nonblocking, deadline, what)
                if not self._fill(nonblocking, deadline, what):
                    raise want from None  # the stdlib's own words: "... (read) (_ssl.c:N)"
                continue
            self._flush(nonblocking, deadline, what)
            return result

    def _fill(self, nonblocking: bool, deadline: float | None, what: str) -> bool:
        """Move the records the ring holds (waiting for some) into the incoming BIO.

        False when a non-blocking call found nothing to move (the caller raises
        the SSLObject's own SSLWantReadError). A reset by the peer is the end of
        the records, as OpenSSL over a kernel socket reports it (SSLEOFError:
        ``b""`` from a read that suppresses ragged EOFs).
        """
        _check_deadline(deadline, what)
        if not (self._rx.acquire(False) if nonblocking
                else self._rx.acquire(True, _remaining(deadline))):
            if nonblocking:  # another thread is reading
                return False
            raise TimeoutError(f"The {what} operation timed out")
        try:
            if self._incoming.eof:
                return True  # the SSLObject reports the end itself
            flags = _stdsocket.MSG_DONTWAIT if nonblocking else 0
            try:
                n = self._channel.recv_into(self._buffer, CHUNK, flags)
            except BlockingIOError:
                return False
            except ConnectionResetError:
                n = 0
            except TimeoutError:
                raise TimeoutError(f"The {what} operation timed out") from None
            with self._ssl:
                if n:
                    self._incoming.write(memoryview(self._buffer)[:n])
                else:
                    self._incoming.write_eof()
            return True
        finally:
            self._rx.release()

    def _flush(self, nonblocking: bool, deadline: float | None, what: str) -> None:
        """Send the records the SSLObject made; raise SSLWantWriteError if the ring is full."""
        with self._tx:
            with self._ssl:
                if self._outgoing.pending:
                    self._unsent += self._outgoing.read()
            flags = _stdsocket.MSG_DONTWAIT if nonblocking else 0
            while self._unsent:
                _check_deadline(deadline, what)
                try:
                    sent = self._channel.send(self._unsent, flags)
                except BlockingIOError:
                    raise ssl.SSLWantWriteError(
                        ssl.SSL_ERROR_WANT_WRITE,
                        f"The operation did not complete ({what})") from None
                except TimeoutError:
                    raise TimeoutError(f"The {what} operation timed out") from None
                del self._unsent[:sent]


def _remaining(deadline: float | None) -> float:
    return -1 if deadline is None else max(deadline - time.monotonic(), 0.0)


def _check_deadline(deadline: float | None, what: str) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise TimeoutError(f"The {what} operation timed out")
