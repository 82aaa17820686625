"""_core/sockets/tls.py: blocking ``SSLContext.wrap_socket`` on ring connections.

Every behaviour runs over stdlib TCP (the reference: the stdlib's SSLSocket on
the fd) and over the ring (``RingTLSSocket``: the records go through the rings).
"""

from __future__ import annotations

import functools
import hashlib
import os
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import loopfast
from loopfast._core.sockets import RingTLSSocket, TLSListener
from loopfast._core.sockets.tls import installed

from ...conftest import TIMEOUT, Closing, Pair

TRANSPORTS = ["tcp", "ring"]
Contexts = tuple[ssl.SSLContext, ssl.SSLContext]


@pytest.fixture
def contexts(self_signed_cert: tuple[Path, Path]) -> Contexts:
    """(server context, client context) trusting the self-signed certificate."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(*self_signed_cert)
    server.set_alpn_protocols(["h2", "http/1.1"])
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(self_signed_cert[0])
    client.set_alpn_protocols(["http/1.1"])
    return server, client


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def pair(make_pair: Callable[..., Pair], transport: str) -> Pair:
    """A connected (client, server), over TCP or the ring."""
    on = transport == "ring"
    cli, srv = make_pair(on, on)
    assert cli.fast_path_transport == ("ring" if on else None)
    return cli, srv


class Task:
    """*fn* in a thread; ``result()`` joins (at most TIMEOUT) and re-raises its exception."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self._value = fn()
        except BaseException as exc:  # handed to result()
            self._error = exc

    def result(self) -> Any:
        self._thread.join(TIMEOUT)
        assert not self._thread.is_alive(), "task still running"
        if self._error is not None:
            raise self._error
        return self._value


@pytest.fixture
def tls_pair(pair: Pair, contexts: Contexts, closing: Closing) -> Iterator[tuple[Any, Any]]:
    """(client, server) SSLSockets after the handshake, blocking with TIMEOUT."""
    cli, srv = pair
    server_ctx, client_ctx = contexts
    server_side = Task(lambda: server_ctx.wrap_socket(srv, server_side=True))
    tc = closing(client_ctx.wrap_socket(cli, server_hostname="localhost"))
    ts = closing(server_side.result())
    yield tc, ts


