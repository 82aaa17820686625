"""The two sides of each mode, as the child processes run them (see :mod:`.child`).

Every function takes the row, the child's spec and ``emit`` (one JSON event to the
parent) and returns when its side is done. The server side listens and reports its
address first; the client side connects and reports ``connected``. A server keeps
its listener open until the end (a zmq "listener" is also the connection).

- echo: the 64-byte echo (:func:`.workload.echo` / :func:`.workload.measure`).
- throughput: the client pours ``size``-byte messages for ``duration_s``, ends the
  data, waits for a 1-byte receipt; the server drains and times the arrival. Both
  report what the transfer cost them (``usage``: context switches, CPU seconds).
- setup: the client opens ``count`` connections one after another, each carrying a
  1-byte request and reply before both close it.
- many: the client opens ``connections`` connections and runs ``rounds`` rounds,
  each a 64-byte message out on every connection, then every echo back; the server
  echoes with a selector.
"""

from __future__ import annotations

import base64
import resource
import selectors
import socket
import time
from array import array
from collections.abc import Callable
from typing import Any

from .conn import Address, Conn, Row
from .workload import MESSAGE_SIZE, EchoMismatchError, drain, echo, measure, pour

__all__ = ["CLIENTS", "SERVERS", "Emit", "address_of"]

Emit = Callable[..., None]
_DONTWAIT = socket.MSG_DONTWAIT


def address_of(raw: object) -> Address:
    """The address as JSON carried it (a list for ``(host, port)``)."""
    if isinstance(raw, list):
        return (str(raw[0]), int(raw[1]))
    return str(raw)


def _serve_one(row: Row, spec: dict[str, Any], emit: Emit,
               work: Callable[[Conn], dict[str, Any]]) -> None:
    listener, address = row.listen()
    try:
        emit("listening", address=address, cpus=spec["cpus"])
        with row.accept(listener, spec["timeout"]) as conn:
            emit("accepted", fast_path_active=row.check(conn, "server"))
            figures = work(conn)
            emit("done", fast_path_active=row.check(conn, "server"), **figures)
    finally:
        listener.close()


def _echo_server(row: Row, spec: dict[str, Any], emit: Emit) -> None:
    _serve_one(row, spec, emit, lambda conn: {"echoed": echo(conn.channel)})


def _echo_client(row: Row, spec: dict[str, Any], emit: Emit) -> None:
    warmup, count, every = int(spec["warmup"]), int(spec["count"]), int(spec["progress_every"])
    samples: array[int] = array("q")
    with row.connect(address_of(spec["address"]), spec["timeout"]) as conn:
        emit("connected", fast_path_active=row.check(conn, "client"), cpus=spec["cpus"])
        step = every if every > 0 else warmup + count
        done, start = 0, 0
        while done < warmup + count:  # warm-up first: same loop, RTTs thrown away
            if done == warmup:
                start = time.perf_counter_ns()
            n = min(step, (warmup if done < warmup else warmup + count) - done)
            measure(conn.channel, done, n, samples if done >= warmup else None)
            done += n
            if every:
                emit("progress", done=done)
        elapsed = time.perf_counter_ns() - start
        active = row.check(conn, "client")
        conn.finish()
    emit("done", samples=base64.b64encode(samples.tobytes()).decode("ascii"),
         elapsed_ns=elapsed, fast_path_active=active)


def _usage() -> tuple[float, ...]:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return (u.ru_nvcsw, u.ru_nivcsw, u.ru_utime, u.ru_stime)


def _usage_since(before: tuple[float, ...]) -> dict[str, float]:
    """This process's voluntary (a wait that slept) and involuntary (preempted) context
    switches, user and system CPU seconds, since ``before`` (:func:`_usage`)."""
    names = ("voluntary_csw", "involuntary_csw", "user_s", "sys_s")
    return {name: b - a for name, a, b in zip(names, before, _usage(), strict=True)}


def _drain_and_receipt(conn: Conn, size: int) -> dict[str, Any]:
    before = _usage()
    total, first_bytes, first, last = drain(conn.channel, size)
    usage = _usage_since(before)
    conn.channel.sendall(b"k")
    return {"bytes": total, "first_bytes": first_bytes, "span_ns": last - first,
            "usage": usage}


def _throughput_server(row: Row, spec: dict[str, Any], emit: Emit) -> None:
    _serve_one(row, spec, emit, lambda conn: _drain_and_receipt(conn, int(spec["size"])))


def _throughput_client(row: Row, spec: dict[str, Any], emit: Emit) -> None:
    size = int(spec["size"])
    with row.connect(address_of(spec["address"]), spec["timeout"]) as conn:
        emit("connected", fast_path_active=row.check(conn, "client"), cpus=spec["cpus"])
        start, before = time.perf_counter_ns(), _usage()
        sent = pour(conn.channel, size, int(spec["duration_s"] * 1e9))
        usage = _usage_since(before)
        conn.finish()
        if conn.channel.recv_into(bytearray(1), 1) != 1:
            raise EchoMismatchError("the server closed without its receipt")
        elapsed = time.perf_counter_ns() - start
        active = row.check(conn, "client")
    emit("done", sent=sent, elapsed_ns=elapsed, usage=usage, fast_path_active=active)


