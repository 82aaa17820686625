"""RingSocket: a fast-path connection whose data moves through shared-memory rings.

``send``, ``sendall``, ``recv`` and ``recv_into`` are the C core's own
methods (``_ring.socket_method``): ``sock.send(data)`` reaches the ring with no
Python frame in between, through the Channel kept in the socket's
``_channel`` slot. The other data methods are one Python frame around one of
those. Stream semantics (EOF, shutdown, resets, timeouts, flow control) are
kept in the C core, so this class is only the socket-shaped surface.

The fd (``fileno()``) carries no data: it is a socket whose readiness the
rings keep level-true (readable while data, end of stream or an error waits;
writable while the peer's ring has room), so select, selectors, poll and
asyncio work with it. Code that reads or writes the fd itself cannot work on
a ring: ``sendfile()`` is carried by ``send()``, blocking TLS by ``tls.py``
(``SSLContext.wrap_socket`` of a ring connection gives a ``RingTLSSocket``),
``loopfast.socket(fileno=fd)`` (``socket.socket`` under ``patch()``) of a
live connection's fd gives a socket that shares the connection, and
``detach()`` refuses with EOPNOTSUPP. Bytes written to the fd behind the
socket object reset the connection on both sides, naming the cause (the C
core tells them from its own filler). Code that takes the fd away wants
``fast_path="stream"``, the AF_UNIX stream transport.
"""

from __future__ import annotations

import _socket as _csocket  # the C socket type, as socket.py's own _real_close uses
import errno
import io
import os
import select
import socket as _stdsocket
import struct
from typing import Any

from ..._fastpath.ring_link import RingConnection
from .. import ringcore
from ..stdlib import StdSocket
from . import arguments
from .stream import FastPathSocket


