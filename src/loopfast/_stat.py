"""loopfast stat: fast-path listeners and connections, as ``ss`` shows TCP.

Listeners need no help from their process: their rendezvous names are
abstract AF_UNIX sockets (``@loopfast/1/<ip>/<port>``) listed in
``/proc/net/unix``; the owning pid comes from ``/proc/<pid>/fd`` where we may
look.

Connections live in process memory, so each process that has one answers for
itself: ``register(sock)`` (called when a fast-path connection is made) keeps
a weak reference and, the first time, starts one daemon thread listening on
the abstract name ``@loopfast-stat/<pid>``. A query there gets the live
connections as JSON, and only when the asker's uid is the process's or root
(SO_PEERCRED): "processes the user may inspect". The name dies with the
process; nothing is left behind. The registry costs one WeakSet insertion per
connection; reading ring statistics happens only when asked.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket as _stdsocket
import struct
import threading
import weakref
from typing import Any

__all__ = ["all_connections", "connections", "listeners", "main", "register", "render"]

_LISTENER_PREFIX = "@loopfast/1/"
_QUERY_PREFIX = "@loopfast-stat/"
_ACCEPTCON = 0x10000
_TIMEOUT = 2.0
_ORIGINAL_SOCKET = _stdsocket.socket
_log = logging.getLogger("loopfast")  # loopfast.patch() may rebind the module's name


class _Registry:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.live: weakref.WeakSet[Any] = weakref.WeakSet()
        self.endpoint: _stdsocket.socket | None = None
        self.failed = False
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        # The thread stays behind; the child answers under its own pid once it registers.
        self.lock = threading.Lock()
        self.live = weakref.WeakSet()
        self.failed = False
        if self.endpoint is not None:
            self.endpoint.close()
            self.endpoint = None

    def add(self, sock: Any) -> None:
        with self.lock:
            self.live.add(sock)
            self._start_locked()

    def start(self) -> None:
        """Open the query endpoint and its thread (once per process)."""
        with self.lock:
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
            threading.Thread(target=_serve, args=(self.endpoint,), daemon=True,
                             name="loopfast-stat").start()

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            socks = list(self.live)
        rows = [_describe(sock) for sock in socks]
        return [row for row in rows if row is not None]


_registry = _Registry()


def register(sock: Any) -> None:
    """Make the fast-path connection *sock* visible to ``loopfast stat`` while it is open."""
    _registry.add(sock)


def connections() -> list[dict[str, Any]]:
    """This process's live fast-path connections, as ``loopfast stat`` shows them."""
    return _registry.snapshot()


def _listen(pid: int) -> _stdsocket.socket:
    endpoint = _ORIGINAL_SOCKET(_stdsocket.AF_UNIX, _stdsocket.SOCK_STREAM)
    endpoint.bind(b"\0" + f"{_QUERY_PREFIX[1:]}{pid}".encode())
    endpoint.listen(8)
    return endpoint


def _serve(endpoint: _stdsocket.socket) -> None:
    me = os.getuid()
    while True:
        try:
            conn, _ = endpoint.accept()
        except OSError:
            return  # closed after fork
        with conn:
            conn.settimeout(_TIMEOUT)
            raw = conn.getsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_PEERCRED, 12)
            _pid, uid, _gid = struct.unpack("=iII", raw)
            if uid not in (me, 0):
                continue  # not a process this user may inspect
            body = {"pid": os.getpid(), "connections": _registry.snapshot()}
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps(body).encode())


def _describe(sock: Any) -> dict[str, Any] | None:
    state = getattr(sock, "_state", None)
    if state is None or sock.fileno() == -1 or not sock.fast_path_active:
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


# -- the command ------------------------------------------------------------------


