"""``loopfast bench``: the Windows team's 64-byte echo latency experiment, on this machine.

The package is split the way the benchmark will grow:

- :mod:`.workload`: the message and the two loops (echo, timed send);
- :mod:`.rows`: which sockets each row of the table uses;
- :mod:`.pinning`, :mod:`.machine`: where the processes run, what the machine is;
- :mod:`.child`, :mod:`.process`: one side of the echo as a process, and the parent's
  handle on it;
- :mod:`.runner`: a whole run, row after row;
- :mod:`.stats`: mean, jitter, percentiles, comparison with the baseline;
- :mod:`.report`, :mod:`.progress`: the JSON document, the table and the progress bar.

Only the runner, rows and statistics are imported here, so a child process does not pay
for rich.
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
