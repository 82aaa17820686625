"""``loopfast stat``: fast-path listeners and connections, as ``ss`` shows TCP.

Listeners are read from ``/proc/net/unix`` (their rendezvous names), their
pids from ``/proc/<pid>/fd`` where we may look; connections are asked of each
process's query endpoint (``_fastpath/registry.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket as _stdsocket
from typing import Any

from .._core.stdlib import StdSocket
from .._fastpath.registry import LISTENER_PREFIX, QUERY_PREFIX, QUERY_TIMEOUT

_ACCEPTCON = 0x10000


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
        if path.startswith(LISTENER_PREFIX) and flags & _ACCEPTCON:
            host, _, port = path[len(LISTENER_PREFIX):].rpartition("/")
            found.append({"local": [host, int(port)], "pid": owners.get(inode)})
    return found


def _query(name: str) -> list[dict[str, Any]]:
    with StdSocket(_stdsocket.AF_UNIX, _stdsocket.SOCK_STREAM) as probe:
        probe.settimeout(QUERY_TIMEOUT)
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
        if path.startswith(QUERY_PREFIX) and flags & _ACCEPTCON:
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
