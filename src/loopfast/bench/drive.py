"""The parent's side of each mode: what the children are told, what is read back.

For every mode, :data:`MODES` holds a :class:`Mode`: the extra spec fields of the
server and the client, the number of steps the progress bar counts, and the
function that follows the two children's events to the end and fills the
:class:`~loopfast.bench.results.RowResult`. Every read has the run's timeout.
"""

from __future__ import annotations

import base64
import math
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .process import Child, ChildError
from .results import BenchConfig, ProgressSink, RowResult
from .stats import summarize

__all__ = ["MODES", "Mode"]

Drive = Callable[[RowResult, Child, Child, BenchConfig, ProgressSink], None]


@dataclass(frozen=True)
class Mode:
    """How the parent runs one mode (see the module docstring)."""

    name: str
    title: str
    server: Callable[[BenchConfig], dict[str, Any]]
    client: Callable[[BenchConfig], dict[str, Any]]
    total: Callable[[BenchConfig], int]
    drive: Drive


def _every(total: int) -> int:
    return min(10_000, max(1, math.ceil(total / 100)))


def _follow(result: RowResult, server: Child, client: Child, config: BenchConfig,
            progress: ProgressSink) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read both children to their "done"; return (client's, server's) done events."""
    t = config.timeout
    connected = client.expect("connected", t)
    result.fast_path_active["client"] = connected["fast_path_active"]
    result.cpus["client"] = connected["cpus"]
    result.fast_path_active["server"] = server.expect("accepted", t)["fast_path_active"]
    while (event := client.next_event(t))["event"] == "progress":
        progress.row_advanced(result.key, int(event["done"]))
    if event["event"] != "done":
        raise ChildError(f"client: unexpected event {event!r}")
    finished = server.expect("done", t)
    result.fast_path_active = {"client": event["fast_path_active"],
                               "server": finished["fast_path_active"]}
    return event, finished


def _echo(result: RowResult, server: Child, client: Child, config: BenchConfig,
          progress: ProgressSink) -> None:
    done, finished = _follow(result, server, client, config, progress)
    samples: array[int] = array("q")
    samples.frombytes(base64.b64decode(done["samples"]))
    if len(samples) != config.count:
        raise ChildError(f"client: {len(samples)} samples, expected {config.count}")
    if finished["echoed"] != config.count + config.warmup:
        raise ChildError(f"server: echoed {finished['echoed']} messages, "
                         f"expected {config.count + config.warmup}")
    result.samples_ns = samples
    result.elapsed_s = done["elapsed_ns"] / 1e9
    result.summary = summarize(samples)


def _throughput(result: RowResult, server: Child, client: Child, config: BenchConfig,
                progress: ProgressSink) -> None:
    done, finished = _follow(result, server, client, config, progress)
    if finished["bytes"] != done["sent"]:
        raise ChildError(f"server received {finished['bytes']} bytes, client sent "
                         f"{done['sent']}")
    span = max(int(finished["span_ns"]), 1)
    result.elapsed_s = done["elapsed_ns"] / 1e9
    result.figures = {
        "message_size": config.size, "bytes": done["sent"], "span_s": span / 1e9,
        "mb_per_s": (finished["bytes"] - finished["first_bytes"]) / span * 1e3,
        "sender_mb_per_s": done["sent"] / done["elapsed_ns"] * 1e3,
        "sender_usage": done["usage"], "receiver_usage": finished["usage"],
    }
    progress.row_advanced(result.key, 1)


def _setup(result: RowResult, server: Child, client: Child, config: BenchConfig,
           progress: ProgressSink) -> None:
    done, _ = _follow(result, server, client, config, progress)
    result.elapsed_s = done["elapsed_ns"] / 1e9
    result.figures = {"connections": done["connections"],
                      "connections_per_s": done["connections"] / result.elapsed_s,
                      "us_per_connection": result.elapsed_s / done["connections"] * 1e6}


def _many(result: RowResult, server: Child, client: Child, config: BenchConfig,
          progress: ProgressSink) -> None:
    done, finished = _follow(result, server, client, config, progress)
    expected = config.connections * (config.rounds + _many_warmup(config))
    if finished["echoed_bytes"] != expected * 64:
        raise ChildError(f"server echoed {finished['echoed_bytes']} bytes, expected "
                         f"{expected * 64}")
    result.elapsed_s = done["elapsed_ns"] / 1e9
    result.figures = {"connections": config.connections, "rounds": config.rounds,
                      "round_trips": done["round_trips"],
                      "round_trips_per_s": done["round_trips"] / result.elapsed_s}
    progress.row_advanced(result.key, 1)


def _idle(result: RowResult, server: Child, client: Child, config: BenchConfig,
          progress: ProgressSink) -> None:
    done, finished = _follow(result, server, client, config, progress)
    result.elapsed_s = done["connect_elapsed_ns"] / 1e9
    keep = ("requested", "reached", "stopped", "rss_kib_per_connection",
            "ring_rss_kib_per_connection", "fds_per_connection", "before", "after", "nofile")
    result.figures = {k: done[k] for k in keep}
    result.figures["peer"] = {k: finished[k] for k in ("held", "stopped", "reading", "nofile")}
    if done["reached"]:
        result.figures["connections_per_s"] = done["reached"] / max(result.elapsed_s, 1e-9)


def _many_warmup(config: BenchConfig) -> int:
    return max(1, config.rounds // 10)


MODES: dict[str, Mode] = {mode.name: mode for mode in (
    Mode("echo", "64-byte echo round trip", lambda c: {},
         lambda c: {"warmup": c.warmup, "count": c.count,
                    "progress_every": _every(c.warmup + c.count)},
         lambda c: c.warmup + c.count, _echo),
    Mode("throughput", "throughput, one way", lambda c: {"size": c.size},
         lambda c: {"size": c.size, "duration_s": c.duration}, lambda c: 1, _throughput),
    Mode("setup", "connection setup", lambda c: {"count": c.setup_count},
         lambda c: {"count": c.setup_count, "progress_every": _every(c.setup_count)},
         lambda c: c.setup_count, _setup),
    Mode("many", "many connections", lambda c: {"connections": c.connections},
         lambda c: {"connections": c.connections, "rounds": c.rounds,
                    "warmup": _many_warmup(c)}, lambda c: 1, _many),
    Mode("idle", "idle connections", lambda c: {"n": c.idle, "poll_s": 0.2},
         lambda c: {"n": c.idle, "connect_timeout": 15.0}, lambda c: c.idle, _idle),
)}
