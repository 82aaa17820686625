"""The server and client pairs of ``loopfast bench apps``: which programs, which packages.

A pair names its two programs as the arguments after ``python``: a library's own
command (``-m uvicorn``, ``-m gunicorn``) or a file of :mod:`.programs`, run by
path so that a plain run imports nothing of loopfast. ``fast_path`` says whether
both sides should take the fast path under ``loopfast run``; a pair that should
not says why.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PAIRS", "PROGRAMS", "Pair"]

PROGRAMS = Path(__file__).resolve().parent / "programs"
_SERVER = str(PROGRAMS / "server.py")
_CLIENT = str(PROGRAMS / "client.py")
HOST = "127.0.0.1"


def _uvicorn(loop: str) -> Callable[[int], list[str]]:
    def server(port: int) -> list[str]:
        return ["-m", "uvicorn", "--app-dir", str(PROGRAMS), "asgi_app:app", "--host", HOST,
                "--port", str(port), "--loop", loop, "--http", "h11", "--lifespan", "off",
                "--log-level", "warning", "--no-access-log"]
    return server


def _gunicorn(port: int) -> list[str]:
    return ["-m", "gunicorn", "--chdir", str(PROGRAMS), "--workers", "1",
            "--worker-class", "sync", "--bind", f"{HOST}:{port}", "--log-level", "warning",
            "wsgi_app:app"]


def _ours(kind: str) -> Callable[[int], list[str]]:
    def server(port: int) -> list[str]:
        return [_SERVER, kind, str(port)]
    return server


@dataclass(frozen=True)
class Pair:
    """One server program and one client program.

    Attributes:
        key: the name ``--pairs`` takes.
        label: the row's name in the table.
        server: the server's arguments after ``python``, for a port.
        client: the client kind ``programs/client.py`` takes.
        packages: the modules both programs import beyond the standard library.
        connections: "one" (a keep-alive connection) or "per request".
        fast_path: whether ``loopfast run`` on both sides should take the fast path.
        why_tcp: when it should not, the reason.
    """

    key: str
    label: str
    server: Callable[[int], list[str]]
    client: str
    packages: tuple[str, ...]
    connections: str = "one"
    fast_path: bool = True
    why_tcp: str = ""

    def client_args(self, port: int, seconds: float, warmup: int) -> list[str]:
        """The client's arguments after ``python``."""
        return [_CLIENT, self.client, str(port), str(seconds), str(warmup)]

    def missing(self) -> str | None:
        """Why this pair cannot run here (a package is not installed), or ``None``."""
        absent = [name for name in self.packages if importlib.util.find_spec(name) is None]
        if absent:
            return (f"{', '.join(absent)} not installed (pip install 'loopfast[apps]')")
        return None


PAIRS: dict[str, Pair] = {p.key: p for p in [
    Pair("uvicorn-httpx", "uvicorn + httpx", _uvicorn("asyncio"), "httpx",
         ("uvicorn", "httpx")),
    Pair("uvicorn-uvloop", "uvicorn --loop uvloop + httpx", _uvicorn("uvloop"), "httpx",
         ("uvicorn", "uvloop", "httpx")),
    Pair("aiohttp", "aiohttp server + client", _ours("aiohttp"), "aiohttp", ("aiohttp",)),
    Pair("websockets", "websockets echo", _ours("websockets"), "websockets",
         ("websockets",)),
    Pair("redis", "redis-py + RESP server", _ours("resp"), "redis", ("redis",)),
    Pair("http.server-requests", "http.server + requests", _ours("http.server"), "requests",
         ("requests",), connections="per request"),
    Pair("gunicorn-requests", "gunicorn sync + requests", _gunicorn, "requests",
         ("gunicorn", "requests"), connections="per request"),
    Pair("http.server-urllib", "http.server + urllib", _ours("http.server"), "urllib", (),
         connections="per request"),
]}
