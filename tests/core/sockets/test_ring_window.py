"""The rings' receive window (_ring.c, ring_link.receive_window): TCP-like capacity by
default, SO_RCVBUF's bound when the program set it, and a raised window wakes a sender."""

from __future__ import annotations

import errno
import os
import selectors
import socket
import threading
import time
import zlib
from collections.abc import Callable
from multiprocessing.connection import Connection

import pytest

import loopfast
from loopfast import _ring
from loopfast._fastpath import ring_link

from ..._procs import child, receive
from ...conftest import Pair
from ...ring_pair import C2S, S2C, Header, RingPair, map_memfd

MiB = 1 << 20
CHUNK = 64 * 1024


def _queue_until_refused(sock: socket.socket) -> int:
    """Bytes a non-blocking *sock* takes before it refuses, its peer never reading.

    TCP moves bytes from the sender's buffer to the receiver's for a while after
    the first EAGAIN, so the queue counts as full only after it stayed refused for
    a short while. Bounded: 64 MiB or 3 s at most.
    """
    sock.setblocking(False)
    data = b"q" * CHUNK
    queued, quiet_since = 0, None
    deadline = time.monotonic() + 3
    while queued < 64 * MiB and time.monotonic() < deadline:
        try:
            queued += sock.send(data)
            quiet_since = None
        except BlockingIOError:
            now = time.monotonic()
            if quiet_since is None:
                quiet_since = now
            elif now - quiet_since > 0.2:
                break
            time.sleep(0.01)
    return queued


def test_a_default_ring_queues_what_loopback_tcp_queues(
        make_server: Callable[..., loopfast.socket], connect_to: Callable[..., Pair],
        capsys: pytest.CaptureFixture[str]) -> None:
    tcp_cli, _tcp_acc = connect_to(make_server(fast_path=False), fast_path=False)
    assert not tcp_cli.fast_path_active
    tcp = _queue_until_refused(tcp_cli)
    cli, _acc = connect_to(make_server())
    assert cli.fast_path_transport == "ring"
    ring = _queue_until_refused(cli)
    with capsys.disabled():
        print(f"\n  queued before EAGAIN, the peer never reading: TCP {tcp / MiB:.2f} MiB, "
              f"ring {ring / MiB:.2f} MiB")
    assert ring >= 0.9 * tcp or ring >= 4 * MiB
    assert ring <= cli._channel.stats()["tx_size"]


def _exchange_side(pipe: Connection, port: int) -> None:
    """The child's side of the exchange: accept, sendall 1 MiB, then read 1 MiB."""
    with loopfast.create_server(("127.0.0.1", port), fast_path=True) as srv:
        pipe.send("listening")
        srv.settimeout(10)
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(10)
            conn.sendall(os.urandom(MiB))
            got = bytearray()
            while len(got) < MiB:
                chunk = conn.recv(MiB)
                if not chunk:
                    break
                got += chunk
            pipe.send((conn.fast_path_transport, len(got), zlib.adler32(got)))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.mark.timeout(60)
def test_both_sides_sendall_a_mebibyte_before_reading() -> None:
    """As over loopback TCP, whose buffers hold that much: nobody waits for the other."""
    port = _free_port()
    with child(_exchange_side, port) as (_proc, pipe):
        assert receive(pipe) == "listening"
        with loopfast.create_connection(("127.0.0.1", port), timeout=10, fast_path=True) as cli:
            assert cli.fast_path_transport == "ring"
            mine = os.urandom(MiB)
            cli.sendall(mine)  # TimeoutError here: the ring held less than TCP would
            got = bytearray()
            while len(got) < MiB:
                chunk = cli.recv(MiB)
                assert chunk, "end of stream before the peer's mebibyte"
                got += chunk
            assert receive(pipe) == ("ring", MiB, zlib.adler32(mine))
            assert len(got) == MiB


