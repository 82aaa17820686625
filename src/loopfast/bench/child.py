"""One side of a mode, run as its own process: ``python -m loopfast.bench.child SPEC``.

SPEC is one JSON object: ``role`` ("echo": the server side, or "send": the client
side), ``mode`` (echo, throughput, setup, many, idle; echo when absent), ``row`` (a
key of ROWS), ``cpu`` (or null), ``parent`` (the parent's pid), ``timeout``
(seconds for accept/connect), and for the client ``address`` and the mode's own
fields (see :mod:`loopfast.bench.sides` and :mod:`loopfast.bench.idle`).

The child talks to the parent in JSON lines on stdout, one event per line:

    server  {"event": "listening", "address": ..., "cpus": [...]}
            {"event": "accepted", "fast_path_active": ...}
            {"event": "done", ..., "fast_path_active": ...}
    client  {"event": "connected", "fast_path_active": ..., "cpus": [...]}
            {"event": "progress", "done": n}           (only if progress_every > 0)
            {"event": "done", ..., "fast_path_active": ...}
    either  {"event": "error", "message": "..."}      (then exit status 1)

The echo client's "done" carries ``samples`` (base64 of int64 ns) and ``elapsed_ns``.

Each child asks the kernel to kill it when its parent dies (PR_SET_PDEATHSIG), so no
child outlives a killed benchmark. Sockets stay blocking while measuring: a timeout
would add a poll() to every stdlib recv. The parent enforces the time limits instead.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
from typing import Any

from .idle import hold, peer
from .pinning import pin_to
from .rows import ROWS
from .sides import CLIENTS, SERVERS

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


def main(argv: list[str] | None = None) -> int:
    """Run one side of a mode as described by the JSON spec in ``argv[0]``.

    Returns:
        0 on success, 1 after reporting an error event (any exception is reported).
    """
    args = sys.argv[1:] if argv is None else argv
    try:
        spec: dict[str, Any] = json.loads(args[0])
        _die_with_parent(int(spec["parent"]))
        row = ROWS[spec["row"]]
        spec["cpus"] = pin_to(spec["cpu"])
        mode = spec.get("mode", "echo")
        server = spec["role"] == "echo"
        if mode == "idle":
            (peer if server else hold)(row, spec, _emit)
        else:
            (SERVERS if server else CLIENTS)[mode](row, spec, _emit)
    except BaseException as exc:
        _emit("error", message=f"{type(exc).__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
