"""loopfast.asyncio (SPEC A1): streams over the fast path, fall-back, TLS, backpressure.

Every test runs on asyncio's default loop, on the same loop with loopfast's selector
(``loopfast.asyncio.new_event_loop()``: it spins on the rings before it sleeps) and,
when installed, on uvloop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import loopfast
import loopfast.asyncio as lfa

try:
    import uvloop
except ImportError:  # an optional extra
    uvloop = None

LOOPS = ["asyncio", "loopfast", pytest.param("uvloop", marks=pytest.mark.skipif(
    uvloop is None, reason="uvloop is not installed (pip install uvloop to run these)"))]
STEP = 5.0

Run = Callable[[Callable[[], Awaitable[Any]]], Any]


@pytest.fixture(params=LOOPS)
def run(request: pytest.FixtureRequest) -> Run:
    """``run(main)``: run the coroutine function *main* on the loop under test, bounded."""
    factories = {"uvloop": getattr(uvloop, "new_event_loop", None),
                 "loopfast": lfa.new_event_loop}
    factory = factories.get(request.param)

    def runner(main: Callable[[], Awaitable[Any]]) -> Any:
        async def bounded() -> Any:
            return await asyncio.wait_for(main(), 30)

        with asyncio.Runner(loop_factory=factory) as r:
            return r.run(bounded())

    return runner


class Echo:
    """An echo server recording, per connection, whether it was on the fast path."""

    def __init__(self) -> None:
        self.active: list[bool] = []
        self.sockets: list[Any] = []
        self.handlers: list[asyncio.Task[None]] = []
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.append(task)
        self.active.append(lfa.fast_path_active(writer))
        self.sockets.append(_sock(writer))
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    async def start(self, **kw: Any) -> int:
        self.server = await lfa.start_server(self.handle, "127.0.0.1", 0, **kw)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        await asyncio.wait_for(asyncio.gather(*self.handlers), STEP)
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


def _sock(writer: asyncio.StreamWriter) -> Any:
    sock = writer.get_extra_info("socket")
    return getattr(sock, "_sock", sock)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await asyncio.wait_for(writer.wait_closed(), STEP)


async def _echo_round(port: int, **kw: Any) -> tuple[bool, Any]:
    reader, writer = await lfa.open_connection("127.0.0.1", port, **kw)
    try:
        for i in range(20):
            writer.write(b"ping %d" % i)
            await writer.drain()
            assert await asyncio.wait_for(reader.readexactly(len(b"ping %d" % i)), STEP) \
                == b"ping %d" % i
        return lfa.fast_path_active(writer), _sock(writer)
    finally:
        await _close(writer)


def _served_round(run: Run, echo: Echo, server_fp: bool, **client_kw: Any) -> tuple[bool, Any]:
    """*echo* started with ``fast_path=server_fp`` serves one ``_echo_round`` (*client_kw*
    go to open_connection) and stops; the client's (fast_path_active, socket)."""

    async def main() -> tuple[bool, Any]:
        port = await echo.start(fast_path=server_fp)
        result = await _echo_round(port, **client_kw)
        await echo.stop()
        return result

    result: tuple[bool, Any] = run(main)
    return result


@pytest.mark.parametrize("transport", [True, "ring", "stream"])
def test_echo_over_the_fast_path(run: Run, transport: bool | str) -> None:
    echo = Echo()
    client_active, client_sock = _served_round(run, echo, True, fast_path=transport)
    assert client_active and echo.active == [True]
    want = "stream" if transport == "stream" else "ring"
    assert client_sock.fast_path_transport == want
    assert echo.sockets[0].fast_path_transport == want
    assert client_sock.fileno() == -1 and echo.sockets[0].fileno() == -1  # closed with the streams


@pytest.mark.parametrize(("client", "server"), [(False, True), (True, False), (False, False)])
def test_fall_back_to_tcp(run: Run, client: bool, server: bool) -> None:
    echo = Echo()
    active, _ = _served_round(run, echo, server, fast_path=client)
    assert active is False
    assert echo.active == [False]


