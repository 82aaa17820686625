"""The progress bar shown while rows run: rich, on stderr, only when stderr is a terminal.

Rendering costs CPU time on one of the two CPUs the children are pinned to, so the bar
refreshes only a few times a second; ``--no-progress`` removes it for the cleanest tail.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

__all__ = ["ProgressBar"]


class ProgressBar:
    """A :class:`loopfast.bench.results.ProgressSink` that draws one bar per row.

    Args:
        console: where to draw (stderr in the CLI).
        enabled: draw at all; defaults to whether ``console`` is a terminal.
    """

    def __init__(self, console: Console, enabled: bool | None = None) -> None:
        self.enabled = console.is_terminal if enabled is None else enabled
        self._progress = Progress(
            TextColumn("{task.description:<24}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not self.enabled,
            refresh_per_second=4,
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}
        self._labels: dict[str, str] = {}

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._progress.stop()

    def row_started(self, key: str, label: str, total: int) -> None:
        """Add a bar for the row (``total`` round trips, warm-up included)."""
        self._tasks[key] = self._progress.add_task(label, total=total)
        self._labels[key] = label

    def row_advanced(self, key: str, done: int) -> None:
        """Move the row's bar to ``done`` round trips."""
        self._progress.update(self._tasks[key], completed=done)

    def row_finished(self, key: str, ok: bool) -> None:
        """Mark the row's bar finished, in red when the row failed."""
        task = self._tasks[key]
        if not ok:
            self._progress.update(task, description=f"[red]{self._labels[key]} (failed)")
        self._progress.stop_task(task)
