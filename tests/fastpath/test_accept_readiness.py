"""Issue 13 item 1: a non-blocking fast-path listener that select() reports readable accepts
without BlockingIOError, as a TCP listener does, for honest clients in another process.

The client sends its hello right after its rendezvous connect, and accept() waits for a
hello not queued yet at most ``listener.HELLO_GRACE`` in all (tests/fastpath/
test_hostile_arrivals.py holds that silent arrivals still cannot make it block or spin).
The client is a fresh interpreter, so its first connection is its first contact with the
listener (no owner cached).
"""

from __future__ import annotations

import select
import socket
import subprocess
import sys
import textwrap

import pytest

import loopfast

from .._procs import stop

ROUNDS = 20
TIMEOUT = 10.0

CLIENT = textwrap.dedent("""
    import socket, sys
    import loopfast
    port, transport, rounds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    for _ in range(rounds):
        if transport == "tcp":
            cli = socket.create_connection(("127.0.0.1", port), 10)
        else:
            cli = loopfast.create_connection(("127.0.0.1", port), 10, fast_path=transport)
        with cli:
            cli.sendall(b"?")
            assert cli.recv(1) == b"!"
""")


@pytest.mark.parametrize("transport", ["tcp", "ring", "stream"])
def test_select_then_accept_never_raises_blocking_io_error(transport: str) -> None:
    if transport == "tcp":
        srv = socket.create_server(("127.0.0.1", 0))
    else:
        srv = loopfast.create_server(("127.0.0.1", 0), fast_path=True)
    with srv:
        srv.setblocking(False)
        client = subprocess.Popen(
            [sys.executable, "-c", CLIENT, str(srv.getsockname()[1]), transport, str(ROUNDS)],
            text=True, stderr=subprocess.PIPE)
        try:
            for i in range(ROUNDS):
                readable, _, _ = select.select([srv], [], [], TIMEOUT)
                assert readable, f"round {i}: the listener never turned readable"
                try:
                    conn, _ = srv.accept()
                except BlockingIOError:
                    pytest.fail(f"round {i}: select() said readable, accept() BlockingIOError")
                with conn:
                    conn.settimeout(TIMEOUT)
                    assert conn.recv(1) == b"?"
                    conn.sendall(b"!")
                    active = getattr(conn, "fast_path_active", False)
                    assert active == (transport != "tcp"), f"round {i}: fast path {active}"
            assert client.wait(TIMEOUT) == 0, client.stderr.read() if client.stderr else ""
        finally:
            if client.poll() is None:
                stop(client)
            elif client.stderr:
                client.stderr.close()
