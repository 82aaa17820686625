"""``python -m tools.cpython_suites``: CPython's socket suites plain and under ``loopfast run``.

Exit status: 0 when every difference from the plain run is in the expected list,
1 when some is not, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

from . import expected as expected_list
from .compare import SuiteReport, compare
from .report import print_report, write_json
from .runner import MODES, SUITES, Settings, SuiteRun, load_run, run_suite

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[2]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tools.cpython_suites",
        description="Run CPython's own socket test suites plain and under 'loopfast run' "
        "(ring, stream); compare each test's outcome with the plain run and with the list of "
        "expected differences.")
    p.add_argument("--suites", default=",".join(SUITES),
                   help="comma-separated regrtest names (default: %(default)s)")
    p.add_argument("--transports", default="ring,stream",
                   help="comma-separated, of ring and stream (default: %(default)s)")
    p.add_argument("-m", "--match", action="append", default=[], metavar="PATTERN",
                   help="only tests matching PATTERN (regrtest -m; repeatable)")
    p.add_argument("--expected", type=Path, default=expected_list.DEFAULT_PATH,
                   help="the expected differences (default: %(default)s)")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the report as JSON")
    p.add_argument("--out-dir", type=Path, default=ROOT / "build" / "cpython-suites",
                   help="logs, JUnit files and per-run outcomes (default: %(default)s)")
    p.add_argument("--reuse", action="store_true",
                   help="take runs already saved in --out-dir instead of running them again")
    p.add_argument("--test-timeout", type=float, default=60.0,
                   help="seconds one test may take before it counts as a hang (default: 60)")
    p.add_argument("--file-timeout", type=float, default=1800.0,
                   help="regrtest --timeout, for one test file (default: 1800)")
    p.add_argument("--run-timeout", type=float, default=2400.0,
                   help="seconds one child process may take in all (default: 2400)")
    return p


def _names(text: str, allowed: tuple[str, ...] | None, what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if allowed is not None and n not in allowed]
    if bad or not names:
        raise SystemExit(f"cpython_suites: {what} must be from {', '.join(allowed or ())}")
    return names


def main(argv: list[str] | None = None) -> int:
    """Run (or reuse), compare, print the table; 1 on an undocumented difference."""
    args = _parser().parse_args(argv)
    suites = _names(args.suites, None, "suites")
    transports = _names(args.transports, MODES[1:], "transports")
    try:
        expected = expected_list.load(args.expected)
    except ValueError as exc:
        print(f"cpython_suites: {exc}", file=sys.stderr)
        return 2
    settings = Settings(args.out_dir.resolve(), args.test_timeout, args.file_timeout,
                        args.run_timeout, tuple(args.match))
    reports: list[SuiteReport] = []
    runs: list[SuiteRun] = []
    for suite in suites:
        plain = _obtain(suite, "plain", settings, args.reuse)
        runs.append(plain)
        for transport in transports:
            fast = _obtain(suite, transport, settings, args.reuse)
            runs.append(fast)
            report = compare(suite, transport, plain.outcomes, fast.outcomes, expected)
            report.notes = _notes(plain) + _notes(fast)
            reports.append(report)
    print_report(reports)
    if args.json is not None:
        write_json(args.json, reports, {
            "command": ["python", "-m", "tools.cpython_suites", *(argv or sys.argv[1:])],
            "python": sys.version, "machine": platform.platform(),
            "runs": [r.as_json() for r in runs]})
    return 1 if any(r.undocumented for r in reports) else 0


def _obtain(suite: str, mode: str, settings: Settings, reuse: bool) -> SuiteRun:
    if reuse:
        saved = load_run(suite, mode, settings.out_dir)
        if saved is not None:
            return saved
    print(f"cpython_suites: {suite} {mode} ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    run = run_suite(suite, mode, settings)
    counts: dict[str, int] = {}
    for outcome in run.outcomes.values():
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    print(f"cpython_suites: {suite} {mode}: {time.monotonic() - started:.0f} s, "
          f"{len(run.passes)} pass(es), {counts}", file=sys.stderr, flush=True)
    return run


def _notes(run: SuiteRun) -> list[str]:
    notes = [f"{run.mode} pass {p['pass']} ended in {p['died_in']} (exit {p['exit']})"
             for p in run.passes if "died_in" in p]
    if not run.outcomes:
        verdicts = ", ".join(str(p.get("result")) for p in run.passes)
        notes.append(f"{run.mode}: no test ran (regrtest: {verdicts})")
    return notes
