"""FastPathSocket: a fast-path connection, and the stream transport's surface.

After the rendezvous the carrier sits at the application's own fd number:
the AF_UNIX stream itself (``fast_path="stream"``: the stdlib's C methods
then work unchanged, at kernel speed) or, on a ring, its wake-up socket
(``ring.RingSocket`` overrides the data methods). What a fast-path connection
does differently from TCP whatever carries it is here: addresses, options and
ancillary data. A connection stays on the fast path until closed (F5).
"""

from __future__ import annotations

import _socket as _csocket  # the C socket type, as socket.py's own _real_close uses
import errno
import os
import socket as _stdsocket
from typing import Any, Self

from ..._fastpath.connection import Connection
from .. import options
from ..stdlib import PeerCredentials, without_fds
from . import arguments
from .base import socket

_ANC_IGNORED = {_stdsocket.SCM_RIGHTS, getattr(_stdsocket, "SCM_CREDENTIALS", 2)}


class FastPathSocket(socket, state=Connection):
    """A connection carried by the fast path (see the module docstring).

    shutdown() is the kernel's: SHUT_RD ends reads and wakes a blocked reader as
    on TCP; unlike Linux TCP, the peer's later sends fail with EPIPE instead of
    vanishing into a receive queue nobody reads.
    """

    __slots__ = ()
    _state: Connection

    @property
    def fast_path_active(self) -> bool:
        """True: this connection is carried by the fast path."""
        return True

    @property
    def fast_path_transport(self) -> str | None:
        """How the fast path carries this connection: "stream" (AF_UNIX) or "ring"."""
        return "stream"

    @property
    def peer_credentials(self) -> PeerCredentials:
        """The peer process (pid, uid, gid), as the kernel vouches for it."""
        return self._state.credentials

    def connect(self, address: Any) -> None:
        """The connection is made: EISCONN, as a connected TCP socket answers.

        CPython's connect() with a timeout set treats the kernel's EISCONN as
        success and returns None; this mirrors it.

        Raises:
            OSError: EISCONN when the socket has no timeout (blocking or non-blocking).
        """
        err = self.connect_ex(address)
        if err == errno.EISCONN and self.gettimeout():
            return
        if err:
            raise OSError(err, os.strerror(err))

    def connect_ex(self, address: Any) -> int:
        """0 once after a non-blocking connect(), as the kernel answers; then EISCONN."""
        if _csocket.socket.fileno(self) == -1:  # not ours: RingSocket's asks for a watch
            return errno.EBADF
        if self._state.connect_pending:
            self._state.connect_pending = False
            return 0
        return errno.EISCONN

    def sendto(self, data: Any, *args: Any) -> int:
        """``send``; the address is checked as ``socket.sendto`` checks it, then ignored,
        as Linux TCP ignores it once connected.

        Raises:
            TypeError, OverflowError, socket.gaierror: a bad address, as ``socket.sendto``.
        """
        if len(args) not in (1, 2):
            raise TypeError(f"sendto() takes 2 or 3 arguments ({len(args) + 1} given)")
        self._check_address(args[-1], "sendto")
        return self.send(data, args[0] if len(args) == 2 else 0)

    def _check_address(self, address: Any, caller: str) -> None:
        # The stdlib parses the address before the kernel ignores it: parse it the
        # same way, on the never-connected TCP socket the connection keeps for options.
        shadow = self._state.shadow()
        try:
            if caller == "sendto":
                _csocket.socket.sendto(shadow, b"", _stdsocket.MSG_NOSIGNAL, address)
            else:
                _csocket.socket.sendmsg(shadow, [b""], [], _stdsocket.MSG_NOSIGNAL, address)
        except _stdsocket.gaierror:
            raise
        except OSError:
            pass  # the address parsed; the unconnected socket refused to send (EPIPE)

    def getsockname(self) -> Any:
        """This end's TCP-style address."""
        self._check_open()
        return self._state.local

    def getpeername(self) -> Any:
        """The peer's TCP-style address.

        Raises:
            OSError: EBADF if closed.
        """
        self._check_open()
        return self._state.peer

    def _check_open(self) -> None:
        if _csocket.socket.fileno(self) == -1:  # not ours: RingSocket's asks for a watch
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    def _set_option(self, level: int, optname: int, *args: Any) -> None:
        # Options as the fast path treats them (docs/options.md): ENOPROTOOPT when refused.
        self._check_open()
        options.setsockopt(self._state, self, level, optname, *args)

    def _get_option(self, level: int, optname: int, *args: Any) -> Any:
        self._check_open()
        return options.getsockopt(self._state, self, level, optname, *args)

    def _apply_busy_poll(self) -> None:
        self._check_open()  # the AF_UNIX stream parks in the kernel; the ring spins

    def sendmsg(self, buffers: Any, ancdata: Any = (), flags: int = 0,
                address: Any = None) -> int:
        """``socket.sendmsg``; fds and credentials are left out, as TCP ignores them.

        The address is checked as ``socket.sendmsg`` checks it, then ignored, as
        Linux TCP ignores it once connected (the AF_UNIX stream would refuse it).

        Raises:
            TypeError, OverflowError: bad ancillary data or address, as
                ``socket.sendmsg``; as it.
        """
        ancdata = [item for item in arguments.check_ancdata(ancdata)
                   if not (item[0] == _stdsocket.SOL_SOCKET and item[1] in _ANC_IGNORED)]
        if address is not None:
            self._check_address(address, "sendmsg")
        return super().sendmsg(buffers, ancdata, flags)

    def recvmsg(self, bufsize: int, ancbufsize: int = 0, flags: int = 0) -> Any:
        """``socket.recvmsg``; file descriptors a peer slipped in are closed, never handed on."""
        data, anc, msg_flags, _addr = super().recvmsg(bufsize, ancbufsize, flags)
        return data, without_fds(anc), msg_flags, None

    def recvmsg_into(self, buffers: Any, ancbufsize: int = 0, flags: int = 0) -> Any:
        """``socket.recvmsg_into``; file descriptors a peer slipped in are closed."""
        n, anc, msg_flags, _addr = super().recvmsg_into(buffers, ancbufsize, flags)
        return n, without_fds(anc), msg_flags, None

    def dup(self) -> Self:
        """Duplicate the connection (both objects carry the same connection, as with TCP).

        Raises:
            OSError: as ``socket.socket.dup``.
        """
        twin = super().dup()
        if twin._state is None:  # a ring's twin already shares it: socket(fileno=) of its fd
            twin._state = self._state.copy()  # same class: dup() makes type(self)
            twin._kind_changed()
        return twin

    def detach(self) -> int:
        """Close the socket object without closing its fd, which is returned.

        The fd is the AF_UNIX stream carrying the connection.
        """
        self._state.release()
        return super().detach()

    def _real_close(self, _ss: Any = _csocket.socket) -> None:
        self._state.release()
        _ss.close(self)
