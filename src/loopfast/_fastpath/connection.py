"""The state of one fast-path connection, beside the stream that carries its data."""

from __future__ import annotations

import os
import socket as _stdsocket
from typing import Any

from .._core.stdlib import PeerCredentials, StdSocket, close_fds
from . import transport_choice

Inherited = tuple[tuple[int, int, Any], ...]  # (level, optname, value) to set


class Connection:
    """What a fast-path socket knows that its AF_UNIX stream does not.

    Attributes:
        family: the family the socket presents (AF_INET or AF_INET6).
        local: getsockname(), TCP-style.
        peer: getpeername(), TCP-style.
        credentials: the peer process.
        connect_pending: a non-blocking connect() said EINPROGRESS and nobody has
            asked again yet (the next connect() answers 0, as the kernel does).
        auto: for a client connection whose transport ``"auto"`` chose, what is
            judged when it closes (``transport_choice``); None otherwise.
    """

    __slots__ = ("_inherit", "_shadow", "auto", "connect_pending", "credentials", "family",
                 "local", "peer")

    def __init__(self, family: int, local: tuple[Any, ...], peer: tuple[Any, ...],
                 credentials: PeerCredentials, shadow: _stdsocket.socket | int | None,
                 inherit: Inherited = ()) -> None:
        """*shadow*: a TCP socket for options (the client's reserved one), or its fd, which
        the connection then owns; *inherit*: options an accepted TCP socket would take
        from its listener."""
        self.family = family
        self.local = local
        self.peer = peer
        self.credentials = credentials
        self.connect_pending = False
        self.auto: transport_choice.Auto | None = None
        self._shadow = shadow
        self._inherit = inherit

    def shadow(self) -> _stdsocket.socket:
        """The never-connected TCP socket that holds no-op options (made on first use).

        Raises:
            OSError: the socket could not be created (e.g. EMFILE).
        """
        if isinstance(self._shadow, int):  # a socket object only when options need one
            self._shadow = StdSocket(self.family, _stdsocket.SOCK_STREAM, fileno=self._shadow)
        if self._shadow is None:
            shadow = StdSocket(self.family, _stdsocket.SOCK_STREAM)
            for level, optname, value in self._inherit:
                shadow.setsockopt(level, optname, value)
            self._shadow = shadow
        return self._shadow

    def _shadow_copy(self) -> _stdsocket.socket | int | None:
        """A duplicate of the shadow (as an fd while it is one), for dup().

        Raises:
            OSError: as dup (EMFILE).
        """
        if isinstance(self._shadow, int):
            return os.dup(self._shadow)
        return self._shadow.dup() if self._shadow is not None else None

    def carried(self) -> int | None:
        """Bytes carried both ways so far, if known here (a stream's are in the kernel)."""
        return None

    def copy(self) -> Connection:
        """A copy for dup(): its own shadow socket, the same addresses and peer."""
        return Connection(self.family, self.local, self.peer, self.credentials,
                          self._shadow_copy(), self._inherit)

    def release(self) -> None:
        """Close what the connection holds besides its stream. Idempotent."""
        if self.auto is not None:
            auto, self.auto = self.auto, None
            transport_choice.note(auto, self.carried())
        if isinstance(self._shadow, int):
            close_fds([self._shadow])
        elif self._shadow is not None:
            self._shadow.close()
        self._shadow = None

