"""tools/cpython_suites: CPython's socket suites plain and under ``loopfast run``.

The comparison is checked on real regrtest output (its JUnit writer and our trace
log, from a tiny unittest run twice); the whole runner, through ``python -m``, on a
small subset (``make stress``).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import unittest
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from test.libregrtest.testresult import RegressionTestResult
from tools.cpython_suites import _trace, expected
from tools.cpython_suites.compare import compare
from tools.cpython_suites.outcomes import Outcome, merge, parse_junit, parse_log

ROOT = Path(__file__).resolve().parents[2]


class _Tiny(unittest.TestCase):
    """Passes everywhere, except where ``flavour`` says the fast path broke it."""

    __test__ = False  # run by _run_tiny, not collected by pytest
    flavour: ClassVar[str] = "plain"

    def test_same(self) -> None:
        pass

    def test_documented(self) -> None:
        self.assertEqual(self.flavour, "plain")

    def test_undocumented(self) -> None:
        if self.flavour != "plain":
            raise OSError("only over the fast path")

    def test_in_subtests(self) -> None:
        for i in range(2):
            with self.subTest(i=i):
                self.assertTrue(i == 0 or self.flavour == "plain")

    @unittest.skip("skipped both ways")
    def test_skipped(self) -> None:
        pass


@contextlib.contextmanager
def _traced(log: Path) -> Iterator[None]:
    """``_trace.install`` for one block; unittest's methods are put back after."""
    saved = {(cls, name): getattr(cls, name) for cls, name in (
        (unittest.TestCase, "run"), (unittest.TestResult, "addError"),
        (unittest.TestResult, "addFailure"), (unittest.TestResult, "addSkip"))}
    writer = _trace._Log(str(log))
    _trace.install(writer, None)
    try:
        yield
    finally:
        writer.close()
        for (cls, name), value in saved.items():
            setattr(cls, name, value)


def _run_tiny(flavour: str, where: Path) -> dict[str, Outcome]:
    """Run ``_Tiny`` as regrtest does (its result class, XML on) and read it back."""
    _Tiny.flavour = flavour
    junit, log = where / f"{flavour}.xml", where / f"{flavour}.jsonl"
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(_Tiny)
    RegressionTestResult.USE_XML = True
    try:
        with _traced(log):
            result = RegressionTestResult(open(where / "out.txt", "w"), None, 0)  # noqa: SIM115
            try:
                suite.run(result)
            finally:
                result.stream.close()
        ET.ElementTree(result.get_xml_element()).write(junit)
    finally:
        RegressionTestResult.USE_XML = False
        _Tiny.flavour = "plain"
    return merge(parse_junit(junit), parse_log(log).outcomes)


def test_comparison_of_real_regrtest_results(tmp_path: Path) -> None:
    plain = _run_tiny("plain", tmp_path)
    fast = _run_tiny("ring", tmp_path)
    name = f"{__name__}._Tiny"
    # regrtest's XML names no test whose failures are all in subTest blocks: the log does.
    assert f"{name}.test_in_subtests" not in parse_junit(tmp_path / "ring.xml")
    assert fast[f"{name}.test_in_subtests"].status == "fail"
    assert "AssertionError" in (fast[f"{name}.test_in_subtests"].detail or "")
    assert plain[f"{name}.test_skipped"].status == fast[f"{name}.test_skipped"].status == "skip"
    assert {t: o.status for t, o in plain.items()} == {
        f"{name}.{t}": "skip" if t == "test_skipped" else "pass"
        for t in ("test_same", "test_documented", "test_undocumented", "test_in_subtests",
                  "test_skipped")}

    listed = tmp_path / "expected.toml"
    listed.write_text(f'[ring."{name}.test_documented"]\nreason = "a limitation"\n'
                      f'[any."{name}.test_in_*"]\nreason = "a pattern"\ncategory = '
                      '"environment"\nstatus = "fail"\n'
                      f'[stream."{name}.test_undocumented"]\nreason = "not this transport"\n')
    report = compare("tiny", "ring", plain, fast, expected.load(listed))
    assert [(d.test.rsplit(".", 1)[1], d.plain, d.fast, d.reason) for d in report.differences] == [
        ("test_documented", "pass", "fail", "a limitation"),
        ("test_in_subtests", "pass", "fail", "a pattern"),
        ("test_undocumented", "pass", "error", None)]
    assert [d.test for d in report.undocumented] == [f"{name}.test_undocumented"]
    assert report.plain["pass"] == 4 and report.fast["pass"] == 1 and report.fast["error"] == 1


def test_expected_list_is_well_formed() -> None:
    entries = expected.load().entries
    assert all(e.reason.strip() and e.category in expected.CATEGORIES for e in entries)
    assert len({(e.transport, e.test, e.status) for e in entries}) == len(entries)


def _cli(*args: str, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.cpython_suites", "--out-dir", str(out), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=400)


@pytest.mark.stress
@pytest.mark.timeout(600)
def test_runner_on_a_subset_follows_the_expected_list(tmp_path: Path) -> None:
    """Two tests of test_socket over the ring: testDetach differs (documented: the ring
    refuses detach()), testRecv passes over the fast path."""
    subset = ["--suites", "test_socket", "--transports", "ring",
              "-m", "test.test_socket.BasicTCPTest.testDetach",
              "-m", "test.test_socket.BasicTCPTest.testRecv"]
    report = tmp_path / "report.json"
    done = _cli(*subset, "--json", str(report), out=tmp_path / "runs")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "used fast path" in done.stdout
    (row,) = json.loads(report.read_text())["reports"]
    assert (row["suite"], row["transport"], row["documented"], row["undocumented"]) == (
        "test_socket", "ring", 1, 0)
    assert row["plain"] == {"pass": 2} and row["fast"] == {"pass": 1, "error": 1}
    assert row["used_fast_path"] == 2

    empty = tmp_path / "empty.toml"
    empty.write_text("", encoding="utf-8")
    again = _cli(*subset, "--reuse", "--expected", str(empty), out=tmp_path / "runs")
    assert again.returncode == 1, again.stdout + again.stderr
    assert "BasicTCPTest.testDetach: plain pass -> error" in again.stdout
