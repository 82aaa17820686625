"""The state of one fast-path connection, beside the stream that carries its data."""

from __future__ import annotations

import socket as _stdsocket
import struct
from typing import Any, NamedTuple


class PeerCredentials(NamedTuple):
    """The peer process of a fast-path connection, as the kernel vouches for it (SO_PEERCRED)."""

    pid: int
    uid: int
    gid: int


class Connection:
    """What a fast-path socket knows that its AF_UNIX stream does not.

    Attributes:
        family: the family the socket presents (AF_INET or AF_INET6).
        local: getsockname(), TCP-style.
        peer: getpeername(), TCP-style.
        credentials: the peer process.
        read_shut: shutdown(SHUT_RD) was called (emulated: see _fastpath_socket).
        connect_pending: a non-blocking connect() said EINPROGRESS and nobody has
            asked again yet (the next connect() answers 0, as the kernel does).
    """

    __slots__ = ("_shadow", "connect_pending", "credentials", "family", "local", "peer",
                 "read_shut")

    def __init__(self, family: int, local: tuple[Any, ...], peer: tuple[Any, ...],
                 credentials: PeerCredentials, shadow: _stdsocket.socket | None) -> None:
        self.family = family
        self.local = local
        self.peer = peer
        self.credentials = credentials
        self.read_shut = False
        self.connect_pending = False
        self._shadow = shadow

    def shadow(self) -> _stdsocket.socket:
        """The never-connected TCP socket that holds no-op options (made on first use).

        Raises:
            OSError: the socket could not be created (e.g. EMFILE).
        """
        if self._shadow is None:
            self._shadow = _stdsocket.socket(self.family, _stdsocket.SOCK_STREAM)
        return self._shadow

    def copy(self) -> Connection:
        """A copy for dup(): its own shadow socket, the same addresses and peer."""
        shadow = self._shadow.dup() if self._shadow is not None else None
        twin = Connection(self.family, self.local, self.peer, self.credentials, shadow)
        twin.read_shut = self.read_shut
        return twin

    def release(self) -> None:
        """Close what the connection holds besides its stream. Idempotent."""
        if self._shadow is not None:
            self._shadow.close()
            self._shadow = None


def peer_credentials(sock: _stdsocket.socket) -> PeerCredentials:
    """SO_PEERCRED of a connected AF_UNIX socket."""
    raw = sock.getsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_PEERCRED, 12)
    return PeerCredentials(*struct.unpack("=iII", raw))
