"""Issue 14 on the ring: foreign bytes in a wake-up socket, rings a peer asks to be huge,
and the memory a drained ring keeps. Real sockets and processes, nothing mocked."""

from __future__ import annotations

import contextlib
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
from loopfast._fastpath import background, connector, ring_link

from ..._fds import open_fds
from ...conftest import Pair
from ...ring_pair import RingPair

SPIN_WINDOW = 0.5
SPIN_LIMIT = 0.1  # of a core: a spinning loop would use all of it


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _serve_with_selectors(sock: socket.socket, seconds: float) -> tuple[float, int, bytes]:
    """A selectors read loop on *sock* for *seconds*: (CPU fraction, wake-ups, bytes read)."""
    sock.setblocking(False)
    got = bytearray()
    wakeups = 0
    with selectors.DefaultSelector() as sel:
        sel.register(sock, selectors.EVENT_READ)
        start, cpu0 = time.monotonic(), _cpu()
        while (left := start + seconds - time.monotonic()) > 0:
            for _key, _ev in sel.select(timeout=left):
                wakeups += 1
                with contextlib.suppress(BlockingIOError):
                    got += sock.recv(65536)
        elapsed = time.monotonic() - start
        return (_cpu() - cpu0) / elapsed, wakeups, bytes(got)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("when", ["idle", "after-data"])
def test_a_foreign_byte_in_the_wake_up_socket_does_not_spin(
        make_pair: Callable[..., Pair], when: str, capsys: pytest.CaptureFixture[str]) -> None:
    cli, acc = make_pair()
    assert cli.fast_path_transport == "ring"
    if when == "after-data":
        cli.sendall(b"hello")
        assert acc.recv(5) == b"hello"
    # The client holds a copy of the server's w: one junk byte lands in the server's r.
    os.write(cli._state.link.peer_w, b"J")  # type: ignore[attr-defined]
    cpu, wakeups, got = _serve_with_selectors(acc, SPIN_WINDOW)
    with capsys.disabled():
        print(f"\n  foreign byte ({when}): selectors loop used {cpu * 100:.1f}% of a core, "
              f"{wakeups} wake-ups in {SPIN_WINDOW} s")
    assert got == b""
    assert cpu < SPIN_LIMIT and wakeups <= 2
    cli.sendall(b"still works")  # and readiness still comes when data does
    cpu, wakeups, got = _serve_with_selectors(acc, 0.2)
    assert got == b"still works" and wakeups >= 1


@pytest.mark.timeout(30)
def test_a_flood_of_foreign_bytes_does_not_spin_once_it_stops(
        make_pair: Callable[..., Pair]) -> None:
    cli, acc = make_pair()
    peer_w = socket.socket(fileno=os.dup(cli._state.link.peer_w))  # type: ignore[attr-defined]
    peer_w.setblocking(False)
    for _ in range(100):
        try:
            peer_w.send(b"J" * 65536)
        except BlockingIOError:
            break
    peer_w.close()
    cpu, _wakeups, got = _serve_with_selectors(acc, SPIN_WINDOW)
    assert got == b""
    assert cpu < 0.5  # it drains the flood a few hundred KiB per wake-up, then sleeps
    cpu, wakeups, _ = _serve_with_selectors(acc, SPIN_WINDOW)
    assert cpu < SPIN_LIMIT and wakeups == 0


_open_fds = open_fds


@pytest.mark.timeout(30)
@pytest.mark.parametrize("sizes", [(64 << 20, 4096), (4096, 64 << 20)])
def test_a_hello_asking_for_oversized_rings_is_refused(
        make_server: Callable[..., loopfast.socket], sizes: tuple[int, int],
        caplog: pytest.LogCaptureFixture) -> None:
    srv = make_server()
    port = srv.getsockname()[1]
    receive, send = ring_link.ring_limits(srv._state.tcp)  # type: ignore[attr-defined]
    assert sizes[0] > receive or sizes[1] > send
    before = _open_fds()
    found = connector.find(socket.AF_INET, "127.0.0.1", port, 5.0)
    assert found is not None
    offer = ring_link.RingOffer((socket.AF_INET, "127.0.0.1", port, os.getuid()), *sizes)
    with socket.socket() as reserved:  # the client's own port, as connect makes it
        reserved.bind(("127.0.0.1", 0))
        found.say_hello(socket.AF_INET, reserved.getsockname(), ("127.0.0.1", port),
                        reserved.fileno(), offer.sizes,
                        offer.fds_for_server(found.stream.fileno()), offer.slot)
        offer.offered = True
    own_r = os.dup(offer.client_r.fileno())
    link = offer.client_link(own_r, found.stream.detach())
    try:
        srv.settimeout(0.5)
        with caplog.at_level(logging.WARNING, logger="loopfast"), pytest.raises(TimeoutError):
            srv.accept()  # the server refuses it, closing the stream and every fd it brought
        assert any("maps at most" in r.getMessage() for r in caplog.records)
        link.channel.timeout = 5.0
        with pytest.raises(ConnectionResetError):  # the client sees a reset
            link.channel.recv(10)
    finally:
        link.release()
        os.close(own_r)
    assert _open_fds() == before


