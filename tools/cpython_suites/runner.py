"""Run one CPython test suite one way (plain, ring, stream) until every test has an outcome.

Each way is a child process: ``python _trace.py REGRTEST_ARGS SUITE`` for the plain
run, ``python -m loopfast run --transport T --report -- _trace.py REGRTEST_ARGS SUITE``
for the fast path. A test that hangs ends its process (``_trace.py``'s watchdog, or
regrtest's ``--timeout`` for a whole file, or the overall ``run_timeout``); the test
is recorded as ``hang`` and the suite runs again without the tests already done
(``--ignorefile``), as many times as it takes.

Children live in their own session, die with this process (``PR_SET_PDEATHSIG``)
and, when they end, everything left in their session (a test's forked server) is
killed too. Only one child runs at a time.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from ._trace import HANG_EXIT, LOG_ENV, TIMEOUT_ENV
from .outcomes import Outcome, merge, parse_junit, parse_log

__all__ = ["MODES", "RESOURCES", "SUITES", "Settings", "SuiteRun", "load_run", "run_suite"]

SUITES = ("test_socket", "test_ssl", "test_httplib", "test_urllib2_localnet",
          "test_socketserver", "test_asyncio.test_streams", "test_asyncio.test_sock_lowlevel")
MODES = ("plain", "ring", "stream")
# Everything but what downloads, or is merely slow or noisy. "network" stays: it gates all
# of test_socketserver (its tests that need the Internet skip themselves when offline).
RESOURCES = "all,-urlfetch,-largefile,-gui,-audio,-cpu"
TRACE = Path(__file__).with_name("_trace.py")
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Settings:
    """How the suites are run."""

    out_dir: Path
    test_timeout: float = 60.0  # one test (the watchdog)
    file_timeout: float = 1800.0  # regrtest --timeout: one test file, in one process
    run_timeout: float = 2400.0  # one child process, whatever it does
    match: tuple[str, ...] = ()  # regrtest -m patterns (a subset of the tests)
    max_passes: int = 30
    python: str = sys.executable


@dataclass
class SuiteRun:
    """The outcome of every test of one suite run one way, and what happened on the way."""

    suite: str
    mode: str
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    passes: list[dict[str, object]] = field(default_factory=list)
    seconds: float = 0.0

    def as_json(self) -> dict[str, object]:
        """Everything, for the run's directory and ``--json``."""
        return {"suite": self.suite, "mode": self.mode, "seconds": round(self.seconds, 1),
                "passes": self.passes,
                "outcomes": {k: {"status": v.status, "fast": v.fast, "detail": v.detail}
                             for k, v in sorted(self.outcomes.items())}}


def command(mode: str, settings: Settings, args: list[str]) -> list[str]:
    """The child's command line: regrtest through the trace script, plain or under loopfast."""
    if mode == "plain":
        return [settings.python, str(TRACE), *args]
    return [settings.python, "-m", "loopfast", "run", "--transport", mode, "--report", "--",
            str(TRACE), *args]


def run_suite(suite: str, mode: str, settings: Settings) -> SuiteRun:
    """Run *suite* the way *mode* says, passes after hangs included; save and return it."""
    where = settings.out_dir / mode / suite
    where.mkdir(parents=True, exist_ok=True)
    for old in where.iterdir():
        old.unlink()
    run = SuiteRun(suite, mode)
    started = time.monotonic()
    for number in range(settings.max_passes):
        if not _one_pass(run, where, number, settings):
            break
    run.seconds = time.monotonic() - started
    (where / "outcomes.json").write_text(json.dumps(run.as_json(), indent=1), encoding="utf-8")
    return run


def load_run(suite: str, mode: str, out_dir: Path) -> SuiteRun | None:
    """A run saved by ``run_suite`` in *out_dir*, or None."""
    path = out_dir / mode / suite / "outcomes.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    run = SuiteRun(suite, mode, passes=data["passes"], seconds=data["seconds"])
    run.outcomes = {k: Outcome(v["status"], v["fast"], v.get("detail"))
                    for k, v in data["outcomes"].items()}
    return run


def _one_pass(run: SuiteRun, where: Path, number: int, settings: Settings) -> bool:
    """One child process; True if it died inside a test and the rest must run again."""
    log, junit, out = (where / f"pass{number}{ext}" for ext in (".jsonl", ".xml", ".out"))
    args = ["-v", "-u", RESOURCES, "--timeout", f"{settings.file_timeout:g}",
            "--junit-xml", str(junit)]
    for pattern in settings.match:
        args += ["-m", pattern]
    done = sorted(t for t in run.outcomes if " " not in t)  # not "setUpClass (...)" lines
    if done:
        ignore = where / f"pass{number}.ignore"
        ignore.write_text("".join(t + "\n" for t in done), encoding="utf-8")
        args += ["--ignorefile", str(ignore)]
    env = dict(os.environ, **{LOG_ENV: str(log), TIMEOUT_ENV: f"{settings.test_timeout:g}"})
    status, overran = _spawn(command(run.mode, settings, [*args, run.suite]), env, out,
                             settings.run_timeout)
    traced = parse_log(log)
    run.outcomes.update(merge(_junit(junit), traced.outcomes))
    hung = traced.hung or overran or status == HANG_EXIT or _regrtest_timeout(out)
    record: dict[str, object] = {"pass": number, "exit": status, "tests": len(traced.outcomes),
                                 "result": _regrtest_result(out)}
    if traced.unfinished is not None:
        record["died_in"] = traced.unfinished
        run.outcomes[traced.unfinished] = Outcome("hang" if hung else "crash")
    elif hung:
        record["died_in"] = "(outside any test)"
    run.passes.append(record)
    return traced.unfinished is not None


def _junit(path: Path) -> dict[str, Outcome]:
    """regrtest's XML, or nothing when the child died before writing it whole."""
    try:
        return parse_junit(path)
    except (OSError, ET.ParseError):
        return {}


def _regrtest_result(out: Path) -> str:
    """regrtest's own verdict on the file ("SUCCESS", "FAILURE", "NO TESTS RAN", ...)."""
    with contextlib.suppress(OSError):
        for line in reversed(out.read_text(encoding="utf-8", errors="replace").splitlines()):
            if line.startswith("Result: "):
                return line.removeprefix("Result: ").strip()
    return "(none)"


def _regrtest_timeout(out: Path) -> bool:
    # faulthandler.dump_traceback_later(exit=True) prints this before it exits.
    with contextlib.suppress(OSError):
        return b"\nTimeout (" in out.read_bytes()[-200_000:]
    return False


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _spawn(cmd: list[str], env: dict[str, str], out: Path, timeout: float) -> tuple[int, bool]:
    """Run *cmd* with its output in *out*; (exit status, True if killed for overrunning)."""
    with out.open("wb") as sink:
        sink.write((" ".join(cmd) + "\n").encode())
        sink.flush()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=sink,
                                stderr=subprocess.STDOUT, env=env, cwd=out.parent,
                                start_new_session=True, preexec_fn=_die_with_parent)
        overran = False
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            overran = True
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the child, if alive, and its leftovers
            proc.wait()
    return proc.returncode, overran
