"""sock.poll(microseconds, mode): .NET's ``Socket.Poll`` for one socket (SPEC P9).

The modes and their answers are .NET's, which follow Windows ``select``:

- SELECT_READ: a connection waits (listening socket), data can be read, or the
  connection was closed, reset or ended (recv would not block).
- SELECT_WRITE: a connect finished successfully, or data can be sent; False on
  a socket in error (a failed connect is in the error set only, as in Windows).
- SELECT_ERROR: a non-blocking connect failed (or any pending error), or
  out-of-band data waits and SO_OOBINLINE is off.
"""

from __future__ import annotations

import enum
import errno
import math
import socket as _stdsocket

from ..constants import POLLERR, POLLHUP, POLLRDBAND, POLLRDNORM, POLLWRNORM
from .poll import PollFD, _run

__all__ = ["SELECT_ERROR", "SELECT_READ", "SELECT_WRITE", "SelectMode", "socket_poll"]


class SelectMode(enum.IntEnum):
    """.NET's ``System.Net.Sockets.SelectMode``, with its values."""

    SELECT_READ = 0
    SELECT_WRITE = 1
    SELECT_ERROR = 2


SELECT_READ = SelectMode.SELECT_READ
SELECT_WRITE = SelectMode.SELECT_WRITE
SELECT_ERROR = SelectMode.SELECT_ERROR

_EVENTS = {SELECT_READ: POLLRDNORM, SELECT_WRITE: POLLWRNORM, SELECT_ERROR: POLLRDBAND}


def socket_poll(sock: _stdsocket.socket, microseconds: int, mode: int) -> bool:
    """Wait up to *microseconds* (negative: until it happens) for *mode* on *sock*.

    Returns:
        True when the socket is in the state *mode* asks about (see the module docstring).

    Raises:
        OSError: EINVAL for an unknown mode; EBADF for a closed socket.
        TypeError: *microseconds* is not an int.
        KeyboardInterrupt: Ctrl-C while waiting.
    """
    if isinstance(mode, bool) or mode not in _EVENTS:
        raise OSError(errno.EINVAL, f"poll mode must be SELECT_READ (0), SELECT_WRITE (1) or "
                      f"SELECT_ERROR (2), got {mode!r}")
    if isinstance(microseconds, bool) or not isinstance(microseconds, int):
        raise TypeError(f"microseconds is an int, got {type(microseconds).__name__}")
    if sock.fileno() == -1:
        raise OSError(errno.EBADF, "poll on a closed socket")
    ms = None if microseconds < 0 else math.ceil(microseconds / 1000)
    entry = PollFD(sock, _EVENTS[SelectMode(mode)])
    _run((entry,), ms, cache=False)
    got = entry.revents
    if mode == SELECT_READ:
        return bool(got & (POLLRDNORM | POLLHUP))
    if mode == SELECT_WRITE:
        return bool(got & POLLWRNORM) and not got & POLLERR
    if got & POLLERR:
        return True
    return bool(got & POLLRDBAND) and not sock.getsockopt(
        _stdsocket.SOL_SOCKET, _stdsocket.SO_OOBINLINE)
