"""CPython's regrtest with a per-test log: run as a script, plain or under ``loopfast run``.

``python _trace.py REGRTEST_ARGS`` is ``python -m test REGRTEST_ARGS`` plus three
things, configured through the environment so regrtest keeps its own argv:

- ``CPYTHON_SUITES_LOG``: a JSON-lines file; every test writes ``start`` before it
  runs and ``end`` after (its outcome, the fast-path connections made meanwhile and
  the end of its first traceback or its skip reason),
  one flushed line each, so a run that dies still says how far it got. Errors and
  skips raised outside a test (``setUpClass``, ``setUpModule``) are ``end`` lines
  under unittest's own description, e.g. ``setUpClass (test.test_ssl.ThreadedTests)``.
- ``CPYTHON_SUITES_TEST_TIMEOUT``: seconds one test may take; past that the
  watchdog writes ``hang``, dumps every thread's stack to stderr and exits with
  ``HANG_EXIT`` (regrtest's own ``--timeout`` covers a whole test file).
- The fast-path counter: under ``loopfast run``, ``loopfast._core.patch``'s
  ``connection_counts()`` (the one ``loopfast run --report`` prints) is read
  before and after each test. It counts ``connect()`` calls of patched sockets in
  this process; ``None`` in a plain run, which never imports loopfast.

Self-contained (stdlib only): it is run by path, with no package around it.
"""

from __future__ import annotations

import faulthandler
import json
import os
import sys
import threading
import time
import traceback
import unittest
from collections.abc import Callable
from typing import Any, TextIO

HANG_EXIT = 97
LOG_ENV = "CPYTHON_SUITES_LOG"
TIMEOUT_ENV = "CPYTHON_SUITES_TEST_TIMEOUT"
_DETAIL_CHARS = 3000
_RESULT_LISTS = ("errors", "failures", "unexpectedSuccesses", "skipped", "expectedFailures")
_STATUS_OF = {"errors": "error", "failures": "fail", "unexpectedSuccesses": "xpass",
              "skipped": "skip", "expectedFailures": "xfail"}


class _Log:
    """The JSON-lines log; lines written only by the process that opened it (not forks)."""

    def __init__(self, path: str) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.file: TextIO = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115

    def write(self, **record: Any) -> None:
        if os.getpid() != self.pid:
            return
        with self.lock:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()

    def close(self) -> None:
        self.file.close()


class _Watchdog:
    """One thread, started before any test: ends the process when a test overruns."""

    def __init__(self, log: _Log, limit: float) -> None:
        self.log = log
        self.limit = limit
        self.cond = threading.Condition()
        self.test: str | None = None
        self.deadline = 0.0
        threading.Thread(target=self._watch, name="cpython-suites-watchdog", daemon=True).start()

    def arm(self, test_id: str) -> None:
        with self.cond:
            self.test, self.deadline = test_id, time.monotonic() + self.limit
            self.cond.notify()

    def disarm(self) -> None:
        with self.cond:
            self.test = None
            self.cond.notify()

    def _watch(self) -> None:
        with self.cond:
            while True:
                if self.test is None:
                    self.cond.wait()
                    continue
                left = self.deadline - time.monotonic()
                if left > 0:
                    self.cond.wait(left)
                    continue
                self.log.write(event="hang", id=self.test, limit=self.limit)
                print(f"\ncpython-suites: {self.test} ran for more than {self.limit:g} s; "
                      "stacks of every thread:", file=sys.__stderr__, flush=True)
                faulthandler.dump_traceback(file=sys.__stderr__ or sys.stderr, all_threads=True)
                os._exit(HANG_EXIT)


def _fast_path_counter() -> Callable[[], int | None]:
    """Fast-path connections made so far by this process, or None when not under loopfast."""
    patch = sys.modules.get("loopfast._core.patch")
    if patch is None or not patch.patched():
        return lambda: None

    def count() -> int:
        counts = patch.connection_counts()
        return int(counts.get("ring", 0) + counts.get("stream", 0))
    return count


def _sizes(result: unittest.TestResult) -> dict[str, int]:
    return {name: len(getattr(result, name, ())) for name in _RESULT_LISTS}


def _detail(result: unittest.TestResult, before: dict[str, int]) -> str | None:
    """The first traceback (or skip reason) the test added, cut to ``_DETAIL_CHARS``."""
    for name in ("errors", "failures", "skipped"):
        added = getattr(result, name, [])[before[name]:]
        if added:
            return str(added[0][1])[-_DETAIL_CHARS:]
    return None


def _status(before: dict[str, int], after: dict[str, int]) -> str:
    """The outcome of one test from what it added to the result's lists (errors first)."""
    for name in _RESULT_LISTS:
        if after[name] > before[name]:
            return _STATUS_OF[name]
    return "pass"


def install(log: _Log, watchdog: _Watchdog | None) -> None:
    """Wrap ``TestCase.run`` (per-test lines) and the result's error/skip calls (lines for
    failures outside any test)."""
    counter = _fast_path_counter()
    run = unittest.TestCase.run

    def traced_run(self: unittest.TestCase, result: Any = None) -> Any:
        if result is None:
            return run(self, result)
        test_id = self.id()
        before, fast_before = _sizes(result), counter()
        log.write(event="start", id=test_id)
        if watchdog is not None:
            watchdog.arm(test_id)
        try:
            return run(self, result)
        finally:
            if watchdog is not None:
                watchdog.disarm()
            fast_after = counter()
            fast = None if fast_before is None or fast_after is None else fast_after - fast_before
            log.write(event="end", id=test_id, status=_status(before, _sizes(result)), fast=fast,
                      detail=_detail(result, before))

    unittest.TestCase.run = traced_run  # type: ignore[method-assign]
    _trace_outside(log, "addError", "error")
    _trace_outside(log, "addFailure", "fail")
    _trace_outside(log, "addSkip", "skip")


def _trace_outside(log: _Log, method: str, status: str) -> None:
    original = getattr(unittest.TestResult, method)

    def traced(self: unittest.TestResult, test: Any, *args: Any) -> Any:
        if not isinstance(test, unittest.TestCase):  # unittest's _ErrorHolder
            detail = str(args[0]) if status == "skip" else "".join(
                traceback.format_exception(*args[0]))[-_DETAIL_CHARS:]
            log.write(event="end", id=str(test.id()), status=status, fast=None, detail=detail)
        return original(self, test, *args)

    setattr(unittest.TestResult, method, traced)


def main() -> None:
    """Install the log and the watchdog, then run regrtest on ``sys.argv[1:]``."""
    log = _Log(os.environ[LOG_ENV])
    limit = float(os.environ.get(TIMEOUT_ENV, "0"))
    install(log, _Watchdog(log, limit) if limit > 0 else None)
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    from test.libregrtest.main import main as regrtest_main  # type: ignore[import-not-found]
    regrtest_main()


if __name__ == "__main__":
    main()
