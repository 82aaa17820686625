"""One side of the echo, run as its own process: ``python -m loopfast.bench.child SPEC``.

SPEC is one JSON object: ``role`` ("echo" or "send"), ``row`` (a key of ROWS), ``cpu``
(or null), ``parent`` (the parent's pid), ``timeout`` (seconds for accept/connect), and
for the sender ``address``, ``warmup``, ``count`` and ``progress_every`` (0: never).

The child talks to the parent in JSON lines on stdout, one event per line:

    echoer  {"event": "listening", "address": ..., "cpus": [...]}
            {"event": "accepted", "fast_path_active": ...}
            {"event": "done", "echoed": n, "fast_path_active": ...}
    sender  {"event": "connected", "fast_path_active": ..., "cpus": [...]}
            {"event": "progress", "done": n}           (only if progress_every > 0)
            {"event": "done", "samples": base64 of int64 ns, "elapsed_ns": ...,
             "fast_path_active": ...}
    either  {"event": "error", "message": "..."}      (then exit status 1)

Each child asks the kernel to kill it when its parent dies (PR_SET_PDEATHSIG), so no
echoer outlives a killed benchmark. Sockets stay blocking while measuring: a timeout
would add a poll() to every stdlib recv. The parent enforces the time limits instead.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import signal
import sys
import time
from array import array
from typing import Any

from .pinning import pin_to
from .rows import ROWS, Address, SocketRow
from .workload import echo, measure

__all__ = ["main"]

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when the parent dies; exit if it already has."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
    if os.getppid() != parent:  # the parent died before the prctl took effect
        os._exit(1)


def _emit(event: str, **fields: object) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def _run_echoer(row: SocketRow, spec: dict[str, Any]) -> None:
    cpus = pin_to(spec["cpu"])
    listener, address = row.listen()
    with listener:
        _emit("listening", address=address, cpus=cpus)
        conn = row.accept(listener, spec["timeout"])
    with conn:
        active = row.check(conn, "echoer")
        _emit("accepted", fast_path_active=active)
        echoed = echo(conn)
        _emit("done", echoed=echoed, fast_path_active=row.check(conn, "echoer"))


def _address(raw: object) -> Address:
    if isinstance(raw, list):
        return (str(raw[0]), int(raw[1]))
    return str(raw)


def _run_sender(row: SocketRow, spec: dict[str, Any]) -> None:
    cpus = pin_to(spec["cpu"])
    warmup, count, every = int(spec["warmup"]), int(spec["count"]), int(spec["progress_every"])
    samples: array[int] = array("q")
    with row.connect(_address(spec["address"]), spec["timeout"]) as conn:
        _emit("connected", fast_path_active=row.check(conn, "sender"), cpus=cpus)
        step = every if every > 0 else warmup + count
        done = 0
        while done < warmup:  # warm-up: same loop, RTTs thrown away
            n = min(step, warmup - done)
            measure(conn, done, n, None)
            done += n
            if every:
                _emit("progress", done=done)
        start = time.perf_counter_ns()
        while done < warmup + count:
            n = min(step, warmup + count - done)
            measure(conn, done, n, samples)
            done += n
            if every:
                _emit("progress", done=done)
        elapsed = time.perf_counter_ns() - start
        active = row.check(conn, "sender")
    _emit("done", samples=base64.b64encode(samples.tobytes()).decode("ascii"),
          elapsed_ns=elapsed, fast_path_active=active)


def main(argv: list[str] | None = None) -> int:
    """Run one side of the echo as described by the JSON spec in ``argv[0]``.

    Returns:
        0 on success, 1 after reporting an error event (any exception is reported).
    """
    args = sys.argv[1:] if argv is None else argv
    try:
        spec: dict[str, Any] = json.loads(args[0])
        _die_with_parent(int(spec["parent"]))
        row = ROWS[spec["row"]]
        if spec["role"] == "echo":
            _run_echoer(row, spec)
        else:
            _run_sender(row, spec)
    except BaseException as exc:
        _emit("error", message=f"{type(exc).__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
