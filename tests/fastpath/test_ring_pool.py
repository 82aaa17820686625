"""Ring offers' parts made ahead of need (``ring_link._Pool``, ``arenas``), and side states
in shared slots.

- The pool fills after a connect and hands its parts to the next one; over
  1,000 connections nothing is left open.
- fork(): a child starts with an empty pool and no arena (it closes its copies
  of the parent's fds) and connects with parts of its own; the parent's stay
  its own.
- At the fd limit the pool gives its fds back and the connect goes on, or takes
  TCP; nothing leaks.
- Side states share pages; after fork() neither process hands a slot of those
  pages to a new connection, so a connection the child inherited keeps its
  positions while the parent opens and closes others.
"""

from __future__ import annotations

import errno
import gc
import os
import resource
import socket
import time
import weakref
from collections.abc import Callable
from multiprocessing.connection import Connection

import pytest

import loopfast
from loopfast._fastpath import arenas, ring_link
from loopfast._fastpath.background import background

from .._fds import is_open
from .._procs import child, receive
from ..conftest import TIMEOUT, Pair


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _round_trip(make_pair: Callable[..., Pair]) -> None:
    cli, acc = make_pair()
    assert cli.fast_path_transport == "ring"
    cli.sendall(b"ping")
    assert acc.recv(4) == b"ping"
    cli.close()
    acc.close()


def test_pool_fills_and_feeds_the_next_connect(make_pair: Callable[..., Pair]) -> None:
    _round_trip(make_pair)  # tells the pool the sizes connections ask for
    ring_link.refill()
    held = list(ring_link._pool._parts)
    assert len(held) == ring_link._Pool.DEPTH
    _round_trip(make_pair)  # takes one part; the connector refills once its hello is out
    left = ring_link._pool._parts
    assert len(left) == ring_link._Pool.DEPTH
    assert sum(p in held for p in left) == ring_link._Pool.DEPTH - 1
    taken = next(p for p in held if p not in left)
    assert taken.socks == []  # handed on, not kept


def test_thousand_connections_with_the_pool_leave_nothing_open(
        make_server: Callable[..., loopfast.socket]) -> None:
    srv = make_server()
    srv.settimeout(TIMEOUT)

    def cycle(n: int) -> None:
        for i in range(n):
            with loopfast.create_connection(srv.getsockname(), timeout=TIMEOUT,
                                            fast_path=True) as cli:
                acc, _ = srv.accept()
                with acc:
                    cli.sendall(b"%d" % i)
                    assert acc.recv(16) == b"%d" % i
            ring_link.refill()

    cycle(50)
    before = _open_fds()
    cycle(1000)
    assert _open_fds() == before


def _child_pool(pipe: Connection, port: int, parent_fds: list[int]) -> None:
    pool_empty = ring_link._pool._parts == [] and arenas.client_fds() == 0
    still_open = [fd for fd in parent_fds if is_open(fd)]
    with loopfast.create_connection(("127.0.0.1", port), timeout=TIMEOUT, fast_path=True) as c:
        c.sendall(b"from the child")
        pipe.send((pool_empty, still_open, c.fast_path_transport))


def test_a_child_never_uses_the_parents_pooled_parts(make_pair: Callable[..., Pair],
                                                      make_server: Callable[..., loopfast.socket]
                                                      ) -> None:
    _round_trip(make_pair)
    ring_link.refill()
    parents = [s.fileno() for p in ring_link._pool._parts for s in p.socks] + [
        entry.fd for entry in arenas._client._arenas.values()]
    assert len(parents) >= 2 * ring_link._Pool.DEPTH + 1  # the pairs, the arenas
    srv = make_server()
    srv.settimeout(TIMEOUT)
    with child(_child_pool, srv.getsockname()[1], parents) as (proc, pipe):
        acc, _ = srv.accept()
        with acc:
            acc.settimeout(TIMEOUT)
            assert acc.recv(100) == b"from the child"
        pool_empty, still_open, transport = receive(pipe)
        proc.join(TIMEOUT)
    assert (pool_empty, still_open, transport) == (True, [], "ring")
    assert all(is_open(fd) for fd in parents)  # the parent's are untouched
    assert len(ring_link._pool._parts) == ring_link._Pool.DEPTH


