"""The spinning loops against peers in other processes.

Each test runs on both loops that spin on their rings before they sleep:
``loopfast.asyncio.new_event_loop`` (asyncio's selector loop with
RingSelector) and uvloop (its ring connections on SocketTransport, spun on by
``aio_spin.LoopSpinner``). The loop under test runs here, serving asyncio
streams; each peer is a forked child using blocking loopfast sockets. Timers
stay on time while a peer floods the loop, TCP and ring connections share it,
flow control holds both ways, a closed or killed peer is seen at once, and the
spin costs no CPU when it is off or when the loop idles.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import resource
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from typing import Any

import pytest
import uvloop

import loopfast
import loopfast.asyncio as lfa
from loopfast._core import aio_spin
from loopfast._core.aio_selector import RingSelector, SpinBudget

from .._procs import child, receive

CHUNK = 1 << 16
KINDS = ["loopfast", "uvloop"]  # the loop under test: lfa.new_event_loop() or uvloop's


def _connect(port: int, fast_path: bool | str = True) -> loopfast.socket:
    sock = loopfast.create_connection(("127.0.0.1", port), timeout=10, fast_path=fast_path)
    assert sock.fast_path_transport == ("ring" if fast_path else None)
    return sock


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _run(kind: str, main: Callable[[], Awaitable[Any]], bound: float = 40.0) -> Any:
    async def bounded() -> Any:
        loop = asyncio.get_running_loop()
        if kind == "loopfast":
            assert isinstance(loop._selector, RingSelector)  # type: ignore[attr-defined]
        else:
            assert isinstance(loop, uvloop.Loop)
        return await asyncio.wait_for(main(), bound)

    if kind == "loopfast":
        return lfa.run(bounded())
    return uvloop.run(bounded())


def _budget(loop: asyncio.AbstractEventLoop) -> SpinBudget:
    """The spin budget of the loop under test (its selector's, or its spinner's)."""
    selector = getattr(loop, "_selector", None)
    if isinstance(selector, RingSelector):
        return selector._budget
    return aio_spin._spinners[loop]._budget


class _Served:
    """A server on the loop under test (its port sent to the child) and its handlers."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.handlers: list[asyncio.Task[Any]] = []

    async def close(self) -> None:
        """Stop listening and wait for every handler to end (the child closes its side)."""
        assert self.server is not None
        self.server.close()
        await asyncio.wait_for(asyncio.gather(*self.handlers, return_exceptions=True), 20)
        await self.server.wait_closed()


async def _serve(handler: Callable[..., Awaitable[None]], pipe: Connection,
                 **kw: Any) -> _Served:
    served = _Served()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        served.handlers.append(task)
        await handler(reader, writer)

    served.server = await lfa.start_server(tracked, "127.0.0.1", 0, **kw)
    pipe.send(served.server.sockets[0].getsockname()[1])
    return served


async def _from(pipe: Connection, timeout: float = 20.0) -> Any:
    return await asyncio.to_thread(receive, pipe, timeout)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


# ---- the children -----------------------------------------------------------


def _flood(pipe: Connection, seconds: float) -> None:
    sock = _connect(receive(pipe))
    chunk = b"f" * CHUNK
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sock.sendall(chunk)
    sock.close()


def _pinger(pipe: Connection, fast_path: bool, rounds: int, period: float) -> None:
    sock = _connect(receive(pipe), fast_path)
    rtts = []
    for i in range(rounds):
        message = b"%63d" % i
        start = time.perf_counter()
        sock.sendall(message)
        got = b""
        while len(got) < len(message):
            got += sock.recv(len(message) - len(got))
        rtts.append(time.perf_counter() - start)
        assert got == message
        if period:
            time.sleep(period)
    sock.close()
    pipe.send(rtts)


def _slow_reader(pipe: Connection, per_ms: int) -> None:
    sock = _connect(receive(pipe))
    digest, total = hashlib.sha256(), 0
    while data := sock.recv(per_ms):
        digest.update(data)
        total += len(data)
        time.sleep(0.001)
    sock.close()
    pipe.send((total, digest.hexdigest()))


