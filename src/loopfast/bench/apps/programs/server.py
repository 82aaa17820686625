"""Servers for the pairs whose library ships no server command: ``server.py KIND PORT``.

Kinds: ``http.server`` (``ThreadingHTTPServer``), ``aiohttp`` (``aiohttp.web``),
``websockets`` (an echo server) and ``resp`` (a small Redis-protocol server: PING,
SET, GET, DEL, ECHO, HELLO 2 or 3; CLIENT and SELECT are answered OK). Each
listens on 127.0.0.1:PORT until SIGINT. Nothing here imports loopfast.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import signal
import sys
from collections.abc import Callable
from typing import Any

HOST = "127.0.0.1"


def reply(path: str) -> bytes:
    """The body every HTTP server here answers ``GET /n/<n>`` with."""
    return f"reply {path.rpartition('/')[2]}\n".encode()


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = reply(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve_http_server(port: int) -> None:
    """``http.server.ThreadingHTTPServer``: HTTP/1.0, a connection per request."""
    with http.server.ThreadingHTTPServer((HOST, port), _Handler) as server:
        server.serve_forever()


def serve_aiohttp(port: int) -> None:
    """``aiohttp.web`` with one route."""
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=reply(request.path), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/n/{n}", handle)
    web.run_app(app, host=HOST, port=port, print=None, access_log=None)


async def _until_interrupted() -> None:
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set_result, None)
    await stop


def serve_websockets(port: int) -> None:
    """``websockets.asyncio.server``: every message is sent back."""
    from websockets.asyncio.server import ServerConnection, serve

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        async with serve(echo, HOST, port, compression=None):
            await _until_interrupted()

    asyncio.run(main())


async def _read_command(reader: asyncio.StreamReader) -> list[bytes]:
    """One command, as a RESP array of bulk strings or as an inline line."""
    line = await reader.readuntil(b"\r\n")
    if not line.startswith(b"*"):
        return line.split()
    args = []
    for _ in range(int(line[1:-2])):
        size = int((await reader.readuntil(b"\r\n"))[1:-2])
        args.append((await reader.readexactly(size + 2))[:-2])
    return args


def _bulk(value: bytes | None, resp3: bool = False) -> bytes:
    if value is None:
        return b"_\r\n" if resp3 else b"$-1\r\n"
    return b"$%d\r\n%s\r\n" % (len(value), value)


def _hello(args: list[bytes]) -> tuple[bytes, bool]:
    """HELLO's answer (a map in RESP3, an array in RESP2) and whether RESP3 is on now."""
    resp3 = len(args) > 1 and args[1] == b"3"
    fields = [b"server", b"redis", b"version", b"7.2.0", b"proto"]
    head = b"%3\r\n" if resp3 else b"*6\r\n"
    return head + b"".join(_bulk(f) for f in fields) + b":%d\r\n" % (3 if resp3 else 2), resp3


def _answer(store: dict[bytes, bytes], args: list[bytes], resp3: bool) -> bytes:
    name = args[0].upper() if args else b""
    if name == b"PING":
        return _bulk(args[1]) if len(args) > 1 else b"+PONG\r\n"
    if name == b"ECHO" and len(args) == 2:
        return _bulk(args[1])
    if name == b"SET" and len(args) >= 3:
        store[args[1]] = args[2]
        return b"+OK\r\n"
    if name == b"GET" and len(args) == 2:
        return _bulk(store.get(args[1]), resp3)
    if name == b"DEL":
        return b":%d\r\n" % sum(store.pop(key, None) is not None for key in args[1:])
    if name in (b"CLIENT", b"SELECT"):
        return b"+OK\r\n"
    return b"-ERR unknown command '%s'\r\n" % name


def serve_resp(port: int) -> None:
    """A Redis-protocol server over asyncio streams, one dict for every client."""
    store: dict[bytes, bytes] = {}

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        resp3 = False
        try:
            while True:
                args = await _read_command(reader)
                if args[:1] and args[0].upper() == b"HELLO":
                    answer, resp3 = _hello(args)
                else:
                    answer = _answer(store, args, resp3)
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        async with await asyncio.start_server(client, HOST, port):
            await _until_interrupted()

    asyncio.run(main())


SERVERS: dict[str, Callable[[int], None]] = {
    "http.server": serve_http_server,
    "aiohttp": serve_aiohttp,
    "websockets": serve_websockets,
    "resp": serve_resp,
}

if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        SERVERS[sys.argv[1]](int(sys.argv[2]))
