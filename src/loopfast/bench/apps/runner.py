"""Running the pairs: a server per variant, clients alternating plain, auto, ring, stream.

For each pair the runner starts its server once per variant on its own port (plain,
and under ``loopfast run`` with each transport: "auto", the default, then "ring"
and "stream"), waits until all listen, then runs the client ``repeats`` times in
each variant, alternating (plain, auto, ring, stream, plain, ...), so a drift of
the machine touches every variant alike. The figure of a
variant is the median of its runs' requests/s. A pair whose package is missing is
skipped with the reason; a pair whose program fails is recorded with the error
and the run goes on.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..machine import Machine, describe_machine
from ..results import NoProgress, ProgressSink
from .launch import VARIANTS, AppError, ClientRun, free_port, run_client, serving
from .pairs import PAIRS, Pair

__all__ = ["AppsConfig", "AppsResult", "PairResult", "run_apps", "run_pair"]


@dataclass(frozen=True)
class AppsConfig:
    """What to run: which pairs, how long each client measures, how many times.

    Attributes:
        pairs: keys of :data:`.pairs.PAIRS`, in order.
        repeats: client runs per variant (the median is reported).
        seconds: how long each client run measures, after its warm-up.
        warmup: requests each client run makes first, not counted.
        timeout: longest wait for a server to listen, or beyond ``seconds`` for a client.
    """

    pairs: tuple[str, ...] = tuple(PAIRS)
    repeats: int = 3
    seconds: float = 1.0
    warmup: int = 50
    timeout: float = 30.0


@dataclass
class PairResult:
    """One pair's runs: requests/s per variant, and where the connections went."""

    pair: Pair
    runs: dict[str, list[ClientRun]] = field(default_factory=lambda: {v: [] for v in VARIANTS})
    error: str | None = None
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        """True unless the pair failed or did not take the path it should have."""
        if self.skipped is not None:
            return True
        return self.error is None and all(self.path_as_expected(v) for v in VARIANTS[1:])

    def median(self, variant: str) -> float | None:
        """The median requests/s of the variant's runs (None without runs)."""
        rates = [run.requests_per_s for run in self.runs[variant]]
        return statistics.median(rates) if rates else None

    def ratio(self, variant: str) -> float | None:
        """The variant's median over the plain one's."""
        mine, plain = self.median(variant), self.median("plain")
        return mine / plain if mine is not None and plain else None

    def connections(self, variant: str) -> tuple[int, int]:
        """(fast path, TCP) connections the variant's clients made, over all runs."""
        runs = self.runs[variant]
        return sum(r.fast or 0 for r in runs), sum(r.tcp or 0 for r in runs)

    def stream_share(self, variant: str) -> float | None:
        """The share of the variant's fast-path connections that took the stream."""
        fast = self.connections(variant)[0]
        return sum(r.stream or 0 for r in self.runs[variant]) / fast if fast else None

    def path(self, variant: str) -> str:
        """"fast path", "TCP", "mixed", or "" without runs: where the connections went."""
        fast, tcp = self.connections(variant)
        if not fast and not tcp:
            return ""
        return "fast path" if not tcp else "TCP" if not fast else "mixed"

    def path_as_expected(self, variant: str) -> bool:
        """False when a pair that should take the fast path sent a connection over TCP."""
        return not self.pair.fast_path or self.path(variant) in ("fast path", "")


@dataclass
class AppsResult:
    """A whole run of ``loopfast bench apps``."""

    config: AppsConfig
    machine: Machine
    pairs: list[PairResult]
    started: str
    seconds: float

    @property
    def ok(self) -> bool:
        """True when every pair ran (or was skipped) and took the path it should."""
        return all(p.ok for p in self.pairs)


def run_pair(pair: Pair, config: AppsConfig, progress: ProgressSink | None = None) -> PairResult:
    """Run one pair in every variant; failures are recorded in ``result.error``."""
    progress = progress or NoProgress()
    result = PairResult(pair)
    if (reason := pair.missing()) is not None:
        result.skipped = reason
        return result
    progress.row_started(pair.key, pair.label, config.repeats * len(VARIANTS))
    ports = {variant: free_port() for variant in VARIANTS}
    try:
        with contextlib.ExitStack() as stack:
            servers = {variant: stack.enter_context(
                serving(variant, pair.server(ports[variant]), ports[variant]))
                for variant in VARIANTS}
            for server in servers.values():
                server.wait_ready(config.timeout)
            for repeat in range(config.repeats):
                for i, variant in enumerate(VARIANTS):
                    args = pair.client_args(ports[variant], config.seconds, config.warmup)
                    result.runs[variant].append(
                        run_client(variant, args, config.seconds + config.timeout))
                    servers[variant].check()
                    progress.row_advanced(pair.key, repeat * len(VARIANTS) + i + 1)
    except (AppError, OSError, ValueError, KeyError) as exc:
        result.error = str(exc)
    finally:
        progress.row_finished(pair.key, result.ok)
    return result


def run_apps(config: AppsConfig, progress: ProgressSink | None = None) -> AppsResult:
    """Run every pair of ``config`` in turn and return it all.

    Raises:
        KeyboardInterrupt: passed on, with every server stopped.
    """
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.monotonic()
    pairs = [run_pair(PAIRS[key], config, progress) for key in config.pairs]
    return AppsResult(config, describe_machine(), pairs, started, time.monotonic() - t0)
