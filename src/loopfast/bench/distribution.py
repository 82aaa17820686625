"""One-way streaming, repeated: the distribution of a transport's throughput over many runs.

    python -m loopfast.bench.distribution [--runs 20] [--rows tcp,ring-adaptive,stream]
                                          [--size 65536] [--duration 0.5] [--json FILE|-]

One throughput row (the ``throughput`` mode of ``loopfast bench``: a fresh sender and
receiver process per run, pinned to different CPUs, the sender pouring ``size``-byte
messages for ``duration`` seconds) is one sample. The rows are interleaved run by run,
in the order of ``--rows`` on even runs and reversed on odd ones, so a noisy neighbour
or a drifting clock hits every transport alike. Printed per row: min, p10, median, p90
and max of the receiver's MB/s (nearest rank over the runs), the median's ratio to the
baseline's, how many runs fell below the baseline's median, and every sample sorted (a
bimodal row shows two clusters there). Beside each sample each side's context switches
and CPU seconds during the transfer (``getrusage``), summed up as two medians: MB per
CPU-second (the bytes over both ends' CPU time: on a shared machine the rate follows
the CPU time the neighbours leave, this figure does not, so a slow mode of the transport
itself shows here) and voluntary context switches per MB (ends that wake each other per
message show thousands). ``--json`` writes every sample. Exit status 1 if a run failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from .pinning import PIN_MODES, plan_pinning
from .results import BenchConfig, NoProgress, ProgressSink, RowResult, keys_from
from .rows import ROWS
from .runner import run_row
from .stats import PERCENTILE_METHOD, percentile

__all__ = ["DEFAULT_ROWS", "Distribution", "main", "run_distribution", "summary_of", "to_json"]

DEFAULT_ROWS = ("tcp", "ring-adaptive", "stream")
_POINTS = (("min", 0.0), ("p10", 10.0), ("median", 50.0), ("p90", 90.0), ("max", 100.0))


@dataclass
class Distribution:
    """Every run of every row: ``runs[key]`` holds the row's results in run order."""

    config: BenchConfig
    count: int
    runs: dict[str, list[RowResult]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether every run of every row produced its figures or was skipped (no C core)."""
        return all(run.ok or run.skipped is not None
                   for results in self.runs.values() for run in results)

    def rates(self, key: str) -> list[float]:
        """The MB/s of the row's successful runs, in run order."""
        return [run.figures["mb_per_s"] for run in self.runs[key] if run.ok]


def run_distribution(config: BenchConfig, count: int,
                     progress: ProgressSink | None = None) -> Distribution:
    """Run each throughput row of ``config`` ``count`` times, interleaved run by run.

    Raises:
        ValueError: if ``count`` is below 1 or the pinning cannot be planned.
        KeyboardInterrupt: passed on, with no child left running.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    plan = plan_pinning(config.pin)
    keys = config.row_keys("throughput")
    result = Distribution(config, count, {key: [] for key in keys})
    for i in range(count):
        for key in keys if i % 2 == 0 else keys[::-1]:
            result.runs[key].append(run_row(ROWS[key], config, plan, progress or NoProgress(),
                                            "throughput"))
    return result


def _point(ordered: Sequence[float], p: float) -> float:
    return ordered[0] if p == 0 else percentile(ordered, p)


def _per_mb(run: RowResult, side: str, what: str) -> float:
    return float(run.figures[f"{side}_usage"][what]) / (float(run.figures["bytes"]) / 1e6)


def _mb_per_cpu_s(run: RowResult) -> float:
    cpu = sum(run.figures[f"{side}_usage"][what] for side in ("sender", "receiver")
              for what in ("user_s", "sys_s"))
    return float(run.figures["bytes"]) / 1e6 / max(float(cpu), 1e-6)


def summary_of(result: Distribution, key: str) -> dict[str, Any]:
    """The row's points (MB/s), failures, and median context switches per MB per side."""
    ok = [run for run in result.runs[key] if run.ok]
    ordered = sorted(run.figures["mb_per_s"] for run in ok)
    summary: dict[str, Any] = {"key": key, "label": ROWS[key].label, "runs": len(ordered),
                               "failed": sum(run.error is not None for run in result.runs[key])}
    if not ordered:
        return summary
    summary.update({name: _point(ordered, p) for name, p in _POINTS})
    summary["mb_per_cpu_s"] = percentile(sorted(_mb_per_cpu_s(run) for run in ok), 50)
    for side in ("sender", "receiver"):
        for what in ("voluntary_csw", "involuntary_csw"):
            per_mb = sorted(_per_mb(run, side, what) for run in ok)
            summary[f"{side}_{what}_per_mb"] = percentile(per_mb, 50)
    return summary


def to_json(result: Distribution) -> dict[str, Any]:
    """The whole run as a JSON-ready dict: the configuration, summaries and every sample."""
    c = result.config
    rows = []
    for key, runs in result.runs.items():
        samples = [{"run": i, **({"mb_per_s": r.figures["mb_per_s"], "bytes": r.figures["bytes"],
                                  "span_s": r.figures["span_s"],
                                  "sender_usage": r.figures["sender_usage"],
                                  "receiver_usage": r.figures["receiver_usage"]}
                                 if r.ok else {"error": r.error or r.skipped})}
                   for i, r in enumerate(runs)]
        rows.append({**summary_of(result, key), "samples": samples})
    return {"schema": "loopfast-bench-distribution/1", "ok": result.ok,
            "config": {"runs": result.count, "rows": list(result.runs), "size": c.size,
                       "duration_s": c.duration, "pin": c.pin, "baseline": c.baseline},
            "definitions": {"mb_per_s": "bytes after the receiver's first read / time from its "
                            "first to its last read, 10^6 bytes per second",
                            "percentile": PERCENTILE_METHOD,
                            "usage": "getrusage(RUSAGE_SELF) deltas of that side over the "
                            "transfer (csw: context switches)"},
            "rows": rows}


def render(result: Distribution, out: TextIO) -> None:
    """Print the distribution table, each row's sorted samples and any failure."""
    c = result.config
    print(f"one-way streaming, {c.size:,}-byte messages, {c.duration:g} s per run, "
          f"{result.count} runs per row, interleaved (pin: {c.pin})", file=out)
    base = summary_of(result, c.baseline) if c.baseline in result.runs else {}
    head = (f"  {'row':<24}{'min':>8}{'p10':>8}{'median':>8}{'p90':>8}{'max':>8}"
            f"{'vs TCP':>8}{'<TCP p50':>9}{'MB/CPU-s':>10}  {'vcsw/MB tx':>10}{'rx':>6}")
    print(f"{'':<26}{'MB/s':^40}{'medians':>36}", file=out)
    print(head, file=out)
    print("  " + "-" * (len(head) - 2), file=out)
    for key in result.runs:
        s = summary_of(result, key)
        if not s["runs"]:
            print(f"  {s['label']:<24}{'FAILED' if s['failed'] else 'skipped'}", file=out)
            continue
        ratio = f"{s['median'] / base['median']:.2f}x" if base.get("runs") else "n/a"
        below = (sum(rate < base["median"] for rate in result.rates(key))
                 if base.get("runs") else 0)
        points = "".join(f"{s[name]:>8,.0f}" for name, _ in _POINTS)
        print(f"  {s['label']:<24}{points}{ratio:>8}{below:>6}/{s['runs']:<2}"
              f"{s['mb_per_cpu_s']:>10,.0f}  {s['sender_voluntary_csw_per_mb']:>10.2f}"
              f"{s['receiver_voluntary_csw_per_mb']:>6.2f}", file=out)
    print("sorted samples, GB/s:", file=out)
    for key in result.runs:
        rates = " ".join(f"{rate / 1e3:.1f}" for rate in sorted(result.rates(key)))
        print(f"  {ROWS[key].label:<24}{rates}", file=out)
    for key, runs in result.runs.items():
        for i, run in enumerate(runs):
            if run.error is not None or (run.skipped is not None and i == 0):
                what = "failed" if run.error is not None else "skipped"
                print(f"run {i}: {ROWS[key].label} {what}: {run.error or run.skipped}", file=out)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loopfast.bench.distribution",
                                description=__doc__.split("\n\n")[2] if __doc__ else None)
    p.add_argument("--runs", type=int, default=20, metavar="N", help="runs per row (20)")
    p.add_argument("--rows", type=lambda t: keys_from(t, ROWS, "row"), default=DEFAULT_ROWS,
                   metavar="ROW[,ROW...]", help=f"throughput rows ({','.join(DEFAULT_ROWS)}); "
                   "the baseline (tcp) always runs")
    p.add_argument("--size", type=int, default=65_536, metavar="BYTES",
                   help="message size (65536)")
    p.add_argument("--duration", type=float, default=0.5, metavar="SECONDS",
                   help="how long each run sends (0.5)")
    p.add_argument("--pin", choices=PIN_MODES, default="split", help="as loopfast bench's")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                   help="longest wait for any word from a child (30)")
    p.add_argument("--json", metavar="FILE", help="also write every sample as JSON ('-': "
                   "stdout; the table then goes to stderr)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the distribution as the command line asks; 0 if every run succeeded, else 1."""
    args = _parser().parse_args(argv)
    try:
        config = BenchConfig(rows=args.rows, modes=("throughput",), size=args.size,
                             duration=args.duration, pin=args.pin, timeout=args.timeout)
        result = run_distribution(config, args.runs)
    except ValueError as exc:
        print(f"loopfast.bench.distribution: {exc}", file=sys.stderr)
        return 2
    render(result, sys.stderr if args.json == "-" else sys.stdout)
    if args.json:
        text = json.dumps(to_json(result), indent=2) + "\n"
        if args.json == "-":
            sys.stdout.write(text)
        else:
            with open(args.json, "w", encoding="utf-8") as f:
                f.write(text)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
