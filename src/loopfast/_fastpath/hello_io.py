"""Taking hellos off a rendezvous listener: the C core's calls, or the same in Python.

A listener accepts one client per call of ``take_hello`` and, in the usual case,
takes its whole hello with the fds it carried in that same call. The C core
does it in one call from Python (accept4, SO_PEERCRED, recvmsg): its
Python version cost a tenth of a connection's set-up. Without the C core the
functions below do the same with the socket module.
"""

from __future__ import annotations

import _socket as _csocket
import errno
import socket as _stdsocket
from typing import Any

from .._core import ringcore
from .._core.stdlib import is_tcp, peer_credentials, recv_fds

# (fd, pid, uid, gid, data, fds, truncated): see take_hello
Taken = tuple[int, int, int, int, bytes | None, list[int], bool]


def take_hello(listen_fd: int, base: int, ext: int, max_fds: int) -> Taken | None:
    """Accept one connection from the non-blocking AF_UNIX listener *listen_fd*.

    None when nothing waits. Else ``(fd, pid, uid, gid, data, fds, truncated)``:
    *fd* the accepted stream (blocking, close-on-exec) and the client's
    credentials (SO_PEERCRED); *data* its first message, at most *base* +
    *ext* bytes, consumed with the fds it carried (*truncated*: the kernel cut
    some off): a loopfast client's whole hello (it sends it as one message
    with fds, and a read stops behind such a message), anything else for the
    caller to refuse; ``b""`` when the stream ended first or its credentials
    cannot be read; None when nothing is queued yet (nothing consumed). The
    caller owns *fd* and *fds*.

    Raises:
        OSError: as accept4 (EMFILE, ...); then the caller owns nothing.
    """
    core = ringcore.ring
    if core is not None:
        taken: Taken | None = core.take_hello(listen_fd, base, ext, max_fds)
        return taken
    listener = _csocket.socket(_csocket.AF_UNIX, _csocket.SOCK_STREAM, 0, listen_fd)
    try:
        fd, _ = listener._accept()  # type: ignore[attr-defined]
    except (BlockingIOError, InterruptedError, ConnectionAbortedError):
        return None
    finally:
        listener.detach()
    conn = _csocket.socket(_csocket.AF_UNIX, _csocket.SOCK_STREAM, 0, fd)
    data: bytes | None = None
    fds: list[int] = []
    truncated = False
    try:
        pid, uid, gid = peer_credentials(conn)
    except OSError:
        return conn.detach(), 0, 0, 0, b"", fds, truncated
    try:  # one read, as the C core's: see take_hello
        data, fds = recv_fds(conn, base + ext, max_fds, _stdsocket.MSG_DONTWAIT)
    except BlockingIOError:
        data = None
    except OSError:
        data = b""  # the caller closes the stream, as after a refusal
    return conn.detach(), pid, uid, gid, data, fds, truncated


def recv_hello(conn: _csocket.socket, size: int, max_fds: int) -> tuple[bytes, list[int], bool]:
    """Take *size* queued bytes of *conn* and the fds that came with them: ``(data, fds,
    False)``, in take_hello's shape.

    Raises:
        OSError: EMFILE at this process's fd limit, ECONNREFUSED for more than
            *max_fds* fds (every fd that came is closed then); as recvmsg.
    """
    data, fds = recv_fds(conn, size, max_fds)
    return data, fds, False


def tcp_name(fd: int) -> tuple[int, str, int] | None:
    """``(family, host, port)`` the TCP socket *fd* is bound to; None for anything else.

    Raises:
        OSError: EBADF for a closed fd.
    """
    core = ringcore.ring
    if core is not None:
        name: tuple[int, str, int] | None = core.tcp_name(fd)
        return name
    try:
        probe = _csocket.socket(fileno=fd)
    except OSError as exc:
        if exc.errno == errno.ENOTSOCK:
            return None
        raise
    try:
        if not is_tcp(probe):
            return None
        bound: Any = probe.getsockname()
        return int(probe.family), bound[0].split("%", 1)[0], int(bound[1])
    finally:
        probe.detach()

