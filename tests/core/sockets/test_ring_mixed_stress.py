"""Issue 14 D: a two-way stream of random chunks (1 B - 1 MiB) over TCP and the ring.

Two processes, sendall both ways, a reader thread per side, Adler-32 of each
direction checked; prints MB/s each way, medians of RUNS, side by side. Marked
stress: the figures are for reading, not for asserting on a shared machine.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

import loopfast

TOTAL = 256 << 20  # bytes each way per run
RUNS = 5
_BUF = os.urandom((1 << 20) + 4096)
_FORK = multiprocessing.get_context("fork")


def _chunks(seed: int, total: int) -> Iterator[memoryview]:
    rng, left = random.Random(seed), total
    while left:
        n = min(rng.randint(1, 1 << 20), left)
        at = rng.randint(0, 4096)
        yield memoryview(_BUF)[at:at + n]
        left -= n


def _expected(seed: int, total: int = TOTAL) -> int:
    check = 1
    for chunk in _chunks(seed, total):
        check = zlib.adler32(chunk, check)
    return check


def _reader(sock: socket.socket, out: list[tuple[int, int]], total: int) -> None:
    buf = bytearray(1 << 20)
    view, check, got = memoryview(buf), 1, 0
    while got < total:
        n = sock.recv_into(buf)
        if not n:
            break
        check, got = zlib.adler32(view[:n], check), got + n
    out.append((got, check))


def _side(sock: socket.socket, seed: int, total: int) -> tuple[float, tuple[int, int]]:
    out: list[tuple[int, int]] = []
    thread = threading.Thread(target=_reader, args=(sock, out, total))
    thread.start()
    start = time.perf_counter()
    for chunk in _chunks(seed, total):
        sock.sendall(chunk)
    thread.join()
    return time.perf_counter() - start, out[0]


def _server(mode: str, queue: Any, total: int) -> None:
    if mode == "ring":
        srv = loopfast.create_server(("127.0.0.1", 0), fast_path=True)
    else:
        srv = socket.create_server(("127.0.0.1", 0))
    with srv:
        queue.put(srv.getsockname()[1])
        conn, _ = srv.accept()
        with conn:
            queue.put(_side(conn, 2, total))


def _run(mode: str, expected: dict[int, int], total: int = TOTAL) -> float:
    queue = _FORK.Queue()
    proc = _FORK.Process(target=_server, args=(mode, queue, total), daemon=True)
    proc.start()
    try:
        port = queue.get(timeout=10)
        if mode == "ring":
            cli = loopfast.create_connection(("127.0.0.1", port), fast_path=True)
        else:
            cli = socket.create_connection(("127.0.0.1", port))
        with cli:
            if mode == "ring":
                assert cli.fast_path_transport == "ring"  # type: ignore[attr-defined]
            secs, mine = _side(cli, 1, total)
            their_secs, theirs = queue.get(timeout=60)
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    assert mine == (total, expected[2]) and theirs == (total, expected[1])
    return total / max(secs, their_secs) / 1e6


@pytest.mark.stress
@pytest.mark.timeout(600)
def test_mixed_two_way_stream_ring_against_tcp(capsys: pytest.CaptureFixture[str]) -> None:
    expected = {1: _expected(1), 2: _expected(2)}
    runs: dict[str, list[float]] = {"tcp": [], "ring": []}
    for _ in range(RUNS):
        for mode, figures in runs.items():
            figures.append(_run(mode, expected))
    medians = {mode: sorted(v)[RUNS // 2] for mode, v in runs.items()}
    with capsys.disabled():
        for mode, figures in runs.items():
            print(f"\n  mixed stream {mode:4s}: median {medians[mode]:.0f} MB/s each way "
                  f"(runs {' '.join(f'{x:.0f}' for x in sorted(figures))})")
        print(f"  ring/tcp {medians['ring'] / medians['tcp']:.2f}")


@pytest.mark.stress
@pytest.mark.timeout(900)
def test_ten_gib_two_way_random_stream_arrives_intact(capsys: pytest.CaptureFixture[str]) -> None:
    """5 GiB each way (10 GiB in all) of random 1 B - 1 MiB chunks over the ring, checked."""
    total = 5 << 30
    expected = {1: _expected(1, total), 2: _expected(2, total)}
    rate = _run("ring", expected, total)
    with capsys.disabled():
        print(f"\n  10 GiB two-way ring stream intact, {rate:.0f} MB/s each way")