def _setup_server(row: Row, spec: dict[str, Any], emit: Emit) -> None:
    listener, address = row.listen(128)
    one = bytearray(1)
    try:
        emit("listening", address=address, cpus=spec["cpus"])
        for i in range(int(spec["count"])):
            with row.accept(listener, spec["timeout"]) as conn:
                active = row.check(conn, "server")
                if i == 0:
                    emit("accepted", fast_path_active=active)
                conn.channel.recv_into(one, 1)
                conn.channel.sendall(b"y")
        emit("done", accepted=int(spec["count"]), fast_path_active=active)
    finally:
        listener.close()


def _setup_client(row: Row, spec: dict[str, Any], emit: Emit) -> None:
    address, timeout = address_of(spec["address"]), spec["timeout"]
    count, every = int(spec["count"]), int(spec["progress_every"]) or int(spec["count"])
    one = bytearray(1)
    start = time.perf_counter_ns()
    for i in range(count):
        with row.connect(address, timeout) as conn:
            active = row.check(conn, "client")
            if i == 0:
                emit("connected", fast_path_active=active, cpus=spec["cpus"])
            conn.channel.sendall(b"x")
            if conn.channel.recv_into(one, 1) != 1:
                raise EchoMismatchError(f"connection {i}: no reply")
        if (i + 1) % every == 0:
            emit("progress", done=i + 1)
    emit("done", connections=count, elapsed_ns=time.perf_counter_ns() - start,
         fast_path_active=active)


def _many_server(row: Row, spec: dict[str, Any], emit: Emit) -> None:
    n = int(spec["connections"])
    listener, address = row.listen(max(n, 128))
    conns: list[Conn] = []
    try:
        emit("listening", address=address, cpus=spec["cpus"])
        for _ in range(n):
            conns.append(row.accept(listener, spec["timeout"]))
        emit("accepted", fast_path_active=row.check(conns[0], "server"))
        echoed = _echo_all(conns)
        emit("done", echoed_bytes=echoed, fast_path_active=row.check(conns[0], "server"))
    finally:
        for conn in conns:
            conn.close()
        listener.close()


def _echo_all(conns: list[Conn]) -> int:
    buf = bytearray(1 << 16)
    view, echoed = memoryview(buf), 0
    with selectors.DefaultSelector() as sel:
        for conn in conns:
            sel.register(conn.fileno(), selectors.EVENT_READ, conn)
        while sel.get_map():
            for key, _ in sel.select():
                conn = key.data
                try:  # readiness may be stale: never block on one connection here
                    got = conn.channel.recv_into(view, len(buf), _DONTWAIT)
                except BlockingIOError:
                    continue
                if got:
                    conn.channel.sendall(view[:got])
                    echoed += got
                else:
                    sel.unregister(key.fd)
    return echoed


def _rounds(conns: list[Conn], rounds: int) -> None:
    message = bytes(range(MESSAGE_SIZE))
    back = bytearray(MESSAGE_SIZE)
    view = memoryview(back)
    for _ in range(rounds):
        for conn in conns:
            conn.channel.sendall(message)
        for conn in conns:
            got = 0
            while got < MESSAGE_SIZE:
                n = conn.channel.recv_into(view[got:], MESSAGE_SIZE - got)
                if not n:
                    raise EchoMismatchError("the server closed a connection mid-round")
                got += n


def _many_client(row: Row, spec: dict[str, Any], emit: Emit) -> None:
    n, rounds, warmup = int(spec["connections"]), int(spec["rounds"]), int(spec["warmup"])
    conns: list[Conn] = []
    try:
        for _ in range(n):
            conns.append(row.connect(address_of(spec["address"]), spec["timeout"]))
        emit("connected", fast_path_active=row.check(conns[-1], "client"), cpus=spec["cpus"])
        _rounds(conns, warmup)
        start = time.perf_counter_ns()
        _rounds(conns, rounds)
        elapsed = time.perf_counter_ns() - start
        active = row.check(conns[0], "client")
        for conn in conns:
            conn.finish()
    finally:
        for conn in conns:
            conn.close()
    emit("done", round_trips=n * rounds, elapsed_ns=elapsed, fast_path_active=active)


SERVERS: dict[str, Callable[[Row, dict[str, Any], Emit], None]] = {
    "echo": _echo_server, "throughput": _throughput_server, "setup": _setup_server,
    "many": _many_server,
}
CLIENTS: dict[str, Callable[[Row, dict[str, Any], Emit], None]] = {
    "echo": _echo_client, "throughput": _throughput_client, "setup": _setup_client,
    "many": _many_client,
}
