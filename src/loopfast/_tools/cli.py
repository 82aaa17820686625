"""The ``loopfast`` command: one argparse subcommand per task.

Each subcommand (``bench``, ``echo-server``, ``info``, ``run``, ``stat``) is
registered by a ``_add_<name>(subparsers)`` function listed in ``_COMMANDS``
and runs through its handler ``(args) -> exit status``. The benchmark's
runner, report and plot (rich, matplotlib) are imported by its handler only,
so ``loopfast --help`` and the other commands stay quick, and work without the
``bench`` extra; ``bench`` without it says how to install it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import socket
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from .. import create_server
from ..bench.apps.cli import add_arguments as add_apps_arguments
from ..bench.apps.cli import run as run_apps
from ..bench.pinning import PIN_MODES
from ..bench.results import MODE_NAMES, keys_from
from ..bench.rows import ROWS
from .echo_server import EchoServer
from .info import gather, render
from .run import run_program
from .stat import main as stat_main

__all__ = ["build_parser", "main"]

_Subparsers = Any  # argparse's _SubParsersAction is private; its type is not exported


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _rows(text: str) -> tuple[str, ...]:
    return keys_from(text, ROWS, "row")


def _modes(text: str) -> tuple[str, ...]:
    return keys_from(text, MODE_NAMES, "mode")


def _json_target(text: str) -> str:
    if text != "-" and not Path(text).resolve().parent.is_dir():
        raise argparse.ArgumentTypeError(f"directory of {text!r} does not exist")
    return text


def _add_bench(subparsers: _Subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="64-byte echo round-trip latency, row by row, and more modes",
        description="Repeat the Windows team's loopback latency experiment: two single-threaded "
        "processes, 64-byte messages carrying their send timestamp, each echoed back, Nagle "
        "off. Beside it: throughput, connection setup, many connections and idle connections. "
        "Exit status 1 if any row failed (an absent peer such as pyzmq is skipped, not failed).")
    p.add_argument("--mode", type=_modes, default=None, metavar="MODE[,MODE...]",
                   help="echo, throughput, setup, many, idle, or all (default: all)")
    p.add_argument("--rows", type=_rows, default=tuple(ROWS), metavar="ROW[,ROW...]",
                   help=f"rows to run, from {', '.join(ROWS)} (default: all); the baseline "
                   "(tcp) is always run first; each mode runs the chosen rows it has")
    p.add_argument("--count", type=_positive_int, default=50_000, metavar="N",
                   help="measured round trips per row (default: %(default)s)")
    p.add_argument("--warmup", type=_non_negative_int, default=5_000, metavar="N",
                   help="round trips run first and discarded (default: %(default)s)")
    p.add_argument("--pin", choices=PIN_MODES, default="split",
                   help="split: sender on the first allowed CPU, echoer on the second; same: "
                   "both on the first; none: no pinning (default: %(default)s)")
    p.add_argument("--timeout", type=_positive_float, default=30.0, metavar="SECONDS",
                   help="longest wait for any word from a child process (default: %(default)s)")
    p.add_argument("--size", type=_positive_int, default=65_536, metavar="BYTES",
                   help="throughput mode: message size (default: %(default)s)")
    p.add_argument("--duration", type=_positive_float, default=1.0, metavar="SECONDS",
                   help="throughput mode: how long each row sends (default: %(default)s)")
    p.add_argument("--setup-count", type=_positive_int, default=2_000, metavar="N",
                   help="setup mode: connections per row (default: %(default)s)")
    p.add_argument("--connections", type=_positive_int, default=100, metavar="N",
                   help="many mode: connections (default: %(default)s)")
    p.add_argument("--rounds", type=_positive_int, default=200, metavar="N",
                   help="many mode: measured rounds, one round trip per connection each "
                   "(default: %(default)s)")
    p.add_argument("--idle", type=_positive_int, default=10_000, metavar="N",
                   help="idle mode: connections one process holds (default: %(default)s)")
    p.add_argument("--plot", type=_json_target, metavar="FILE.png",
                   help="draw the echo rows' RTT distribution (CDF, log axis) into FILE.png "
                   "(needs matplotlib, from the bench extra)")
    p.add_argument("--json", type=_json_target, metavar="FILE",
                   help="also write every figure as JSON to FILE ('-' for stdout; the table "
                   "then goes to stderr)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (it is shown only when stderr is a terminal)")
    p.set_defaults(handler=_run_bench)
    suites = p.add_subparsers(dest="suite", metavar="apps")
    apps = suites.add_parser(
        "apps", help="real servers and clients from PyPI, plain and under loopfast run",
        description="Run server and client pairs (uvicorn + httpx, aiohttp, websockets, "
        "redis-py, http.server and gunicorn with requests, ...) unchanged, plain and under "
        "'loopfast run' with each transport, alternating; report requests/s, ratios and "
        "whether the connections took the fast path. Needs the apps extra "
        "(pip install 'loopfast[apps]'); a pair whose package is missing is skipped. "
        "Exit status 1 if a pair failed or missed the fast path it should take.")
    add_apps_arguments(apps)
    apps.set_defaults(handler=_run_bench_apps)


_BENCH_EXTRA = "pip install 'loopfast[bench]'"


def _bench_missing() -> str | None:
    """Return why ``loopfast bench`` cannot print here (rich is absent), or ``None``."""
    if importlib.util.find_spec("rich") is None:
        return f"the tables need rich, which is not installed: {_BENCH_EXTRA}"
    return None


def _console(stderr: bool) -> Any:
    from rich.console import Console

    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=120)


def _run_bench(args: argparse.Namespace) -> int:
    if reason := _bench_missing():
        print(f"loopfast bench: {reason}", file=sys.stderr)
        return 1
    from ..bench.plot import plot_available, write_plot
    from ..bench.progress import ProgressBar
    from ..bench.report import render_table, to_json, write_json
    from ..bench.results import MODE_NAMES, BenchConfig
    from ..bench.runner import run_bench

    if args.plot and (reason := plot_available()):
        print(f"loopfast bench: {reason}", file=sys.stderr)
        return 1
    config = BenchConfig(rows=args.rows, count=args.count, warmup=args.warmup, pin=args.pin,
                         timeout=args.timeout, modes=args.mode or MODE_NAMES, size=args.size,
                         duration=args.duration, setup_count=args.setup_count,
                         connections=args.connections, rounds=args.rounds, idle=args.idle)
    with ProgressBar(_console(stderr=True), enabled=False if args.no_progress else None) as bar:
        result = run_bench(config, bar)
    render_table(result, _console(stderr=args.json == "-"))
    status = 0 if result.ok else 1
    try:
        if args.json:
            write_json(to_json(result), args.json)
        if args.plot:
            write_plot(result, args.plot)
    except OSError as exc:
        print(f"loopfast bench: cannot write {exc.filename or 'the output'}: {exc}",
              file=sys.stderr)
        status = 1
    return status


def _run_bench_apps(args: argparse.Namespace) -> int:
    if reason := _bench_missing():
        print(f"loopfast bench apps: {reason}", file=sys.stderr)
        return 1
    return run_apps(args)


def _add_info(subparsers: _Subparsers) -> None:
    p = subparsers.add_parser(
        "info", help="system TCP settings, as 'netsh interface tcp show global' shows them",
        description="Show the Linux equivalents of Windows' global receive-window settings "
        "(autotuning, window scaling, receive buffer limits), the window scale real loopback "
        "connections get, and whether the fast path can work here.")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-measure", action="store_true",
                   help="skip the three short loopback connections that measure window scales")
    p.set_defaults(handler=_run_info)


def _run_info(args: argparse.Namespace) -> int:
    report = gather(measure=not args.no_measure)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(render(report), end="")
    return 0


def _add_echo_server(subparsers: _Subparsers) -> None:
    p = subparsers.add_parser(
        "echo-server", help="the seed's WSAPoll echo server (1 listener + N clients)",
        description="Echo every byte back, with one listening socket and up to N clients in "
        "one loopfast.poll array, as the seed's WSAPoll example. Further clients wait in "
        "the listen backlog until a slot frees. Runs until Ctrl-C.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: "
                   "%(default)s)")
    p.add_argument("--port", type=_non_negative_int, required=True, metavar="P",
                   help="TCP port (0: any free port, printed at start)")
    p.add_argument("--max-clients", type=_positive_int, default=15, metavar="N",
                   help="client slots (default: %(default)s, the seed's)")
    p.add_argument("--fast-path", action="store_true",
                   help="offer the loopback fast path to clients that opt in")
    p.set_defaults(handler=_run_echo_server)


def _run_echo_server(args: argparse.Namespace) -> int:
    try:
        family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
        listener = create_server((args.host, args.port), family=family,
                                 fast_path=args.fast_path)
    except OSError as exc:
        print(f"loopfast echo-server: cannot listen on {args.host}:{args.port}: {exc}",
              file=sys.stderr)
        return 1
    with listener:
        host, port = listener.getsockname()[:2]
        print(f"loopfast echo-server: listening on {host}:{port}, fast path "
              f"{'on' if args.fast_path else 'off'}, up to {args.max_clients} clients",
              flush=True)
        server = EchoServer(listener, args.max_clients,
                            log=lambda line: print(line, file=sys.stderr, flush=True))
        server.serve_forever()
    return 0


def _add_run(subparsers: _Subparsers) -> None:
    p = subparsers.add_parser(
        "run", help="run a Python program whose TCP sockets opt in to the fast path",
        description="Run an unchanged Python program with loopfast.patch() in effect: the TCP "
        "sockets it creates opt in to the loopback fast path, so two programs both run this "
        "way talk over it (each connection falls back to TCP otherwise). Usage: loopfast run "
        "[options] [--] script.py args..., loopfast run [options] -m module args... or "
        "loopfast run [options] -c code args...")
    p.add_argument("--transport", choices=("auto", "ring", "stream"), default="auto",
                   help="auto (default): the ring, or the stream to a destination whose "
                   "recent connections were short (a connection per request); ring: shared "
                   "memory, the fastest per message, blocking ssl included; stream: AF_UNIX, "
                   "for programs that take the fd itself (os.sendfile, socket.fromfd)")
    p.add_argument("--report", action="store_true",
                   help="at exit, print to stderr how many connections the program made over "
                   "the fast path and over TCP")
    p.add_argument("-m", dest="module", nargs=argparse.REMAINDER, metavar="MODULE ...",
                   help="run a library module as a script, as python -m does")
    p.add_argument("-c", dest="command", nargs=argparse.REMAINDER, metavar="CODE ...",
                   help="run code given as a string, as python -c does")
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="script.py args",
                   help="the script and its arguments")
    p.set_defaults(handler=_run_run)


def _run_run(args: argparse.Namespace) -> int:
    return run_program(args.argv, args.module, args.transport, args.report, args.command)


def _add_stat(subparsers: _Subparsers) -> None:
    p = subparsers.add_parser(
        "stat", help="fast-path listeners and connections, as ss shows TCP",
        description="List the fast-path listeners in this network namespace and, for the "
        "processes you may inspect, their fast-path connections: addresses, pids, bytes each "
        "way and ring fill.")
    p.add_argument("-l", "--listening", action="store_true", help="listeners only")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=_run_stat)


def _run_stat(args: argparse.Namespace) -> int:
    return stat_main(listening_only=args.listening, as_json=args.json)


_COMMANDS: list[Callable[[_Subparsers], None]] = [_add_bench, _add_echo_server, _add_info,
                                                  _add_run, _add_stat]


def _version() -> str:
    try:
        return metadata.version("loopfast")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """Return the ``loopfast`` argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="loopfast",
        description="Windows' TCP loopback fast path, WSAPoll and compatibility mode on Linux.")
    parser.add_argument("--version", action="version", version=f"loopfast {_version()}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``loopfast`` command line and return its exit status.

    Args:
        argv: the arguments after the program name; ``sys.argv[1:]`` when ``None``.

    Returns:
        0 on success, 1 if the command failed (say, a benchmark row), 130 on Ctrl-C.

    Raises:
        SystemExit: from argparse, status 2 with its message for bad arguments (0 for
            ``--help``/``--version``).
    """
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("loopfast: interrupted", file=sys.stderr)
        return 130
