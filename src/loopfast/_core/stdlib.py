"""The stdlib's socket class and one helper per kernel idiom loopfast uses.

``loopfast.patch()`` rebinds ``socket.socket`` for unchanged programs; loopfast's
own kernel sockets (the TCP listener behind a bundle, rendezvous streams,
shadow and reservation sockets) must stay plain, so the core builds them, and
calls the stdlib's methods, through ``StdSocket``.

Fd passing, SO_PEERCRED and "is this a TCP socket" are written here once and
called everywhere else, as CPython's ``socket.send_fds``/``recv_fds`` are.
"""

from __future__ import annotations

import _socket as _csocket
import array
import contextlib
import errno
import os
import socket
import struct
from typing import NamedTuple

StdSocket = socket.socket

_PEERCRED = struct.Struct("=iII")  # struct ucred: pid, uid, gid
_INET = (socket.AF_INET, socket.AF_INET6)


class PeerCredentials(NamedTuple):
    """The peer process of a fast-path connection, as the kernel vouches for it (SO_PEERCRED)."""

    pid: int
    uid: int
    gid: int


def peer_credentials(sock: _csocket.socket) -> PeerCredentials:
    """SO_PEERCRED of a connected AF_UNIX socket.

    Raises:
        OSError: as ``getsockopt`` (EBADF on a closed socket).
    """
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    return PeerCredentials(*_PEERCRED.unpack(raw))


def raw_family(sock: _csocket.socket) -> int:
    """*sock*'s family as a plain int: ``socket.socket.family`` makes an enum on every
    read, which showed in the set-up profile (ten reads a connection)."""
    return int(_csocket.socket.family.__get__(sock))


_TCP_CLOSE = 7  # tcpi_state of a TCP socket never connected (include/net/tcp_states.h)


def tcp_unused(sock: _csocket.socket) -> bool:
    """True when the TCP socket *sock* is neither connected, connecting nor listening:
    TCP's CLOSE state, in one syscall."""
    try:
        info = _csocket.socket.getsockopt(sock, socket.IPPROTO_TCP, socket.TCP_INFO, 1)
    except OSError:
        return False
    return info[0] == _TCP_CLOSE


def is_tcp(sock: _csocket.socket) -> bool:
    """True for an AF_INET/AF_INET6 stream socket of the TCP protocol."""
    # Plain ints: socket.socket's family and type properties make enums on every read.
    return (_csocket.socket.family.__get__(sock) in _INET
            and _csocket.socket.type.__get__(sock) == socket.SOCK_STREAM
            and sock.proto in (0, socket.IPPROTO_TCP))


def send_fds(sock: _csocket.socket, data: bytes, fds: list[int]) -> None:
    """Send *data* in one message with *fds* attached (SCM_RIGHTS).

    Raises:
        ConnectionResetError: the message went out short (the fds travelled with a part).
        OSError: as ``sendmsg``.
    """
    sent = sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                  array.array("i", fds).tobytes())])
    if sent != len(data):
        raise ConnectionResetError(errno.ECONNRESET, "a message carrying fds went out short")


def recv_fds(sock: _csocket.socket, size: int, maxfds: int,
             flags: int = 0) -> tuple[bytes, list[int]]:
    """Receive up to *size* bytes and the fds that came with them (close-on-exec); *flags*
    as recvmsg's (MSG_DONTWAIT...).

    Fds the kernel could not hand over are cut off: those beyond *maxfds*, or
    all of them when this process is at its fd limit. Then every fd that did
    arrive is closed and the call fails, so nothing leaks.

    Raises:
        ConnectionRefusedError: more than *maxfds* fds came (ECONNREFUSED).
        OSError: EMFILE: this process could not take the fds (its fd limit);
            as ``recvmsg``.
    """
    data, ancdata, msg_flags, _addr = sock.recvmsg(
        size, socket.CMSG_SPACE(maxfds * 4), socket.MSG_CMSG_CLOEXEC | flags)
    fds = take_fds(ancdata)
    if msg_flags & socket.MSG_CTRUNC:
        close_fds(fds)
        if len(fds) < maxfds:  # room was left: the kernel could not install them here
            raise OSError(errno.EMFILE, "the fds a message carried could not be received: "
                          "this process is at its limit of open files")
        raise ConnectionRefusedError(errno.ECONNREFUSED,
                                     f"a message carried more than {maxfds} fds")
    return data, fds


def take_fds(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    """The fds in *ancdata* (SCM_RIGHTS items); the caller owns them."""
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.extend(array.array("i", payload[:len(payload) - len(payload) % 4]))
    return fds


def without_fds(ancdata: list[tuple[int, int, bytes]]) -> list[tuple[int, int, bytes]]:
    """*ancdata* with its SCM_RIGHTS items removed and their fds closed."""
    close_fds(take_fds(ancdata))
    return [item for item in ancdata
            if not (item[0] == socket.SOL_SOCKET and item[1] == socket.SCM_RIGHTS)]


def close_fds(fds: list[int]) -> None:
    """Close every fd in *fds*, whatever fails."""
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)

