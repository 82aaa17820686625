"""One program of a pair as a process: plain, or under ``loopfast run`` with a transport.

A server is ready when its port is listening in ``/proc/net/tcp`` (looking there
makes no connection, so no probe shows up in the counts). A client's last stdout
line is its JSON result; under ``loopfast run --report`` its stderr ends with the
count of connections made over the fast path and over TCP, which is how a run
knows which way its connections went.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["VARIANTS", "AppError", "ClientRun", "Server", "command", "free_port", "run_client"]

VARIANTS = ("plain", "auto", "ring", "stream")  # auto: loopfast run's default transport
_REPORT = re.compile(r"loopfast run: (\d+) connection\(s\) made over the fast path "
                     r"\(ring (\d+), stream (\d+)\), (\d+) over TCP")


class AppError(Exception):
    """Raised when a program of a pair fails: it exits, falls silent or answers wrongly."""


def command(variant: str, args: list[str]) -> list[str]:
    """``python ARGS`` for "plain", else ``python -m loopfast run --transport V --report ARGS``."""
    if variant == "plain":
        return [sys.executable, *args]
    if args[:1] == ["-m"]:
        return [sys.executable, "-m", "loopfast", "run", "--transport", variant, "--report",
                *args]
    return [sys.executable, "-m", "loopfast", "run", "--transport", variant, "--report", "--",
            *args]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing was bound to a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def listening(port: int, table: Path = Path("/proc/net/tcp")) -> bool:
    """True when some socket listens on TCP ``port`` (IPv4), as ``table`` lists them."""
    try:
        lines = table.read_text().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A" and int(fields[1].rpartition(":")[2], 16) == port:
            return True
    return False


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


class Server:
    """A server program in its own process group, stopped with SIGINT (then SIGKILL)."""

    def __init__(self, variant: str, args: list[str], port: int) -> None:
        self.variant, self.port = variant, port
        fd, name = tempfile.mkstemp(prefix="loopfast-apps-", suffix=".log")
        self._log = Path(name)
        with open(fd, "wb") as log:
            self._proc = subprocess.Popen(command(variant, args), stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=log, start_new_session=True)

    def wait_ready(self, timeout: float) -> None:
        """Return once the port listens.

        Raises:
            AppError: the server exited, or did not listen within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while not listening(self.port):
            self.check()
            if time.monotonic() > deadline:
                raise AppError(f"{self.variant} server did not listen on port {self.port} "
                               f"within {timeout:g} s: {_tail(self._log)}")
            time.sleep(0.02)

    def check(self) -> None:
        """Raise :class:`AppError` if the server has exited."""
        if self._proc.poll() is not None:
            raise AppError(f"{self.variant} server exited with status {self._proc.returncode}: "
                           f"{_tail(self._log)}")

    def stop(self) -> None:
        """SIGINT to the group, SIGKILL after 5 s; always reaps the process."""
        for sig, wait in ((signal.SIGINT, 5.0), (signal.SIGKILL, 5.0)):
            if self._proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(wait)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGKILL)  # a forked worker left behind
        self._log.unlink(missing_ok=True)


@contextlib.contextmanager
def serving(variant: str, args: list[str], port: int) -> Iterator[Server]:
    """A started :class:`Server`, stopped on the way out."""
    server = Server(variant, args, port)
    try:
        yield server
    finally:
        server.stop()


@dataclass
class ClientRun:
    """One client run: requests/s, and where its connections went (None when plain)."""

    requests_per_s: float
    fast: int | None = None
    tcp: int | None = None
    stream: int | None = None


def run_client(variant: str, args: list[str], timeout: float) -> ClientRun:
    """Run a client to its end and return its figures.

    Raises:
        AppError: the client failed (a wrong answer included) or overran ``timeout``.
    """
    try:
        done = subprocess.run(command(variant, args), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AppError(f"{variant} client ran longer than {timeout:g} s") from exc
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise AppError(f"{variant} client exited with status {done.returncode}: {tail}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    run = ClientRun(result["requests"] / result["seconds"])
    if variant != "plain":
        if not (match := _REPORT.search(done.stderr)):
            raise AppError(f"{variant} client printed no loopfast run report")
        run.fast, run.stream, run.tcp = int(match[1]), int(match[3]), int(match[4])
    return run
