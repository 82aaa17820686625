"""What a run is asked to do (:class:`BenchConfig`) and what it found (the results)."""

from __future__ import annotations

import argparse
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .machine import Machine
from .pinning import PIN_MODES, PinPlan
from .rows import BASELINE, ROWS
from .stats import Comparison, Summary, compare

__all__ = ["MODE_NAMES", "BenchConfig", "BenchResult", "ProgressSink", "RowResult"]

MODE_NAMES = ("echo", "throughput", "setup", "many", "idle")


@dataclass(frozen=True)
class BenchConfig:
    """What to run. Raises ``ValueError`` on construction if a field is out of range.

    Attributes:
        rows: row keys in the order wanted; the baseline is put first if missing. A
            mode runs the rows that list it in their ``modes``.
        count: measured round trips per echo row.
        warmup: echo round trips per row run first and discarded.
        pin: a mode of :data:`loopfast.bench.pinning.PIN_MODES`.
        timeout: the longest wait, in seconds, for any word from a child.
        baseline: the row every other row is compared with.
        modes: which of :data:`MODE_NAMES` to run, in that order.
        size: the throughput mode's message size in bytes.
        duration: how long each throughput row sends, in seconds.
        setup_count: connections opened per row by the setup mode.
        connections: connections of the many mode; ``rounds``: its measured rounds.
        idle: idle connections the idle mode opens.
    """

    rows: tuple[str, ...] = tuple(ROWS)
    count: int = 50_000
    warmup: int = 5_000
    pin: str = "split"
    timeout: float = 30.0
    baseline: str = BASELINE
    modes: tuple[str, ...] = MODE_NAMES
    size: int = 65_536
    duration: float = 1.0
    setup_count: int = 2_000
    connections: int = 100
    rounds: int = 200
    idle: int = 10_000

    def __post_init__(self) -> None:
        unknown = [key for key in (*self.rows, self.baseline) if key not in ROWS]
        if unknown:
            raise ValueError(f"unknown row(s) {', '.join(unknown)}; known: {', '.join(ROWS)}")
        bad_modes = [m for m in self.modes if m not in MODE_NAMES]
        if bad_modes or not self.modes:
            raise ValueError(f"modes must be among {', '.join(MODE_NAMES)}")
        if self.count < 1 or self.warmup < 0:
            raise ValueError("count must be at least 1 and warmup at least 0")
        if min(self.size, self.setup_count, self.connections, self.rounds, self.idle) < 1:
            raise ValueError("size, setup_count, connections, rounds and idle must be >= 1")
        if self.pin not in PIN_MODES:
            raise ValueError(f"pin must be one of {', '.join(PIN_MODES)}")
        if not self.timeout > 0 or not self.duration > 0:
            raise ValueError("timeout and duration must be positive")

    def row_keys(self, mode: str = "echo") -> list[str]:
        """Return the rows ``mode`` runs: the baseline first, then the others, no repeats."""
        keys = dict.fromkeys((self.baseline, *self.rows))
        return [key for key in keys if mode in ROWS[key].modes]

    def mode_names(self) -> list[str]:
        """Return the modes to run, in the order of :data:`MODE_NAMES`."""
        return [m for m in MODE_NAMES if m in self.modes]


class ProgressSink(Protocol):
    """Receives the runner's progress (the rich progress bar is one)."""

    def row_started(self, key: str, label: str, total: int) -> None:
        """A row began; ``total`` steps (round trips, connections) are to come."""

    def row_advanced(self, key: str, done: int) -> None:
        """``done`` steps of the row are complete."""

    def row_finished(self, key: str, ok: bool) -> None:
        """The row ended, successfully or not."""


class NoProgress:
    """A ProgressSink that shows nothing (no terminal, or --no-progress)."""

    def row_started(self, key: str, label: str, total: int) -> None:
        """Nothing to show."""

    def row_advanced(self, key: str, done: int) -> None:
        """Nothing to show."""

    def row_finished(self, key: str, ok: bool) -> None:
        """Nothing to show."""


def keys_from(text: str, known: Iterable[str], noun: str) -> tuple[str, ...]:
    """The keys a comma-separated option names ("all": every one of *known*).

    Raises:
        argparse.ArgumentTypeError: an unknown key, or none given.
    """
    names = tuple(known)
    keys = names if text == "all" else tuple(k.strip() for k in text.split(",") if k)
    unknown = [key for key in keys if key not in names]
    if unknown or not keys:
        raise argparse.ArgumentTypeError(
            f"unknown {noun}(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(names)} or 'all'")
    return keys


@dataclass
class RowResult:
    """One row's outcome in one mode: its figures, or why it failed or was skipped.

    ``samples_ns`` and ``summary`` belong to the echo mode; the other modes put their
    figures in ``figures``. ``key`` is the row's key (unique within a mode).
    """

    key: str
    label: str
    mode: str = "echo"
    samples_ns: array[int] = field(default_factory=lambda: array("q"), repr=False)
    summary: Summary | None = None
    elapsed_s: float | None = None
    fast_path_active: dict[str, bool | None] = field(default_factory=dict)
    cpus: dict[str, list[int]] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the row ran and produced its figures."""
        if self.error is not None or self.skipped is not None:
            return False
        return self.summary is not None if self.mode == "echo" else bool(self.figures)

    @property
    def measured_round_trips_per_s(self) -> float | None:
        """Round trips per second by the wall clock over the measured phase (echo)."""
        if self.summary is None or not self.elapsed_s:
            return None
        return self.summary.count / self.elapsed_s


@dataclass
class BenchResult:
    """A whole run: configuration, pinning, machine and the rows of every mode."""

    config: BenchConfig
    pinning: PinPlan
    machine: Machine
    rows: list[RowResult]
    started: str
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether every row succeeded or was skipped with a reason (an absent peer)."""
        return all(row.ok or row.skipped is not None for row in self.rows)

    def mode_rows(self, mode: str) -> list[RowResult]:
        """The rows of one mode, in table order."""
        return [row for row in self.rows if row.mode == mode]

    def find(self, mode: str, key: str) -> RowResult | None:
        """The row ``key`` of ``mode``, or ``None``."""
        return next((r for r in self.rows if r.mode == mode and r.key == key), None)

    def comparison(self, row: RowResult) -> Comparison | None:
        """Compare an echo row with the baseline; ``None`` if either has no summary."""
        base = self.find("echo", self.config.baseline)
        if base is None or base.summary is None or row.summary is None:
            return None
        return compare(row.summary, base.summary)
