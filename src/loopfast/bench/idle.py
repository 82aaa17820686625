"""The idle mode: what N open, idle connections cost the process that holds them.

The holder (the client side) opens one control connection first, so that every
module is imported and every per-process helper (the ring watcher thread) runs
before the first reading. It reads its memory and fds, opens N more connections
to the peer (the server side, another process), reads again, and reports the
difference per connection:

- RSS: ``Rss`` of ``/proc/self/smaps_rollup`` (every resident page mapped,
  shared memory included);
- ring memory: the sum of ``Rss`` over the mappings of the rings' memfds
  (``/memfd:loopfast-ring`` in ``/proc/self/smaps``): the shared pages touched;
- fds: the entries of ``/proc/self/fd``.

Both sides raise ``RLIMIT_NOFILE``'s soft limit to the hard one, and (only when
that is too low for N and the process may) the hard limit too; the report says
which limit was in force. If the holder cannot open all N (a limit, an error, a
timeout, a connection that fell back to TCP because the fast path's fds could not
be made), it stops there and reports the N it reached and why.
"""

from __future__ import annotations

import os
import resource
import socket
import time
from pathlib import Path
from typing import Any

from .conn import Conn, FastPathMismatchError, Row
from .sides import Emit, address_of

__all__ = ["hold", "memory_kib", "open_fds", "peer", "raise_nofile"]

_RING_MAPPING = "/memfd:loopfast-ring"
_FDS_PER_CONNECTION_GUESS = 6


def memory_kib(smaps: Path = Path("/proc/self/smaps")) -> dict[str, int]:
    """Return this process's resident memory: ``rss_kib`` and ``ring_rss_kib`` (KiB)."""
    ring = 0
    in_ring = False
    with smaps.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            first = line.split(None, 1)[0] if line.strip() else ""
            if "-" in first and not first.endswith(":"):  # a mapping's header line
                in_ring = _RING_MAPPING in line
            elif in_ring and first == "Rss:":
                ring += int(line.split()[1])
    rollup = Path(str(smaps) + "_rollup")
    rss = 0
    for line in rollup.read_text(encoding="utf-8").splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1])
    return {"rss_kib": rss, "ring_rss_kib": ring}


def open_fds() -> int:
    """Return how many fds this process has open."""
    return len(os.listdir("/proc/self/fd"))


def raise_nofile(wanted: int) -> dict[str, Any]:
    """Raise RLIMIT_NOFILE's soft limit to the hard one (and the hard one to ``wanted``
    if it is lower and the process is allowed); return the limits before and after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    note = None
    new_hard = hard
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            new_hard = wanted
        except (OSError, ValueError) as exc:
            note = f"hard limit {hard} stays ({exc})"
    resource.setrlimit(resource.RLIMIT_NOFILE, (new_hard, new_hard))
    return {"before": [soft, hard], "after": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
            "note": note}


def _reading() -> dict[str, int]:
    return {**memory_kib(), "fds": open_fds()}


def hold(row: Row, spec: dict[str, Any], emit: Emit) -> None:
    """The holder: open N idle connections to the peer and report what they cost."""
    n, timeout = int(spec["n"]), float(spec["connect_timeout"])
    limits = raise_nofile(n * _FDS_PER_CONNECTION_GUESS + 256)
    address = address_of(spec["address"])
    conns: list[Conn] = []
    stopped = None
    with row.connect(address, timeout) as control:
        active = row.check(control, "client")
        emit("connected", fast_path_active=active, cpus=spec["cpus"])
        before = _reading()
        start = time.perf_counter_ns()
        try:
            while len(conns) < n:
                conn = row.connect(address, timeout)
                try:
                    row.check(conn, "client")
                except FastPathMismatchError as exc:  # fell back: fds ran out mid-handshake
                    conn.close()
                    raise OSError(f"connection {len(conns) + 1} fell back to TCP with "
                                  f"{open_fds()} fds open ({exc})") from exc
                conns.append(conn)
                if len(conns) % 1000 == 0:
                    emit("progress", done=len(conns))
        except OSError as exc:
            stopped = f"{type(exc).__name__}: {exc}"
        elapsed = time.perf_counter_ns() - start
        control.channel.sendall(b"!")  # no more connections: the peer stops accepting
        after = _reading()
        for conn in conns:
            conn.close()
    reached = len(conns)
    per = {f"{k}_per_connection": (after[k] - before[k]) / reached if reached else None
           for k in before}
    emit("done", requested=n, reached=reached, stopped=stopped, before=before, after=after,
         **per, connect_elapsed_ns=elapsed, nofile=limits, fast_path_active=active)


def _accept_until_told(row: Row, listener: Any, conns: list[Conn],
                       spec: dict[str, Any]) -> str | None:
    """Accept until the holder's byte arrives on the control connection (``conns[0]``).

    Returns why accepting stopped early (an error), or ``None``.

    Raises:
        TimeoutError: if the holder says nothing for ``spec["timeout"]`` seconds.
    """
    control, poll = conns[0].handle, float(spec["poll_s"])
    deadline = time.monotonic() + float(spec["timeout"])
    while True:
        try:
            conns.append(row.accept(listener, poll))
            deadline = time.monotonic() + float(spec["timeout"])
            continue
        except TimeoutError:
            pass
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}"
        try:
            if control.recv(1, socket.MSG_DONTWAIT):
                return None
        except BlockingIOError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the holder neither connected nor said it was done")


def peer(row: Row, spec: dict[str, Any], emit: Emit) -> None:
    """The peer: accept connections until the holder says it is done (a byte on the
    control connection, the first), hold them, then wait for the control to close."""
    limits = raise_nofile(int(spec["n"]) * _FDS_PER_CONNECTION_GUESS + 256)
    listener, address = row.listen(1024)
    conns: list[Conn] = []
    stopped = None
    try:
        emit("listening", address=address, cpus=spec["cpus"])
        conns.append(row.accept(listener, spec["timeout"]))
        active = row.check(conns[0], "server")
        emit("accepted", fast_path_active=active)
        stopped = _accept_until_told(row, listener, conns, spec)
        held = len(conns) - 1
        reading = _reading()
        handle = conns[0].handle
        handle.settimeout(spec["timeout"])
        handle.recv(1)  # the holder closes the control connection last
        emit("done", held=held, stopped=stopped, reading=reading, nofile=limits,
             fast_path_active=active)
    finally:
        for conn in conns:
            conn.close()
        listener.close()
