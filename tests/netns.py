"""Helper processes for tests that need a second host or a second user.

``Child`` forks the test process. The child may first enter a network namespace
of its own (``netns=True``: a host of its own, with only a ``lo`` that is down)
and/or drop to another uid (``uid=65534``: nobody), then runs the functions the
parent sends it, one at a time, each with a ``state`` dict that lives as long as
the child (sockets kept in ``state["sockets"]`` are closed when it exits)::

    with Child(netns=True) as host:
        host.call(ip_commands, ["link set lo up"])

Functions travel by reference (pickle), so they must be module-level functions
of an imported module; their arguments and results must pickle. The child is a
fork, so everything the test process imported is there already: a child running
as nobody cannot import a module it cannot read (the interpreter's stdlib lives
under /root here), so import what the child needs before forking.

Safety: the child dies with the test process (PR_SET_PDEATHSIG, set after the
uid change, which clears it), every wait of the parent has a timeout, and
``ip()`` refuses to run outside a namespace a ``Child`` made.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import time
import traceback
from collections.abc import Callable
from typing import Any

import pytest

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
NOBODY = 65534

_HEADER = struct.Struct("!I")
_TEST_NETNS = os.stat("/proc/self/ns/net").st_ino  # the test process's own namespace


class ChildUnavailable(Exception):
    """The child could not enter its namespace or take its uid; the text says why."""


class ChildError(Exception):
    """A function run in the child raised; the message is the child's traceback."""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _send(fd: int, obj: object) -> None:
    body = pickle.dumps(obj)
    _write_all(fd, _HEADER.pack(len(body)) + body)


def _read_exact(fd: int, size: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    left = size
    while left:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError(f"no answer from the child within the deadline ({size} bytes)")
        chunk = os.read(fd, left)
        if not chunk:
            raise EOFError("the child closed its pipe")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _recv(fd: int, deadline: float | None) -> Any:
    (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size, deadline))
    return pickle.loads(_read_exact(fd, size, deadline))


def _close_all_fds_except(keep: set[int]) -> None:
    low = 3
    for fd in sorted(keep):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, 1 << 20)


class Child:
    """A forked helper process (see the module docstring).

    Args:
        netns: enter a new network namespace (unshare CLONE_NEWNET) first.
        uid: run as this uid (and gid of the same number), no supplementary groups.
        timeout: how long to wait for the child to come up.

    Raises:
        ChildUnavailable: the namespace or the uid could not be had.
    """

    def __init__(self, *, netns: bool = False, uid: int | None = None,
                 timeout: float = 10.0) -> None:
        cmd_r, cmd_w = os.pipe()
        reply_r, reply_w = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            _child_main(cmd_r, reply_w, netns, uid, parent)
        os.close(cmd_r)
        os.close(reply_w)
        self.pid = pid
        self._cmd, self._reply = cmd_w, reply_r
        self._closed = False
        try:
            kind, detail = _recv(self._reply, time.monotonic() + timeout)
        except BaseException:
            self.close()
            raise
        if kind != "ready":
            self.close()
            raise ChildUnavailable(detail)

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 10.0) -> Any:
        """Run ``fn(state, *args)`` in the child and return its result.

        Raises:
            ChildError: *fn* raised in the child (the message carries its traceback).
            TimeoutError: no answer within *timeout* (the child is killed).
        """
        _send(self._cmd, (fn, args))
        try:
            kind, value = _recv(self._reply, time.monotonic() + timeout)
        except (TimeoutError, EOFError):
            self.close()
            raise
        if kind == "error":
            raise ChildError(f"{fn.__name__} failed in child {self.pid}:\n{value}")
        return value

    def close(self, timeout: float = 5.0) -> int | None:
        """Ask the child to exit, kill it if it does not, reap it; its wait status or None."""
        if self._closed:
            return None
        self._closed = True
        with contextlib.suppress(OSError):
            _send(self._cmd, None)
        os.close(self._cmd)
        os.close(self._reply)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return status
            time.sleep(0.01)
        os.kill(self.pid, signal.SIGKILL)
        return os.waitpid(self.pid, 0)[1]

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def child_or_skip(uid: int | None = None, *, netns: bool = False) -> Child:
    """A ``Child`` as *uid* (None: as the test process); the test is skipped where the
    runner cannot give one, or when the test process already runs as *uid*."""
    if uid is not None and uid == os.getuid():
        pytest.skip(f"the test process already runs as uid {uid}")
    try:
        return Child(uid=uid, netns=netns)
    except ChildUnavailable as exc:
        pytest.skip(str(exc))


def squat(state: dict[str, Any], name: bytes) -> int:
    """In a child: take the abstract AF_UNIX *name* and listen on it; the child's uid.

    The listener is ``state["squatter"]``.
    """
    squatter = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    state.setdefault("sockets", []).append(squatter)
    squatter.bind(name)
    squatter.listen(16)
    state["squatter"] = squatter
    return os.getuid()


def _child_main(cmd: int, reply: int, netns: bool, uid: int | None,
                parent: int) -> None:  # pragma: no cover - runs in the child
    code = 0
    try:
        # The fork copied the test process's objects; none of them may be finalised here,
        # since their fds are closed below and the numbers get reused.
        gc.disable()
        _close_all_fds_except({cmd, reply})
        libc = ctypes.CDLL(None, use_errno=True)
        if netns:
            if libc.unshare(CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                _send(reply, ("unavailable", f"unshare(CLONE_NEWNET) failed: "
                                             f"[Errno {err}] {os.strerror(err)}"))
                return
            if os.stat("/proc/self/ns/net").st_ino == _TEST_NETNS:
                _send(reply, ("unavailable", "unshare(CLONE_NEWNET) left the namespace as it was"))
                return
        if uid is not None:
            try:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            except OSError as exc:
                _send(reply, ("unavailable", f"cannot become uid {uid}: {exc}"))
                return
        # After the uid change: changing credentials clears the parent-death signal.
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0 or os.getppid() != parent:
            return
        _send(reply, ("ready", os.getpid()))
        state: dict[str, Any] = {}
        while True:
            try:
                message = _recv(cmd, None)
            except EOFError:
                break
            if message is None:
                break
            fn, args = message
            try:
                answer: tuple[str, Any] = ("ok", fn(state, *args))
            except BaseException:
                answer = ("error", traceback.format_exc())
            _send(reply, answer)
        for sock in state.get("sockets", []):
            sock.close()
    except BaseException:
        code = 1
        traceback.print_exc()
    finally:
        os._exit(code)


def ip(*args: str) -> str:
    """Run ``ip ARGS`` in the calling process's namespace, which must be a private one.

    Raises:
        RuntimeError: called in the test process's own namespace, or ip failed.
    """
    if os.stat("/proc/self/ns/net").st_ino == _TEST_NETNS:
        raise RuntimeError("refusing to run ip in the test process's own network namespace")
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def wait_lower_up(device: str, timeout: float = 5.0) -> None:
    """Wait until *device* (in the calling process's namespace) has a carrier.

    Raises:
        TimeoutError: no carrier within *timeout*.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "LOWER_UP" in ip("-o", "link", "show", "dev", device):
            return
        time.sleep(0.02)
    raise TimeoutError(f"{device} has no carrier after {timeout} s")