def _unix_table() -> list[tuple[int, int, int, str]]:
    """(inode, flags, state, path) of every named AF_UNIX socket in /proc/net/unix."""
    rows = []
    with open("/proc/net/unix") as table:
        next(table)
        for line in table:
            parts = line.split()
            if len(parts) >= 8:
                rows.append((int(parts[6]), int(parts[3], 16), int(parts[5], 16), parts[7]))
    return rows


def _socket_owners() -> dict[int, int]:
    """inode -> pid for the sockets of every process whose fds we may read."""
    owners: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{entry}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{entry}/fd/{fd}")
                    if target.startswith("socket:["):
                        owners.setdefault(int(target[8:-1]), int(entry))
    return owners


def listeners() -> list[dict[str, Any]]:
    """Fast-path listeners in this network namespace: address, port, pid (None if hidden)."""
    owners = _socket_owners()
    found = []
    for inode, flags, _state, path in _unix_table():
        if path.startswith(_LISTENER_PREFIX) and flags & _ACCEPTCON:
            host, _, port = path[len(_LISTENER_PREFIX):].rpartition("/")
            found.append({"local": [host, int(port)], "pid": owners.get(inode)})
    return found


def _query(name: str) -> list[dict[str, Any]]:
    with _ORIGINAL_SOCKET(_stdsocket.AF_UNIX, _stdsocket.SOCK_STREAM) as probe:
        probe.settimeout(_TIMEOUT)
        probe.connect(b"\0" + name[1:].encode())
        chunks = []
        while data := probe.recv(65536):
            chunks.append(data)
    if not chunks:
        return []  # the process does not answer this user
    rows: list[dict[str, Any]] = json.loads(b"".join(chunks))["connections"]
    return rows


def all_connections() -> list[dict[str, Any]]:
    """Live fast-path connections of every process that answers this user."""
    rows: list[dict[str, Any]] = []
    for _inode, flags, _state, path in _unix_table():
        if path.startswith(_QUERY_PREFIX) and flags & _ACCEPTCON:
            with contextlib.suppress(OSError, ValueError, KeyError):
                rows.extend(_query(path))
    return rows


def _addr(pair: list[Any] | None) -> str:
    if not pair:
        return "*:*"
    host, port = pair
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _fill(used: int | None, size: int | None) -> str:
    return "-" if used is None or size is None else f"{used}/{size}"


def render(lst: list[dict[str, Any]], conns: list[dict[str, Any]]) -> str:
    """The table ``loopfast stat`` prints."""
    head = (f"{'State':<7} {'Transport':<9} {'Local Address:Port':<24} "
            f"{'Peer Address:Port':<24} {'Process':<18} {'Sent':>10} {'Received':>10} "
            f"{'Rx-fill':>15} {'Tx-fill':>15}")
    lines = [head]
    for row in lst:
        pid = "-" if row["pid"] is None else f"pid={row['pid']}"
        lines.append(f"{'LISTEN':<7} {'-':<9} {_addr(row['local']):<24} {'*:*':<24} {pid:<18}")
    for row in conns:
        who = f"pid={row['pid']},peer={row['peer_pid']}"
        sent = "-" if row["bytes_out"] is None else str(row["bytes_out"])
        got = "-" if row["bytes_in"] is None else str(row["bytes_in"])
        lines.append(f"{'ESTAB':<7} {row['transport']:<9} {_addr(row['local']):<24} "
                     f"{_addr(row['peer']):<24} {who:<18} {sent:>10} {got:>10} "
                     f"{_fill(row['rx_fill'], row['rx_size']):>15} "
                     f"{_fill(row['tx_fill'], row['tx_size']):>15}")
    return "".join(line.rstrip() + "\n" for line in lines)


def main(listening_only: bool = False, as_json: bool = False) -> int:
    """``loopfast stat``: print listeners and connections; 0."""
    lst = listeners()
    conns = [] if listening_only else all_connections()
    if as_json:
        print(json.dumps({"listeners": lst, "connections": conns}, indent=2))
    else:
        print(render(lst, conns), end="")
    return 0