class RingSocket(FastPathSocket, state=RingConnection):
    """A fast-path connection carried by shared-memory rings."""

    __slots__ = ()
    _state: RingConnection

    def _kind_changed(self) -> None:
        # The data methods reach the rings through this slot (see the module docstring).
        self._channel = self._state.link.channel
        self._state.link.hold(_csocket.socket.fileno(self))
        self._channel.timeout = self.gettimeout()
        self._apply_busy_poll()

    @property
    def fast_path_transport(self) -> str | None:
        """"ring": shared-memory rings carry this connection."""
        return "ring"

    def fileno(self) -> int:
        """The wake-up socket's fd (-1 once closed), for select, poll, selectors and asyncio.

        Asking for it starts the watch on the peer (``RingLink.watch_peer``): a
        killed peer cannot ring our bell, so only the background thread can make
        the fd readable then. Code that never asks (blocking request/response
        code: our own blocking calls look at the peer themselves) never pays for
        the watch.
        """
        fd = _csocket.socket.fileno(self)
        state = self._state
        if fd != -1 and state is not None and not state.link.watched:
            state.link.watch_peer()
        return fd

    def send(self, data: Any, flags: int = 0) -> int:
        """``socket.send`` through the ring."""
        return self._channel.send(data, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        """``socket.sendall`` through the ring (the timeout bounds the whole call)."""
        self._channel.sendall(data, flags)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """``socket.recv`` from the ring."""
        return self._channel.recv(bufsize, flags)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """``socket.recv_into`` from the ring."""
        return self._channel.recv_into(buffer, nbytes, flags)

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, None]:
        """``(recv(bufsize, flags), None)``, as a connected TCP socket answers."""
        return self.recv(bufsize, flags), None

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, None]:
        """``(recv_into(...), None)``, as a connected TCP socket answers."""
        return self.recv_into(buffer, nbytes, flags), None

    def sendmsg(self, buffers: Any, ancdata: Any = (), flags: int = 0,
                address: Any = None) -> int:
        """The data part of ``socket.sendmsg``; ancillary data is ignored, as TCP ignores it.

        Raises:
            TypeError, ValueError, OverflowError, socket.gaierror: bad arguments, as
                ``socket.sendmsg``.
        """
        arguments.check_ancdata(ancdata)
        payload, flags = arguments.sendmsg_payload(buffers), arguments.flags_int(flags)
        if address is not None:
            self._check_address(address, "sendmsg")
        return self.send(payload, flags)

    def recvmsg(self, bufsize: int, ancbufsize: int = 0, flags: int = 0) -> Any:
        """The data part of ``socket.recvmsg``: ``(data, [], 0, None)``.

        Raises:
            TypeError, ValueError, OverflowError: bad arguments, as ``socket.recvmsg``.
        """
        size, flags = arguments.recvmsg_sizes(bufsize, ancbufsize, flags)
        return self.recv(size, flags), [], 0, None

    def recvmsg_into(self, buffers: Any, ancbufsize: int = 0, flags: int = 0) -> Any:
        """The data part of ``socket.recvmsg_into``: ``(nbytes, [], 0, None)``.

        Raises:
            TypeError, ValueError, OverflowError: bad arguments, as ``socket.recvmsg_into``.
        """
        views = arguments.writable_views(buffers)
        arguments.ancillary_space(ancbufsize)
        data = self.recv(sum(len(v) for v in views), arguments.flags_int(flags))
        at = 0
        for view in views:
            part = data[at:at + len(view)]
            view[:len(part)] = part
            at += len(part)
        return len(data), [], 0, None

    def getpeername(self) -> Any:
        """The peer's TCP-style address; ENOTCONN once the connection was reset, as TCP's.

        Raises:
            OSError: EBADF if closed; ENOTCONN after a reset (the ssl module tells
                "closed before the handshake" by it).
        """
        if _csocket.socket.fileno(self) != -1 and self._channel.reset:
            raise OSError(errno.ENOTCONN, os.strerror(errno.ENOTCONN))
        return super().getpeername()

    def shutdown(self, how: int) -> None:
        """``socket.shutdown``. After SHUT_RD, recv returns queued data, then b"" at once.

        Raises:
            OSError: EINVAL for another *how*; TypeError, OverflowError: not a C int.
        """
        self._channel.shutdown(arguments.c_int(how))

    def settimeout(self, value: float | None) -> None:
        """``socket.settimeout``, applied to the rings too."""
        super().settimeout(value)
        self._sync_timeout()

    def setblocking(self, flag: bool) -> None:
        """``socket.setblocking``, applied to the rings too."""
        super().setblocking(flag)
        self._sync_timeout()

    def _sync_timeout(self) -> None:
        # dup() sets the timeout before it hands the twin its state.
        if self._state is not None:
            self._channel.timeout = self.gettimeout()

    def _set_option(self, level: int, optname: int, *args: Any) -> None:
        # As FastPathSocket; SO_RCVTIMEO/SO_SNDTIMEO bound blocking calls as the kernel's do.
        super()._set_option(level, optname, *args)
        if level != _stdsocket.SOL_SOCKET or len(args) != 1:
            return
        channel = self._channel
        if optname == _stdsocket.SO_RCVBUF:  # our receive window follows it
            rcvbuf = self._get_option(_stdsocket.SOL_SOCKET, _stdsocket.SO_RCVBUF)
            self._state.link.rcvbuf_changed(rcvbuf, self._compat)
        if optname == _stdsocket.SO_LINGER:  # (1, 0): the last close resets the peer, as TCP's
            onoff, linger = struct.unpack("ii", bytes(args[0])[:8])
            channel.abortive = bool(onoff) and linger == 0
        if optname in (_stdsocket.SO_RCVTIMEO, _stdsocket.SO_SNDTIMEO):
            seconds, micros = struct.unpack("ll", bytes(args[0])[:16])
            if optname == _stdsocket.SO_RCVTIMEO:
                channel.rcvtimeo = seconds + micros / 1e6
            else:
                channel.sndtimeo = seconds + micros / 1e6

    def _apply_busy_poll(self) -> None:
        # SO_BUSY_POLL (or the busy_poll_us keyword) sets the rings' spin time.
        if self._busy is not None:
            self._channel.busy_poll_us = self._busy

    def _loopfast_ready(self, events: int) -> int:
        """Native poll bits the rings can report without a syscall (loopfast.poll asks first)."""
        if _csocket.socket.fileno(self) == -1:
            return select.POLLNVAL
        readable, writable, peer_closed = self._channel.ready()
        bits = (select.POLLIN if readable else 0) | (select.POLLOUT if writable else 0)
        if peer_closed:
            bits |= select.POLLRDHUP
        return bits & (events | select.POLLRDHUP)

    def _loopfast_busy_poll_us(self) -> int:
        """The spin time loopfast.poll may spend on this socket's rings before parking."""
        return max(self._channel.busy_poll_us, 0)

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        """``socket.sendfile`` carried by send() (the fd takes no data)."""
        return self._sendfile_use_send(file, offset, count)  # type: ignore[attr-defined, no-any-return]

    def _sendfile_use_sendfile(self, file: Any, offset: int = 0,
                               count: int | None = None) -> int:
        # The stdlib's private os.sendfile path (its own tests call it directly)
        # would write the fd, which resets a ring connection: its checks, then send().
        self._check_sendfile_params(file, offset, count)  # type: ignore[attr-defined]
        try:
            fsize = os.fstat(file.fileno()).st_size
        except (AttributeError, io.UnsupportedOperation, OSError) as err:
            raise _stdsocket._GiveupOnSendfile(err) from None  # type: ignore[attr-defined]
        if not fsize:
            return 0  # as the stdlib answers an empty file
        return self._sendfile_use_send(file, offset, count)  # type: ignore[attr-defined, no-any-return]

    def detach(self) -> int:
        """Refused: the fd of a ring-carried connection carries no data.

        Code that calls it after taking ``fileno()`` (the stdlib's own
        ``SSLContext.wrap_socket``, where loopfast's hook in ``tls.py`` is not in
        place) may close that number: the socket moves to a new fd number first,
        so this socket keeps working.

        One case works: a socket made with ``socket(fileno=fd)`` of another live
        socket object's fd (which carries the same connection) lets go of its
        share and returns *fd*, still open for that other object.

        Raises:
            OSError: EOPNOTSUPP on an open socket that is its fd's only holder.
        """
        fd = _csocket.socket.fileno(self)
        if fd == -1:
            return super().detach()
        link = self._state.link
        if link.holders.count(fd) > 1:
            link.let_go(fd)
            self._state.release()
            return StdSocket.detach(self)  # not FastPathSocket's: the share is released
        self._rehome()
        raise OSError(errno.EOPNOTSUPP, "this fast-path connection is carried by shared memory "
                      "and its fd carries no data; code that takes the fd (detach, "
                      "os.sendfile on the fd) needs fast_path='stream'")

    def _rehome(self) -> None:
        old = _csocket.socket.fileno(self)
        new = os.dup(old)
        timeout = self.gettimeout()
        StdSocket.__init__(self, self.family, self.type, self.proto, new)
        self.settimeout(timeout)
        self._state.link.moved(old, new)

    def _real_close(self, _ss: Any = _csocket.socket) -> None:
        # Another socket object may use this very fd number (socket(fileno=...)):
        # then the number stays open for it, and the channel never uses a closed one.
        # The fd goes first: the link's last release then knows whether our r's last
        # copy is gone (RingLink.release tells the peer).
        last_holder = self._state.link.let_go(_csocket.socket.fileno(self))
        if last_holder:
            _ss.close(self)
        else:
            _ss.detach(self)
        self._state.release()


# The hot methods become the C core's: the definitions above give their
# signatures and docstrings, and serve where the C core is absent (then no
# socket is ever ring-carried).
if ringcore.ring is not None:
    for _name in ("send", "sendall", "recv", "recv_into"):
        setattr(RingSocket, _name,
                ringcore.ring.socket_method(_name, getattr(RingSocket, _name).__doc__))
