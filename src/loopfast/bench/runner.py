"""Running the benchmark: every row as an echoer process and a sender process, in turn.

For each row the runner starts the echoer (pinned, listening on loopback), then the
sender (pinned, connecting), checks ``fast_path_active`` as both report it, follows the
sender's progress, and collects its RTT samples. A row that fails (its socket class
is missing, the fast path is not active, a child dies or falls silent) is recorded
with the reason and the run goes on with the next row.
"""

from __future__ import annotations

import base64
import math
import os
import time
from array import array
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from .machine import Machine, describe_machine
from .pinning import PIN_MODES, PinPlan, plan_pinning
from .process import Child, ChildError
from .rows import BASELINE, ROWS, SocketRow
from .stats import Comparison, Summary, compare, summarize

__all__ = ["BenchConfig", "BenchResult", "ProgressSink", "RowResult", "run_bench", "run_row"]


@dataclass(frozen=True)
class BenchConfig:
    """What to run. Raises ``ValueError`` on construction if a field is out of range.

    Attributes:
        rows: row keys in the order wanted; the baseline is put first if missing.
        count: measured round trips per row.
        warmup: round trips per row run first and discarded.
        pin: a mode of :data:`loopfast.bench.pinning.PIN_MODES`.
        timeout: the longest wait, in seconds, for any word from a child.
        baseline: the row every other row is compared with.
    """

    rows: tuple[str, ...] = tuple(ROWS)
    count: int = 50_000
    warmup: int = 5_000
    pin: str = "split"
    timeout: float = 30.0
    baseline: str = BASELINE

    def __post_init__(self) -> None:
        unknown = [key for key in (*self.rows, self.baseline) if key not in ROWS]
        if unknown:
            raise ValueError(f"unknown row(s) {', '.join(unknown)}; known: {', '.join(ROWS)}")
        if self.count < 1 or self.warmup < 0:
            raise ValueError("count must be at least 1 and warmup at least 0")
        if self.pin not in PIN_MODES:
            raise ValueError(f"pin must be one of {', '.join(PIN_MODES)}")
        if not self.timeout > 0:
            raise ValueError("timeout must be positive")

    def row_keys(self) -> list[str]:
        """Return the rows to run: the baseline first, then the others, without repeats."""
        return list(dict.fromkeys((self.baseline, *self.rows)))


class ProgressSink(Protocol):
    """Receives the runner's progress (the rich progress bar is one)."""

    def row_started(self, key: str, label: str, total: int) -> None:
        """A row began; ``total`` round trips (warm-up included) are to come."""

    def row_advanced(self, key: str, done: int) -> None:
        """``done`` round trips of the row are complete."""

    def row_finished(self, key: str, ok: bool) -> None:
        """The row ended, successfully or not."""


@dataclass
class RowResult:
    """One row's outcome: its samples and summary, or the reason it failed."""

    key: str
    label: str
    samples_ns: array[int] = field(default_factory=lambda: array("q"), repr=False)
    summary: Summary | None = None
    elapsed_s: float | None = None
    fast_path_active: dict[str, bool | None] = field(default_factory=dict)
    cpus: dict[str, list[int]] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the row ran and produced a summary."""
        return self.error is None and self.summary is not None

    @property
    def measured_round_trips_per_s(self) -> float | None:
        """Round trips per second by the wall clock over the measured phase."""
        if self.summary is None or not self.elapsed_s:
            return None
        return self.summary.count / self.elapsed_s


@dataclass
class BenchResult:
    """A whole run: configuration, pinning, machine and the rows in table order."""

    config: BenchConfig
    pinning: PinPlan
    machine: Machine
    rows: list[RowResult]
    started: str
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether every row succeeded."""
        return all(row.ok for row in self.rows)

    def comparison(self, row: RowResult) -> Comparison | None:
        """Compare ``row`` with the baseline; ``None`` if either has no summary."""
        base = next((r for r in self.rows if r.key == self.config.baseline), None)
        if base is None or base.summary is None or row.summary is None:
            return None
        return compare(row.summary, base.summary)


