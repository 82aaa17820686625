"""The parent's handle on one child process of the echo (see :mod:`loopfast.bench.child`).

Why subprocess and not multiprocessing: each side must be a fresh, single-threaded
interpreter, as the Windows team's two processes were. ``fork`` would copy the
parent's threads' state (rich's refresh thread) and its imported modules into the
child; ``spawn`` re-imports the caller's ``__main__`` (under pytest, pytest's). A
plain ``python -m loopfast.bench.child`` imports only loopfast, talks JSON lines over
its stdout, and dies with the parent through PR_SET_PDEATHSIG, which it sets on itself
(not in a ``preexec_fn``, which is unsafe while the parent has threads). The kernel
sends that signal when the parent *thread* that started the child exits, so start
runs from a thread that outlives them (the CLI uses the main thread).

Every read here has a deadline, and :meth:`Child.close` kills whatever is still
running, so no wait is unbounded and no child outlives its row.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from types import TracebackType
from typing import Any

from .errors import BenchError

__all__ = ["Child", "ChildError"]


class ChildError(BenchError):
    """Raised when a child reports an error, exits early, or misses a deadline."""


class Child:
    """One running side of the echo; use it as a context manager so it is always reaped.

    Args:
        role: "echo" or "send", used in messages.
        spec: the JSON spec the child runs (see :mod:`loopfast.bench.child`).

    Raises:
        OSError: if the interpreter cannot be started.
    """

    def __init__(self, role: str, spec: dict[str, Any]) -> None:
        self.role = role
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        cmd = [sys.executable, "-m", "loopfast.bench.child", json.dumps(spec)]
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=self._stderr)
        except BaseException:
            self._stderr.close()
            raise
        stdout = self._proc.stdout
        if stdout is None:  # never with stdout=PIPE; keeps the type checker informed
            self._proc.kill()
            self._proc.wait(5.0)
            self._stderr.close()
            raise ChildError(f"{role}: no pipe from the child")
        self._fd = stdout.fileno()
        os.set_blocking(self._fd, False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._fd, selectors.EVENT_READ)
        self._buffer = bytearray()
        self._eof = False
        self.failed = False

    def __enter__(self) -> Child:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def next_event(self, timeout: float) -> dict[str, Any]:
        """Return the child's next event, waiting at most ``timeout`` seconds.

        Raises:
            ChildError: on an "error" event, on exit without an event, or on timeout.
        """
        try:
            line = self._read_line(time.monotonic() + timeout, timeout)
            event: dict[str, Any] = json.loads(line)
            if event.get("event") == "error":
                raise ChildError(f"{self.role}: {event.get('message')}")
        except (ChildError, ValueError) as exc:
            self.failed = True
            if isinstance(exc, ChildError):
                raise
            raise ChildError(f"{self.role}: unreadable event: {exc}") from exc
        return event

    def expect(self, name: str, timeout: float) -> dict[str, Any]:
        """Return the next event, which must be called ``name``.

        Raises:
            ChildError: as :meth:`next_event`, or if a different event arrives.
        """
        event = self.next_event(timeout)
        if event.get("event") != name:
            raise ChildError(f"{self.role}: expected event {name!r}, got {event!r}")
        return event

    def pending_error(self, timeout: float) -> str | None:
        """Return the child's error message if it reports one within ``timeout``, else None."""
        if self.failed:
            return None
        deadline = time.monotonic() + timeout
        try:
            while (left := deadline - time.monotonic()) > 0:
                self.next_event(left)
        except ChildError as exc:
            return str(exc)
        return None

    def close(self, timeout: float = 5.0) -> None:
        """Stop the child (SIGKILL if it is still running), reap it and free its pipes."""
        if self._proc.poll() is None:
            self._proc.kill()
        try:
            self._proc.wait(timeout)
        finally:
            self._selector.close()
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._stderr.close()

    def _read_line(self, deadline: float, timeout: float) -> bytes:
        while (end := self._buffer.find(b"\n")) < 0:
            if self._eof:
                raise ChildError(f"{self.role}: exited ({self._exit_status()}) without "
                                 f"reporting a result{self._stderr_tail()}")
            left = deadline - time.monotonic()
            if left <= 0 or not self._selector.select(left):
                raise ChildError(f"{self.role}: no word from the child in {timeout:g} s "
                                 "(increase --timeout if the machine is slow)")
            chunk = os.read(self._fd, 1 << 20)
            if chunk:
                self._buffer += chunk
            else:
                self._eof = True
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return line

    def _exit_status(self) -> str:
        try:
            code = self._proc.wait(1.0)
        except subprocess.TimeoutExpired:
            return "status unknown"
        return f"signal {-code}" if code < 0 else f"status {code}"

    def _stderr_tail(self, limit: int = 2000) -> str:
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", "replace").strip()
        return f"; its stderr ends with:\n{text[-limit:]}" if text else ""