def _sender(pipe: Connection, size: int) -> None:
    sock = _connect(receive(pipe))
    data = random.Random(7).randbytes(size)
    sock.sendall(data)
    sock.close()
    pipe.send(hashlib.sha256(data).hexdigest())


def _leaver(pipe: Connection, how: str) -> None:
    sock = _connect(receive(pipe))
    sock.sendall(b"up")
    receive(pipe)  # the word to go
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    sock.close()
    receive(pipe)  # alive until the parent saw the end of stream


def _holder(pipe: Connection, count: int) -> None:
    port = receive(pipe)
    socks = [_connect(port) for _ in range(count)]
    pipe.send("connected")
    receive(pipe, 60)  # until the parent has measured
    for sock in socks:
        sock.close()


# ---- the tests --------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_timers_fire_on_time_while_a_ring_peer_floods(kind: str) -> None:
    async def main(pipe: Connection) -> tuple[list[float], int]:
        loop = asyncio.get_running_loop()
        received = 0

        async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal received
            while data := await reader.read(CHUNK):
                received += len(data)
            writer.close()

        server = await _serve(sink, pipe)
        while received < 1 << 20:
            await asyncio.sleep(0.001)
        flooded = received
        late = []
        for _ in range(100):
            due = loop.time() + 0.005
            fired: asyncio.Future[float] = loop.create_future()
            loop.call_at(due, lambda f=fired: f.set_result(loop.time()))
            late.append(await fired - due)
        await server.close()
        return late, received - flooded

    with child(_flood, 2.0) as (_proc, pipe):
        late, during = _run(kind, lambda: main(pipe))
    assert during > 8 << 20  # the ring kept the loop busy all along
    assert max(late) < 0.020


@pytest.mark.parametrize("kind", KINDS)
def test_tcp_and_ring_served_on_one_loop(kind: str) -> None:
    async def main(ring_pipe: Connection, tcp_pipe: Connection) -> tuple[list[float], ...]:
        ring_server = await _serve(_echo, ring_pipe)
        tcp_server = await _serve(_echo, tcp_pipe)
        ring_rtts, tcp_rtts = await asyncio.gather(_from(ring_pipe), _from(tcp_pipe))
        await ring_server.close()
        await tcp_server.close()
        return ring_rtts, tcp_rtts

    with child(_pinger, True, 20_000, 0.0) as (_r, ring_pipe), \
            child(_pinger, False, 300, 0.001) as (_t, tcp_pipe):
        ring_rtts, tcp_rtts = _run(kind, lambda: main(ring_pipe, tcp_pipe))
    assert len(ring_rtts) == 20_000 and len(tcp_rtts) == 300
    assert sorted(tcp_rtts)[150] < 0.005  # served while the ring kept the loop busy


