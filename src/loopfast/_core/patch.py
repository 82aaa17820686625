"""loopfast.patch(): the program's own stdlib TCP sockets opt in to the fast path (SPEC A2).

``patch()`` replaces ``socket.socket`` in the ``socket`` module by a
``loopfast.socket`` subclass that opts in when it is made as an
AF_INET/AF_INET6 stream socket (not when built around an existing fd). Code
that looks the class up when it makes a socket (``socket.create_connection``
and so ``http.client``/``urllib``, ``socketserver`` and so ``http.server``,
asyncio's selector loop, ``socket.create_server``) then makes fast-path
sockets; nothing else changes. A connection takes the fast path only when
the peer process opted in too (``python -m loopfast run`` on both sides).

The transport is "auto" by default: the shared-memory ring, or the AF_UNIX
stream to a destination whose recent connections were short, whose set-up the
ring's would cost more than it saves (``_fastpath/transport_choice.py``).
Blocking TLS works on both: ``SSLContext.wrap_socket`` of a ring connection
(``http.client``, ``urllib``, ``requests``) returns a ``RingTLSSocket`` whose
records go through the rings (``_core/sockets/tls.py``, installed with
loopfast). ``transport="ring"`` takes the ring always; ``transport="stream"``
suits code that takes the fd itself (``os.sendfile``, ``socket.fromfd``). A
socket wrapped before it connects
(``ctx.wrap_socket(socket.socket())``, then ``connect()``) stays the stdlib's
SSLSocket and connects over TCP, on either transport.

asyncio: ``patch()`` also makes ``selectors.DefaultSelector`` loopfast's
``RingSelector`` (``aio_selector.py``), so the selector loop that
``asyncio.run``, ``asyncio.new_event_loop`` and ``get_event_loop`` make (and
any other ``DefaultSelector`` user) spins on its ring connections' rings
before it sleeps; for every other fd it is the stdlib's ``EpollSelector``.
``unpatch()`` puts the stdlib's back.

Invariants: ``isinstance(x, socket.socket)`` answers as it would without the
patch (a metaclass checks against the original class); the original class is
put back by ``unpatch()``; the per-process counters are three integers.
"""

from __future__ import annotations

import errno
import socket as _stdsocket
import threading
from typing import Any

from . import aio_selector, uvloop_hook
from .sockets import TRANSPORTS, socket, tls
from .stdlib import StdSocket, is_tcp, raw_family

__all__ = ["connection_counts", "patch", "patched", "unpatch"]

_INET = (_stdsocket.AF_INET, _stdsocket.AF_INET6)
_lock = threading.Lock()
_counts = {"ring": 0, "stream": 0, "tcp": 0}
_transport = "auto"


class _SocketClass(type):
    """isinstance/issubclass against the patched class answer as for the original one."""

    def __instancecheck__(cls, obj: Any) -> bool:
        if cls is PatchedSocket:
            return isinstance(obj, StdSocket)
        return type.__instancecheck__(cls, obj)

    def __subclasscheck__(cls, sub: type) -> bool:
        if cls is PatchedSocket:
            return issubclass(sub, StdSocket)
        return type.__subclasscheck__(cls, sub)


class PatchedSocket(socket, metaclass=_SocketClass):
    """What ``socket.socket`` makes while patched: a loopfast.socket that opted in if TCP."""

    __slots__ = ()

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1,
                 fileno: int | None = None, **kw: Any) -> None:
        if PatchedSocket not in self.__class__.__mro__:
            # An unbound call through the module name (socket.socket.__init__(obj, ...))
            # on some other socket object: what the original class does.
            StdSocket.__init__(self, family, type, proto, fileno)
            return
        super().__init__(family, type, proto, fileno, **kw)
        if fileno is None and not kw and is_tcp(self):  # not MPTCP, UDP, AF_UNIX, ...
            self._transport = _transport
            self._fast_path = True  # what ioctl(SIO_LOOPBACK_FAST_PATH) checks holds: a new socket

    def connect(self, address: Any) -> None:
        """``loopfast.socket.connect``, counted for ``connection_counts()``."""
        try:
            super().connect(address)
        except BlockingIOError:
            _count(self)
            raise
        _count(self)


def _count(sock: socket) -> None:
    if raw_family(sock) not in _INET:  # an int: the family property makes an enum
        return  # loopfast's own AF_UNIX rendezvous, made through the patched name too
    kind = sock.fast_path_transport or "tcp"
    with _lock:
        _counts[kind] = _counts.get(kind, 0) + 1


def patch(transport: str | bool = "auto") -> None:
    """Make the TCP sockets this process creates through ``socket.socket`` opt in.

    asyncio's selector loops made from now on spin on their ring connections
    before they sleep (``selectors.DefaultSelector`` becomes ``RingSelector``).

    Args:
        transport: "auto" (the default: the ring, or the stream to a destination whose
            recent connections were short, see ``_fastpath/transport_choice.py``),
            "ring" or True (shared memory, the fastest per message; blocking
            ``SSLContext.wrap_socket`` included) or "stream" (AF_UNIX, for code that
            takes the fd itself: ``os.sendfile``, ``socket.fromfd``).

    Raises:
        OSError: EINVAL for another transport word.
    """
    global _transport
    word = "ring" if transport is True else transport
    if not isinstance(word, str) or word not in TRANSPORTS:
        raise OSError(errno.EINVAL, f"patch(transport={transport!r}): use 'auto', 'ring' "
                      "or 'stream'")
    _transport = word
    tls.install()  # SSLContext.wrap_socket takes ring connections (in place since import)
    # ssl binds the class at import ("from socket import socket") and subclasses it:
    # it must see the stdlib's, whoever imports it later.
    import ssl  # noqa: F401
    _stdsocket.socket = PatchedSocket  # type: ignore[misc]
    aio_selector.install()  # asyncio's selector loops spin on their rings before sleeping
    uvloop_hook.install(word, _count)  # uvloop's servers and loopback clients too


def unpatch() -> None:
    """Put the stdlib's ``socket.socket`` and ``selectors.DefaultSelector`` back; sockets
    and event loops made meanwhile keep theirs."""
    _stdsocket.socket = StdSocket  # type: ignore[misc]
    aio_selector.uninstall()
    uvloop_hook.uninstall()


def patched() -> bool:
    """True while ``patch()`` is in effect."""
    return _stdsocket.socket is PatchedSocket


def connection_counts() -> dict[str, int]:
    """Connections patched sockets made so far: ``{"ring": n, "stream": n, "tcp": n}``."""
    with _lock:
        return dict(_counts)
