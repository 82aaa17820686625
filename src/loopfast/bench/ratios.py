"""The named comparisons a reader asks for first (the JSON's ``ratios``).

Latency ratios divide mean round-trip times (the ring's by the other row's: 0.2
means the ring's round trip takes a fifth of the time); rate ratios divide rates
(the ring's by TCP's: 3.0 means three times as many). A ratio whose rows did not
both run is ``None``.
"""

from __future__ import annotations

from .results import BenchResult

__all__ = ["RATE_FIGURE", "RATIO_DEFINITIONS", "key_ratios"]

RATE_FIGURE = {"throughput": "mb_per_s", "setup": "connections_per_s",
               "many": "round_trips_per_s"}
"""The figure each mode's ``ratio_to_baseline`` divides."""

_LATENCY = {
    "ring_poll_vs_tcp_blocking": ("ring-poll", "tcp"),
    "ring_poll_vs_tcp_busy": ("ring-poll", "tcp-busy"),
    "ring_adaptive_vs_tcp_blocking": ("ring-adaptive", "tcp"),
    "ring_adaptive_vs_tcp_busy": ("ring-adaptive", "tcp-busy"),
    "ring_wait_vs_tcp_blocking": ("ring-wait", "tcp"),
    "ring_wait_vs_unix_blocking": ("ring-wait", "unix"),
}
_RATES = {
    "throughput_ring_vs_tcp": ("throughput", "ring-adaptive", "tcp"),
    "throughput_ring_poll_vs_tcp": ("throughput", "ring-poll", "tcp"),
    "throughput_ring_poll_vs_tcp_busy": ("throughput", "ring-poll", "tcp-busy"),
    "setup_ring_vs_tcp": ("setup", "ring-adaptive", "tcp"),
    "many_ring_vs_tcp": ("many", "ring-adaptive", "tcp"),
}

RATIO_DEFINITIONS = {
    **{key: f"echo mean RTT of {a} / mean RTT of {b} (below 1: the ring is faster)"
       for key, (a, b) in _LATENCY.items()},
    **{key: f"{mode} {RATE_FIGURE[mode]} of {a} / that of {b} (above 1: the ring is faster)"
       for key, (mode, a, b) in _RATES.items()},
}


def key_ratios(result: BenchResult) -> dict[str, float | None]:
    """Return every ratio of :data:`RATIO_DEFINITIONS` for ``result``."""
    ratios: dict[str, float | None] = {}
    for key, (a, b) in _LATENCY.items():
        ra, rb = result.find("echo", a), result.find("echo", b)
        sa = ra.summary if ra is not None else None
        sb = rb.summary if rb is not None else None
        ratios[key] = sa.mean_ns / sb.mean_ns if sa and sb and sb.mean_ns > 0 else None
    for key, (mode, a, b) in _RATES.items():
        ra, rb, figure = result.find(mode, a), result.find(mode, b), RATE_FIGURE[mode]
        va = ra.figures.get(figure) if ra is not None else None
        vb = rb.figures.get(figure) if rb is not None else None
        ratios[key] = va / vb if va is not None and vb else None
    return ratios
