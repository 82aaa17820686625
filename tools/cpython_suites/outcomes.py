"""Per-test outcomes of one suite run: regrtest's JUnit XML, completed by the trace log.

Statuses: ``pass``, ``fail``, ``error``, ``skip``, ``xfail`` (an expected failure),
``xpass`` (an unexpected success), ``hang`` (the watchdog or regrtest's
``--timeout`` ended the test), ``crash`` (the process died inside the test some
other way) and, in comparisons only, ``missing`` (never run on one side).

regrtest's XML (``--junit-xml``) is the reference where it names a test. It
cannot name everything: a test whose only failures are in ``subTest`` blocks
leaves a nameless ``<testcase>``, errors in ``setUpClass`` leave none, and a run
that a hang ended writes no file at all. The trace log (``_trace.py``) fills
those in, and it alone knows how many fast-path connections each test made.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

__all__ = ["STATUSES", "Outcome", "Pass", "merge", "parse_junit", "parse_log"]

STATUSES = ("pass", "fail", "error", "skip", "xfail", "xpass", "hang", "crash", "missing")


@dataclass(frozen=True)
class Outcome:
    """One test's result: its status, the fast-path connections it made (None: unknown)
    and, from the trace log, the end of its first traceback or its skip reason."""

    status: str
    fast: int | None = None
    detail: str | None = None


@dataclass
class Pass:
    """What one process's trace log says: finished tests, and the test it died in, if any."""

    outcomes: dict[str, Outcome]
    unfinished: str | None
    hung: bool


def parse_junit(path: Path) -> dict[str, Outcome]:
    """Outcomes regrtest's ``--junit-xml`` file names (nameless test cases are left out).

    Raises:
        OSError: the file cannot be read.
        xml.etree.ElementTree.ParseError: it is not XML.
    """
    outcomes: dict[str, Outcome] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("name")
        if name:
            outcomes[name] = Outcome(_junit_status(case))
    return outcomes


def _junit_status(case: ET.Element) -> str:
    # RegressionTestResult: <error>, <failure>, <skipped>, <output> (expected failure),
    # <outcome>UNEXPECTED_SUCCESS</outcome>; nothing below means a pass.
    if case.find("error") is not None:
        return "error"
    if case.find("failure") is not None:
        return "fail"
    if case.find("skipped") is not None:
        return "skip"
    outcome = case.find("outcome")
    if outcome is not None and outcome.text == "UNEXPECTED_SUCCESS":
        return "xpass"
    if case.find("output") is not None:
        return "xfail"
    return "pass"


def parse_log(path: Path) -> Pass:
    """The trace log of one process: outcomes of finished tests, and where it stopped.

    A test with a ``start`` line and no ``end`` line is where the process died; the
    log says ``hang`` when the watchdog ended it.
    """
    outcomes: dict[str, Outcome] = {}
    open_test: str | None = None
    hung = False
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by the process's end
            event, test_id = record.get("event"), str(record.get("id"))
            if event == "start":
                open_test = test_id
            elif event == "end":
                outcomes[test_id] = Outcome(str(record["status"]), record.get("fast"),
                                            record.get("detail"))
                if open_test == test_id:
                    open_test = None
            elif event == "hang":
                hung = True
    return Pass(outcomes, open_test, hung)


def merge(junit: dict[str, Outcome], log: dict[str, Outcome]) -> dict[str, Outcome]:
    """regrtest's status where its XML has the test, the log's otherwise; the log's count
    and detail."""
    merged = dict(log)
    for test_id, outcome in junit.items():
        traced = log.get(test_id, Outcome(outcome.status))
        merged[test_id] = Outcome(outcome.status, traced.fast, traced.detail)
    return merged
