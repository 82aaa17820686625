"""A TCP connection that connection filters see, byte for byte (SPEC F9).

Only sockets that a registered filter covers get this class, so an unfiltered
socket pays nothing. Data passes through every covering filter in
registration order: ``on_send`` before the kernel sees it, ``on_recv`` before
the application does. A filter may change the length of the data:

- bytes a filter adds on receive wait in the socket for the next recv; note
  that ``select`` does not know about them (the kernel has none left);
- bytes the kernel cannot take at once on a non-blocking socket wait in the
  socket and go out first at the next send; close() tries once more and logs
  what it could not send. They are never dropped silently.

Ancillary-data calls, MSG_PEEK and os.sendfile would let data pass unseen, so
they are refused with EOPNOTSUPP.
"""

from __future__ import annotations

import _socket as _csocket  # the C socket type, as socket.py's own _real_close uses
import contextlib
import errno
import logging
import socket as _stdsocket
from typing import Any

from ..filtering import FilterState
from ..stdlib import StdSocket
from .base import socket

_log = logging.getLogger("loopfast")


def _refused(what: str) -> OSError:
    return OSError(errno.EOPNOTSUPP, f"{what} would let data pass a connection filter unseen; "
                   "use send/recv on filtered connections")


class FilteredSocket(socket, state=FilterState):
    """A TCP connection whose data passes through connection filters."""

    __slots__ = ()
    _state: FilterState

    def send(self, data: Any, flags: int = 0) -> int:
        """Filter *data* and send it; returns len(data) once the filters have taken it.

        Raises:
            BlockingIOError / TimeoutError: earlier filtered bytes still cannot be sent.
        """
        self._flush(flags)
        out = bytes(data)
        for flt in self._state.filters:
            out = flt.on_send(self._state.info, out)
        self._state.unsent = out
        with contextlib.suppress(BlockingIOError, TimeoutError):
            self._flush(flags)  # what stays is sent first next time (module docstring)
        return len(data)

    def sendall(self, data: Any, flags: int = 0) -> None:
        """Filter *data* and send all of it."""
        self.send(data, flags)
        if self._state.unsent:
            self._flush_all(flags)

    def _flush(self, flags: int) -> None:
        state = self._state
        while state.unsent:
            sent = StdSocket.send(self, state.unsent, flags)
            state.unsent = state.unsent[sent:]

    def _flush_all(self, flags: int) -> None:
        StdSocket.sendall(self, self._state.unsent, flags)
        self._state.unsent = b""

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """Receive up to *bufsize* filtered bytes; b"" at end of stream.

        Raises:
            OSError: EOPNOTSUPP for MSG_PEEK; as socket.recv otherwise.
        """
        if flags & _stdsocket.MSG_PEEK:
            raise _refused("MSG_PEEK")
        state = self._state
        while not state.inbound:
            data = super().recv(bufsize, flags)
            if not data:
                return b""
            for flt in state.filters:
                data = flt.on_recv(state.info, data)
            state.inbound += data
        out = bytes(state.inbound[:bufsize])
        del state.inbound[:bufsize]
        return out

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """Receive filtered bytes into *buffer*; returns how many."""
        view = memoryview(buffer).cast("B")
        data = self.recv(nbytes or len(view), flags)
        view[: len(data)] = data
        return len(data)

    def sendmsg(self, *args: Any, **kwargs: Any) -> int:
        """Refused on a filtered connection (EOPNOTSUPP)."""
        raise _refused("sendmsg")

    def recvmsg(self, *args: Any, **kwargs: Any) -> Any:
        """Refused on a filtered connection (EOPNOTSUPP)."""
        raise _refused("recvmsg")

    def recvmsg_into(self, *args: Any, **kwargs: Any) -> Any:
        """Refused on a filtered connection (EOPNOTSUPP)."""
        raise _refused("recvmsg_into")

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        """socket.sendfile through send(), so the filters see the file's bytes."""
        return self._sendfile_use_send(file, offset, count)  # type: ignore[attr-defined, no-any-return]

    def _real_close(self, _ss: Any = _csocket.socket) -> None:
        if self._state.unsent:
            try:
                self._flush(0)
            except OSError:
                _log.warning("loopfast: closing a filtered connection with %d filtered bytes "
                             "unsent", len(self._state.unsent))
        _ss.close(self)
