"""``loopfast run``: an unchanged Python program under ``loopfast.patch()``."""

from __future__ import annotations

import atexit
import os
import runpy
import sys

from .._core.patch import connection_counts, patch


def run_program(argv: list[str], module: list[str] | None, transport: str = "ring",
                report: bool = False) -> int:
    """Run a Python program (``script args`` or ``-m module args``) under ``patch(transport)``.

    The transport is the ring unless asked otherwise ("stream"); blocking TLS
    works on both.

    Returns 0 when the program returns; its ``SystemExit`` passes through
    unchanged, so the exit status is the program's.

    Raises:
        SystemExit: the program's own, or 2 when no program is named.
    """
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if module is None and argv[:1] == ["-m"]:
        module = argv[1:]
    if not (module or argv):
        print("loopfast run: name a script (loopfast run [--] script.py args...) or a module "
              "(loopfast run -m module args...)", file=sys.stderr)
        raise SystemExit(2)
    if report:
        atexit.register(_report)
    patch(transport)
    if module:
        sys.argv = list(module)
        sys.path.insert(0, os.getcwd())
        runpy.run_module(module[0], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(argv)
        sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
        runpy.run_path(argv[0], run_name="__main__")
    return 0


def _report() -> None:
    counts = connection_counts()
    fast = counts["ring"] + counts["stream"]
    print(f"loopfast run: {fast} connection(s) made over the fast path (ring {counts['ring']}, "
          f"stream {counts['stream']}), {counts['tcp']} over TCP", file=sys.stderr)
