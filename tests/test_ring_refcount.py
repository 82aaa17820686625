"""The C core's types are released with their instances (``Channel_dealloc`` once kept a
reference to its heap type per Channel: +2 per connection)."""

from __future__ import annotations

import gc
import socket
import sys

import loopfast
from loopfast import _ring

TIMEOUT = 10.0


def _open_and_close(count: int) -> None:
    srv = loopfast.create_server(("127.0.0.1", 0), fast_path=True)
    with srv:
        srv.settimeout(TIMEOUT)
        for _ in range(count):
            with loopfast.socket(socket.AF_INET, socket.SOCK_STREAM, fast_path=True) as cli:
                cli.settimeout(TIMEOUT)
                cli.connect(srv.getsockname())
                acc, _ = srv.accept()
                with acc:
                    assert cli.fast_path_transport == "ring"


def test_channels_give_their_type_back() -> None:
    _open_and_close(20)  # warm-up: caches, the watcher and the stat endpoint
    gc.collect()
    before = sys.getrefcount(_ring.Channel)
    _open_and_close(1_000)
    gc.collect()
    grown = sys.getrefcount(_ring.Channel) - before
    assert grown < 10, f"Channel's reference count grew by {grown} over 1,000 connections"
