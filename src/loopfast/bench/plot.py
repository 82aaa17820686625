"""``--plot FILE.png``: the latency distribution of every echo row (matplotlib, Agg).

Left: the CDF of the round-trip time on a log time axis (what people read: where
each row's bulk sits and how wide it is). Right: the tail, 1 - CDF on log-log axes,
so p99 and p99.9 are visible steps rather than the last pixel of a curve. Each
curve is drawn from at most ``points`` order statistics, so a 50,000-sample row costs
the same as a small one.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from .results import BenchResult, RowResult

__all__ = ["PlotUnavailableError", "plot_available", "write_plot"]


class PlotUnavailableError(RuntimeError):
    """Raised when matplotlib is not installed (``pip install 'loopfast[bench]'``)."""


def plot_available() -> str | None:
    """Return why ``--plot`` cannot work here, or ``None`` when matplotlib is installed."""
    if importlib.util.find_spec("matplotlib") is None:
        return "--plot needs matplotlib: pip install 'loopfast[bench]' (or matplotlib)"
    return None


def _curve(samples_ns: Sequence[int], points: int) -> tuple[list[float], list[float]]:
    ordered = sorted(samples_ns)
    n = len(ordered)
    step = max(1, n // points)
    idx = sorted({*range(0, n, step), *range(max(0, n - 2 * points // 10), n), n - 1})
    return [ordered[i] / 1e3 for i in idx], [(i + 1) / n for i in idx]


def write_plot(result: BenchResult, target: str, points: int = 2000) -> None:
    """Draw the RTT distribution of every echo row that has samples into ``target`` (PNG).

    Raises:
        PlotUnavailableError: if matplotlib is not installed.
        OSError: if the file cannot be written.
    """
    reason = plot_available()
    if reason is not None:
        raise PlotUnavailableError(reason)
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot as plt

    rows: list[RowResult] = [r for r in result.mode_rows("echo") if len(r.samples_ns)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5), layout="constrained")
    try:
        for i, row in enumerate(rows):
            xs, ys = _curve(row.samples_ns, points)
            style = {"color": f"C{i % 10}", "linestyle": "-" if i < 10 else "--",
                     "linewidth": 1.4}
            mean = row.summary.mean_ns / 1e3 if row.summary else 0.0
            left.plot(xs, ys, label=f"{row.label} (mean {mean:.1f} µs)", **style)
            right.plot(xs, [max(1 - y, 0.5 / len(row.samples_ns)) for y in ys], **style)
        m, c = result.machine, result.config
        fig.suptitle(f"64-byte echo RTT, {c.count:,} round trips per row, pin {c.pin}: "
                     f"{m.cpu_model}, {m.cpu_count} CPUs, Linux {m.kernel}, "
                     f"Python {m.python}", fontsize=10)
        left.set(xscale="log", xlabel="round-trip time (µs, log)", ylabel="fraction of round "
                 "trips at or below", title="CDF", ylim=(0, 1))
        right.set(xscale="log", yscale="log", xlabel="round-trip time (µs, log)",
                  ylabel="fraction above (1 - CDF, log)", title="tail")
        for ax in (left, right):
            ax.grid(True, which="both", alpha=0.3)
        left.legend(fontsize=8, loc="lower right")
        fig.savefig(target, dpi=110)
    finally:
        plt.close(fig)