def _recv_exactly(sock: Any, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(min(n - len(out), 1 << 20))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def test_hook_is_installed() -> None:
    assert installed()


def test_handshake_and_what_the_connection_knows(tls_pair: tuple[Any, Any], pair: Pair,
                                                transport: str) -> None:
    tc, ts = tls_pair
    cli, srv = pair
    assert isinstance(tc, ssl.SSLSocket) and isinstance(tc, socket.socket)
    assert cli.fileno() == -1 and srv.fileno() == -1  # detached, as the stdlib leaves them
    if transport == "ring":
        assert type(tc) is RingTLSSocket and tc.fast_path_transport == "ring"
    assert tc.version() == ts.version() == "TLSv1.3"
    assert tc.cipher() == ts.cipher()
    assert tc.selected_alpn_protocol() == ts.selected_alpn_protocol() == "http/1.1"
    assert tc.getpeercert()["subject"] == ((("commonName", "localhost"),),)
    assert ts.getpeercert() is None  # the server asked for no client certificate
    assert len(tc.getpeercert(binary_form=True)) > 100
    assert (tc.server_side, ts.server_side) == (False, True)
    assert tc.server_hostname == "localhost"
    assert tc.getpeername() == ts.getsockname()
    assert tc.pending() == 0 and tc.session is not None and tc.session_reused is False
    tc.sendall(b"ping")
    assert ts.recv(100) == b"ping"
    ts.sendall(b"pong")
    assert tc.recv(100) == b"pong"


@pytest.mark.parametrize("size", [1 << 20, 8 << 20])
def test_large_payloads_both_ways(tls_pair: tuple[Any, Any], size: int) -> None:
    tc, ts = tls_pair
    up, down = os.urandom(size), os.urandom(size // 2)
    echo = Task(lambda: (hashlib.sha256(_recv_exactly(ts, size)).digest(), ts.sendall(down)))
    tc.sendall(up)
    got = _recv_exactly(tc, len(down))
    assert echo.result()[0] == hashlib.sha256(up).digest()
    assert got == down


def test_makefile_readline(tls_pair: tuple[Any, Any]) -> None:
    tc, ts = tls_pair
    with tc.makefile("rwb") as cf, ts.makefile("rwb") as sf:
        cf.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        cf.flush()
        assert sf.readline() == b"GET / HTTP/1.1\r\n"
        assert sf.readline() == b"Host: x\r\n"
        assert sf.readline() == b"\r\n"
        sf.write(b"line one\nline two\n")
        sf.flush()
        assert list(iter(cf.readline, b"line two\n"))[:1] == [b"line one\n"]


def test_timeout_expires_then_the_connection_still_works(tls_pair: tuple[Any, Any]) -> None:
    tc, ts = tls_pair
    tc.settimeout(0.1)
    with pytest.raises(TimeoutError):
        tc.recv(10)
    ts.sendall(b"late")
    tc.settimeout(TIMEOUT)
    assert tc.recv(10) == b"late"


def test_handshake_timeout(pair: Pair, contexts: Contexts) -> None:
    cli, _srv = pair  # the server never answers
    cli.settimeout(0.1)
    with pytest.raises(TimeoutError):
        contexts[1].wrap_socket(cli, server_hostname="localhost")
    assert cli.fileno() == -1


def _nonblocking(op: Callable[[], Any], sock: Any, sel: selectors.BaseSelector,
                 waits: list[str], on_write_wait: Callable[[], Any] = lambda: None) -> Any:
    """Run *op* the way the ssl documentation says a non-blocking SSLSocket is driven."""
    while True:
        try:
            return op()
        except ssl.SSLWantReadError:
            waits.append("read")
            sel.modify(sock, selectors.EVENT_READ)
        except ssl.SSLWantWriteError:
            waits.append("write")
            on_write_wait()
            sel.modify(sock, selectors.EVENT_WRITE)
        assert sel.select(TIMEOUT), "no readiness within the timeout"


def test_do_handshake_on_connect_refused_when_nonblocking(pair: Pair,
                                                           contexts: Contexts) -> None:
    cli, _srv = pair
    cli.setblocking(False)
    with pytest.raises(ValueError, match="non-blocking"):
        contexts[1].wrap_socket(cli, server_hostname="localhost")
    assert cli.fileno() == -1  # as the stdlib: the failed wrap closed what it took


def test_nonblocking_handshake_read_and_write(pair: Pair, contexts: Contexts,
                                              closing: Closing) -> None:
    cli, srv = pair
    server_ctx, client_ctx = contexts
    size = 24 << 20  # more than loopback TCP buffers
    payload = os.urandom(size)

    def serve() -> bytes:
        ts = closing(server_ctx.wrap_socket(srv, server_side=True))
        started.wait(TIMEOUT)  # the client fills what the transport buffers first
        got = _recv_exactly(ts, size)
        ts.sendall(b"done")
        return hashlib.sha256(got).digest()

    started = threading.Event()
    server = Task(serve)
    cli.setblocking(False)
    tc = closing(client_ctx.wrap_socket(cli, server_hostname="localhost",
                                        do_handshake_on_connect=False))
    with selectors.DefaultSelector() as sel:
        sel.register(tc, selectors.EVENT_READ)
        with pytest.raises(ssl.SSLWantReadError):
            tc.recv(1)  # nothing yet, and the stdlib says so this way
        waits: list[str] = []
        _nonblocking(tc.do_handshake, tc, sel, waits)
        assert "read" in waits
        sent = 0
        while sent < size:  # SSLWantWriteError once the peer's buffers are full
            chunk = payload[sent:sent + 65536]
            sent += _nonblocking(functools.partial(tc.send, chunk), tc, sel, waits, started.set)
        started.set()
        assert _nonblocking(functools.partial(tc.recv, 10), tc, sel, waits) == b"done"
        assert "write" in waits
    assert server.result() == hashlib.sha256(payload).digest()


def test_unwrap_then_plaintext(tls_pair: tuple[Any, Any]) -> None:
    tc, ts = tls_pair
    tc.sendall(b"secret")
    assert ts.recv(10) == b"secret"

    def server_unwrap() -> bytes:
        plain = ts.unwrap()
        plain.sendall(b"in the clear")
        return bytes(plain.recv(100))

    server = Task(server_unwrap)
    plain = tc.unwrap()
    assert plain is tc and tc.version() is None
    assert _recv_exactly(plain, 12) == b"in the clear"
    plain.sendall(b"back")
    assert server.result() == b"back"


def test_shutdown_and_close(tls_pair: tuple[Any, Any]) -> None:
    tc, ts = tls_pair
    tc.sendall(b"bye")
    tc.shutdown(socket.SHUT_RDWR)
    assert ts.recv(10) == b"bye"
    assert ts.recv(10) == b""  # a ragged end: suppress_ragged_eofs makes it b""
    tc.close()
    assert tc.fileno() == -1


@pytest.mark.parametrize("suppress", [True, False])
def test_ragged_eof(pair: Pair, contexts: Contexts, closing: Closing, suppress: bool) -> None:
    cli, srv = pair
    server_ctx, client_ctx = contexts
    server = Task(lambda: server_ctx.wrap_socket(srv, server_side=True))
    tc = closing(client_ctx.wrap_socket(cli, server_hostname="localhost",
                                        suppress_ragged_eofs=suppress))
    server.result().close()  # no close_notify: SSLSocket.close sends none
    if suppress:
        assert tc.recv(10) == b""
    else:
        with pytest.raises(ssl.SSLEOFError):
            tc.recv(10)


def test_failed_verification_closes_the_wrapped_socket(pair: Pair, contexts: Contexts,
                                                       closing: Closing) -> None:
    cli, srv = pair
    server_ctx, _ = contexts
    server = Task(lambda: server_ctx.wrap_socket(srv, server_side=True))
    strict = ssl.create_default_context()  # trusts the system's roots, not our certificate
    with pytest.raises(ssl.SSLCertVerificationError):
        strict.wrap_socket(cli, server_hostname="localhost")
    assert cli.fileno() == -1
    with pytest.raises((ssl.SSLError, OSError)):
        closing(server.result())  # the client's alert ends the server's handshake


def test_wrap_arguments_checked_before_anything_moves(pair: Pair, contexts: Contexts) -> None:
    cli, srv = pair
    with pytest.raises(ValueError, match="check_hostname"):
        contexts[1].wrap_socket(cli)
    with pytest.raises(ValueError, match="client mode"):
        contexts[0].wrap_socket(srv, server_side=True, server_hostname="x")
    assert cli.fileno() != -1 and srv.fileno() != -1
    cli.sendall(b"still plain")
    assert srv.recv(20) == b"still plain"


def test_wrapped_listener_accepts_tls(make_server: Callable[..., loopfast.socket],
                                      contexts: Contexts, closing: Closing,
                                      transport: str) -> None:
    server_ctx, client_ctx = contexts
    raw = make_server(fast_path=transport == "ring")
    port = raw.getsockname()[1]
    lst = closing(server_ctx.wrap_socket(raw, server_side=True))
    assert raw.fileno() == -1
    if transport == "ring":
        assert type(lst) is TLSListener
    cli = closing(loopfast.socket(fast_path=transport == "ring"))
    cli.settimeout(TIMEOUT)
    cli.connect(("127.0.0.1", port))
    client = Task(lambda: closing(client_ctx.wrap_socket(cli, server_hostname="localhost")))
    conn, _addr = lst.accept()
    closing(conn)
    tc = client.result()
    assert isinstance(conn, ssl.SSLSocket) and conn.version() == "TLSv1.3"
    tc.sendall(b"hello")
    assert conn.recv(10) == b"hello"


@pytest.mark.parametrize("suppress", [True, False])
def test_a_reset_under_a_read_is_a_ragged_eof(pair: Pair, contexts: Contexts, closing: Closing,
                                              suppress: bool) -> None:
    """OpenSSL over a kernel socket reports a peer's reset as an EOF (b"" or SSLEOFError)."""
    cli, srv = pair
    server_ctx, client_ctx = contexts
    server = Task(lambda: server_ctx.wrap_socket(srv, server_side=True,
                                                 suppress_ragged_eofs=suppress))
    tc = client_ctx.wrap_socket(cli, server_hostname="localhost")
    ts = closing(server.result())
    ts.sendall(b"never read")
    time.sleep(0.05)  # it has arrived: the client's close leaves it unread, a reset
    tc.close()
    if suppress:
        assert ts.recv(10) == b""
    else:
        with pytest.raises(ssl.SSLEOFError):
            ts.recv(10)