@pytest.mark.parametrize("kind", KINDS)
def test_drain_waits_for_a_slow_reader(kind: str) -> None:
    data = random.Random(3).randbytes(6 << 20)

    async def main(pipe: Connection) -> tuple[int, tuple[int, str]]:
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def push(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            most = 0
            for at in range(0, len(data), CHUNK):
                writer.write(data[at:at + CHUNK])
                most = max(most, writer.transport.get_write_buffer_size())
                await writer.drain()
            writer.close()
            await writer.wait_closed()
            done.set_result(most)

        server = await _serve(push, pipe)
        most = await done
        result = await _from(pipe)
        await server.close()
        return most, result

    with child(_slow_reader, 16 << 10) as (_proc, pipe):
        most, (total, digest) = _run(kind, lambda: main(pipe))
    assert (total, digest) == (len(data), hashlib.sha256(data).hexdigest())
    assert most > 0  # the ring filled: drain() had to wait


@pytest.mark.parametrize("kind", KINDS)
def test_a_slow_reader_here_pauses_and_resumes(kind: str) -> None:
    async def main(pipe: Connection) -> tuple[str, str]:
        done: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def take(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            digest = hashlib.sha256()
            while data := await reader.read(4096):
                digest.update(data)
                await asyncio.sleep(0.0005)
            writer.close()
            done.set_result(digest.hexdigest())

        server = await _serve(take, pipe, limit=8192)
        ours = await done
        theirs = await _from(pipe)
        await server.close()
        return ours, theirs

    with child(_sender, 4 << 20) as (_proc, pipe):
        ours, theirs = _run(kind, lambda: main(pipe))
    assert ours == theirs


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("how", ["close", "kill"])
def test_a_peer_leaving_is_seen_at_once(kind: str, how: str) -> None:
    async def main(pipe: Connection) -> float:
        arrived: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = \
            asyncio.Queue()

        async def keep(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await arrived.put((reader, writer))

        server = await _serve(keep, pipe)
        reader, writer = await arrived.get()
        assert await reader.readexactly(2) == b"up"
        await asyncio.sleep(0.2)  # the loop idles: its spin has shrunk, it sleeps in epoll
        pipe.send("go")
        start = time.monotonic()
        assert await reader.read(10) == b""  # as TCP: it left none of our bytes unread
        took = time.monotonic() - start
        if how == "close":
            pipe.send("bye")  # the child lived on after its close: it was the close we saw
        writer.close()
        await server.close()
        return took

    with child(_leaver, how) as (_proc, pipe):
        took = _run(kind, lambda: main(pipe))
    assert took < 1.0


def _echo_cpu(kind: str, busy_poll_us: int | None) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, the selector's spin ceiling) of echoing a slow peer."""

    async def main(pipe: Connection) -> tuple[float, float, int]:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if busy_poll_us is not None:
                writer.get_extra_info("socket").setsockopt(
                    socket.SOL_SOCKET, loopfast.SO_BUSY_POLL, busy_poll_us)
            await _echo(reader, writer)

        server = await _serve(handler, pipe)
        cpu, wall = _cpu(), time.monotonic()
        await _from(pipe)
        cpu, wall = _cpu() - cpu, time.monotonic() - wall
        cap = _budget(asyncio.get_running_loop()).cap
        await server.close()
        return cpu, wall, cap

    with child(_pinger, True, 400, 0.005) as (_proc, pipe):
        return _run(kind, lambda: main(pipe))  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", KINDS)
def test_busy_poll_zero_turns_the_spin_off(kind: str) -> None:
    cpu, wall, cap = _echo_cpu(kind, 0)
    print(f"  busy_poll_us=0, 200 echoes/s: {cpu / wall:.2%} of a CPU")
    assert cap == 0
    assert cpu / wall < 0.10  # 200 echoes a second, each a wake-up: no spinning


@pytest.mark.parametrize("kind", KINDS)
def test_the_spin_shrinks_for_a_slow_peer(kind: str) -> None:
    cpu, wall, _cap = _echo_cpu(kind, None)
    print(f"  adaptive spin, 200 echoes/s: {cpu / wall:.2%} of a CPU")
    assert cpu / wall < 0.15


@pytest.mark.parametrize("kind", KINDS)
def test_an_idle_loop_with_100_ring_connections_costs_no_cpu(kind: str) -> None:
    async def main(pipe: Connection) -> float:
        loop = asyncio.get_running_loop()

        def tick() -> None:  # wake-ups with a timeout, as a loop with timers has
            loop.call_later(0.01, tick)

        server = await _serve(_echo, pipe)
        assert await _from(pipe) == "connected"
        tick()
        await asyncio.sleep(0.5)  # the budget shrinks to nothing
        shares = []
        for _ in range(3):  # the quietest second: other work on the machine only adds
            cpu = _cpu()
            await asyncio.sleep(1.0)
            shares.append(_cpu() - cpu)
        pipe.send("done")
        await server.close()
        return min(shares)

    with child(_holder, 100) as (_proc, pipe):
        share = _run(kind, lambda: main(pipe))
    print(f"  idle loop, 100 ring connections, 100 wake-ups/s: {share:.2%} of a CPU")
    assert share < 0.02
