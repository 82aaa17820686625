"""Statistics of one row's round-trip times, and how a row compares with the baseline.

Definitions (the JSON document repeats them, so a reader never has to guess):

- mean: the arithmetic mean of the samples.
- stdev (jitter): the population standard deviation, sqrt(sum((x - mean)**2) / n).
  The samples are the whole run being described, not a draw from a larger one.
- percentiles: nearest rank. The p-th percentile is the smallest sample with at
  least p% of the samples at or below it, ``sorted[ceil(p / 100 * n) - 1]``; it is
  always a value that was actually measured, never an interpolation.
- round trips per second: ``1 / mean``, as the Windows team computed it (the
  sender waits for each echo, so the message rate is the reciprocal of the RTT).
- latency reduction: ``(baseline.mean - row.mean) / baseline.mean``;
  jitter reduction likewise with the stdev; ratio to baseline: ``row.mean / baseline.mean``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TypeVar

__all__ = [
    "PERCENTILE_METHOD",
    "Comparison",
    "Summary",
    "compare",
    "percentile",
    "summarize",
]

PERCENTILE_METHOD = "nearest-rank"

Sample = TypeVar("Sample", int, float)


def percentile(sorted_samples: Sequence[Sample], p: float) -> Sample:
    """Return the nearest-rank ``p``-th percentile of already sorted samples.

    Args:
        sorted_samples: the samples in ascending order.
        p: the percentile, 0 < p <= 100.

    Returns:
        The smallest sample with at least ``p`` percent of the samples at or below it.

    Raises:
        ValueError: if there are no samples or ``p`` is outside (0, 100].
    """
    if not sorted_samples:
        raise ValueError("percentile of no samples")
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    # Exact arithmetic: in floats 99.9 / 100 * 1000 is 999.0000000000001, rank 1000.
    rank = math.ceil(Fraction(str(p)) * len(sorted_samples) / 100)
    return sorted_samples[max(rank, 1) - 1]


@dataclass(frozen=True)
class Summary:
    """The summary of one row's round-trip times, all times in nanoseconds."""

    count: int
    mean_ns: float
    stdev_ns: float
    min_ns: int
    max_ns: int
    p50_ns: int
    p99_ns: int
    p999_ns: int

    @property
    def round_trips_per_s(self) -> float:
        """Round trips per second as the reciprocal of the mean RTT (the seed's definition)."""
        return 1e9 / self.mean_ns if self.mean_ns > 0 else math.inf


def summarize(samples_ns: Sequence[int]) -> Summary:
    """Summarize round-trip times given in nanoseconds.

    Args:
        samples_ns: one RTT per measured round trip, in nanoseconds, in any order.

    Returns:
        The :class:`Summary` (mean, population stdev, min, max, nearest-rank p50/p99/p99.9).

    Raises:
        ValueError: if there are no samples.
    """
    n = len(samples_ns)
    if n == 0:
        raise ValueError("cannot summarize an empty set of samples")
    ordered = sorted(samples_ns)
    mean = math.fsum(ordered) / n
    variance = math.fsum((x - mean) ** 2 for x in ordered) / n
    return Summary(
        count=n,
        mean_ns=mean,
        stdev_ns=math.sqrt(variance),
        min_ns=ordered[0],
        max_ns=ordered[-1],
        p50_ns=percentile(ordered, 50),
        p99_ns=percentile(ordered, 99),
        p999_ns=percentile(ordered, 99.9),
    )


@dataclass(frozen=True)
class Comparison:
    """How a row compares with the baseline row (fractions: 0.25 means 25 %)."""

    latency_reduction: float
    jitter_reduction: float | None
    ratio_to_baseline: float


def compare(row: Summary, baseline: Summary) -> Comparison:
    """Compare a row's summary with the baseline's.

    Args:
        row: the row being compared.
        baseline: the baseline row (stdlib TCP by default).

    Returns:
        The relative latency and jitter reductions and the ratio of the means. The jitter
        reduction is ``None`` when the baseline has no jitter at all (nothing to reduce).

    Raises:
        ValueError: if the baseline's mean is not positive.
    """
    if baseline.mean_ns <= 0:
        raise ValueError("the baseline's mean round-trip time must be positive")
    jitter = (
        (baseline.stdev_ns - row.stdev_ns) / baseline.stdev_ns if baseline.stdev_ns > 0 else None
    )
    return Comparison(
        latency_reduction=(baseline.mean_ns - row.mean_ns) / baseline.mean_ns,
        jitter_reduction=jitter,
        ratio_to_baseline=row.mean_ns / baseline.mean_ns,
    )
