"""Running the benchmark: every row of every mode as a server and a client process.

For each row the runner starts the server (pinned, listening on loopback), then the
client (pinned, connecting), checks ``fast_path_active`` as both report it, follows
the client's progress and collects the figures (:mod:`.drive` knows each mode). A
row that fails (its socket class is missing, the fast path is not active, a child
dies or falls silent) is recorded with the reason and the run goes on; a peer whose
package is missing is skipped with the reason.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

from .conn import Row
from .drive import MODES
from .machine import describe_machine
from .pinning import PinPlan, plan_pinning
from .process import Child, ChildError
from .results import BenchConfig, BenchResult, NoProgress, ProgressSink, RowResult
from .rows import ROWS

__all__ = ["BenchConfig", "BenchResult", "ProgressSink", "RowResult", "run_bench", "run_row"]


class _Prefixed:
    """Passes progress on with the mode in the key and the label."""

    def __init__(self, sink: ProgressSink, mode: str) -> None:
        self._sink, self._mode = sink, mode

    def row_started(self, key: str, label: str, total: int) -> None:
        self._sink.row_started(f"{self._mode}:{key}", f"{self._mode}: {label}", total)

    def row_advanced(self, key: str, done: int) -> None:
        self._sink.row_advanced(f"{self._mode}:{key}", done)

    def row_finished(self, key: str, ok: bool) -> None:
        self._sink.row_finished(f"{self._mode}:{key}", ok)


def _spec(role: str, row: Row, mode: str, cpu: int | None, config: BenchConfig,
          **extra: Any) -> dict[str, Any]:
    return {"role": role, "mode": mode, "row": row.key, "cpu": cpu, "parent": os.getpid(),
            "timeout": config.timeout, **extra}


def run_row(row: Row, config: BenchConfig, plan: PinPlan, progress: ProgressSink | None = None,
            mode: str = "echo") -> RowResult:
    """Run one row in one mode; failures are recorded in ``result.error``.

    Raises:
        KeyboardInterrupt: passed on (after both children are killed and reaped).
    """
    progress = progress or NoProgress()
    how = MODES[mode]
    result = RowResult(row.key, row.label, mode)
    reason = row.unavailable()
    if reason is not None:
        if row.optional:
            result.skipped = reason
        else:
            result.error = reason
        return result
    progress.row_started(row.key, row.label, how.total(config))
    try:
        server_spec = _spec("echo", row, mode, plan.echoer_cpu, config, **how.server(config))
        with Child("server", server_spec) as server:
            listening = server.expect("listening", config.timeout)
            result.cpus["server"] = listening["cpus"]
            spec = _spec("send", row, mode, plan.sender_cpu, config,
                         address=listening["address"], **how.client(config))
            with Child("client", spec) as client:
                try:
                    how.drive(result, server, client, config, progress)
                except ChildError as exc:
                    more = [m for c in (client, server) if (m := c.pending_error(1.0))]
                    raise ChildError("; ".join([str(exc), *more])) from exc
    except (ChildError, OSError) as exc:
        result.error = str(exc)
        result.summary = None
        result.figures = {}
    finally:
        progress.row_finished(row.key, result.ok)
    return result


def run_bench(config: BenchConfig, progress: ProgressSink | None = None) -> BenchResult:
    """Run every mode of ``config``, every row in turn (baseline first); return it all.

    Raises:
        ValueError: if the pinning mode cannot be planned (no CPU allowed).
        KeyboardInterrupt: passed on, with no child left running.
    """
    plan = plan_pinning(config.pin)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.monotonic()
    sink: ProgressSink = progress or NoProgress()
    rows = [run_row(ROWS[key], config, plan, _Prefixed(sink, mode), mode)
            for mode in config.mode_names() for key in config.row_keys(mode)]
    return BenchResult(config, plan, describe_machine(), rows, started, time.monotonic() - t0)
