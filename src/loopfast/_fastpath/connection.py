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

    __slots__ = ("_inherit", "_noted", "_shadow", "auto", "connect_pending", "credentials",
                 "family", "local", "peer")

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
        self._noted: dict[tuple[int, int], int] | None = None

    def note(self, level: int, optname: int, value: int) -> None:
        """Keep the boolean no-op option (*level*, *optname*) at *value* (0 or 1), as the
        kernel would: here, and on the shadow socket once there is one. TCP_NODELAY,
        which asyncio and urllib3 set on every connection, so makes no socket. The
        copies of a connection (dup) share what is kept, as TCP's share the socket."""
        if self._noted is None:
            self._noted = {}
        self._noted[(level, optname)] = value
        if isinstance(self._shadow, _stdsocket.socket):
            self._shadow.setsockopt(level, optname, value)

    def noted(self, level: int, optname: int) -> int | None:
        """The value ``note`` keeps for the option, or None: the shadow socket knows it."""
        return None if self._noted is None else self._noted.get((level, optname))

    def shares_notes(self) -> dict[tuple[int, int], int]:
        """What ``note`` keeps, for a copy of this connection to share."""
        if self._noted is None:
            self._noted = {}
        return self._noted

    def shadow(self) -> _stdsocket.socket:
        """The never-connected TCP socket that holds no-op options (made on first use).

        Raises:
            OSError: the socket could not be created (e.g. EMFILE).
        """
        if isinstance(self._shadow, _stdsocket.socket):
            return self._shadow
        if isinstance(self._shadow, int):  # a socket object only when options need one
            shadow = StdSocket(self.family, _stdsocket.SOCK_STREAM, fileno=self._shadow)
        else:
            shadow = StdSocket(self.family, _stdsocket.SOCK_STREAM)
            for level, optname, value in self._inherit:
                shadow.setsockopt(level, optname, value)
        self._shadow = shadow
        if self._noted:  # what note() kept goes to the socket that now holds options
            for (level, optname), value in self._noted.items():
                shadow.setsockopt(level, optname, value)
        return shadow

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
        made = Connection(self.family, self.local, self.peer, self.credentials,
                          self._shadow_copy(), self._inherit)
        made._noted = self.shares_notes()
        return made

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

