"""asyncio rows for the benchmark: 64-byte echo RTT over asyncio streams, and http.server
requests per second under ``python -m loopfast run``.

    python -m loopfast.bench.asyncio_echo [--count N] [--http-requests N]

Each asyncio row runs an echo server in a forked child and the timing client
here, both on the same loop kind (asyncio's default loop, or uvloop when
installed), over TCP or over the fast path (loopfast.asyncio, ring).
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

_FORK = multiprocessing.get_context("fork")
MESSAGE = b"x" * 64


def _loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if kind == "uvloop":
        # An optional peer: imported by name, so type-checking works without it.
        uvloop = importlib.import_module("uvloop")
        return cast(Callable[[], asyncio.AbstractEventLoop], uvloop.new_event_loop)
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


def _server_main(kind: str, fast: bool, ready: Any) -> None:
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


def asyncio_row(kind: str, fast: bool, count: int, warmup: int) -> list[float]:
    """Round-trip times (µs) of *count* 64-byte echoes on loop *kind* ("asyncio"/"uvloop")."""
    ours, theirs = _FORK.Pipe()
    child = _FORK.Process(target=_server_main, args=(kind, fast, theirs), daemon=True)
    child.start()
    try:
        if not ours.poll(10):
            raise RuntimeError("echo server did not start")
        port = ours.recv()
        with asyncio.Runner(loop_factory=_loop_factory(kind)) as runner:
            return runner.run(asyncio.wait_for(_client(port, fast, count, warmup), 120))
    finally:
        child.kill()
        child.join(5)


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
    parser.add_argument("--http-requests", type=int, default=2_000)
    args = parser.parse_args(argv)
    kinds = ["asyncio"]
    if importlib.util.find_spec("uvloop") is not None:
        kinds.append("uvloop")
    else:
        print("(uvloop not installed: its rows are skipped)")
    print(f"{'row':<32} {'mean µs':>9} {'p50 µs':>8} {'p99 µs':>8} {'stdev':>7}")
    for kind in kinds:
        for fast in (False, True):
            rtts = sorted(asyncio_row(kind, fast, args.count, args.warmup))
            name = f"{kind} echo, {'fast path (ring)' if fast else 'TCP'}"
            print(f"{name:<32} {statistics.fmean(rtts):9.1f} {rtts[len(rtts) // 2]:8.1f} "
                  f"{rtts[int(len(rtts) * 0.99)]:8.1f} {statistics.stdev(rtts):7.1f}",
                  flush=True)
    for under_run in (False, True):
        rate = http_row(under_run, args.http_requests)
        name = "http.server+urllib, " + ("loopfast run" if under_run else "plain")
        print(f"{name:<32} {rate:9.0f} requests/s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
