"""The registry behind ``loopfast stat``: this process's live fast-path connections.

Listeners need no help from their process: their rendezvous names are
abstract AF_UNIX sockets (``@loopfast/<version>/<ip>/<port>``) listed in
``/proc/net/unix`` (``_tools/stat.py`` reads them).

Connections live in process memory, so each process that has one answers for
itself: ``register(sock)`` (called when a socket becomes a fast-path
connection) keeps a weak reference and, the first time, listens on the
abstract name ``@loopfast-stat/<pid>/<token>``, served by the process's
background thread (``background.py``). A query there gets the live
connections as JSON, and only when the asker's uid is the process's or root
(SO_PEERCRED): "processes the user may inspect". When no registered
connection has been open for ``LINGER`` seconds the endpoint closes (checked
at the background thread's ticks, so within ``LINGER + 2 * TICK``, 2 s, of the
last close), and with it the thread: a process without fast-path connections
runs no loopfast thread, while one that connects every second does not pay
a thread start and a bind per connection. The name dies with the endpoint,
nothing is left behind. The registry
costs one weak reference appended per connection; reading ring statistics happens
only when asked.

Anyone in the network namespace may bind any abstract name, so the name is no
proof: ``<token>`` is random, so nobody can take a process's name before it
does, and ``loopfast stat`` finds the names by their prefix and believes one
only when the kernel says (SO_PEERCRED) that the pid in it is the listener's.
"""

from __future__ import annotations

import _socket as _csocket
import contextlib
import json
import logging
import os
import re
import secrets
import select
import socket as _stdsocket
import threading
import time
import weakref
from typing import Any

from .._core.addresses import NAME_PREFIX
from .._core.stdlib import StdSocket, peer_credentials
from .background import TICK, background

__all__ = ["LISTENER_PREFIX", "QUERY_PREFIX", "QUERY_TIMEOUT", "connections", "endpoint_pid",
           "register"]

LISTENER_PREFIX = "@" + NAME_PREFIX[1:].decode()  # as /proc/net/unix shows the rendezvous names
QUERY_PREFIX = "@loopfast-stat/"
QUERY_TIMEOUT = 1.0  # how long the endpoint waits for an asker to take its answer
LINGER = 1.0  # seconds the endpoint (and so the thread) outlives the last connection
CLOSED_WITHIN = LINGER + 2 * TICK  # the bound tests hold the thread's end to
_TOKEN_BYTES = 8
_PRUNE_AT = 1024  # registrations between prunes of closed ones (a power of two)
_NAME = re.compile(rf"{re.escape(QUERY_PREFIX)}([1-9][0-9]{{0,9}})/[0-9a-f]{{{2 * _TOKEN_BYTES}}}")
_log = logging.getLogger("loopfast")  # loopfast.patch() may rebind the module's name


class _Registry:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        # Weak references, pruned every _PRUNE_AT registrations and when `loopfast stat`
        # asks: a WeakSet's add and its removal callback cost set-up twice what this does.
        self.live: list[weakref.ref[Any]] = []
        self.endpoint: _stdsocket.socket | None = None
        self.failed = False
        self.pinned = False
        self.idle_since: float | None = None  # when a tick first found nothing open
        background.every(self._tick)
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        # The thread stays behind; the child answers under its own pid once it registers.
        self.lock = threading.Lock()
        self.live = []
        self.failed = False
        self.pinned = False
        self.idle_since = None
        if self.endpoint is not None:
            self.endpoint.close()
            self.endpoint = None

    def add(self, sock: Any) -> None:
        with self.lock:
            self.live.append(weakref.ref(sock))
            if len(self.live) >= _PRUNE_AT and len(self.live) & (_PRUNE_AT - 1) == 0:
                self._prune_locked()  # closed connections' references go
            if self.endpoint is None:
                self._start_locked()

    def _open_locked(self) -> list[Any]:
        """The registered sockets still open, each once; the list keeps just those."""
        self._prune_locked()
        return [sock for ref in self.live if (sock := ref()) is not None]

    def _prune_locked(self) -> None:
        seen: set[int] = set()
        kept = []
        for ref in self.live:
            sock = ref()
            if sock is not None and _open(sock) and id(sock) not in seen:
                seen.add(id(sock))
                kept.append(ref)
        self.live = kept

    def start(self) -> None:
        """Open the query endpoint now and keep it open (tests that count fds)."""
        with self.lock:
            self.pinned = True
            self._start_locked()

    def _start_locked(self) -> None:
        if self.endpoint is None and not self.failed:
            try:
                self.endpoint = _listen(os.getpid())
            except OSError as exc:
                # Seeing connections is a bonus: it must never cost one. (Another
                # pid namespace on this network namespace may hold the name.)
                self.failed = True
                _log.warning("loopfast: stat endpoint unavailable, connections of pid %d "
                             "will not show in 'loopfast stat': %s", os.getpid(), exc)
                return
            try:
                background.watch(self.endpoint.fileno(), _answer, select.EPOLLIN)
            except OSError as exc:
                self.failed = True
                _log.warning("loopfast: stat endpoint unavailable, connections of pid %d "
                             "will not show in 'loopfast stat': %s", os.getpid(), exc)
                self.endpoint.close()
                self.endpoint = None

    def _tick(self) -> None:
        # In the background thread: the endpoint closes LINGER after the last open connection.
        with self.lock:
            if self.endpoint is None or self.pinned:
                return
            if any((sock := ref()) is not None and _open(sock) for ref in self.live):
                self.idle_since = None
                return
            now = time.monotonic()
            if self.idle_since is None:
                self.idle_since = now
            if now - self.idle_since < LINGER:
                return
            self.idle_since = None
            background.forget(self.endpoint.fileno())
            self.endpoint.close()
            self.endpoint = None

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            socks = self._open_locked()
        rows = [_describe(sock) for sock in socks]
        return [row for row in rows if row is not None]


