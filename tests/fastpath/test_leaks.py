"""The fast path's kernel parts (_fastpath/*) are released: no fd, name or process-state
growth across many fast-path connections (issue: foundation)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import pytest

import loopfast


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _loopfast_names() -> int:
    """Rendezvous names this process holds (other processes' may come and go meanwhile)."""
    mine = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            mine.add(target[8:-1])
    with open("/proc/net/unix", encoding="ascii", errors="replace") as table:
        return sum("@loopfast/" in line and line.split()[6] in mine for line in table)


@pytest.mark.timeout(120)
def test_thousand_connections_leak_no_fds(closing: Callable[..., socket.socket]) -> None:
    srv = closing(loopfast.create_server(("127.0.0.1", 0), fast_path=True))
    srv.settimeout(5)
    addr = srv.getsockname()
    names = _loopfast_names()
    before = _fds()
    for i in range(1000):
        with loopfast.create_connection(addr, timeout=5, fast_path=True) as cli:
            acc, _ = srv.accept()
            with acc:
                assert cli.fast_path_active and acc.fast_path_active
                cli.sendall(i.to_bytes(2, "big"))
                assert acc.recv(2) == i.to_bytes(2, "big")
                if i % 3 == 0:
                    cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # shadow socket
                    acc.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if i % 5 == 0:
                    acc.dup().close()
    assert _fds() == before
    assert _loopfast_names() == names
    srv.close()
    assert _loopfast_names() == names - 1