def test_a_server_that_set_so_rcvbuf_gets_that_window(
        make_server: Callable[..., loopfast.socket], connect_to: Callable[..., Pair]) -> None:
    srv = make_server()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    cli, acc = connect_to(srv)
    assert acc._channel.window == ring_link.ring_size(
        acc.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    acc.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 512 * 1024)  # grows: the window follows
    grown = acc.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    assert acc._channel.window == min(ring_link.ring_size(grown),
                                      acc._channel.stats()["rx_size"])
    cli.setblocking(False)
    queued = _queue_until_refused(cli)
    assert 0 < queued <= acc._channel.window


def test_a_default_server_opens_the_whole_ring(make_pair: Callable[..., Pair]) -> None:
    cli, acc = make_pair()
    assert acc._channel.window == acc._channel.stats()["rx_size"]
    assert cli._channel.window == cli._channel.stats()["rx_size"]
    assert acc._channel.stats()["rx_size"] == ring_link.autotune_ring()


# -- the window in the C core ----------------------------------------------------------


def test_window_is_clamped_and_never_negative() -> None:
    with RingPair.open(8192, 4096) as pair:
        server = pair.server.channel
        assert server.window == 8192
        server.window = 1 << 40
        assert server.window == 8192
        with pytest.raises(OSError) as err:
            server.window = -1
        assert err.value.errno == errno.EINVAL
        assert pair.header().get(C2S, "window") == 8192


def test_create_memfd_takes_the_first_windows() -> None:
    memfd = _ring.create_memfd(8192, 4096, 1000, 1 << 40)  # the second is clamped to its ring
    mem = map_memfd(memfd, 8192, 4096)
    try:
        header = Header(mem, 8192, 4096)
        assert (header.get(C2S, "window"), header.get(S2C, "window")) == (1000, 4096)
    finally:
        mem.close()
        os.close(memfd)


def test_sends_stop_at_the_window() -> None:
    with RingPair.open(16384, 4096, timeout=0.0) as pair:
        client, server = pair.client.channel, pair.server.channel
        server.window = 5000
        assert client.send(b"a" * 16384) == 5000
        with pytest.raises(BlockingIOError):
            client.send(b"b")
        assert client.ready()[1] is False
        assert server.recv(1000) == b"a" * 1000
        assert client.send(b"c" * 16384) == 1000  # the window less what is in flight
        server.window = 2000  # below what is in flight: no room, nothing lost
        with pytest.raises(BlockingIOError):
            client.send(b"d")
        assert server.recv(16384) == b"a" * 4000 + b"c" * 1000


@pytest.mark.timeout(30)
def test_raising_the_window_wakes_a_blocked_sendall() -> None:
    with RingPair.open(65536, 4096, timeout=5.0) as pair:
        client, server = pair.client.channel, pair.server.channel
        server.window = 4096
        done = threading.Event()
        sender = threading.Thread(target=lambda: (client.sendall(b"w" * 8192), done.set()))
        sender.start()
        try:
            assert not done.wait(0.3), "sendall went past the window"
            assert client.stats()["tx_fill"] == 4096
            start = time.monotonic()
            server.window = 65536  # nothing consumed: only the window moved
            assert done.wait(2), "a raised window did not wake the sender"
            woke = time.monotonic() - start
        finally:
            sender.join(5)
        assert woke < 1
        assert server.recv(65536, socket.MSG_WAITALL) == b"w" * 8192


@pytest.mark.timeout(30)
def test_raising_the_window_makes_a_refused_sender_writable() -> None:
    with RingPair.open(65536, 4096, timeout=0.0) as pair:
        client, server = pair.client.channel, pair.server.channel
        server.window = 0  # a zero window: TCP's, nothing may go
        with pytest.raises(BlockingIOError):
            client.send(b"z")
        with selectors.DefaultSelector() as sel:
            sel.register(pair.client.r, selectors.EVENT_WRITE)
            assert sel.select(timeout=0.05) == []  # unwritable, as TCP on a zero window
            server.window = 4096
            assert sel.select(timeout=2), "writable once the window opened"
        assert client.send(b"z" * 10000) == 4096
