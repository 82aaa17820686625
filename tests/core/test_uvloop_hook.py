"""uvloop under ``patch()`` (``_core/uvloop_hook.py``): servers and loopback clients take the
fast path, everything else stays uvloop's.

Real uvloop loops, real sockets. The import-order case (patch first, uvloop
imported later, as under ``loopfast run``) runs in a fresh interpreter.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
import uvloop

import loopfast
from loopfast._core import uvloop_hook
from loopfast._core.aio_transport import SocketTransport
from loopfast.asyncio import fast_path_active


@pytest.fixture
def patched_with(request: pytest.FixtureRequest) -> Iterator[str]:
    transport = getattr(request, "param", "ring")
    loopfast.patch(transport)
    try:
        yield transport
    finally:
        loopfast.unpatch()


def _run(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(main(), 20)

    return uvloop.run(bounded())


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data)
    writer.close()


async def _round_trip(writer: asyncio.StreamWriter, reader: asyncio.StreamReader) -> bytes:
    writer.write(b"ping")
    data = await reader.readexactly(4)
    writer.close()
    await writer.wait_closed()
    return data


@pytest.mark.parametrize("patched_with", ["ring", "stream"], indirect=True)
def test_streams_on_uvloop_take_the_fast_path(patched_with: str) -> None:
    async def main() -> tuple[bool, str | None, bytes, bool]:
        server = await asyncio.start_server(_echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sock = writer.get_extra_info("socket")._sock
        active, kind = fast_path_active(writer), sock.fast_path_transport
        carried = isinstance(writer.transport, SocketTransport)
        data = await _round_trip(writer, reader)
        server.close()
        await server.wait_closed()
        return active, kind, data, carried

    assert _run(main) == (True, patched_with, b"ping", True)


def test_a_client_that_did_not_opt_in_gets_uvloops_tcp(patched_with: str) -> None:
    async def main() -> tuple[bytes, str]:
        loop = asyncio.get_running_loop()
        seen: asyncio.Future[str] = loop.create_future()

        async def note(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.set_result(type(writer.transport).__name__)
            await _echo(reader, writer)

        server = await asyncio.start_server(note, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        plain = loopfast.socket(socket.AF_INET, socket.SOCK_STREAM, fast_path=False)
        plain.setblocking(False)
        await loop.sock_connect(plain, ("127.0.0.1", port))
        plain.sendall(b"ping")
        data = await asyncio.wait_for(loop.sock_recv(plain, 4), 5)
        plain.close()
        kind = await seen
        server.close()
        await server.wait_closed()
        return data, kind

    assert _run(main) == (b"ping", "TCPTransport")  # uvloop's own


def test_a_client_whose_server_did_not_opt_in_gets_uvloops_tcp(patched_with: str) -> None:
    async def main() -> tuple[str, bool, bytes]:
        loop = asyncio.get_running_loop()
        listener = loopfast.socket(socket.AF_INET, socket.SOCK_STREAM, fast_path=False)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        _reader, writer = await asyncio.open_connection("127.0.0.1", listener.getsockname()[1])
        accepted, _ = await asyncio.wait_for(loop.sock_accept(listener), 5)
        writer.write(b"ping")
        data = await asyncio.wait_for(loop.sock_recv(accepted, 4), 5)
        kind, active = type(writer.transport).__name__, fast_path_active(writer)
        writer.close()
        accepted.close()
        listener.close()
        return kind, active, data

    assert _run(main) == ("TCPTransport", False, b"ping")  # the loopfast socket's TCP fd


def test_a_plain_sock_is_uvloops(patched_with: str) -> None:
    async def main() -> tuple[bool, bytes, bool]:
        listener = socket.create_server(("127.0.0.1", 0))  # the patched class: opted in
        plain_listener = loopfast.socket(socket.AF_INET, socket.SOCK_STREAM, fast_path=False)
        plain_listener.bind(("127.0.0.1", 0))
        loop = asyncio.get_running_loop()
        server = await loop.create_server(asyncio.Protocol, sock=plain_listener)
        theirs = type(server).__module__.startswith("uvloop")
        server.close()
        await server.wait_closed()
        ours = await asyncio.start_server(_echo, sock=listener)
        port = listener.getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        active = fast_path_active(writer)
        data = await _round_trip(writer, reader)
        ours.close()
        await ours.wait_closed()
        return theirs, data, active

    assert _run(main) == (True, b"ping", True)


def test_unpatch_puts_uvloops_methods_back() -> None:
    own = uvloop.Loop.create_server
    loopfast.patch()
    assert uvloop_hook.installed()
    assert uvloop.Loop.create_server is not own
    loopfast.unpatch()
    assert not uvloop_hook.installed()
    assert uvloop.Loop.create_server is own
    assert "create_server" not in uvloop.Loop.__dict__


def test_unpatched_uvloop_stays_on_tcp() -> None:
    async def main() -> bool:
        server = await asyncio.start_server(_echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        active = fast_path_active(writer)
        await _round_trip(writer, reader)
        server.close()
        await server.wait_closed()
        return active

    assert _run(main) is False


def test_uvloop_imported_after_patch_is_patched() -> None:
    code = textwrap.dedent("""
        import asyncio, sys
        import loopfast
        loopfast.patch()
        assert "uvloop" not in sys.modules
        import uvloop
        from loopfast.asyncio import fast_path_active
        from loopfast._core.patch import connection_counts

        async def main():
            async def echo(reader, writer):
                writer.write(await reader.read(10))
                writer.close()
            server = await asyncio.start_server(echo, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"hi")
            print(fast_path_active(writer), await reader.read(10), connection_counts()["ring"])
            writer.close()
            server.close()
        uvloop.run(main())
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "b'hi'", "1"]
