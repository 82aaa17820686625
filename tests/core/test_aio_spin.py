"""LoopSpinner (``_core/aio_spin.py``): uvloop's spin on its ring connections, in one process.

The loop is uvloop; the connection's far end is a blocking loopfast socket
driven from a thread. Checked: data that arrives while the loop spins is
handed to the transport by the spin (not by a bell through libuv); the
spinner watches exactly the transports that read; an event on another of the
loop's fds ends a long spin at once; busy_poll_us 0 never spins; after the
spin gives up, bells wake the loop as before. The tests across processes
(timers, TCP beside rings, flow control, idle CPU) are test_aio_loop.py's,
run on uvloop too.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

import loopfast
from loopfast._core import aio_spin, aio_transport

Pair = tuple[loopfast.socket, loopfast.socket]
LONG_SPIN_US = 2_000_000  # a spin ceiling no test waits out


class _Collect(asyncio.Protocol):
    """Keeps what arrives; ``wait(n)`` until n bytes came."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.arrived = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self.data += data
        self.arrived.set()

    async def wait(self, size: int, timeout: float = 5.0) -> bytes:
        async with asyncio.timeout(timeout):
            while len(self.data) < size:
                self.arrived.clear()
                await self.arrived.wait()
        return bytes(self.data)


def _run(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(main(), 30)

    return uvloop.run(bounded())


def _ring(make_pair: Callable[..., Pair], busy_poll_us: int) -> Pair:
    client, server = make_pair(True, True)
    assert server.fast_path_transport == "ring"
    server.setsockopt(socket.SOL_SOCKET, loopfast.SO_BUSY_POLL, busy_poll_us)
    return client, server


def _later(delay: float, action: Callable[[], object]) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


async def _transport(sock: loopfast.socket) -> tuple[Any, _Collect]:
    protocol = _Collect()
    transport = await aio_transport.connect(asyncio.get_running_loop(), protocol, sock)
    return transport, protocol


def _spinner() -> aio_spin.LoopSpinner:
    return aio_spin._spinners[asyncio.get_running_loop()]


def _by_spin(transport: Any) -> list[int]:
    """Count the reads the spinner makes on *transport*: it calls the transport's
    attribute, libuv the bound method add_reader was given."""
    calls = [0]
    read = transport._read_ready

    def counted() -> None:
        calls[0] += 1
        read()

    transport._read_ready = counted
    return calls


def test_data_arriving_in_the_spin_is_read_by_the_spin(make_pair: Callable[..., Pair]) -> None:
    client, server = _ring(make_pair, LONG_SPIN_US)

    async def main() -> tuple[bytes, int]:
        transport, protocol = await _transport(server)
        by_spin = _by_spin(transport)
        _spinner()._budget.ns = LONG_SPIN_US * 1000  # the spin lasts until data comes
        client.sendall(b"a")  # wakes the loop by its bell; the read kicks the spin
        await protocol.wait(1)
        sender = _later(0.05, lambda: client.sendall(b"b"))  # long after the spin began
        data = await protocol.wait(2)
        sender.join()
        transport.close()
        return data, by_spin[0]

    data, by_spin = _run(main)
    assert data == b"ab"
    assert by_spin == 1


def test_the_spinner_watches_the_readers_only(make_pair: Callable[..., Pair]) -> None:
    _client, server = _ring(make_pair, 50)

    async def main() -> list[int]:
        transport, _protocol = await _transport(server)
        await asyncio.sleep(0)  # the transport starts reading in a callback
        channel = server._channel
        spinner = _spinner()
        seen = [channel in spinner._readers]
        transport.pause_reading()
        seen.append(channel in spinner._readers)
        transport.resume_reading()
        seen.append(channel in spinner._readers)
        transport.close()
        seen.append(channel in spinner._readers)
        return [int(s) for s in seen]

    assert _run(main) == [1, 0, 1, 0]


def test_another_fd_ends_a_long_spin(make_pair: Callable[..., Pair]) -> None:
    client, server = _ring(make_pair, LONG_SPIN_US)
    tcp_client, tcp_server = make_pair(False, False)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        transport, protocol = await _transport(server)
        _spinner()._budget.ns = LONG_SPIN_US * 1000
        tcp_server.setblocking(False)
        tcp_seen: asyncio.Future[float] = loop.create_future()

        def on_tcp() -> None:
            loop.remove_reader(tcp_server.fileno())
            tcp_seen.set_result(time.monotonic())

        loop.add_reader(tcp_server.fileno(), on_tcp)
        client.sendall(b"a")  # the read kicks a spin of up to 2 s
        await protocol.wait(1)
        sent = [0.0]

        def send_tcp() -> None:
            sent[0] = time.monotonic()
            tcp_client.sendall(b"t")

        sender = _later(0.05, send_tcp)
        seen = await asyncio.wait_for(tcp_seen, 5)
        sender.join()
        transport.close()
        return seen - sent[0]

    assert _run(main) < 0.1  # the spin looked at libuv's epoll, not out its 2 s


def test_busy_poll_zero_never_spins(make_pair: Callable[..., Pair]) -> None:
    client, server = _ring(make_pair, 0)

    async def main() -> tuple[bytes, int, int, int]:
        transport, protocol = await _transport(server)
        by_spin = _by_spin(transport)
        client.sendall(b"a")
        await protocol.wait(1)
        sender = _later(0.05, lambda: client.sendall(b"b"))
        data = await protocol.wait(2)
        sender.join()
        budget = _spinner()._budget
        transport.close()
        return data, by_spin[0], budget.cap, budget.ns

    data, by_spin, cap, ns = _run(main)
    assert data == b"ab"
    assert (by_spin, cap, ns) == (0, 0, 0)  # "b" came by its bell


def test_after_the_spin_gives_up_a_bell_wakes_the_loop(make_pair: Callable[..., Pair]) -> None:
    client, server = _ring(make_pair, 50)

    async def main() -> tuple[bytes, float]:
        transport, protocol = await _transport(server)
        client.sendall(b"a")
        await protocol.wait(1)
        await asyncio.sleep(0.2)  # every spin since ran out: the loop sleeps in epoll
        sent = time.monotonic()
        client.sendall(b"b")
        data = await protocol.wait(2)
        took = time.monotonic() - sent
        transport.close()
        return data, took

    data, took = _run(main)
    assert data == b"ab"
    assert took < 1.0


def test_no_ring_no_spinner(make_pair: Callable[..., Pair]) -> None:
    _client, server = make_pair("stream", True)
    assert server.fast_path_transport == "stream"

    async def main() -> bool:
        transport, _protocol = await _transport(server)
        watched = transport._spinner is not None
        transport.close()
        return watched

    assert _run(main) is False


@pytest.mark.parametrize("budget_us", [50])
def test_a_spin_respects_its_budget(make_pair: Callable[..., Pair], budget_us: int) -> None:
    client, server = _ring(make_pair, budget_us)

    async def main() -> float:
        transport, protocol = await _transport(server)
        client.sendall(b"a")
        await protocol.wait(1)
        start = time.monotonic()
        await asyncio.sleep(0)  # the queued spin runs before this task resumes
        took = time.monotonic() - start
        transport.close()
        return took

    assert _run(main) < 0.05  # at most the 50 µs asked, with a loaded machine's slack
