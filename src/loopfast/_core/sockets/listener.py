"""FastPathListener: a listener taking TCP and fast-path arrivals alike.

The kernel parts (the TCP listener, the rendezvous names, the epoll instance
the application's fd refers to, pending hellos) are ``_fastpath.listener``'s;
this class is their socket-shaped surface and makes the accepted sockets.
"""

from __future__ import annotations

import _socket as _csocket  # the C socket type, as socket.py's own _real_close uses
import errno
import logging
import os
import socket as _stdsocket
import time
from typing import Any, Self

from ..._fastpath.listener import Grace, Listener, TcpArrival
from ..stdlib import StdSocket, raw_family
from .base import become, socket

_log = logging.getLogger("loopfast")


class FastPathListener(socket, state=Listener):
    """A listener taking TCP and fast-path arrivals alike (see _fastpath.listener)."""

    __slots__ = ()
    _state: Listener

    def accept(self) -> tuple[socket, Any]:
        """Accept the next connection, TCP or fast path, as ``socket.socket.accept``.

        Raises:
            TimeoutError: the socket's timeout passed; BlockingIOError: non-blocking
                and nothing waits; OSError: as ``socket.socket.accept``.
        """
        if self.fileno() == -1:  # closed: as the stdlib's accept answers
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        timeout = self.gettimeout()
        deadline = None if timeout is None else time.monotonic() + timeout
        grace = Grace()  # for hellos not queued yet, in all (see _fastpath.listener)
        look = timeout is not None  # a blocking call waits next: epoll answers there
        while True:
            arrival = self._state.next_arrival(grace, look)
            if arrival is not None:
                sock = self._adopt(arrival)
                if sock is not None:
                    # The address accept found, as the kernel's accept gives it: a
                    # connection reset since has no peer name any more (ENOTCONN).
                    if isinstance(arrival, TcpArrival):
                        return sock, arrival.address
                    return sock, sock._state.peer
                continue
            if deadline is None:
                self._state.wait(None)
                continue
            remaining = deadline - time.monotonic()
            if timeout == 0.0:
                raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
            if remaining <= 0:
                raise TimeoutError("timed out")
            self._state.wait(remaining)

    def _adopt(self, arrival: Any) -> socket | None:
        if isinstance(arrival, TcpArrival):
            return self._adopt_tcp(*arrival)
        try:
            fd, state = self._state.accepted(arrival, self._rcvbuf_set, self._compat)
        except OSError as exc:  # the hello's fds were not what it promised: drop it
            _log.warning("loopfast: refused a fast-path client of %s:%s: %s",
                         self._state.host, self._state.port, exc)
            return None
        sock = socket.__new__(socket)  # a new connection's fd: nothing to share (base.__init__)
        StdSocket.__init__(sock, raw_family(self), _stdsocket.SOCK_STREAM, self.proto, fd)
        sock._state = None
        sock._take_settings(self)
        sock._fast_path = True
        become(sock, state)
        return sock

    def getsockname(self) -> Any:
        """The TCP listener's address."""
        return self._state.tcp.getsockname()

    def _set_option(self, level: int, optname: int, *args: Any) -> None:
        # On the TCP listener; connections accepted later inherit it.
        self._state.tcp.setsockopt(level, optname, *args)
        self._state.options_changed()

    def _get_option(self, level: int, optname: int, *args: Any) -> Any:
        return self._state.tcp.getsockopt(level, optname, *args)

    def listen(self, backlog: int = _stdsocket.SOMAXCONN) -> None:
        """Change the backlog of the TCP listener and of the rendezvous."""
        self._state.listen(backlog)

    def shutdown(self, how: int) -> None:
        """Shut the listener down: a blocked accept() wakes with EINVAL, as on TCP."""
        self._state.shutdown(how)

    def _switched(self) -> None:
        # SIO_LOOPBACK_FAST_PATH False stops offering the fast path, True offers it again.
        if self._fast_path:
            self._state.offer(_stdsocket.SOMAXCONN)
        else:
            self._state.withdraw()

    def _listening(self) -> bool:
        return True

    def _connected(self) -> bool:
        return False

    def dup(self) -> Self:
        """A second socket object for the same listener (both accept from it).

        Raises:
            OSError: as ``os.dup``.
        """
        # CPython wants a socket fd to build the object on; the bundle comes after.
        tcp = os.dup(self._state.tcp.fileno())
        twin = type(self)(self.family, self.type, self.proto, fileno=tcp)
        os.dup2(self._state.epoll.fileno(), tcp, inheritable=False)
        twin._take_settings(self)
        twin._state = self._state  # same class: made as type(self)
        self._state.users += 1
        twin.settimeout(self.gettimeout())
        return twin

    def detach(self) -> int:
        """Return an fd of the TCP listener alone; fast-path clients are no longer served by it.

        Raises:
            OSError: as ``os.dup2``.
        """
        self._state.restore_tcp(self.fileno())
        become(self, None)
        return StdSocket.detach(self)

    def _real_close(self, _ss: Any = _csocket.socket) -> None:
        self._state.release()
        _ss.close(self)
