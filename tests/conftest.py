"""Shared fixtures: fast-path pairs that close themselves, a clean policy environment."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest

import loopfast

TIMEOUT = 5.0

Pair = tuple[loopfast.socket, loopfast.socket]


@pytest.fixture(scope="session", autouse=True)
def _peer_watcher() -> None:
    """The process-wide peer watcher (one thread, one epoll fd) and the stat endpoint
    (one thread, one listening socket) exist before any test counts fds: each is made
    once, at the first fast-path connection, and lives on."""
    from loopfast._fastpath import registry as _stat
    from loopfast._fastpath.ring_link import _watcher

    _watcher.start()
    _stat._registry.start()


@pytest.fixture(autouse=True)
def _no_policy(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests see no administrator policy unless they set one."""
    for name in ("LOOPFAST_FAST_PATH", "LOOPFAST_EXCLUDE_PORTS"):
        monkeypatch.delenv(name, raising=False)
    missing = tmp_path_factory.getbasetemp() / "no-such-policy"
    monkeypatch.setenv("LOOPFAST_POLICY_FILE", str(missing))


@pytest.fixture
def closing() -> Iterator[Callable[[socket.socket], socket.socket]]:
    """``closing(sock)`` registers *sock* to be closed at teardown and returns it."""
    made: list[socket.socket] = []

    def register(sock: socket.socket) -> socket.socket:
        made.append(sock)
        return sock

    yield register
    for sock in made:
        sock.close()


@pytest.fixture
def make_pair(closing: Callable[[socket.socket], socket.socket]) -> Callable[..., Pair]:
    """``make_pair(client_fp, server_fp, host="127.0.0.1")`` -> connected (client, server).

    *client_fp* is the client's ``fast_path=`` (True: the ring, "stream": AF_UNIX)."""

    def make(client_fp: bool | str = True, server_fp: bool = True,
             host: str = "127.0.0.1") -> Pair:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        srv = closing(loopfast.create_server((host, 0), family=family, fast_path=server_fp))
        srv.settimeout(TIMEOUT)
        cli = closing(loopfast.socket(family, socket.SOCK_STREAM, fast_path=client_fp))
        cli.settimeout(TIMEOUT)
        cli.connect(srv.getsockname()[:2])
        acc, _ = srv.accept()
        closing(acc)
        acc.settimeout(TIMEOUT)
        return cli, acc

    return make
