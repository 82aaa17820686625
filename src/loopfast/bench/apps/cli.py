"""``loopfast bench apps``: its options and its handler (the ``loopfast`` command wires them)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..results import keys_from
from .pairs import PAIRS
from .runner import AppsConfig

__all__ = ["QUICK", "add_arguments", "config_from", "run"]

QUICK = {"repeats": 1, "seconds": 0.3, "warmup": 20}


def _pairs(text: str) -> tuple[str, ...]:
    return keys_from(text, PAIRS, "pair")


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the options of ``loopfast bench apps`` to its parser."""
    p.add_argument("--pairs", type=_pairs, default=tuple(PAIRS), metavar="PAIR[,PAIR...]",
                   help=f"pairs to run, from {', '.join(PAIRS)} (default: all)")
    p.add_argument("--repeats", type=_positive(int), default=None, metavar="N",
                   help="client runs per variant, alternating plain, ring, stream; the median "
                   "is reported (default: 3; 1 with --quick)")
    p.add_argument("--seconds", type=_positive(float), default=None, metavar="S",
                   help="how long each client run measures (default: 1; 0.3 with --quick)")
    p.add_argument("--warmup", type=int, default=None, metavar="N",
                   help="requests each client run makes first, not counted (default: 50; 20 "
                   "with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="one run of 0.3 s per variant: about 30 s in all, for a first look")
    p.add_argument("--timeout", type=_positive(float), default=30.0, metavar="SECONDS",
                   help="longest wait for a server to listen or a client to finish beyond its "
                   "measuring time (default: %(default)s)")
    p.add_argument("--json", metavar="FILE",
                   help="also write every figure as JSON to FILE ('-' for stdout; the table "
                   "then goes to stderr)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (it is shown only when stderr is a terminal)")


def config_from(args: argparse.Namespace) -> AppsConfig:
    """The :class:`.runner.AppsConfig` the options ask for."""
    base = AppsConfig()
    quick = QUICK if args.quick else {}

    def pick(name: str) -> Any:
        given = getattr(args, name)
        return given if given is not None else quick.get(name, getattr(base, name))

    return AppsConfig(pairs=args.pairs, repeats=pick("repeats"), seconds=pick("seconds"),
                      warmup=pick("warmup"), timeout=args.timeout)


def run(args: argparse.Namespace) -> int:
    """Run ``loopfast bench apps``; 1 if a pair failed or missed the fast path it should take.

    rich (the ``bench`` extra) is imported here, so ``loopfast --help`` does not need it.
    """
    from rich.console import Console

    from ..progress import ProgressBar
    from ..report import write_json
    from .report import render_table, to_json
    from .runner import run_apps

    def console(stderr: bool) -> Console:
        c = Console(stderr=stderr)
        return c if c.is_terminal else Console(stderr=stderr, width=140)

    config = config_from(args)
    with ProgressBar(console(stderr=True), enabled=False if args.no_progress else None) as bar:
        result = run_apps(config, bar)
    render_table(result, console(stderr=args.json == "-"))
    status = 0 if result.ok else 1
    if args.json:
        try:
            write_json(to_json(result), args.json)
        except OSError as exc:
            print(f"loopfast bench apps: cannot write {args.json}: {exc}", file=sys.stderr)
            status = 1
    return status
