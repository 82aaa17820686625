"""What ``loopfast bench apps`` prints: a rich table and, with ``--json``, every figure.

Beside the table stand the anchor figures the issue cites for Linux's SMC-D
loopback (an in-kernel shared-memory path for TCP sockets): nginx +51% requests/s,
Redis +32-36%. They were measured elsewhere, on other hardware; they say what
a loopback fast path gave real servers, not what this machine should show.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .launch import VARIANTS
from .runner import AppsResult, PairResult

__all__ = ["ANCHORS", "render_table", "to_json"]

ANCHORS = {
    "smc_d_loopback": {
        "nginx_requests_per_s": "+51%",
        "redis_requests_per_s": "+32% to +36%",
        "note": "Linux SMC-D loopback, as cited in issue 11; other hardware",
    },
}


def _pair_json(p: PairResult) -> dict[str, Any]:
    variants = {}
    for variant in VARIANTS:
        fast, tcp = p.connections(variant)
        variants[variant] = {
            "requests_per_s": [run.requests_per_s for run in p.runs[variant]],
            "median": p.median(variant),
            "vs_plain": p.ratio(variant),
            "fast_path_connections": fast if variant != "plain" else None,
            "stream_share": p.stream_share(variant) if variant != "plain" else None,
            "tcp_connections": tcp if variant != "plain" else None,
            "path": p.path(variant) or None,
        }
    status = "skipped" if p.skipped else "ok" if p.ok else "failed"
    return {"key": p.pair.key, "label": p.pair.label, "client": p.pair.client,
            "connections": p.pair.connections, "expects_fast_path": p.pair.fast_path,
            "why_tcp": p.pair.why_tcp or None, "status": status, "ok": p.ok,
            "error": p.error, "skipped": p.skipped, "variants": variants}


def to_json(result: AppsResult) -> dict[str, Any]:
    """The whole run as a JSON-ready document."""
    return {"benchmark": "loopfast bench apps", "started": result.started,
            "seconds": result.seconds, "ok": result.ok, "config": asdict(result.config),
            "machine": asdict(result.machine), "pairs": [_pair_json(p) for p in result.pairs],
            "anchors": ANCHORS}


def _rate(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}"


def _x(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def _path(p: PairResult, variant: str) -> str:
    path = p.path(variant)
    if path and not p.path_as_expected(variant):
        return f"[red]{path}"
    return path or ""


def _table(result: AppsResult) -> Table:
    c, m = result.config, result.machine
    table = Table(title=f"applications: requests/s, median of {c.repeats} client run(s) of "
                  f"{c.seconds:g} s per variant", box=box.SIMPLE_HEAD,
                  caption=f"{m.cpu_model}, {m.cpu_count} CPUs, Linux {m.kernel}, "
                  f"{m.python_implementation} {m.python}")
    table.add_column("pair", min_width=10, no_wrap=True)
    for name in ("conn.", "plain\nreq/s", "auto\nreq/s", "auto\nvs plain", "auto\nstream",
                 "ring\nreq/s", "ring\nvs plain", "stream\nreq/s", "stream\nvs plain",
                 "path"):
        table.add_column(name, justify="left" if "path" in name or "conn" in name
                         else "right", no_wrap=True)
    for p in result.pairs:
        if p.skipped or (p.error and not p.runs["plain"]):
            word = "[dim]skipped" if p.skipped else "[red]FAILED"
            table.add_row(escape(p.pair.label), p.pair.connections, word, *[""] * 8)
            continue
        share = p.stream_share("auto")
        table.add_row(escape(p.pair.label), p.pair.connections, _rate(p.median("plain")),
                      _rate(p.median("auto")), _x(p.ratio("auto")),
                      "" if share is None else f"{share:.0%}",
                      _rate(p.median("ring")), _x(p.ratio("ring")),
                      _rate(p.median("stream")), _x(p.ratio("stream")), _paths(p))
    return table


def _paths(p: PairResult) -> str:
    """Where the connections went: one word when every variant agrees."""
    words = {v: _path(p, v) for v in VARIANTS[1:]}
    if len(set(words.values())) == 1:
        return next(iter(words.values()))
    return ", ".join(f"{v}: {w}" for v, w in words.items())


def render_table(result: AppsResult, console: Console) -> None:
    """Print the table, then each pair's note (TCP by design, skipped, failed)."""
    console.print(_table(result))
    console.print("anchors (Linux SMC-D loopback, cited in issue 11, other hardware): nginx "
                  "+51% requests/s, Redis +32-36%", highlight=False)
    for p in result.pairs:
        label = escape(p.pair.label)
        if p.skipped:
            console.print(f"{label} skipped: {escape(p.skipped)}", highlight=False)
        elif p.error:
            console.print(f"[red]{label} failed:[/red] {escape(p.error)}", highlight=False)
        tcp_by_design = [v for v in VARIANTS[1:] if p.connections(v)[1] and not p.pair.fast_path]
        if tcp_by_design:
            console.print(f"{label}: every connection over TCP under {' and '.join(tcp_by_design)}"
                          f", as expected ({escape(p.pair.why_tcp)})", highlight=False)
        for variant in VARIANTS[1:]:
            fast, tcp = p.connections(variant)
            if tcp and p.pair.fast_path:
                console.print(f"[red]{label}, {variant}: {tcp} connection(s) over TCP, "
                              f"{fast} over the fast path[/red]", highlight=False)
