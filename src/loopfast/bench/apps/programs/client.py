"""Clients for every pair: ``client.py KIND PORT SECONDS WARMUP``.

Each makes WARMUP requests, then as many as it can in SECONDS, one at a time,
checks every answer, and prints one JSON line: ``{"requests": n, "seconds": s}``.
Kinds: ``httpx`` (one keep-alive connection), ``requests`` (``requests.get``: a new
connection per request), ``urllib`` (``urllib.request.urlopen``: the same, standard
library only), ``aiohttp`` (one ``ClientSession``), ``websockets`` (one connection,
echoed messages) and ``redis`` (redis-py: SET then GET, two requests).
A wrong answer ends the client with status 1 and the reason. Nothing here imports
loopfast.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

HOST = "127.0.0.1"


class WrongAnswerError(Exception):
    """Raised when an answer is not the one request ``n`` asked for."""


def check(n: int, got: object, want: object) -> None:
    """Raise :class:`WrongAnswerError` unless ``got == want``."""
    if got != want:
        raise WrongAnswerError(f"request {n}: got {got!r}, expected {want!r}")


def expected(n: int) -> bytes:
    """The body the HTTP servers answer ``GET /n/<n>`` with."""
    return f"reply {n}\n".encode()


def timed(step: Callable[[int], int], seconds: float, warmup: int) -> dict[str, float]:
    """Run ``step(n)`` (it returns how many requests it made) WARMUP times, then SECONDS."""
    n = 0
    for n in range(warmup):
        step(n)
    done, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        n += 1
        done += step(n)
    return {"requests": done, "seconds": elapsed}


async def atimed(step: Callable[[int], Awaitable[int]], seconds: float,
                 warmup: int) -> dict[str, float]:
    """:func:`timed` for a coroutine step."""
    n = 0
    for n in range(warmup):
        await step(n)
    done, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        n += 1
        done += await step(n)
    return {"requests": done, "seconds": elapsed}


def run_httpx(port: int, seconds: float, warmup: int) -> dict[str, float]:
    import httpx

    with httpx.Client(base_url=f"http://{HOST}:{port}") as client:
        def step(n: int) -> int:
            check(n, client.get(f"/n/{n}").content, expected(n))
            return 1
        return timed(step, seconds, warmup)


def run_requests(port: int, seconds: float, warmup: int) -> dict[str, float]:
    import requests

    def step(n: int) -> int:
        check(n, requests.get(f"http://{HOST}:{port}/n/{n}", timeout=30).content, expected(n))
        return 1
    return timed(step, seconds, warmup)


def run_urllib(port: int, seconds: float, warmup: int) -> dict[str, float]:
    import urllib.request

    def step(n: int) -> int:
        with urllib.request.urlopen(f"http://{HOST}:{port}/n/{n}", timeout=30) as response:
            check(n, response.read(), expected(n))
        return 1
    return timed(step, seconds, warmup)


def run_aiohttp(port: int, seconds: float, warmup: int) -> dict[str, float]:
    import aiohttp

    async def main() -> dict[str, float]:
        async with aiohttp.ClientSession(f"http://{HOST}:{port}") as session:
            async def step(n: int) -> int:
                async with session.get(f"/n/{n}") as response:
                    check(n, await response.read(), expected(n))
                return 1
            return await atimed(step, seconds, warmup)
    return asyncio.run(main())


def run_websockets(port: int, seconds: float, warmup: int) -> dict[str, float]:
    from websockets.asyncio.client import connect

    async def main() -> dict[str, float]:
        async with connect(f"ws://{HOST}:{port}", compression=None) as ws:
            async def step(n: int) -> int:
                message = f"message {n}"
                await ws.send(message)
                check(n, await ws.recv(), message)
                return 1
            return await atimed(step, seconds, warmup)
    return asyncio.run(main())


def run_redis(port: int, seconds: float, warmup: int) -> dict[str, float]:
    import redis

    client: Any = redis.Redis(host=HOST, port=port)
    with client:
        check(-1, client.ping(), True)

        def step(n: int) -> int:
            key, value = f"key{n % 100}", f"value {n}".encode()
            check(n, client.set(key, value), True)
            check(n, client.get(key), value)
            return 2
        return timed(step, seconds, warmup)


CLIENTS: dict[str, Callable[[int, float, int], dict[str, float]]] = {
    "httpx": run_httpx,
    "requests": run_requests,
    "urllib": run_urllib,
    "aiohttp": run_aiohttp,
    "websockets": run_websockets,
    "redis": run_redis,
}

if __name__ == "__main__":
    kind, port, seconds, warmup = sys.argv[1:5]
    try:
        result = CLIENTS[kind](int(port), float(seconds), int(warmup))
    except WrongAnswerError as exc:
        sys.exit(f"client {kind}: wrong answer: {exc}")
    print(json.dumps(result), flush=True)
