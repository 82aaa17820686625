"""_tools/stat.py against hostile local users: squatters of another uid, silent endpoints,
malformed answers, names bound in advance.

The processes are real: endpoints of another uid run in forked children as nobody
(65534) or 65533 (``tests.netns.Child``), and ``loopfast stat`` runs in-process, in a
child of another uid, or through ``python -m``. Where the test process cannot change
uid, those tests skip and say why.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket as stdsocket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import loopfast
import loopfast._core.sockets  # the children (nobody) cannot import the stdlib lazily
from loopfast._core.addresses import NAME_PREFIX
from loopfast._fastpath import registry
from loopfast._tools import stat

from ..netns import NOBODY, Child, child_or_skip

pytestmark = pytest.mark.timeout(60)

ME = os.getuid()
OTHER = 65533  # a second uid that is neither ours nor nobody
TIMEOUT = 5.0
ESC = "\x1b]0;owned\x07\x1b[2J\x9b31m\u202e"
STAT = [sys.executable, "-m", "loopfast", "stat"]

Closing = Callable[[stdsocket.socket], Any]


def _token_name(pid: int) -> bytes:
    return f"\0loopfast-stat/{pid}/{secrets.token_hex(8)}".encode()


def _row(owner: int, **changes: Any) -> dict[str, Any]:
    """A connection row as the registry of pid *owner* writes it, with *changes*."""
    row: dict[str, Any] = {
        "transport": "ring", "local": ["127.0.0.1", 4242], "peer": ["127.0.0.1", 4243],
        "pid": owner, "peer_pid": owner, "bytes_out": 1, "bytes_in": 2, "rx_fill": 0,
        "tx_fill": 0, "rx_size": 4096, "tx_size": 4096}
    row.update(changes)
    return row


def _answer_until(server: stdsocket.socket, body: bytes, stop: threading.Event) -> None:
    """Answer *body* to every asker of *server* until *stop* is set (polling: a thread
    blocked in accept() would keep the name alive after the socket is closed)."""
    server.settimeout(0.05)
    while not stop.is_set():
        try:
            conn, _ = server.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        with conn:
            conn.settimeout(TIMEOUT)
            with contextlib.suppress(OSError):
                conn.sendall(body)


# -- what runs in the children (module level: sent by reference) --------------------------


def _fake_endpoint(state: dict[str, Any], name: bytes | None, body: bytes) -> int:
    """Listen on *name* (default: a well-formed one with this pid) and answer *body* to
    every asker, from a thread; this process's uid."""
    server = stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    state.setdefault("sockets", []).append(server)
    server.bind(name if name is not None else _token_name(os.getpid()))
    server.listen(64)
    threading.Thread(target=_answer_until, args=(server, body, threading.Event()),
                     daemon=True).start()
    return os.getuid()


def _gather(state: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, int], str]:
    """``loopfast stat``'s report in this process: connections, skipped, the printed text."""
    report = stat.gather()
    text = stat.render(report.listeners, report.connections) + stat.summary(report.skipped)
    return report.connections, dict(report.skipped), text


def _connected_pair(state: dict[str, Any]) -> int:
    """A fast-path connection within this process (kept open); its server's port."""
    srv = loopfast.create_server(("127.0.0.1", 0), fast_path=True)
    state.setdefault("sockets", []).append(srv)
    srv.settimeout(TIMEOUT)
    port = int(srv.getsockname()[1])
    cli = loopfast.create_connection(("127.0.0.1", port), TIMEOUT, fast_path=True)
    acc, _ = srv.accept()
    state["sockets"] += [cli, acc]
    assert cli.fast_path_active and acc.fast_path_active
    return port


# -- helpers ----------------------------------------------------------------------------


@pytest.fixture
def serve_here() -> Iterator[Callable[[bytes], None]]:
    """``serve_here(body)``: an endpoint of this process, well named, that answers *body*;
    gone at teardown."""
    stop = threading.Event()
    made: list[tuple[stdsocket.socket, threading.Thread]] = []

    def start(body: bytes) -> None:
        server = stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
        server.bind(_token_name(os.getpid()))
        server.listen(8)
        thread = threading.Thread(target=_answer_until, args=(server, body, stop), daemon=True)
        thread.start()
        made.append((server, thread))

    yield start
    stop.set()
    for server, thread in made:
        thread.join(TIMEOUT)
        server.close()


def _evil_body(pid: int) -> bytes:
    return json.dumps({"pid": pid, "connections": [
        _row(pid, transport="ring" + ESC), _row(pid, local=[ESC, 1])]}).encode()


# -- (1) endpoints of another uid ----------------------------------------------------------