def test_rings_within_the_server_limits_are_accepted(make_pair: Callable[..., Pair]) -> None:
    cli, acc = make_pair()
    assert cli.fast_path_transport == "ring"
    cli.sendall(b"ok")
    assert acc.recv(2) == b"ok"


def _resident_kib(memfd: int) -> float:
    return os.fstat(memfd).st_blocks * 512 / 1024


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("size", "chunk"), [(128 << 10, 4096), (128 << 10, 65536),
                                             (128 << 10, 1 << 20), (4 << 20, 1 << 20)])
def test_a_drained_ring_gives_its_pages_back(size: int, chunk: int,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with RingPair.open(size, size, timeout=5.0) as pair:
        client, server = pair.client.channel, pair.server.channel
        burst = os.urandom(size)
        client.sendall(burst)
        during = _resident_kib(pair.memfd)
        got = bytearray()
        while len(got) < size:
            got += server.recv(chunk)
        kept = _resident_kib(pair.memfd)
        assert not server.trim()  # the receiver has nothing to give: the sender punches
        assert client.trim()  # what the background thread does for an idle connection
        after = _resident_kib(pair.memfd)
        with capsys.disabled():
            print(f"\n  {size >> 10} KiB burst read in {chunk} B chunks: memfd resident "
                  f"{during:.0f} KiB "
                  f"while full, {kept:.0f} KiB drained, {after:.0f} KiB after trim()")
        assert got == burst
        assert during >= size >> 10 and after < 10
        assert not client.trim()  # nothing went through since
        client.sendall(b"after the punch")  # the ring works on, on fresh pages
        assert server.recv(100) == b"after the punch"


def _ring_mappings_kib() -> dict[int, float]:
    """Resident KiB of each ring memfd (arena) this process maps, by its inode."""
    sizes = {}
    with open("/proc/self/maps") as maps:
        for line in maps:
            if "loopfast-ring" in line:
                fd = os.open(f"/proc/self/map_files/{line.split()[0]}", os.O_RDONLY)
                try:
                    info = os.fstat(fd)
                finally:
                    os.close(fd)
                sizes[info.st_ino] = info.st_blocks * 512 / 1024
    return sizes


@pytest.mark.timeout(30)
def test_an_idle_connection_after_a_burst_keeps_no_ring_memory(
        make_pair: Callable[..., Pair], capsys: pytest.CaptureFixture[str]) -> None:
    """Both rings as a default connection makes them (4 MiB here, autotune-sized), each
    filled by a burst, drained, then left idle: the watcher gives the pages back."""
    before = set(_ring_mappings_kib())  # other tests' arenas, if any: not ours to judge
    cli, acc = make_pair()
    assert cli._channel.stats()["tx_size"] >= 4 << 20 or ring_link.autotune_ring() < 4 << 20
    burst = os.urandom(4 << 20)
    for sender, receiver in ((cli, acc), (acc, cli)):
        sending = threading.Thread(target=sender.sendall, args=(burst,))
        sending.start()
        got = bytearray()
        while len(got) < len(burst):
            got += receiver.recv(1 << 20)
        sending.join()
        assert got == burst
    deadline = time.monotonic() + 5 * background.TICK
    while time.monotonic() < deadline:
        time.sleep(0.1)
        ours = [kib for ino, kib in _ring_mappings_kib().items() if ino not in before]
        if ours and max(ours) < 10:
            break
    with capsys.disabled():
        print(f"\n  idle connection after a 4 MiB burst each way: memfd resident {ours} KiB")
    assert ours and max(ours) < 10