class _NoProgress:
    def row_started(self, key: str, label: str, total: int) -> None:
        pass

    def row_advanced(self, key: str, done: int) -> None:
        pass

    def row_finished(self, key: str, ok: bool) -> None:
        pass


def _spec(role: str, row: SocketRow, cpu: int | None, config: BenchConfig,
          **extra: Any) -> dict[str, Any]:
    return {"role": role, "row": row.key, "cpu": cpu, "parent": os.getpid(),
            "timeout": config.timeout, **extra}


def _drive(result: RowResult, echoer: Child, sender: Child, config: BenchConfig,
           progress: ProgressSink) -> None:
    t = config.timeout
    connected = sender.expect("connected", t)
    result.fast_path_active["sender"] = connected["fast_path_active"]
    result.cpus["sender"] = connected["cpus"]
    result.fast_path_active["echoer"] = echoer.expect("accepted", t)["fast_path_active"]
    while (event := sender.next_event(t))["event"] == "progress":
        progress.row_advanced(result.key, int(event["done"]))
    if event["event"] != "done":
        raise ChildError(f"sender: unexpected event {event!r}")
    samples: array[int] = array("q")
    samples.frombytes(base64.b64decode(event["samples"]))
    if len(samples) != config.count:
        raise ChildError(f"sender: {len(samples)} samples, expected {config.count}")
    echoed = echoer.expect("done", t)
    if echoed["echoed"] != config.count + config.warmup:
        raise ChildError(f"echoer: echoed {echoed['echoed']} messages, "
                         f"expected {config.count + config.warmup}")
    result.fast_path_active = {"sender": event["fast_path_active"],
                               "echoer": echoed["fast_path_active"]}
    result.samples_ns = samples
    result.elapsed_s = event["elapsed_ns"] / 1e9
    result.summary = summarize(samples)


def run_row(row: SocketRow, config: BenchConfig, plan: PinPlan,
            progress: ProgressSink | None = None) -> RowResult:
    """Run one row and return its result; failures are recorded in ``result.error``.

    Raises:
        KeyboardInterrupt: passed on (after both children are killed and reaped).
    """
    progress = progress or _NoProgress()
    result = RowResult(row.key, row.label)
    result.error = row.unavailable()
    if result.error is not None:
        return result
    total = config.warmup + config.count
    every = min(10_000, max(1, math.ceil(total / 100)))
    progress.row_started(row.key, row.label, total)
    try:
        with Child("echoer", _spec("echo", row, plan.echoer_cpu, config)) as echoer:
            listening = echoer.expect("listening", config.timeout)
            result.cpus["echoer"] = listening["cpus"]
            spec = _spec("send", row, plan.sender_cpu, config, address=listening["address"],
                         warmup=config.warmup, count=config.count, progress_every=every)
            with Child("sender", spec) as sender:
                try:
                    _drive(result, echoer, sender, config, progress)
                except ChildError as exc:
                    more = [m for c in (sender, echoer) if (m := c.pending_error(1.0))]
                    raise ChildError("; ".join([str(exc), *more])) from exc
    except (ChildError, OSError) as exc:
        result.error = str(exc)
        result.summary = None
    finally:
        progress.row_finished(row.key, result.ok)
    return result


def run_bench(config: BenchConfig, progress: ProgressSink | None = None) -> BenchResult:
    """Run every row of ``config`` in turn (baseline first) and return the whole result.

    Raises:
        ValueError: if the pinning mode cannot be planned (no CPU allowed).
        KeyboardInterrupt: passed on, with no child left running.
    """
    plan = plan_pinning(config.pin)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.monotonic()
    rows = [run_row(ROWS[key], config, plan, progress) for key in config.row_keys()]
    return BenchResult(config, plan, describe_machine(), rows, started, time.monotonic() - t0)