def _open(sock: Any) -> bool:
    # The socket's own fd, not its fileno(): a ring socket's starts watching the peer.
    return bool(_csocket.socket.fileno(sock) != -1)


_registry = _Registry()


def register(sock: Any) -> None:
    """Make the fast-path connection *sock* visible to ``loopfast stat`` while it is open."""
    _registry.add(sock)


def connections() -> list[dict[str, Any]]:
    """This process's live fast-path connections, as ``loopfast stat`` shows them."""
    return _registry.snapshot()


def endpoint_pid(name: str) -> int | None:
    """The pid a query endpoint's *name* (as /proc/net/unix shows it) claims, or None if
    *name* is not of the form ``@loopfast-stat/<pid>/<token>``. Only a claim: the
    asker checks it against the listener's SO_PEERCRED."""
    match = _NAME.fullmatch(name)
    return None if match is None else int(match.group(1))


def _listen(pid: int) -> _stdsocket.socket:
    endpoint = StdSocket(_stdsocket.AF_UNIX, _stdsocket.SOCK_STREAM)
    try:
        endpoint.bind(b"\0" + f"{QUERY_PREFIX[1:]}{pid}/{secrets.token_hex(_TOKEN_BYTES)}".encode())
        endpoint.listen(8)
        endpoint.setblocking(False)  # answered from the background thread, never waited on
    except BaseException:
        endpoint.close()
        raise
    return endpoint


def _answer(_events: int) -> None:
    """In the background thread: answer the queries waiting at the endpoint."""
    endpoint = _registry.endpoint
    if endpoint is None:
        return
    me = os.getuid()
    for _ in range(8):  # as many as the backlog holds; the thread has other duties
        try:
            conn, _ = endpoint.accept()
        except OSError:
            return  # nothing more queued, or EMFILE: the next event tries again
        with conn:
            conn.settimeout(QUERY_TIMEOUT)
            with contextlib.suppress(OSError):
                if peer_credentials(conn).uid not in (me, 0):
                    continue  # not a process this user may inspect
                body = {"pid": os.getpid(), "connections": _registry.snapshot()}
                conn.sendall(json.dumps(body).encode())


def _describe(sock: Any) -> dict[str, Any] | None:
    state = getattr(sock, "_state", None)
    if state is None or not _open(sock) or not sock.fast_path_active:
        return None
    row: dict[str, Any] = {
        "transport": sock.fast_path_transport, "local": list(state.local[:2]),
        "peer": list(state.peer[:2]), "pid": os.getpid(), "peer_pid": state.credentials.pid,
        "bytes_out": None, "bytes_in": None, "rx_fill": None, "tx_fill": None,
        "rx_size": None, "tx_size": None}
    link = getattr(state, "link", None)
    if link is not None:
        with contextlib.suppress(Exception):  # closed in between
            row.update(link.channel.stats())
    return row
