"""Child processes for tests: forked, tied to the parent's life, always reaped."""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import signal
import subprocess
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

_PR_SET_PDEATHSIG = 1
_FORK = multiprocessing.get_context("fork")


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _enter(target: Callable[..., None], pipe: Connection, args: tuple[Any, ...]) -> None:
    _die_with_parent()
    target(pipe, *args)


@contextlib.contextmanager
def child(target: Callable[..., None], *args: Any) -> Iterator[tuple[Any, Connection]]:
    """Run ``target(pipe, *args)`` in a forked child; yield (process, our end of the pipe).

    The child is killed (SIGKILL) and reaped when the block ends, whatever happened.
    """
    ours, theirs = _FORK.Pipe()
    proc = _FORK.Process(target=_enter, args=(target, theirs, args), daemon=True)
    proc.start()
    theirs.close()
    try:
        yield proc, ours
    finally:
        ours.close()
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5)


def receive(pipe: Connection, timeout: float = 10.0) -> Any:
    """The next message from *pipe*, or AssertionError after *timeout* seconds."""
    if not pipe.poll(timeout):
        raise AssertionError(f"child sent nothing within {timeout} s")
    return pipe.recv()


def stop(proc: subprocess.Popen[str], timeout: float = 15.0) -> None:
    """Terminate *proc* (kill it if it does not exit within *timeout*) and reap it."""
    proc.terminate()
    try:
        proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=timeout)
