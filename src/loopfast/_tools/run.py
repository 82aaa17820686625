"""``loopfast run``: an unchanged Python program under ``loopfast.patch()``."""

from __future__ import annotations

import atexit
import os
import runpy
import sys
import types

from .._core.patch import connection_counts, patch


def run_program(argv: list[str], module: list[str] | None, transport: str = "auto",
                report: bool = False, command: list[str] | None = None) -> int:
    """Run a Python program under ``patch(transport)``: ``script args``, ``-m module args``
    or ``-c code args`` (*command*: the code, then its arguments), as ``python`` runs them.

    The transport is "auto" unless asked otherwise ("ring", "stream"): the ring,
    or the stream for a destination whose recent connections were short
    (``_fastpath/transport_choice.py``); blocking TLS works on both.

    Returns 0 when the program returns; its ``SystemExit`` passes through
    unchanged, so the exit status is the program's.

    Raises:
        SystemExit: the program's own, or 2 when no program is named.
    """
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if module is None and argv[:1] == ["-m"]:
        module = argv[1:]
    if command is None and argv[:1] == ["-c"]:
        command = argv[1:]
    if command == [] or not (command or module or argv):
        print("loopfast run: name a script (loopfast run [--] script.py args...), a module "
              "(loopfast run -m module args...) or code (loopfast run -c code args...)",
              file=sys.stderr)
        raise SystemExit(2)
    if report:
        atexit.register(_report)
    patch(transport)
    if command:
        _run_code(command[0], command[1:])
    elif module:
        sys.argv = list(module)
        sys.path.insert(0, os.getcwd())
        runpy.run_module(module[0], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(argv)
        sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
        runpy.run_path(argv[0], run_name="__main__")
    return 0


def _run_code(code: str, args: list[str]) -> None:
    """Run *code* as ``python -c`` does: in a fresh ``__main__``, argv[0] "-c", cwd first."""
    sys.argv = ["-c", *args]
    sys.path.insert(0, "")
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = main
    exec(compile(code, "<string>", "exec"), main.__dict__)


def _report() -> None:
    counts = connection_counts()
    fast = counts["ring"] + counts["stream"]
    print(f"loopfast run: {fast} connection(s) made over the fast path (ring {counts['ring']}, "
          f"stream {counts['stream']}), {counts['tcp']} over TCP", file=sys.stderr)
