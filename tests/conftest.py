"""Shared fixtures: fast-path pairs that close themselves, a clean policy environment."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import loopfast
from loopfast._fastpath import registry
from loopfast._fastpath.background import background

from ._tls import self_signed
from .netns import NOBODY, Child, child_or_skip

TIMEOUT = 5.0

Pair = tuple[loopfast.socket, loopfast.socket]
Closing = Callable[[socket.socket], socket.socket]


@pytest.fixture(scope="session", autouse=True)
def _background_kept() -> None:
    """The background thread (one epoll fd) and the stat endpoint (one listening socket)
    stay for the whole session, so tests that count fds see neither come and go: in a
    program they start with the first fast-path connection and end after the last
    (tests/fastpath/test_background.py checks that)."""
    background.keep()
    registry._registry.start()


@pytest.fixture(autouse=True)
def _no_policy(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests see no administrator policy unless they set one."""
    for name in ("LOOPFAST_FAST_PATH", "LOOPFAST_EXCLUDE_PORTS"):
        monkeypatch.delenv(name, raising=False)
    missing = tmp_path_factory.getbasetemp() / "no-such-policy"
    monkeypatch.setenv("LOOPFAST_POLICY_FILE", str(missing))


@pytest.fixture
def closing() -> Iterator[Closing]:
    """``closing(sock)`` registers *sock* to be closed at teardown and returns it."""
    made: list[socket.socket] = []

    def register(sock: socket.socket) -> socket.socket:
        made.append(sock)
        return sock

    yield register
    for sock in made:
        sock.close()


@pytest.fixture(scope="session")
def self_signed_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(certificate, key) files for ``localhost`` and ``127.0.0.1``; skips without openssl."""
    files = self_signed(tmp_path_factory.mktemp("tls"))
    if files is None:
        pytest.skip("openssl is not installed: no certificate to test TLS with")
    return files


@pytest.fixture
def make_server(closing: Closing) -> Callable[..., loopfast.socket]:
    """``make_server(host="127.0.0.1", fast_path=True, **kw)`` -> a listening loopfast socket.

    The port is the kernel's choice, *kw* goes to ``loopfast.create_server``; accept()
    waits at most TIMEOUT.
    """

    def make(host: str = "127.0.0.1", fast_path: bool = True, **kw: Any) -> loopfast.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        srv = closing(loopfast.create_server((host, 0), family=family, fast_path=fast_path, **kw))
        srv.settimeout(TIMEOUT)
        return srv

    return make


@pytest.fixture
def connect_to(closing: Closing) -> Callable[..., Pair]:
    """``connect_to(srv, cli=None, fast_path=True)`` -> connected (client, accepted).

    *cli* (by default a new loopfast socket of the listener's family, opted in with
    *fast_path*) connects to the listener *srv*, which accepts. Every socket waits at
    most TIMEOUT and is closed at teardown.
    """

    def connect(srv: loopfast.socket, cli: loopfast.socket | None = None,
                fast_path: bool | str = True) -> Pair:
        if cli is None:
            cli = loopfast.socket(srv.family, socket.SOCK_STREAM, fast_path=fast_path)
        closing(cli)
        cli.settimeout(TIMEOUT)
        srv.settimeout(TIMEOUT)
        cli.connect(srv.getsockname()[:2])
        acc = closing(srv.accept()[0])
        acc.settimeout(TIMEOUT)
        return cli, acc

    return connect


@pytest.fixture
def make_pair(make_server: Callable[..., loopfast.socket],
              connect_to: Callable[..., Pair]) -> Callable[..., Pair]:
    """``make_pair(client_fp, server_fp, host="127.0.0.1")`` -> connected (client, server).

    *client_fp* is the client's ``fast_path=`` (True: the ring, "stream": AF_UNIX)."""

    def make(client_fp: bool | str = True, server_fp: bool = True,
             host: str = "127.0.0.1") -> Pair:
        return connect_to(make_server(host, fast_path=server_fp), fast_path=client_fp)

    return make


@pytest.fixture
def squatter() -> Iterator[Child]:
    """A helper process running as nobody, to take rendezvous names (``netns.squat``)."""
    with child_or_skip(NOBODY) as child:
        yield child


@pytest.fixture
def patched() -> Iterator[None]:
    """``loopfast.patch()`` in effect for the test, undone after it."""
    loopfast.patch()
    try:
        yield
    finally:
        loopfast.unpatch()
