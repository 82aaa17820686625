"""The results table (rich when installed, plain text otherwise) and the ``--json`` file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from .compare import SuiteReport

__all__ = ["COLUMNS", "print_report", "rows", "write_json"]

COLUMNS = ("suite", "transport", "plain passed", "passed", "failed", "errors", "hangs",
           "skipped", "used fast path", "documented", "undocumented")


def rows(reports: list[SuiteReport]) -> list[tuple[str, ...]]:
    """One row per suite and transport, as in ``COLUMNS``, then one total per transport."""
    out = [_row(r.suite, r.transport, [r]) for r in reports]
    for transport in dict.fromkeys(r.transport for r in reports):
        mine = [r for r in reports if r.transport == transport]
        if len(mine) > 1:
            out.append(_row("all", transport, mine))
    return out


def _row(suite: str, transport: str, reports: list[SuiteReport]) -> tuple[str, ...]:
    def total(side: str, *statuses: str) -> int:
        return sum(getattr(r, side)[s] for r in reports for s in statuses)

    return (suite, transport, str(total("plain", "pass", "xfail")),
            str(total("fast", "pass", "xfail")), str(total("fast", "fail", "xpass")),
            str(total("fast", "error", "crash")), str(total("fast", "hang")),
            str(total("fast", "skip")), str(sum(r.used_fast_path for r in reports)),
            str(sum(len(r.documented) for r in reports)),
            str(sum(len(r.undocumented) for r in reports)))


def print_report(reports: list[SuiteReport], stream: TextIO = sys.stdout) -> None:
    """The table, then every undocumented difference (test, plain status -> fast status)."""
    table = rows(reports)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        _plain_table(table, stream)
    else:
        rich_table = Table(title="CPython suites: plain vs. loopfast run")
        for i, column in enumerate(COLUMNS):
            rich_table.add_column(column, justify="left" if i < 2 else "right", no_wrap=i < 2)
        for row in table:
            rich_table.add_row(*row, style="bold" if row[0] == "all" else None)
        Console(file=stream, width=180).print(rich_table)
    undocumented = [(r, d) for r in reports for d in r.undocumented]
    if undocumented:
        print(f"\n{len(undocumented)} undocumented difference(s):", file=stream)
        for r, d in undocumented:
            print(f"  {r.transport:6} {d.test}: plain {d.plain} -> {d.fast}", file=stream)
    for r in reports:
        for note in r.notes:
            print(f"  note: {r.suite} {r.transport}: {note}", file=stream)


def _plain_table(table: list[tuple[str, ...]], stream: TextIO) -> None:
    widths = [max(len(c), *(len(row[i]) for row in table)) for i, c in enumerate(COLUMNS)]
    for row in (COLUMNS, *table):
        cells = [cell.ljust(w) if i < 2 else cell.rjust(w)
                 for i, (cell, w) in enumerate(zip(row, widths, strict=True))]
        print(" | ".join(cells), file=stream)


def write_json(path: Path, reports: list[SuiteReport], extra: dict[str, Any]) -> None:
    """Every row and difference, plus *extra* (the command, the runs), as JSON."""
    body = dict(extra, columns=list(COLUMNS), rows=[list(r) for r in rows(reports)],
                reports=[r.as_json() for r in reports])
    path.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
