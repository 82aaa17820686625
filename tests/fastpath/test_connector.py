"""_fastpath/connector.py against a server in another process: SPEC F2 (both sides must opt
in) and F5 (for life)."""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable
from multiprocessing.connection import Connection

import pytest

import loopfast

from .._procs import child, receive
from ..conftest import Pair

TIMEOUT = 5.0


def _serve_one(pipe: Connection, fast: bool, host: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with loopfast.create_server((host, 0), family=family, fast_path=fast) as srv:
        srv.settimeout(TIMEOUT)
        pipe.send(srv.getsockname()[1])
        conn, addr = srv.accept()
        with conn:
            conn.settimeout(TIMEOUT)
            creds = conn.peer_credentials
            pipe.send((conn.fast_path_active, addr, conn.getsockname(),
                       creds.pid if creds else None, os.getpid()))
            while data := conn.recv(65536):
                conn.sendall(data)


def _tcp_established(port: int) -> bool:
    """True when the kernel holds an established TCP connection with *port* at one end."""
    wanted = f":{port:04X}"
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(path, encoding="ascii") as table:
            for line in list(table)[1:]:
                fields = line.split()
                if fields[3] == "01" and (fields[1].endswith(wanted) or
                                          fields[2].endswith(wanted)):
                    return True
    return False


@pytest.mark.parametrize(("client_fp", "server_fp"),
                         [(False, False), (True, False), (False, True), (True, True)])
def test_fast_path_only_when_both_opt_in(client_fp: bool, server_fp: bool) -> None:
    with child(_serve_one, server_fp, "127.0.0.1") as (_proc, pipe):
        port = receive(pipe)
        with loopfast.socket(socket.AF_INET, socket.SOCK_STREAM, fast_path=client_fp) as cli:
            cli.settimeout(TIMEOUT)
            cli.connect(("127.0.0.1", port))
            active, peer_addr, server_addr, peer_pid, server_pid = receive(pipe)
            expected = client_fp and server_fp
            assert cli.fast_path_active is expected
            assert active is expected
            # TCP-style addresses, the same seen from both ends, whichever transport.
            assert peer_addr == cli.getsockname() and server_addr == cli.getpeername()
            assert cli.getpeername() == ("127.0.0.1", port)
            if expected:
                assert peer_pid == os.getpid()
                assert cli.peer_credentials.pid == server_pid
                assert cli.peer_credentials.uid == os.getuid()
            else:
                assert peer_pid is None and cli.peer_credentials is None
            cli.sendall(b"both ways")
            assert cli.recv(100) == b"both ways"
            # The data took the transport fast_path_active claims (F5: all of it).
            assert _tcp_established(port) is not expected


@pytest.mark.parametrize("host", ["::1", "127.0.0.1"])
def test_for_life_a_large_stream_stays_on_the_fast_path(host: str) -> None:
    payload = os.urandom(1 << 20)
    with child(_serve_one, True, host) as (_proc, pipe):
        port = receive(pipe)
        cli = loopfast.create_connection((host, port), timeout=TIMEOUT, fast_path=True)
        with cli:
            assert receive(pipe)[0] is True
            got = bytearray()
            for offset in range(0, len(payload), 65536):
                cli.sendall(payload[offset:offset + 65536])
                while len(got) < offset + 65536:
                    got += cli.recv(1 << 17)
                assert cli.fast_path_active
                assert not _tcp_established(port)
            assert bytes(got) == payload
            with pytest.raises(OSError):
                cli.ioctl(loopfast.SIO_LOOPBACK_FAST_PATH, False)
            assert cli.fast_path_active


def test_peer_sees_sequence_numbers_in_order() -> None:
    with child(_serve_one, True, "127.0.0.1") as (_proc, pipe):
        port = receive(pipe)
        with loopfast.create_connection(("127.0.0.1", port), timeout=TIMEOUT,
                                        fast_path=True) as cli:
            receive(pipe)
            n = 5000
            cli.sendall(b"".join(struct.pack("!I", i) for i in range(n)))
            buf = bytearray()
            while len(buf) < 4 * n:
                buf += cli.recv(65536)
            assert list(struct.unpack(f"!{n}I", bytes(buf))) == list(range(n))


IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h; the socket module does not name it


@pytest.mark.parametrize("transport", ["ring", "stream"])
def test_a_socket_the_program_bound_keeps_its_address(
        make_server: Callable[..., loopfast.socket], connect_to: Callable[..., Pair],
        transport: str) -> None:
    srv = make_server()
    cli = loopfast.socket(socket.AF_INET, socket.SOCK_STREAM, fast_path=transport)
    cli.bind(("127.0.0.1", 0))
    bound = cli.getsockname()
    cli, acc = connect_to(srv, cli)
    assert cli.fast_path_active and cli.getsockname() == bound
    assert acc.getpeername() == bound


def test_a_socket_bound_without_a_port_connects_over_tcp(
        make_server: Callable[..., loopfast.socket], connect_to: Callable[..., Pair]) -> None:
    # The port comes with connect(): the fast path cannot reserve one, so TCP carries it.
    srv = make_server()
    cli = loopfast.socket(socket.AF_INET, socket.SOCK_STREAM, fast_path="stream")
    cli.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    cli.bind(("127.0.0.1", 0))
    cli, acc = connect_to(srv, cli)
    assert not cli.fast_path_active and not acc.fast_path_active
    cli.sendall(b"ping")
    assert acc.recv(4) == b"ping"
    assert acc.getpeername() == cli.getsockname()


def test_connecting_a_connected_socket_does_what_tcp_does(
        make_server: Callable[..., loopfast.socket], closing: Callable[..., socket.socket]) -> None:
    # The fast path does not take a socket that is connected already: the kernel answers
    # the second connect() as for any TCP socket (CPython's connect() with a timeout
    # returns quietly on EISCONN), and the first peer keeps it.
    plain = make_server(fast_path=False)
    fast = make_server()
    results = []
    for sock in (closing(socket.socket()),
                 closing(loopfast.socket(socket.AF_INET, socket.SOCK_STREAM, fast_path="stream"))):
        sock.settimeout(TIMEOUT)
        sock.connect(plain.getsockname())
        first = closing(plain.accept()[0])
        try:
            sock.connect(fast.getsockname())
            outcome: object = None
        except OSError as exc:
            outcome = exc.errno
        sock.sendall(b"still")
        first.settimeout(TIMEOUT)
        results.append((outcome, sock.getpeername(), first.recv(5)))
    assert results[1] == results[0]
    assert results[0][1:] == (plain.getsockname(), b"still")
