"""What a run reports: the JSON document (every figure) and the rich tables.

The echo rows are the top-level ``rows`` (the seed's table); the other modes are
under ``modes``, each with its rows; ``ratios`` holds the named comparisons.
Times in the JSON document are microseconds (``*_us``), reductions and ratios are
fractions (0.25 is 25 %). A failed row keeps its key, label and ``error``; its figures
are ``null``. ``ratio_to_baseline`` appears in every row and, as a map from row key to
ratio, at the top level.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from .drive import MODES
from .ratios import RATE_FIGURE, RATIO_DEFINITIONS, key_ratios
from .results import BenchResult, RowResult
from .stats import PERCENTILE_METHOD
from .tables import render_table
from .workload import MESSAGE_SIZE

__all__ = ["DEFINITIONS", "SCHEMA", "render_table", "to_json", "write_json"]

SCHEMA = "loopfast-bench/2"
DEFINITIONS = {
    "rtt": "perf_counter_ns at echo arrival minus the timestamp carried in the message",
    "jitter": "population standard deviation of the RTT",
    "percentile": PERCENTILE_METHOD + " (smallest sample with at least p% at or below it)",
    "round_trips_per_s": "1 / mean RTT, as the Windows team computed it",
    "measured_round_trips_per_s": "measured round trips / wall time of the measured phase",
    "latency_reduction": "(baseline mean - row mean) / baseline mean",
    "jitter_reduction": "(baseline stdev - row stdev) / baseline stdev",
    "ratio_to_baseline": "echo: row mean / baseline mean (lower is faster); throughput, "
    "setup, many: row rate / baseline rate (higher is faster); idle: none",
    "status": "ok, failed (error says why) or skipped (an absent peer; skipped says why)",
    "mb_per_s": "throughput: bytes after the first read / time from first to last read, "
    "at the receiver, in 10^6 bytes per second",
    "ratios": RATIO_DEFINITIONS,
}


def _version() -> str:
    try:
        return metadata.version("loopfast")
    except metadata.PackageNotFoundError:
        return "unknown"


def _status(row: RowResult) -> str:
    return "ok" if row.ok else ("skipped" if row.skipped is not None else "failed")


def _row_json(result: BenchResult, row: RowResult) -> dict[str, Any]:
    s, cmp = row.summary, result.comparison(row)
    figures: dict[str, Any] = dict.fromkeys(
        ("count", "mean_us", "stdev_us", "min_us", "max_us", "p50_us", "p99_us", "p999_us",
         "round_trips_per_s", "measured_round_trips_per_s", "latency_reduction",
         "jitter_reduction", "ratio_to_baseline"))
    if s is not None:
        figures.update(count=s.count, mean_us=s.mean_ns / 1e3, stdev_us=s.stdev_ns / 1e3,
                       min_us=s.min_ns / 1e3, max_us=s.max_ns / 1e3, p50_us=s.p50_ns / 1e3,
                       p99_us=s.p99_ns / 1e3, p999_us=s.p999_ns / 1e3,
                       round_trips_per_s=s.round_trips_per_s,
                       measured_round_trips_per_s=row.measured_round_trips_per_s)
    if cmp is not None:
        figures.update(latency_reduction=cmp.latency_reduction,
                       jitter_reduction=cmp.jitter_reduction,
                       ratio_to_baseline=cmp.ratio_to_baseline)
    return {"key": row.key, "label": row.label, "status": _status(row), "ok": row.ok,
            "error": row.error, "skipped": row.skipped, **figures, "elapsed_s": row.elapsed_s,
            "fast_path_active": row.fast_path_active, "cpus": row.cpus}


def _mode_json(result: BenchResult, mode: str) -> dict[str, Any]:
    rate = RATE_FIGURE.get(mode)
    base = result.find(mode, result.config.baseline)
    base_rate = base.figures.get(rate) if base is not None and rate else None
    rows = []
    for row in result.mode_rows(mode):
        ratio = None
        if rate and base_rate and row.figures.get(rate) is not None:
            ratio = row.figures[rate] / base_rate
        rows.append({"key": row.key, "label": row.label, "status": _status(row),
                     "ok": row.ok, "error": row.error, "skipped": row.skipped,
                     **row.figures, "ratio_to_baseline": ratio, "elapsed_s": row.elapsed_s,
                     "fast_path_active": row.fast_path_active, "cpus": row.cpus})
    return {"title": MODES[mode].title, "rate": rate, "rows": rows}


def to_json(result: BenchResult) -> dict[str, Any]:
    """Return the whole run as a JSON-ready dict (see the module docstring for units)."""
    cfg = result.config
    rows = [_row_json(result, row) for row in result.mode_rows("echo")]
    modes = {mode: _mode_json(result, mode) for mode in cfg.mode_names() if mode != "echo"}
    return {
        "schema": SCHEMA,
        "benchmark": f"{MESSAGE_SIZE}-byte echo round trip, and the modes beside it",
        "loopfast_version": _version(),
        "started": result.started,
        "duration_s": result.duration_s,
        "ok": result.ok,
        "config": {"message_size": MESSAGE_SIZE, "count": cfg.count, "warmup": cfg.warmup,
                   "pin": cfg.pin, "rows": cfg.row_keys("echo"), "timeout_s": cfg.timeout,
                   "modes": cfg.mode_names(), "throughput_size": cfg.size,
                   "throughput_duration_s": cfg.duration, "setup_count": cfg.setup_count,
                   "many_connections": cfg.connections, "many_rounds": cfg.rounds,
                   "idle_connections": cfg.idle},
        "pinning": asdict(result.pinning),
        "machine": asdict(result.machine),
        "definitions": DEFINITIONS,
        "baseline": cfg.baseline,
        "rows": rows,
        "ratio_to_baseline": {row["key"]: row["ratio_to_baseline"] for row in rows},
        "modes": modes,
        "ratios": key_ratios(result),
    }


def write_json(document: dict[str, Any], target: str) -> None:
    """Write ``document`` to the file ``target``, or to stdout when ``target`` is ``-``.

    Raises:
        OSError: if the file cannot be written.
    """
    text = json.dumps(document, indent=2) + "\n"
    if target == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        Path(target).write_text(text, encoding="utf-8")