def test_policy_off_falls_back(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPFAST_FAST_PATH", "off")
    echo = Echo()
    active, _ = _served_round(run, echo, True, fast_path=True)
    assert active is False
    assert echo.active == [False]


def test_plain_asyncio_client_reaches_a_fast_path_server(run: Run) -> None:
    echo = Echo()

    async def main() -> bytes:
        port = await echo.start(fast_path=True)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hello")
        data = await asyncio.wait_for(reader.readexactly(5), STEP)
        await _close(writer)
        await echo.stop()
        return data

    assert run(main) == b"hello"
    assert echo.active == [False]


def test_refused_as_tcp(run: Run) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: nobody answers there

    async def main() -> None:
        await lfa.open_connection("127.0.0.1", port, fast_path=True)

    with pytest.raises(ConnectionRefusedError):
        run(main)


def test_start_server_with_a_loopfast_listener(run: Run) -> None:
    echo = Echo()

    async def main() -> bool:
        listener = loopfast.create_server(("127.0.0.1", 0), fast_path=True)
        echo.server = await lfa.start_server(echo.handle, sock=listener)
        active, _ = await _echo_round(listener.getsockname()[1])
        await echo.stop()
        return active

    assert run(main) is True
    assert echo.active == [True]


# -- TLS -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(self_signed_cert: tuple[Path, Path]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert, key = self_signed_cert
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client


@pytest.mark.parametrize("server_fp", [True, False])
def test_tls_over_the_fast_path(run: Run, tls: tuple[ssl.SSLContext, ssl.SSLContext],
                                server_fp: bool) -> None:
    server_ctx, client_ctx = tls
    echo = Echo()

    async def main() -> tuple[bool, str | None]:
        port = await echo.start(fast_path=server_fp, ssl=server_ctx)
        reader, writer = await lfa.open_connection("127.0.0.1", port, ssl=client_ctx,
                                                   ssl_handshake_timeout=STEP)
        secret = b"secret " * 5000
        writer.write(secret)
        await writer.drain()
        got = await asyncio.wait_for(reader.readexactly(len(secret)), STEP)
        assert got == secret
        version = writer.get_extra_info("ssl_object").version()
        active = lfa.fast_path_active(writer)
        await _close(writer)
        await echo.stop()
        return active, version

    active, version = run(main)
    assert active is server_fp and echo.active == [server_fp]
    assert version is not None and version.startswith("TLS")


def test_tls_handshake_failure_is_reported(run: Run,
                                           tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, _ = tls
    echo = Echo()

    async def main() -> None:
        port = await echo.start(fast_path=True, ssl=server_ctx)
        try:
            untrusting = ssl.create_default_context()  # does not know the self-signed cert
            with pytest.raises(ssl.SSLCertVerificationError):
                await lfa.open_connection("127.0.0.1", port, ssl=untrusting,
                                          ssl_handshake_timeout=STEP)
        finally:
            assert echo.server is not None
            echo.server.close()
            await echo.server.wait_closed()
            await asyncio.sleep(0.1)  # the server side of the failed handshake winds down

    run(main)


# -- backpressure ------------------------------------------------------------------


def test_drain_follows_ring_space(run: Run) -> None:
    """A reader that does not read: drain() blocks once ring + buffers are full; bounded."""
    chunk = b"x" * 65536
    release = None
    received = hashlib.sha256()
    got = 0

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal got
        assert release is not None
        await release.wait()
        while data := await reader.read(65536):
            received.update(data)
            got += len(data)
        writer.close()
        await writer.wait_closed()

    async def main() -> tuple[int, int, bool]:
        nonlocal release
        release = asyncio.Event()
        server = await lfa.start_server(slow, "127.0.0.1", 0, fast_path=True)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await lfa.open_connection("127.0.0.1", port)
        sent, peak, sent_hash = 0, 0, hashlib.sha256()
        for _ in range(400):  # at most 25 MiB: far more than any bound below
            writer.write(chunk)
            sent_hash.update(chunk)
            sent += len(chunk)
            peak = max(peak, writer.transport.get_write_buffer_size())
            try:
                await asyncio.wait_for(writer.drain(), 0.5)
            except TimeoutError:
                break
        blocked_at = sent
        active = lfa.fast_path_active(writer)
        release.set()
        await asyncio.wait_for(writer.drain(), STEP)
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), STEP) == b""
        await _close(writer)
        server.close()
        await server.wait_closed()
        for _ in range(100):
            if got == sent:
                break
            await asyncio.sleep(0.01)
        assert got == sent and received.digest() == sent_hash.digest()
        return blocked_at, peak, active

    blocked_at, peak, active = run(main)
    assert active
    assert blocked_at < 400 * len(chunk), "drain() never blocked"
    # In flight at most: the server's StreamReader (2 x 64 KiB before it pauses), the
    # ring (sized from SO_RCVBUF), the client's buffer (64 KiB high-water) and one chunk.
    assert blocked_at <= 8 * 1024 * 1024
    assert peak <= 64 * 1024 + len(chunk)


def test_fast_path_active_on_a_plain_transport() -> None:
    async def main() -> bool:
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        active = lfa.fast_path_active(writer)
        await _close(writer)
        server.close()
        await server.wait_closed()
        return active

    assert asyncio.run(main()) is False


def test_module_name_shadows_nothing() -> None:
    """loopfast.asyncio is importable beside the stdlib's asyncio, and not the same module."""
    import importlib

    assert importlib.import_module("loopfast.asyncio") is not asyncio
    assert Path(lfa.__file__).parent == Path(loopfast.__file__).parent
