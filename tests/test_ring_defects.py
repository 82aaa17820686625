"""Regression tests for three defects found by reading (issue 10); each failed before its fix.

1. ``dup()`` of a ``fast_path="stream"`` socket dropped the transport choice:
   the duplicate connected over the ring (_core/sockets/base.py, ``_take_settings``).
2. ``Channel_dealloc`` in _ring.c freed an instance of a heap type without
   releasing the type: its reference count grew by one per Channel.
3. ``RingOffer`` leaked its memfd when making a socket pair failed (EMFILE)
   (_fastpath/ring_link.py).
"""

from __future__ import annotations

import gc
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable

import loopfast
from loopfast import _ring

TIMEOUT = 10.0


def test_dup_keeps_the_stream_transport_and_spin(
        closing: Callable[[socket.socket], socket.socket]) -> None:
    srv = closing(loopfast.create_server(("127.0.0.1", 0), fast_path=True))
    srv.settimeout(TIMEOUT)
    original = closing(loopfast.socket(socket.AF_INET, socket.SOCK_STREAM, fast_path="stream",
                                       busy_poll_us=7))
    twin = closing(original.dup())
    twin.settimeout(TIMEOUT)
    twin.connect(srv.getsockname())
    acc, _ = srv.accept()
    closing(acc)
    assert twin.fast_path_transport == "stream"
    assert twin.getsockopt(socket.SOL_SOCKET, loopfast.SO_BUSY_POLL) == 7
    twin.sendall(b"over the stream")
    acc.settimeout(TIMEOUT)
    assert acc.recv(100) == b"over the stream"


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


def test_ring_offer_closes_its_memfd_when_a_socket_pair_fails() -> None:
    # In a child whose fd table is small and dense: the limit leaves room for the
    # memfd and one more fd, so the first socket pair fails with EMFILE.
    code = textwrap.dedent("""
        import errno, os, resource
        from loopfast._fastpath.ring_link import RingOffer

        def fds():
            return sorted(int(n) for n in os.listdir("/proc/self/fd"))

        before = fds()
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(before) + 3, hard))
        try:
            RingOffer(65536, 65536)
        except OSError as exc:
            assert exc.errno == errno.EMFILE, exc
        else:
            raise SystemExit("RingOffer was made within the limit: the test needs a tighter one")
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        after = fds()
        assert after == before, f"leaked fds: {sorted(set(after) - set(before))}"
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr or done.stdout
