"""The benchmark's one exception base, so a caller can catch all of its failures at once."""

from __future__ import annotations

__all__ = ["BenchError"]


class BenchError(Exception):
    """Base of the benchmark's own errors: a row that cannot run or failed while running.

    Socket errors inside a child process reach the parent as the child's message in a
    :class:`loopfast.bench.process.ChildError`, itself a ``BenchError``.
    """