def _quiet_fds() -> int:
    """Open fds once the background thread (and its epoll, the stat endpoint) is gone."""
    for _ in range(60):  # bounded: it stops within a few ticks of the last close
        if not background.running():
            break
        time.sleep(0.1)
    return _open_fds()


def _at_the_fd_limit(pipe: Connection, port: int) -> None:
    ring_link.drop_pooled()
    baseline = _quiet_fds()
    ring_link.refill()  # the pool holds DEPTH pairs (2 fds each)
    held = len(ring_link._pool._parts)
    # Room for a socket and a few fds more, not for a ring offer made afresh.
    limit = max(int(fd) for fd in os.listdir("/proc/self/fd")) + 4
    resource.setrlimit(resource.RLIMIT_NOFILE,
                       (limit, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    outcomes = []
    for _ in range(held + 2):  # the pooled parts, then no more room
        try:
            c = loopfast.create_connection(("127.0.0.1", port), timeout=TIMEOUT,
                                           fast_path=True)
        except OSError as exc:
            outcomes.append(("raised", exc.errno))
            continue
        c.sendall(b"x")
        outcomes.append(("connected", c.fast_path_transport))
        c.close()
    ring_link.drop_pooled()
    pipe.send((held, outcomes, baseline, _quiet_fds()))


def test_fd_limit_falls_back_without_leaks(make_pair: Callable[..., Pair],
                                           make_server: Callable[..., loopfast.socket]) -> None:
    _round_trip(make_pair)
    srv = make_server()
    port = srv.getsockname()[1]
    accepted: list[socket.socket] = []
    with child(_at_the_fd_limit, port) as (proc, pipe):
        srv.settimeout(0.05)
        for _ in range(400):  # bounded: 20 s
            if pipe.poll(0):
                break
            try:
                accepted.append(srv.accept()[0])
            except TimeoutError:
                continue
        held, outcomes, baseline, after = receive(pipe)
        proc.join(TIMEOUT)
    for acc in accepted:
        acc.close()
    assert held == ring_link._Pool.DEPTH
    # The pooled parts serve the first connects; then TCP or a clear EMFILE, nothing else.
    assert outcomes[:held] == [("connected", "ring")] * held
    assert all(o in (("connected", "ring"), ("connected", None), ("raised", errno.EMFILE))
               for o in outcomes), outcomes
    assert after == baseline


_inherited: list[socket.socket] = []  # handed to the child by fork alone, not as arguments


def _use_inherited(pipe: Connection) -> None:
    cli, acc = _inherited
    assert pipe.poll(TIMEOUT) and pipe.recv() == "go"  # once the parent made new ones
    got = []
    for i in range(200):
        cli.sendall(b"%05d" % i)
        got.append(acc.recv(5, socket.MSG_WAITALL))
    pipe.send(got == [b"%05d" % i for i in range(200)])


@pytest.mark.timeout(60)
def test_new_connections_never_take_the_slots_of_inherited_ones(
        make_server: Callable[..., loopfast.socket]) -> None:
    srv = make_server()
    srv.settimeout(TIMEOUT)
    cli = loopfast.create_connection(srv.getsockname(), timeout=TIMEOUT, fast_path=True)
    acc = srv.accept()[0]
    acc.settimeout(TIMEOUT)
    channels = [weakref.ref(cli._channel), weakref.ref(acc._channel)]
    _inherited[:] = [cli, acc]
    with child(_use_inherited) as (proc, pipe):
        cli.close()  # the parent lets go of its copies: their slots are free here
        acc.close()
        del cli, acc
        _inherited.clear()
        gc.collect()
        assert [ref() for ref in channels] == [None, None]
        # New connections, live while the child uses its inherited one.
        keep = [loopfast.create_connection(srv.getsockname(), timeout=TIMEOUT, fast_path=True)
                for _ in range(4)]
        keep += [srv.accept()[0] for _ in range(4)]
        pipe.send("go")
        for sock in keep[:4]:
            sock.sendall(b"p" * 1000)
        assert receive(pipe) is True
        for sock in keep:
            sock.close()
        proc.join(TIMEOUT)
