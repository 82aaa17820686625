"""``loopfast stat``: fast-path listeners and connections, as ``ss`` shows TCP.

Listeners are read from ``/proc/net/unix`` (their rendezvous names), their
pids from ``/proc/<pid>/fd`` where we may look; connections are asked of each
process's query endpoint (``_fastpath/registry.py``).

Everything here comes from other processes, and every local user may be an
attacker: anyone can bind an abstract name, with any bytes in it, and answer
on it with anything, or not at all. So:

- a query endpoint is believed only when the kernel (SO_PEERCRED, read before
  a byte is) says its listener's pid is the one in its name and its uid is ours
  (root asks everyone, and shows whose each row is); the others are skipped,
  and counted with the reason;
- endpoints are asked all at once, each for at most ``ENDPOINT_TIMEOUT``, all of
  them within ``QUERY_BUDGET``, and at most ``MAX_ANSWER`` bytes are read of each;
- an answer's rows are checked field by field (types, ranges, addresses that
  parse); a row that fails is dropped and counted; names that are not
  loopfast's are skipped and counted;
- whatever is printed passes through ``printable()`` (no C0, C1, DEL, ANSI
  escapes, nor invisible format characters such as bidi overrides).
"""

from __future__ import annotations

import collections
import contextlib
import ipaddress
import json
import os
import re
import selectors
import socket as _stdsocket
import sys
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from .._core.stdlib import StdSocket, peer_credentials
from .._fastpath.owner import listener_uid
from .._fastpath.registry import LISTENER_PREFIX, QUERY_PREFIX, endpoint_pid

ENDPOINT_TIMEOUT = 0.5  # connect and read, one endpoint
QUERY_BUDGET = 1.5  # every endpoint together
MAX_ANSWER = 1 << 20  # bytes read of one endpoint
MAX_IN_FLIGHT = 256  # endpoints asked at once (open sockets)

_ACCEPTCON = 0x10000
_TRANSPORTS = frozenset({"ring", "stream"})
_COUNTERS = ("bytes_out", "bytes_in", "rx_fill", "tx_fill", "rx_size", "tx_size")
_WILDCARD = {"0.0.0.0": "127.0.0.1", "::": "::1"}
_ESCAPE = re.compile(
    r"(\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"  # CSI
    r"|(\x1b[]PX^_]|[\x90\x98\x9d-\x9f])[^\x07\x1b\x9c]*(\x07|\x1b\\|\x9c)?"  # OSC, DCS, ...
    r"|\x1b.?", re.DOTALL)  # any other escape

# Why an endpoint or a row was left out, as the summary says it.
OTHER_UID = "endpoint of another uid"
PID_MISMATCH = "endpoint whose listener's pid is not the one in its name"
BAD_NAME = "endpoint name not of the form @loopfast-stat/<pid>/<token>"
SILENT = f"endpoint silent for {ENDPOINT_TIMEOUT} s"
OUT_OF_TIME = f"endpoint not asked within {QUERY_BUDGET} s"
NO_FDS = "endpoint not asked: no file descriptor left"
TOO_BIG = f"endpoint answer over {MAX_ANSWER} bytes"
BAD_ANSWER = "endpoint answer that is not loopfast's JSON"
REFUSED = "endpoint that would not connect or answered nothing"
BAD_ROW = "malformed connection row"
BAD_LISTENER = f"rendezvous name not of the form {LISTENER_PREFIX}<ip>/<port>"


@dataclass
class Report:
    """What ``loopfast stat`` found, and what it left out (reason -> count)."""

    listeners: list[dict[str, Any]] = field(default_factory=list)
    connections: list[dict[str, Any]] = field(default_factory=list)
    skipped: collections.Counter[str] = field(default_factory=collections.Counter)


def printable(text: object) -> str:
    """*text* as a string with escape sequences and control/format characters removed."""
    text = _ESCAPE.sub("", str(text))
    return "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cf"))


def _unix_table() -> list[tuple[int, int, int, str]]:
    """(inode, flags, state, path) of every named AF_UNIX socket in /proc/net/unix.

    The kernel prints names raw: a name may hold spaces, newlines or bytes that are
    not UTF-8, so a line may be cut short or forged; callers parse names strictly.
    """
    rows = []
    with open("/proc/net/unix", encoding="utf-8", errors="replace") as table:
        next(table)
        for line in table:
            parts = line.split()
            if len(parts) >= 8:
                with contextlib.suppress(ValueError):
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
                    if target.startswith("socket:[") and target.endswith("]"):
                        owners.setdefault(int(target[8:-1]), int(entry))
    return owners


def _host(text: object) -> str | None:
    """*text* if it is an IP address without scope (only hex digits, dots and colons)."""
    if not isinstance(text, str) or "%" in text:
        return None
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return None
    return text


def _port(value: object) -> int | None:
    """*value* (an int, or its decimal digits) if it is a port number, else None."""
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit() and len(value) <= 5):
            return None
        value = int(value)
    return value if type(value) is int and 0 <= value <= 65535 else None


