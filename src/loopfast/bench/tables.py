"""The tables printed at the end of a run: the seed's echo table, then one per mode."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .drive import MODES
from .ratios import key_ratios
from .results import BenchResult, RowResult
from .workload import MESSAGE_SIZE

__all__ = ["render_table"]


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _failed(row: RowResult) -> list[str]:
    if row.skipped is not None:
        return [f"[dim]{escape(row.label)}", "[dim]skipped"]
    return [f"[red]{escape(row.label)}", "[red]FAILED"]


def _echo_table(result: BenchResult) -> Table:
    m, plan = result.machine, result.pinning
    table = Table(title=f"{MESSAGE_SIZE}-byte echo round trip, {result.config.count:,} "
                  f"round trips per row (pin: {plan.mode})", box=box.SIMPLE_HEAD,
                  caption=f"{m.cpu_model}, {m.cpu_count} CPUs, Linux {m.kernel}, "
                  f"{m.python_implementation} {m.python}")
    table.add_column("row", min_width=10)  # the only column that may wrap
    for name in ("mean\nµs", "round\ntrips/s", "latency\nreduction", "jitter\nreduction",
                 "p50\nµs", "p99\nµs", "p99.9\nµs"):
        table.add_column(name, justify="right", no_wrap=True)
    for row in result.mode_rows("echo"):
        s, cmp = row.summary, result.comparison(row)
        if s is None:
            table.add_row(*_failed(row), *[""] * 6)
            continue
        table.add_row(escape(row.label), f"{s.mean_ns / 1e3:.1f}",
                      f"{s.round_trips_per_s:,.0f}",
                      _pct(cmp.latency_reduction if cmp else None),
                      _pct(cmp.jitter_reduction if cmp else None),
                      f"{s.p50_ns / 1e3:.1f}", f"{s.p99_ns / 1e3:.1f}",
                      f"{s.p999_ns / 1e3:.1f}")
    return table


_COLUMNS: dict[str, list[tuple[str, str, str]]] = {
    "throughput": [("MB/s", "mb_per_s", "{:,.0f}")],
    "setup": [("connections/s", "connections_per_s", "{:,.0f}"),
              ("µs each", "us_per_connection", "{:,.1f}")],
    "many": [("round trips/s", "round_trips_per_s", "{:,.0f}")],
    "idle": [("reached", "reached", "{:,}"), ("RSS KiB/conn", "rss_kib_per_connection", "{:.2f}"),
             ("ring KiB/conn", "ring_rss_kib_per_connection", "{:.2f}"),
             ("fds/conn", "fds_per_connection", "{:.2f}")],
}


def _title(result: BenchResult, mode: str) -> str:
    c = result.config
    extra = {"throughput": f"{c.size:,}-byte messages for {c.duration:g} s",
             "setup": f"{c.setup_count:,} connections, each one 1-byte exchange",
             "many": f"{c.connections} connections x {c.rounds} rounds of 64-byte echoes",
             "idle": f"{c.idle:,} idle connections held by one process"}[mode]
    return f"{MODES[mode].title}: {extra}"


def _mode_table(result: BenchResult, mode: str) -> Table:
    table = Table(title=_title(result, mode), box=box.SIMPLE_HEAD)
    table.add_column("row", min_width=10)
    columns = _COLUMNS[mode]
    for name, _, _ in columns:
        table.add_column(name, justify="right", no_wrap=True)
    rate = columns[0][1]
    if mode != "idle":
        table.add_column("vs TCP", justify="right", no_wrap=True)
    base = result.find(mode, result.config.baseline)
    base_rate = base.figures.get(rate) if base is not None else None
    for row in result.mode_rows(mode):
        if not row.ok:
            table.add_row(*_failed(row), *[""] * (len(columns) - 1 + (mode != "idle")))
            continue
        cells = [fmt.format(row.figures[key]) if row.figures.get(key) is not None else "n/a"
                 for _, key, fmt in columns]
        if mode != "idle":
            cells.append(_x(row.figures[rate] / base_rate if base_rate else None))
        table.add_row(escape(row.label), *cells)
    return table


def render_table(result: BenchResult, console: Console) -> None:
    """Print the tables of the run to ``console``, then its notes and any row's error."""
    if result.mode_rows("echo"):
        console.print(_echo_table(result))
    for mode in result.config.mode_names():
        if mode != "echo" and result.mode_rows(mode):
            console.print(_mode_table(result, mode))
    ratios = {k: v for k, v in key_ratios(result).items() if v is not None}
    if ratios:
        console.print("ratios: " + ", ".join(f"{k} {v:.3g}" for k, v in ratios.items()),
                      highlight=False)
    if result.pinning.note:
        console.print(f"note: {result.pinning.note}")
    for row in result.rows:
        if row.error:
            console.print(f"[red]{row.mode}: {escape(row.label)} failed:[/red] "
                          f"{escape(row.error)}", highlight=False)
        elif row.skipped:
            console.print(f"{row.mode}: {escape(row.label)} skipped: {escape(row.skipped)}",
                          highlight=False)
    for row in result.mode_rows("idle"):
        if row.figures.get("stopped"):
            console.print(f"idle: {escape(row.label)} stopped at {row.figures['reached']:,} "
                          f"connections: {escape(str(row.figures['stopped']))}", highlight=False)
