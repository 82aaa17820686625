"""loopfast.poll against select.poll, and wake-up latency (P8).

    python -m loopfast.bench.poll_bench

Two measurements, printed as plain lines (not a timed test, and not a mode of
``loopfast bench``):

1. Cost of one call over *n* plain sockets (loopfast.socket, TCP, fast path
   off), medians of interleaved rounds: select.poll registered once and polled
   (the cheapest use of it), select.poll built and registered per call (what
   one WSAPoll call does), loopfast.poll on an unchanged array (the usual loop)
   and loopfast.poll after an entry changed (the array is looked at afresh).
2. Wake-up latency: a peer process stamps CLOCK_MONOTONIC and sends 8 bytes;
   the waiting ``loopfast.poll(..., -1)`` returns and takes the difference. Over
   a stdlib AF_UNIX pair, a fast-path connection, and a ring-carried one when
   the connection offers the ring-state protocol (``_loopfast_ready``).
"""

from __future__ import annotations

import os
import select
import socket as _stdsocket
import statistics
import struct
import time
from collections.abc import Callable
from typing import Any

from .. import PollFD, create_server, poll, socket
from ..constants import POLLRDNORM

__all__ = ["latency", "overhead", "run"]


def _pairs(count: int) -> tuple[socket, list[socket]]:
    srv = create_server(("127.0.0.1", 0), backlog=min(count, 4096))
    socks: list[socket] = []
    for _ in range(count):
        cli = socket()
        cli.connect(srv.getsockname())
        acc, _ = srv.accept()
        socks += [cli, acc]
    return srv, socks


def overhead(n: int = 10_000, rounds: int = 40, ready: int = 0) -> dict[str, float]:
    """Median µs per call of each way to poll *n* sockets, *ready* of them readable."""
    srv, socks = _pairs(n // 2)
    try:
        for sock in socks[1:2 * ready:2]:
            sock.send(b"x")  # the accepted side of the pair becomes readable... its peer is
        persistent = select.poll()
        for sock in socks:
            persistent.register(sock, select.POLLIN)

        def per_call() -> Any:
            fresh = select.poll()
            register = fresh.register
            for sock in socks:
                register(sock, select.POLLIN)
            return fresh.poll(0)

        array = [PollFD(sock, POLLRDNORM) for sock in socks]

        def changed() -> Any:
            array[0].events = POLLRDNORM
            return poll(array, 0)

        ways: dict[str, Callable[[], Any]] = {
            "select.poll registered once": lambda: persistent.poll(0),
            "select.poll built per call": per_call,
            "loopfast.poll, same array": lambda: poll(array, 0),
            "loopfast.poll, array changed": changed,
        }
        times: dict[str, list[float]] = {name: [] for name in ways}
        for way in ways.values():
            way()
        for _ in range(rounds):  # interleaved, so drifts in machine load hit every way alike
            for name, way in ways.items():
                start = time.perf_counter()
                way()
                times[name].append((time.perf_counter() - start) * 1e6)
        return {name: statistics.median(got) for name, got in times.items()}
    finally:
        for sock in socks:
            sock.close()
        srv.close()


def _stamper(sock: _stdsocket.socket, count: int, gap: float) -> None:
    for _ in range(count):
        time.sleep(gap)
        sock.sendall(struct.pack("q", time.monotonic_ns()))
        if len(sock.recv(1)) != 1:
            break


def _measure(mine: Any, theirs: _stdsocket.socket, count: int, gap: float) -> list[float]:
    pid = os.fork()
    if pid == 0:  # the peer process
        code = 0
        try:  # leaves *mine* alone: closing a fork's copy must not end the parent's connection
            _stamper(theirs, count, gap)
        except BaseException:
            code = 1
        os._exit(code)
    theirs.close()
    waits: list[float] = []
    entry = [PollFD(mine, POLLRDNORM)]
    try:
        for _ in range(count):
            if poll(entry, 5_000) == 0:
                raise TimeoutError("the peer sent nothing for 5 s")
            woke = time.monotonic_ns()
            sent = struct.unpack("q", mine.recv(8, _stdsocket.MSG_WAITALL))[0]
            waits.append((woke - sent) / 1000)
            mine.sendall(b"k")
    finally:
        mine.close()
        os.waitpid(pid, 0)
    return waits


def latency(count: int = 2_000, gap: float = 0.0002) -> dict[str, list[float]]:
    """µs from a peer process's send to poll() returning, per kind of connection."""
    out: dict[str, list[float]] = {}
    a, b = _stdsocket.socketpair(_stdsocket.AF_UNIX, _stdsocket.SOCK_STREAM)
    out["stdlib AF_UNIX"] = _measure(a, b, count, gap)
    srv = create_server(("127.0.0.1", 0), fast_path=True)
    try:
        cli = socket(fast_path=True)
        cli.connect(srv.getsockname())
        acc, _ = srv.accept()
    finally:
        srv.close()
    kind = "ring-carried" if hasattr(type(acc), "_loopfast_ready") else "fast path"
    try:
        out[f"loopfast {kind} ({type(acc).__name__})"] = _measure(acc, cli, count, gap)
    except (OSError, struct.error) as exc:  # say so, and keep the other rows
        print(f"loopfast {kind}: failed: {exc!r}")
        cli.close()
    return out


def run(n: int = 10_000, rounds: int = 40, count: int = 2_000) -> str:
    """Both measurements as text lines."""
    lines = [f"poll over {n} loopfast.socket (TCP, fast path off), median of {rounds} rounds"]
    for ready in (0, n // 100):
        got = overhead(n, rounds, ready)
        base = got["select.poll registered once"]
        lines.append(f"  {ready} readable:")
        lines += [f"    {name:30} {us:9.0f} µs  {us / base:5.2f}x" for name, us in got.items()]
    lines.append(f"wake-up latency, peer's send -> poll returns, {count} samples (µs)")
    for name, waits in latency(count).items():
        waits.sort()
        p99 = waits[int(len(waits) * 0.99)]
        lines.append(f"  {name:32} median {statistics.median(waits):6.1f}  p99 {p99:6.1f}  "
                     f"mean {statistics.fmean(waits):6.1f}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
