"""_tools/stat.py, ``loopfast stat``: listeners from /proc/net/unix, connections from their
processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from loopfast._fastpath import registry
from loopfast._tools.cli import main

STAT = [sys.executable, "-m", "loopfast", "stat"]
Pair = tuple[Any, Any]


def _stat_json() -> dict[str, Any]:
    done = subprocess.run([*STAT, "--json"], capture_output=True, text=True, timeout=15)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_stat_lists_a_live_connection_and_not_after_close(
        make_pair: Callable[..., Pair]) -> None:
    cli, acc = make_pair()
    cli.sendall(b"x" * 1000)
    assert acc.recv(10) == b"x" * 10
    port = acc.getsockname()[1]
    report = _stat_json()
    me = os.getuid()
    assert {"local": ["127.0.0.1", port], "pid": os.getpid(), "uid": me,
            "tcp_uid": me} in report["listeners"]
    ours = [c for c in report["connections"] if port in (c["local"][1], c["peer"][1])]
    assert len(ours) == 2
    client = next(c for c in ours if c["peer"][1] == port)
    assert client["pid"] == client["peer_pid"] == os.getpid()
    assert client["transport"] == "ring" and client["uid"] == me
    assert client["bytes_out"] == 1000 and client["tx_fill"] == 990
    text = subprocess.run(STAT, capture_output=True, text=True, timeout=15).stdout
    assert f"127.0.0.1:{cli.getsockname()[1]}" in text and "990/" in text
    cli.close()
    acc.close()
    report = _stat_json()
    assert not [c for c in report["connections"] if port in (c["local"][1], c["peer"][1])]


def test_stat_in_process(capsys: Any) -> None:
    assert main(["stat", "--listening"]) == 0
    assert capsys.readouterr().out.startswith("State")


def test_seeing_connections_does_not_start_watching_ring_peers(
        make_pair: Callable[..., Pair]) -> None:
    # A ring socket's fileno() starts a watch on its peer (the background thread's
    # epoll, kept for the connection's life). Counting, pruning and describing the
    # registered connections must not: a process of 10,000 idle connections that
    # never asked for a fileno would pay for 10,000 watches.
    cli, acc = make_pair()
    links = [cli._state.link, acc._state.link]
    assert not any(link.watched for link in links)
    with registry._registry.lock:
        registry._registry._prune_locked()
    registry._registry._tick()
    assert [c for c in registry.connections() if c["pid"] == os.getpid()]
    assert not any(link.watched for link in links)