def test_squatter_of_another_uid_is_skipped_unread(squatter: Child) -> None:
    """A user sees no row of another uid's endpoint, and is told it was skipped."""
    if ME != 0:
        pytest.skip("needs root to run stat as one uid and the squatter as another")
    assert squatter.call(_fake_endpoint, None, _evil_body(squatter.pid)) == NOBODY
    with child_or_skip(OTHER) as asker:
        conns, skipped, text = asker.call(_gather, timeout=TIMEOUT)
    assert not [c for c in conns if c["pid"] == squatter.pid]
    # The squatter, and the test process's own endpoint (root): another uid each.
    assert skipped.get(stat.OTHER_UID, 0) >= 2, skipped
    assert "\x1b" not in text and "\x9b" not in text and "\u202e" not in text
    assert f"skipped {skipped[stat.OTHER_UID]}: endpoint of another uid" in text


def test_root_sees_another_uids_endpoint_with_its_uid_and_no_escapes(squatter: Child) -> None:
    if ME != 0:
        pytest.skip("only root asks endpoints of every uid")
    body = json.loads(_evil_body(squatter.pid))
    body["connections"].append(_row(squatter.pid, local=["127.0.0.1", 4244]))
    assert squatter.call(_fake_endpoint, None, json.dumps(body).encode()) == NOBODY
    conns, skipped, text = _gather({})
    theirs = [c for c in conns if c["pid"] == squatter.pid]
    assert [(c["uid"], c["local"]) for c in theirs] == [(NOBODY, ["127.0.0.1", 4244])]
    assert skipped.get(stat.BAD_ROW, 0) >= 2, skipped
    assert "\x1b" not in text and "\x9b" not in text and "\u202e" not in text
    line = next(line for line in text.splitlines() if "127.0.0.1:4244" in line)
    assert f" {NOBODY} pid={squatter.pid}," in line


def test_printable_strips_escapes_and_control_characters() -> None:
    text = ("a\x1b[31mb\x1b]0;title\x07c\x9b2Jd\x00e\x7ff\x85g\u202eh\u200bi\x1bPq\x1b\\j"
            "\x1b7\n\tk\x1b")
    assert stat.printable(text) == "abcdefghijk"


# -- (2) silent endpoints ------------------------------------------------------------------


def test_twenty_silent_endpoints_do_not_stall_stat(closing: Closing) -> None:
    """Each endpoint listens with a well-formed name and our pid, and never answers."""
    for _ in range(20):
        silent = closing(stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM))
        silent.bind(_token_name(os.getpid()))
        silent.listen(8)
    start = time.monotonic()
    done = subprocess.run(STAT, capture_output=True, text=True, timeout=15)
    took = time.monotonic() - start
    assert done.returncode == 0, done.stderr
    assert took < 2.0, took
    assert f"skipped 20: endpoint silent for {stat.ENDPOINT_TIMEOUT} s" in done.stderr


def test_a_full_backlog_counts_as_silent(closing: Closing) -> None:
    silent = closing(stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM))
    name = _token_name(os.getpid())
    silent.bind(name)
    silent.listen(0)
    for _ in range(4):  # fill the backlog; the rest would block
        filler = closing(stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM))
        filler.setblocking(False)
        try:
            filler.connect(name)
        except BlockingIOError:
            break
    start = time.monotonic()
    _conns, skipped, _text = _gather({})
    assert time.monotonic() - start < 2.0
    assert skipped.get(stat.SILENT) == 1, skipped


# -- (3) what an answer may hold ------------------------------------------------------------


_BAD_ROWS: list[dict[str, Any] | Any] = [
    {"local": ["127.0.0.1", 70000]}, {"peer": ["127.0.0.1", -1]}, {"local": ["not-an-ip", 1]},
    {"local": ["::1%\x1b[2J", 1]}, {"peer": ["127.0.0.1", 1, 2]}, {"local": None},
    {"pid": -1}, {"pid": True}, {"pid": 1}, {"peer_pid": "1"}, {"transport": "tcp"},
    {"transport": ["ring"]}, {"bytes_out": -5}, {"rx_fill": 1.5}, {"tx_size": 1 << 64},
    {"local": ["127.0.0.1", True]},
]


def test_malformed_rows_are_dropped_and_counted(
        serve_here: Callable[[bytes], None]) -> None:
    pid = os.getpid()
    rows: list[Any] = [_row(pid, **bad) for bad in _BAD_ROWS]
    rows += ["a string", 7, None, _row(pid, local=["::1", 5151], bytes_in=None)]
    serve_here(json.dumps({"pid": pid, "connections": rows}).encode())
    conns, skipped, text = _gather({})
    good = [c for c in conns if c["local"] == ["::1", 5151]]
    assert len(good) == 1 and good[0]["uid"] == ME and good[0]["bytes_in"] is None
    assert skipped.get(stat.BAD_ROW) == len(_BAD_ROWS) + 3, skipped
    assert "[::1]:5151" in text and "\x1b" not in text


