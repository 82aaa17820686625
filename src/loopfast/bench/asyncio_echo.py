"""asyncio rows for the benchmark: 64-byte echo RTT over asyncio streams, and http.server
requests per second under ``python -m loopfast run``.

    python -m loopfast.bench.asyncio_echo [--count N] [--runs N] [--pin split|same|none]
                                          [--http-requests N]

Each asyncio row runs an echo server in a forked child and the timing client
here, both on the same loop kind, over TCP or over the fast path
(loopfast.asyncio, ring). Loop kinds: asyncio's default loop as the stdlib makes
it ("asyncio": it sleeps in epoll for every message), the same loop with
loopfast's selector ("loopfast": ``loopfast.asyncio.new_event_loop()``, which
spins on the rings before it sleeps; what ``loopfast run`` gives), and uvloop
when installed. With ``--pin split`` (the default) the client and the server
run on two different CPUs, as in ``loopfast bench``. ``--runs N`` repeats the
rows N times, interleaved (the order alternates), and ends with each row's
median p50 and its ratio to asyncio's TCP row.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any, cast

from .. import asyncio as lfa
from .pinning import PIN_MODES, pin_to, plan_pinning

_FORK = multiprocessing.get_context("fork")
MESSAGE = b"x" * 64
ROW_NAMES = {"asyncio": "asyncio", "loopfast": "asyncio, loopfast loop", "uvloop": "uvloop"}


def _loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if kind == "uvloop":
        # An optional peer: imported by name, so type-checking works without it.
        uvloop = importlib.import_module("uvloop")
        return cast(Callable[[], asyncio.AbstractEventLoop], uvloop.new_event_loop)
    if kind == "loopfast":
        return lfa.new_event_loop
    return None


async def _serve(fast: bool, ready: Any) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
        writer.close()

    server = await lfa.start_server(echo, "127.0.0.1", 0, fast_path=fast)
    ready.send(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


def _server_main(kind: str, fast: bool, ready: Any, cpu: int | None) -> None:
    pin_to(cpu)
    with asyncio.Runner(loop_factory=_loop_factory(kind)) as runner:
        runner.run(_serve(fast, ready))


async def _client(port: int, fast: bool, count: int, warmup: int) -> list[float]:
    reader, writer = await lfa.open_connection("127.0.0.1", port, fast_path=fast)
    if lfa.fast_path_active(writer) is not fast:
        raise RuntimeError(f"fast path {'did not engage' if fast else 'engaged unasked'}")
    rtts = []
    for i in range(count + warmup):
        start = time.perf_counter_ns()
        writer.write(MESSAGE)
        await reader.readexactly(len(MESSAGE))
        if i >= warmup:
            rtts.append((time.perf_counter_ns() - start) / 1000)
    writer.close()
    await writer.wait_closed()
    return rtts


def asyncio_row(kind: str, fast: bool, count: int, warmup: int,
                pin: str = "none") -> list[float]:
    """Round-trip times (µs) of *count* 64-byte echoes on loop *kind* (``ROW_NAMES``'s keys).

    *pin*: where the client (this process, for the row's time) and the server run
    (``pinning.PIN_MODES``).
    """
    plan = plan_pinning(pin)
    ours, theirs = _FORK.Pipe()
    child = _FORK.Process(target=_server_main, args=(kind, fast, theirs, plan.echoer_cpu),
                          daemon=True)
    child.start()
    allowed = os.sched_getaffinity(0)
    try:
        if not ours.poll(10):
            raise RuntimeError("echo server did not start")
        port = ours.recv()
        pin_to(plan.sender_cpu)
        with asyncio.Runner(loop_factory=_loop_factory(kind)) as runner:
            return runner.run(asyncio.wait_for(_client(port, fast, count, warmup), 120))
    finally:
        os.sched_setaffinity(0, allowed)
        child.kill()
        child.join(5)


def _row_name(kind: str, fast: bool) -> str:
    return f"{ROW_NAMES[kind]} echo, {'ring' if fast else 'TCP'}"


def _print_row(name: str, rtts: list[float], note: str = "") -> None:
    print(f"{name:<36} {statistics.fmean(rtts):9.1f} {rtts[len(rtts) // 2]:8.1f} "
          f"{rtts[int(len(rtts) * 0.99)]:8.1f} {statistics.stdev(rtts):7.1f}{note}", flush=True)


def _asyncio_rows(kinds: list[str], args: argparse.Namespace) -> None:
    rows = [(kind, fast) for kind in kinds for fast in (False, True)]
    p50s: dict[tuple[str, bool], list[float]] = {row: [] for row in rows}
    header = f"{'row':<36} {'mean µs':>9} {'p50 µs':>8} {'p99 µs':>8} {'stdev':>7}"
    for run in range(args.runs):
        print(header if args.runs == 1 else f"run {run + 1}/{args.runs}: {header}")
        for kind, fast in rows if run % 2 == 0 else rows[::-1]:
            rtts = sorted(asyncio_row(kind, fast, args.count, args.warmup, args.pin))
            p50s[(kind, fast)].append(rtts[len(rtts) // 2])
            _print_row(_row_name(kind, fast), rtts)
    if args.runs > 1:
        base = statistics.median(p50s[("asyncio", False)])
        print(f"median p50 over {args.runs} runs (ratio to asyncio echo, TCP):")
        for row in rows:
            mid = statistics.median(p50s[row])
            print(f"  {_row_name(*row):<34} {mid:8.1f} µs  {mid / base:5.2f}", flush=True)


def http_row(under_run: bool, requests: int) -> float:
    """http.server + urllib requests per second (both under ``loopfast run`` when asked)."""
    with tempfile.TemporaryDirectory() as where:
        with open(os.path.join(where, "x"), "w") as f:
            f.write("x" * 64)
        prefix = [sys.executable, "-m", "loopfast", "run", "--"] if under_run else [
            sys.executable, "-I"]
        fetch = os.path.join(where, "fetch.py")
        with open(fetch, "w") as f:
            f.write("import sys, time, urllib.request\n"
                    "n = int(sys.argv[2]); start = time.perf_counter()\n"
                    "for _ in range(n):\n"
                    "    urllib.request.urlopen(sys.argv[1], timeout=10).read()\n"
                    "print(n / (time.perf_counter() - start))\n")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        serve = [*prefix[:-1], "-m", "http.server", "0", "--bind", "127.0.0.1"]
        server = subprocess.Popen(serve, cwd=where, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True)
        try:
            line = server.stdout.readline() if server.stdout is not None else ""
            found = re.search(r"port (\d+)", line)
            if found is None:
                raise RuntimeError("http.server did not start")
            url = f"http://127.0.0.1:{found.group(1)}/x"
            done = subprocess.run([*prefix, fetch, url, str(requests)], capture_output=True,
                                  text=True, timeout=300, check=True)
            return float(done.stdout)
        finally:
            server.kill()
            server.wait(10)


def main(argv: list[str] | None = None) -> int:
    """Print the asyncio and http.server rows."""
    parser = argparse.ArgumentParser(prog="python -m loopfast.bench.asyncio_echo")
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=1, help="repeat the asyncio rows, interleaved")
    parser.add_argument("--pin", choices=PIN_MODES, default="split",
                        help="client and server on two CPUs (split), one (same), or anywhere")
    parser.add_argument("--http-requests", type=int, default=2_000, help="0 skips those rows")
    args = parser.parse_args(argv)
    kinds = ["asyncio", "loopfast"]
    if importlib.util.find_spec("uvloop") is not None:
        kinds.append("uvloop")
    else:
        print("(uvloop not installed: its rows are skipped)")
    note = plan_pinning(args.pin).note
    if note:
        print(f"({note})")
    _asyncio_rows(kinds, args)
    for under_run in (False, True) if args.http_requests > 0 else ():
        rate = http_row(under_run, args.http_requests)
        name = "http.server+urllib, " + ("loopfast run" if under_run else "plain")
        print(f"{name:<36} {rate:9.0f} requests/s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
