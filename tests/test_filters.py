"""SPEC F9, the application's half: a covered connection takes TCP and the filter sees it all."""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import loopfast
from loopfast.filters import ConnectionFilter, ConnectionInfo

from .conftest import Pair


class Recorder(ConnectionFilter):
    """Covers one port; records what it sees; optionally rewrites or blocks."""

    def __init__(self, port: int, *, block: bool = False, upper: bool = False,
                 double_in: bool = False) -> None:
        self.port, self.block, self.upper, self.double_in = port, block, upper, double_in
        self.sent: list[bytes] = []
        self.received: list[bytes] = []
        self.connections: list[ConnectionInfo] = []

    def covers(self, role: str, service: tuple[Any, ...]) -> bool:
        return service[1] == self.port

    def on_connect(self, info: ConnectionInfo) -> bool:
        self.connections.append(info)
        return not self.block

    def on_send(self, info: ConnectionInfo, data: bytes) -> bytes:
        self.sent.append(data)
        return data.upper() if self.upper else data

    def on_recv(self, info: ConnectionInfo, data: bytes) -> bytes:
        self.received.append(data)
        return data * 2 if self.double_in else data


@pytest.fixture
def register() -> Iterator[Callable[[ConnectionFilter], ConnectionFilter]]:
    registered: list[ConnectionFilter] = []

    def add(flt: ConnectionFilter) -> ConnectionFilter:
        loopfast.filters.register(flt)
        registered.append(flt)
        return flt

    yield add
    for flt in registered:
        loopfast.filters.unregister(flt)


@pytest.fixture
def server(make_server: Callable[..., loopfast.socket]) -> loopfast.socket:
    """A fast-path listener on 127.0.0.1; ``connect_to(server)`` makes a connection."""
    return make_server()


def test_covered_connection_takes_tcp_and_filter_sees_every_byte(
        server: loopfast.socket, connect_to: Callable[..., Pair],
        register: Callable[[ConnectionFilter], ConnectionFilter]) -> None:
    flt = register(Recorder(server.getsockname()[1]))
    cli, acc = connect_to(server)
    assert not cli.fast_path_active and not acc.fast_path_active
    cli.sendall(b"ping")
    assert acc.recv(100) == b"ping"
    acc.sendall(b"pong")
    assert cli.recv(100) == b"pong"
    # Both ends live in this process, so the filter saw each byte leave and arrive.
    assert b"".join(flt.sent) == b"pingpong"
    assert b"".join(flt.received) == b"pingpong"
    roles = sorted(info.role for info in flt.connections)
    assert roles == ["client", "server"]


def test_filter_rewrites_data(server: loopfast.socket, connect_to: Callable[..., Pair],
                              register: Callable[[ConnectionFilter], ConnectionFilter]) -> None:
    register(Recorder(server.getsockname()[1], upper=True))
    cli, acc = connect_to(server)
    with cli.makefile("wb") as w:
        w.write(b"hello\n")
    assert acc.recv(100) == b"HELLO\n"


def test_inbound_growth_is_delivered_across_recvs(
        server: loopfast.socket, connect_to: Callable[..., Pair],
        register: Callable[[ConnectionFilter], ConnectionFilter]) -> None:
    register(Recorder(server.getsockname()[1], double_in=True))
    cli, acc = connect_to(server)
    cli.sendall(b"abc")
    got = b""
    for _ in range(6):
        got += acc.recv(1)  # the kernel hands one byte at a time to the filter
    assert got == b"aabbcc"
    buf = bytearray(4)
    cli.sendall(b"xy")
    assert acc.recv_into(buf) == 4 and bytes(buf) == b"xyxy"


def test_blocked_client_is_refused_before_connecting(
        server: loopfast.socket, closing: Callable[..., loopfast.socket],
        register: Callable[[ConnectionFilter], ConnectionFilter]) -> None:
    register(Recorder(server.getsockname()[1], block=True))
    with pytest.raises(ConnectionRefusedError, match="filter blocked"):
        loopfast.create_connection(server.getsockname(), timeout=5, fast_path=True)
    server.settimeout(0.2)
    with pytest.raises(TimeoutError):
        server.accept()


def test_server_side_block_drops_tcp_arrivals(
        server: loopfast.socket, closing: Callable[..., loopfast.socket],
        register: Callable[[ConnectionFilter], ConnectionFilter]) -> None:
    flt = Recorder(server.getsockname()[1], block=True)
    # The client is a stdlib socket: only the server's filter is in play.
    register(flt)
    cli = closing(socket.create_connection(server.getsockname(), timeout=5))
    server.settimeout(0.3)
    with pytest.raises(TimeoutError):
        server.accept()
    assert [info.role for info in flt.connections] == ["server"]
    assert cli.recv(10) == b""  # dropped: the client sees the stream end


def test_filter_registered_after_listen_withdraws_the_fast_path(
        server: loopfast.socket, connect_to: Callable[..., Pair],
        register: Callable[[ConnectionFilter], ConnectionFilter]) -> None:
    cli, _acc = connect_to(server)
    assert cli.fast_path_active  # before: fast path
    # Covers only the server's role: the client alone would still ask for the fast path.
    class ServerOnly(Recorder):
        def covers(self, role: str, service: tuple[Any, ...]) -> bool:
            return role == "server" and super().covers(role, service)

    register(ServerOnly(server.getsockname()[1]))
    cli2, acc2 = connect_to(server)
    assert not cli2.fast_path_active and not acc2.fast_path_active


def test_filtered_socket_refuses_what_would_bypass_it(
        server: loopfast.socket, connect_to: Callable[..., Pair],
        register: Callable[[ConnectionFilter], ConnectionFilter]) -> None:
    register(Recorder(server.getsockname()[1]))
    cli, _ = connect_to(server)
    for call in (lambda: cli.recv(1, socket.MSG_PEEK), lambda: cli.recvmsg(10),
                 lambda: cli.sendmsg([b"x"])):
        with pytest.raises(OSError) as err:
            call()
        assert err.value.errno == errno.EOPNOTSUPP


def test_register_checks_its_argument() -> None:
    with pytest.raises(TypeError):
        loopfast.filters.register(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        loopfast.filters.unregister(ConnectionFilter())
