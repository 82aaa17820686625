"""``loopfast bench``: the Windows team's 64-byte echo latency experiment, on this machine.

The package is split the way the benchmark grew:

- :mod:`.workload`: the message and the loops (echo, timed send, pour, drain);
- :mod:`.conn`, :mod:`.rows`, :mod:`.channels`, :mod:`.peers`: which ends each row of
  the table uses and how each end waits (completion styles);
- :mod:`.pinning`, :mod:`.machine`: where the processes run, what the machine is;
- :mod:`.child`, :mod:`.sides`, :mod:`.idle`: one side of a mode as a process;
  :mod:`.process`: the parent's handle on it;
- :mod:`.results`, :mod:`.drive`, :mod:`.runner`: a whole run, mode by mode, row by row;
- :mod:`.stats`, :mod:`.ratios`: mean, jitter, percentiles, comparisons;
- :mod:`.report`, :mod:`.tables`, :mod:`.plot`, :mod:`.progress`: the JSON document,
  the tables, the latency picture and the progress bar;
- :mod:`.poll_bench`, :mod:`.asyncio_echo`, :mod:`.distribution`: measurements beside the
  table, run on their own (``python -m loopfast.bench.poll_bench``, ``python -m
  loopfast.bench.asyncio_echo``, ``python -m loopfast.bench.distribution``: the throughput
  rows repeated, interleaved, as a distribution).

Only the runner, rows and statistics are imported here, so a child process does not pay
for rich or matplotlib (both in the ``bench`` extra, with pyzmq).
"""

from __future__ import annotations

from .errors import BenchError
from .results import BenchConfig, BenchResult, RowResult
from .rows import BASELINE, ROWS
from .runner import run_bench
from .stats import Summary, summarize

__all__ = [
    "BASELINE",
    "ROWS",
    "BenchConfig",
    "BenchError",
    "BenchResult",
    "RowResult",
    "Summary",
    "run_bench",
    "summarize",
]
