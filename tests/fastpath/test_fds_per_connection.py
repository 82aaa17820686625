"""Fds a ring connection holds on each side (issue 12), counted around 200 open connections.

The server runs in another process, as in real use. Each side counts from its
first connection on (a process's own parts, the background thread's epoll and
the stat endpoint, come with the first one). The counts are what the
design gives today (``docs/design.md``: 4 on the client: its fd, its own and the
peer's wake-up w, the reserved TCP port; 3 on the server), with the offers' pool
left out (``ring_link.pooled_fds``): a change that adds one shows here.
"""

from __future__ import annotations

from multiprocessing.connection import Connection

import loopfast

from .._fds import open_fds
from .._procs import child, receive
from ..conftest import TIMEOUT

N = 200
CLIENT_FDS = 4
SERVER_FDS = 3


def _server(pipe: Connection, n: int) -> None:
    with loopfast.create_server(("127.0.0.1", 0), fast_path=True, backlog=n) as srv:
        srv.settimeout(TIMEOUT)
        pipe.send(srv.getsockname()[1])
        held = [srv.accept()[0]]
        before = open_fds()
        held += [srv.accept()[0] for _ in range(n - 1)]
        transports = {sock.fast_path_transport for sock in held}
        pipe.send((open_fds() - before, transports))
        pipe.recv()  # until the client has counted too
        for sock in held:
            sock.close()


def test_fds_per_ring_connection_on_each_side() -> None:
    with child(_server, N) as (proc, pipe):
        port = receive(pipe)

        def connect() -> loopfast.socket:
            return loopfast.create_connection(("127.0.0.1", port), timeout=TIMEOUT,
                                              fast_path=True)

        held = [connect()]
        before = open_fds()
        held += [connect() for _ in range(N - 1)]
        client = open_fds() - before
        server, transports = receive(pipe)
        pipe.send("done")
        assert {sock.fast_path_transport for sock in held} == {"ring"} == transports
        for sock in held:
            sock.close()
        proc.join(TIMEOUT)
    assert (client, server) == (CLIENT_FDS * (N - 1), SERVER_FDS * (N - 1))
