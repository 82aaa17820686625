"""What a run reports: the JSON document (every figure) and the rich table (the seed's).

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

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .runner import BenchResult, RowResult
from .stats import PERCENTILE_METHOD
from .workload import MESSAGE_SIZE

__all__ = ["DEFINITIONS", "SCHEMA", "render_table", "to_json", "write_json"]

SCHEMA = "loopfast-bench/1"
DEFINITIONS = {
    "rtt": "perf_counter_ns at echo arrival minus the timestamp carried in the message",
    "jitter": "population standard deviation of the RTT",
    "percentile": PERCENTILE_METHOD + " (smallest sample with at least p% at or below it)",
    "round_trips_per_s": "1 / mean RTT, as the Windows team computed it",
    "measured_round_trips_per_s": "measured round trips / wall time of the measured phase",
    "latency_reduction": "(baseline mean - row mean) / baseline mean",
    "jitter_reduction": "(baseline stdev - row stdev) / baseline stdev",
    "ratio_to_baseline": "row mean / baseline mean",
}


def _version() -> str:
    try:
        return metadata.version("loopfast")
    except metadata.PackageNotFoundError:
        return "unknown"


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
    return {"key": row.key, "label": row.label, "ok": row.ok, "error": row.error, **figures,
            "elapsed_s": row.elapsed_s, "fast_path_active": row.fast_path_active,
            "cpus": row.cpus}


def to_json(result: BenchResult) -> dict[str, Any]:
    """Return the whole run as a JSON-ready dict (see the module docstring for units)."""
    cfg, rows = result.config, [_row_json(result, row) for row in result.rows]
    return {
        "schema": SCHEMA,
        "benchmark": f"{MESSAGE_SIZE}-byte echo round trip",
        "loopfast_version": _version(),
        "started": result.started,
        "duration_s": result.duration_s,
        "ok": result.ok,
        "config": {"message_size": MESSAGE_SIZE, "count": cfg.count, "warmup": cfg.warmup,
                   "pin": cfg.pin, "rows": cfg.row_keys(), "timeout_s": cfg.timeout},
        "pinning": asdict(result.pinning),
        "machine": asdict(result.machine),
        "definitions": DEFINITIONS,
        "baseline": cfg.baseline,
        "rows": rows,
        "ratio_to_baseline": {row["key"]: row["ratio_to_baseline"] for row in rows},
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


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def render_table(result: BenchResult, console: Console) -> None:
    """Print the table of the run to ``console``, then its notes and any row's error."""
    m, plan = result.machine, result.pinning
    table = Table(title=f"{MESSAGE_SIZE}-byte echo round trip, {result.config.count:,} "
                  f"round trips per row (pin: {plan.mode})", box=box.SIMPLE_HEAD,
                  caption=f"{m.cpu_model}, {m.cpu_count} CPUs, Linux {m.kernel}, "
                  f"{m.python_implementation} {m.python}")
    table.add_column("row", min_width=10)  # the only column that may wrap (fits 80 columns)
    for name in ("mean\nµs", "round\ntrips/s", "latency\nreduction", "jitter\nreduction",
                 "p50\nµs", "p99\nµs", "p99.9\nµs"):
        table.add_column(name, justify="right", no_wrap=True)
    for row in result.rows:
        s, cmp = row.summary, result.comparison(row)
        if s is None:
            table.add_row(f"[red]{escape(row.label)}", "[red]FAILED", *[""] * 6)
            continue
        table.add_row(escape(row.label), f"{s.mean_ns / 1e3:.1f}",
                      f"{s.round_trips_per_s:,.0f}",
                      _pct(cmp.latency_reduction if cmp else None),
                      _pct(cmp.jitter_reduction if cmp else None),
                      f"{s.p50_ns / 1e3:.1f}", f"{s.p99_ns / 1e3:.1f}",
                      f"{s.p999_ns / 1e3:.1f}")
    console.print(table)
    if plan.note:
        console.print(f"note: {plan.note}")
    for row in result.rows:
        if row.error:
            console.print(f"[red]{escape(row.label)} failed:[/red] {escape(row.error)}",
                          highlight=False)
