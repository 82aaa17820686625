"""_fastpath/listener.py and its socket surface _core/sockets/listener.py: accept modes,
selectors, hostile arrivals, addresses (SPEC F2, F6)."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import resource
import selectors
import socket
import threading
import time
from collections.abc import Callable

import pytest

import loopfast
from loopfast._core.addresses import name_for
from loopfast._fastpath import handshake as _handshake

Closing = Callable[..., socket.socket]
MakeServer = Callable[..., loopfast.socket]


def test_selector_driven_server_sees_both_kinds_of_arrival(closing: Closing,
                                                           make_server: MakeServer) -> None:
    srv = make_server()
    srv.setblocking(False)
    fast = closing(loopfast.create_connection(srv.getsockname(), timeout=5, fast_path=True))
    plain = closing(socket.create_connection(srv.getsockname(), timeout=5))
    accepted = []
    with selectors.DefaultSelector() as sel:
        sel.register(srv, selectors.EVENT_READ)
        deadline = time.monotonic() + 5
        while len(accepted) < 2 and time.monotonic() < deadline:
            for _key, _ in sel.select(timeout=1):
                with contextlib.suppress(BlockingIOError):
                    accepted.append(closing(srv.accept()[0]))
    assert sorted(a.fast_path_active for a in accepted) == [False, True]
    assert fast.fast_path_active and not isinstance(plain, loopfast.socket)


def test_accept_timeout_and_non_blocking(make_server: MakeServer) -> None:
    srv = make_server()
    srv.settimeout(0.1)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        srv.accept()
    assert 0.09 <= time.monotonic() - started < 2
    srv.setblocking(False)
    with pytest.raises(BlockingIOError) as err:
        srv.accept()
    assert err.value.errno == errno.EAGAIN


def test_blocking_accept_wakes_for_a_client_arriving_later(closing: Closing,
                                                           make_server: MakeServer) -> None:
    srv = make_server()
    srv.settimeout(None)
    clients: list[socket.socket] = []

    def connect_soon() -> None:
        time.sleep(0.1)
        clients.append(loopfast.create_connection(srv.getsockname(), timeout=5, fast_path=True))

    thread = threading.Thread(target=connect_soon)
    thread.start()
    try:
        acc, addr = srv.accept()
        closing(acc)
    finally:
        thread.join(5)
        for c in clients:
            closing(c)
    assert acc.fast_path_active and addr == clients[0].getsockname()


def test_blocking_accept_is_the_default_for_accepted_sockets(closing: Closing,
                                                             make_server: MakeServer) -> None:
    srv = make_server()
    closing(loopfast.create_connection(srv.getsockname(), timeout=5, fast_path=True))
    acc = closing(srv.accept()[0])
    assert acc.gettimeout() is None and acc.getblocking()


def _rendezvous(srv: socket.socket) -> socket.socket:
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.settimeout(5)
    raw.connect(name_for(*srv.getsockname()[:2]))
    return raw


@pytest.mark.parametrize("garbage", [b"GET / HTTP/1.0\r\n\r\n" + bytes(40),
                                     _handshake.MAGIC + bytes(44),
                                     _handshake.MAGIC + b"\x00\x07" + bytes(42)])
def test_malformed_hello_is_refused_and_logged(closing: Closing,
                                               make_server: MakeServer, garbage: bytes,
                                               caplog: pytest.LogCaptureFixture) -> None:
    srv = make_server()
    raw = closing(_rendezvous(srv))
    raw.sendall(garbage[:_handshake.HELLO_SIZE])
    srv.settimeout(0.3)
    with caplog.at_level(logging.WARNING, logger="loopfast"), pytest.raises(TimeoutError):
        srv.accept()
    assert any("refused a fast-path client" in r.getMessage() for r in caplog.records)
    assert raw.recv(1) == b""  # refused: the server read the hello and closed
    good = closing(loopfast.create_connection(srv.getsockname(), timeout=5, fast_path=True))
    srv.settimeout(5)
    assert closing(srv.accept()[0]).fast_path_active and good.fast_path_active


def test_half_a_hello_does_not_spin_or_block_others(closing: Closing,
                                                    make_server: MakeServer) -> None:
    srv = make_server()
    raw = closing(_rendezvous(srv))
    raw.sendall(b"LFP")
    srv.settimeout(0.5)
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    with pytest.raises(TimeoutError):
        srv.accept()
    used = resource.getrusage(resource.RUSAGE_SELF)
    assert (used.ru_utime + used.ru_stime) - (cpu.ru_utime + cpu.ru_stime) < 0.25
    good = closing(loopfast.create_connection(srv.getsockname(), timeout=5, fast_path=True))
    srv.settimeout(5)
    assert closing(srv.accept()[0]).fast_path_active and good.fast_path_active


def test_client_gone_before_accept_is_skipped(closing: Closing, make_server: MakeServer) -> None:
    srv = make_server()
    gone = loopfast.create_connection(srv.getsockname(), timeout=5, fast_path=True)
    gone.close()
    stays = closing(loopfast.create_connection(srv.getsockname(), timeout=5, fast_path=True))
    first = closing(srv.accept()[0])
    # The kernel queued both; the first one's stream simply ends.
    assert first.fast_path_active and first.recv(1) == b""
    second = closing(srv.accept()[0])
    stays.sendall(b"ok")
    assert second.recv(2) == b"ok"


@pytest.mark.parametrize(("bind", "connect"), [("0.0.0.0", "127.0.0.2"),
                                               ("127.0.0.3", "127.0.0.3"),
                                               ("::", "::1")])
def test_exact_and_wildcard_binds(closing: Closing,
                                  make_server: MakeServer, bind: str, connect: str) -> None:
    srv = make_server(bind)
    port = srv.getsockname()[1]
    family = socket.AF_INET6 if ":" in connect else socket.AF_INET
    cli = closing(loopfast.socket(family, socket.SOCK_STREAM, fast_path=True))
    cli.settimeout(5)
    cli.connect((connect, port))
    acc = closing(srv.accept()[0])
    assert cli.fast_path_active and acc.fast_path_active
    assert cli.getpeername()[:2] == (connect, port)
    assert acc.getsockname()[:2] == (connect, port)


def test_v6only_listener_offers_nothing_to_ipv4(make_server: MakeServer) -> None:
    srv = make_server("::")
    assert srv.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
    with pytest.raises(ConnectionRefusedError):
        loopfast.create_connection(("127.0.0.1", srv.getsockname()[1]), timeout=5,
                                   fast_path=True)


def test_close_frees_the_rendezvous_name(make_server: MakeServer) -> None:
    srv = make_server()
    port = srv.getsockname()[1]
    srv.close()
    again = make_server()
    again.close()
    with socket.socket(socket.AF_UNIX) as squat:
        squat.bind(name_for("127.0.0.1", port))  # free again: no EADDRINUSE


def test_detach_hands_back_a_tcp_listener(closing: Closing, make_server: MakeServer) -> None:
    srv = make_server()
    addr = srv.getsockname()
    fd = srv.detach()
    tcp = closing(socket.socket(fileno=fd))
    assert tcp.family == socket.AF_INET and tcp.getsockname() == addr
    cli = closing(loopfast.create_connection(addr, timeout=5, fast_path=True))
    tcp.settimeout(5)
    closing(tcp.accept()[0])
    assert not cli.fast_path_active


def test_dup_of_a_fast_path_listener_accepts_too(closing: Closing, make_server: MakeServer) -> None:
    srv = make_server()
    twin = closing(srv.dup())
    srv.close()  # the twin keeps the listener, both kinds of arrival, alive
    cli = closing(loopfast.create_connection(twin.getsockname(), timeout=5, fast_path=True))
    acc = closing(twin.accept()[0])
    assert cli.fast_path_active and acc.fast_path_active


def test_listener_fds_are_released(make_server: MakeServer) -> None:
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(50):
        make_server().close()
    assert len(os.listdir("/proc/self/fd")) == before