def _process_uid(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def _tcp_uid(host: str, port: int) -> int | None:
    target = _WILDCARD.get(host, host)
    family = _stdsocket.AF_INET6 if ":" in target else _stdsocket.AF_INET
    try:
        return listener_uid(family, target, port)
    except (OSError, ValueError):
        return None


def _listener_rows(report: Report) -> None:
    """Fast-path listeners in this network namespace, into *report*.

    Each row: ``local``, ``pid`` (of the process holding the name; None if hidden
    from us), ``uid`` (that process's), ``tcp_uid`` (who owns the TCP listener a
    client would reach, which is whom a client trusts; None if none listens).
    """
    owners = _socket_owners()
    for inode, flags, _state, path in _unix_table():
        if not path.startswith(LISTENER_PREFIX) or not flags & _ACCEPTCON:
            continue
        host_text, _, port_text = path[len(LISTENER_PREFIX):].rpartition("/")
        host, port = _host(host_text), _port(port_text)
        if host is None or port is None:
            report.skipped[BAD_LISTENER] += 1
            continue
        pid = owners.get(inode)
        report.listeners.append({"local": [host, port], "pid": pid, "uid": _process_uid(pid),
                                 "tcp_uid": _tcp_uid(host, port)})


def listeners() -> list[dict[str, Any]]:
    """Fast-path listeners in this network namespace (see ``_listener_rows``)."""
    report = Report()
    _listener_rows(report)
    return report.listeners


def _count(value: object, low: int = 0) -> bool:
    return type(value) is int and low <= value < 1 << 63


def _valid_row(row: object, pid: int, uid: int) -> dict[str, Any] | None:
    """*row* checked field by field and rebuilt from the checked values, or None."""
    if not isinstance(row, dict):
        return None
    transport = row.get("transport")
    if not isinstance(transport, str) or transport not in _TRANSPORTS:
        return None
    if row.get("pid") != pid or not _count(row.get("peer_pid")):
        return None
    ends = []
    for key in ("local", "peer"):
        pair = row.get(key)
        if not isinstance(pair, list) or len(pair) != 2:
            return None
        host, port = _host(pair[0]), _port(pair[1])
        if host is None or port is None:
            return None
        ends.append([host, port])
    counters = {key: row.get(key) for key in _COUNTERS}
    if not all(value is None or _count(value) for value in counters.values()):
        return None
    return {"transport": transport, "local": ends[0], "peer": ends[1], "pid": pid,
            "peer_pid": row["peer_pid"], "uid": uid, **counters}


class _Probe:
    """One query endpoint being asked: its socket, what it said so far, its deadline."""

    def __init__(self, name: str, pid: int) -> None:
        self.name, self.pid = name, pid
        self.uid = -1
        self.chunks: list[bytes] = []
        self.size = 0
        self.deadline = 0.0
        self.sock: _stdsocket.socket  # made by start()

    def start(self, now: float) -> str | None:
        """Connect and check who listens, before reading a byte; None if we may read, else
        why not (then the socket is closed already)."""
        self.deadline = now + ENDPOINT_TIMEOUT
        try:
            self.sock = StdSocket(_stdsocket.AF_UNIX, _stdsocket.SOCK_STREAM)
        except OSError:
            return NO_FDS
        why = self._check()
        if why is not None:
            self.sock.close()
        return why

    def _check(self) -> str | None:
        try:
            self.sock.setblocking(False)
            self.sock.connect(b"\0" + self.name[1:].encode())
            creds = peer_credentials(self.sock)
        except BlockingIOError:
            return SILENT  # its backlog is full: nobody accepts there
        except OSError:
            return REFUSED
        if creds.pid != self.pid:
            return PID_MISMATCH
        if os.getuid() not in (0, creds.uid):
            return OTHER_UID
        self.uid = creds.uid
        return None

    def read(self) -> bool:
        """Take what is there; True once the answer is complete (or over the cap)."""
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        self.chunks.append(data)
        self.size += len(data)
        return not data or self.size > MAX_ANSWER

    def rows(self, report: Report) -> None:
        """The answer's valid rows into *report*, the rest counted."""
        if self.size > MAX_ANSWER:
            report.skipped[TOO_BIG] += 1
            return
        if not self.size:
            report.skipped[REFUSED] += 1
            return
        try:
            body = json.loads(b"".join(self.chunks))
        except (ValueError, RecursionError):
            body = None
        if (not isinstance(body, dict) or body.get("pid") != self.pid
                or not isinstance(body.get("connections"), list)):
            report.skipped[BAD_ANSWER] += 1
            return
        for row in body["connections"]:
            checked = _valid_row(row, self.pid, self.uid)
            if checked is None:
                report.skipped[BAD_ROW] += 1
            else:
                report.connections.append(checked)


def _endpoints(report: Report) -> list[_Probe]:
    names: dict[str, int] = {}
    for _inode, flags, _state, path in _unix_table():
        if path.startswith(QUERY_PREFIX) and flags & _ACCEPTCON and path not in names:
            pid = endpoint_pid(path)
            if pid is None:
                report.skipped[BAD_NAME] += 1
            else:
                names[path] = pid
    return [_Probe(name, pid) for name, pid in names.items()]


def _ask_all(pending: list[_Probe], report: Report) -> None:
    """Ask every endpoint in *pending*, at most ``MAX_IN_FLIGHT`` at once, within the budget."""
    budget_end = time.monotonic() + QUERY_BUDGET
    active: set[_Probe] = set()
    with selectors.DefaultSelector() as selector:
        try:
            while pending or active:
                now = time.monotonic()
                if now >= budget_end:
                    break
                while pending and len(active) < MAX_IN_FLIGHT:
                    probe = pending.pop()
                    why = probe.start(now)
                    if why is None:
                        active.add(probe)
                        selector.register(probe.sock, selectors.EVENT_READ, probe)
                    else:
                        report.skipped[why] += 1
                if not active:
                    continue
                wait = min(budget_end, *(p.deadline for p in active)) - now
                ready = {key.data for key, _ in selector.select(max(wait, 0.0))}
                now = time.monotonic()
                for probe in list(active):
                    if probe in ready and probe.read():
                        probe.rows(report)
                    elif now >= probe.deadline:
                        report.skipped[SILENT] += 1
                    else:
                        continue
                    selector.unregister(probe.sock)
                    probe.sock.close()
                    active.discard(probe)
        finally:
            if pending or active:
                report.skipped[OUT_OF_TIME] += len(pending) + len(active)
            for probe in active:
                probe.sock.close()


def _connection_rows(report: Report) -> None:
    _ask_all(_endpoints(report), report)


def all_connections() -> list[dict[str, Any]]:
    """Live fast-path connections of every process that answers this user (checked rows)."""
    report = Report()
    _connection_rows(report)
    return report.connections


def gather(listening_only: bool = False) -> Report:
    """Listeners and (unless *listening_only*) connections, with what was left out."""
    report = Report()
    _listener_rows(report)
    if not listening_only:
        _connection_rows(report)
    return report


def _addr(pair: list[Any] | None) -> str:
    if not pair:
        return "*:*"
    host, port = printable(pair[0]), printable(pair[1])
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _fill(used: int | None, size: int | None) -> str:
    return "-" if used is None or size is None else f"{used}/{size}"


def _opt(value: object) -> str:
    return "-" if value is None else printable(value)


def _listener_note(row: dict[str, Any]) -> str:
    """Why a listener row may not be what it seems ("" if nothing is known against it)."""
    if row.get("tcp_uid") is None:
        return "!no TCP listener"
    if row.get("pid") is None:
        return "!holder not visible"
    if row.get("uid") is not None and row["uid"] != row["tcp_uid"]:
        return f"!name held by uid {printable(row['uid'])}"
    return ""


def render(lst: list[dict[str, Any]], conns: list[dict[str, Any]]) -> str:
    """The table ``loopfast stat`` prints.

    Uid is the TCP listener's owner for a listener (whom a client trusts), the
    answering process's for a connection.
    """
    head = (f"{'State':<7} {'Transport':<9} {'Local Address:Port':<24} "
            f"{'Peer Address:Port':<24} {'Uid':>6} {'Process':<18} {'Sent':>10} "
            f"{'Received':>10} {'Rx-fill':>15} {'Tx-fill':>15}")
    lines = [head]
    for row in lst:
        pid = "-" if row.get("pid") is None else f"pid={printable(row['pid'])}"
        lines.append(f"{'LISTEN':<7} {'-':<9} {_addr(row['local']):<24} {'*:*':<24} "
                     f"{_opt(row.get('tcp_uid')):>6} {pid:<18} {_listener_note(row)}")
    for row in conns:
        who = f"pid={printable(row['pid'])},peer={printable(row['peer_pid'])}"
        lines.append(f"{'ESTAB':<7} {printable(row['transport']):<9} "
                     f"{_addr(row['local']):<24} {_addr(row['peer']):<24} "
                     f"{_opt(row.get('uid')):>6} {who:<18} {_opt(row['bytes_out']):>10} "
                     f"{_opt(row['bytes_in']):>10} "
                     f"{_fill(row['rx_fill'], row['rx_size']):>15} "
                     f"{_fill(row['tx_fill'], row['tx_size']):>15}")
    return "".join(line.rstrip() + "\n" for line in lines)


def summary(skipped: collections.Counter[str]) -> str:
    """What was left out and why, one line each ("" if nothing was)."""
    return "".join(f"loopfast stat: skipped {count}: {printable(why)}\n"
                   for why, count in sorted(skipped.items()))


def main(listening_only: bool = False, as_json: bool = False) -> int:
    """``loopfast stat``: print listeners and connections, what was skipped on stderr; 0."""
    report = gather(listening_only)
    if as_json:
        print(json.dumps({"listeners": report.listeners, "connections": report.connections,
                          "skipped": dict(report.skipped)}, indent=2))
    else:
        print(render(report.listeners, report.connections), end="")
    sys.stderr.write(summary(report.skipped))
    return 0