@pytest.mark.parametrize("body", [
    b"not json", b"[1, 2]", b'{"pid": 1, "connections": []}', b'{"connections": {}}',
    b"[" * 100000, b'{"pid": %d, "connections": "x"}',
], ids=["text", "list", "other-pid", "no-pid", "deep", "not-a-list"])
def test_a_malformed_answer_is_dropped_and_counted(
        serve_here: Callable[[bytes], None], body: bytes) -> None:
    serve_here(body.replace(b"%d", str(os.getpid()).encode()))
    _conns, skipped, _text = _gather({})
    assert skipped.get(stat.BAD_ANSWER) == 1, skipped


def test_an_answer_over_the_cap_is_dropped(serve_here: Callable[[bytes], None]) -> None:
    serve_here(b" " * (stat.MAX_ANSWER + 1))
    _conns, skipped, _text = _gather({})
    assert skipped.get(stat.TOO_BIG) == 1, skipped


def test_names_that_are_not_loopfasts_are_skipped_and_counted(closing: Closing) -> None:
    before = _gather({})[1]
    for name in [f"\0loopfast-stat/{os.getpid()}".encode(),
                 f"\0loopfast-stat/{os.getpid()}/x\x1b[2J".encode(),
                 NAME_PREFIX + b"127.0.0.1/99999", NAME_PREFIX + b"\x1b[2J/80",
                 NAME_PREFIX + b"127.0.0.1/8\x1b0", NAME_PREFIX + "\u202e::1/80".encode()]:
        sock = closing(stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM))
        sock.bind(name)
        sock.listen(1)
    done = subprocess.run(STAT, capture_output=True, text=True, timeout=15)
    assert done.returncode == 0, done.stderr
    after = _gather({})[1]
    assert after.get(stat.BAD_NAME, 0) - before.get(stat.BAD_NAME, 0) == 2
    assert after.get(stat.BAD_LISTENER, 0) - before.get(stat.BAD_LISTENER, 0) == 4
    assert "\x1b" not in done.stdout + done.stderr and "\u202e" not in done.stdout


# -- (4) names bound in advance ---------------------------------------------------------------


def test_a_prebound_name_does_not_hide_a_processs_connections(squatter: Child) -> None:
    """nobody takes the names a process would have had (the old fixed one, and one with a
    guessed token) before the process opens its endpoint; its connections still show."""
    with child_or_skip(None) as victim:
        prebound = [f"\0loopfast-stat/{victim.pid}".encode(), _token_name(victim.pid)]
        for name in prebound:
            squatter.call(_fake_endpoint, name, _evil_body(victim.pid))
        port = victim.call(_connected_pair, timeout=TIMEOUT)
        done = subprocess.run([*STAT, "--json"], capture_output=True, text=True, timeout=15)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    theirs = [c for c in report["connections"] if port in (c["local"][1], c["peer"][1])]
    assert len(theirs) == 2 and {c["pid"] for c in theirs} == {victim.pid}
    assert report["skipped"][stat.BAD_NAME] >= 1  # the old fixed name
    # Root asks the squatter's well-formed name, and finds another pid listening there.
    assert report["skipped"][stat.PID_MISMATCH] >= 1


def test_an_endpoint_that_cannot_bind_logs_once_and_costs_no_connection(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        closing: Closing) -> None:
    caplog.set_level(logging.WARNING, logger="loopfast")
    token = secrets.token_hex(8)
    taken = closing(stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM))
    taken.bind(f"\0loopfast-stat/{os.getpid()}/{token}".encode())
    monkeypatch.setattr(registry.secrets, "token_hex", lambda _n: token)
    fresh = registry._Registry()
    fresh.start()
    fresh.start()
    assert fresh.failed and fresh.endpoint is None
    logged = [r.getMessage() for r in caplog.records if r.name == "loopfast"]
    assert len(logged) == 1 and "stat endpoint unavailable" in logged[0], logged


def test_the_endpoints_name_carries_its_pid_and_a_token() -> None:
    with open("/proc/net/unix") as table:
        names = [fields[7] for fields in map(str.split, table)
                 if len(fields) >= 8 and fields[7].startswith(registry.QUERY_PREFIX)]
    assert os.getpid() in [registry.endpoint_pid(name) for name in names]
    assert registry.endpoint_pid(f"@loopfast-stat/{os.getpid()}") is None
    assert registry.endpoint_pid("@loopfast-stat/0/" + "0" * 16) is None
