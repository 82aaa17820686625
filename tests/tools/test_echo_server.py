"""_tools/echo_server.py, the seed's echo server (SPEC P10): 15 clients, the 16th queued,
clients that vanish."""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import loopfast
from loopfast._tools.echo_server import EchoServer

from .._procs import child

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "poll_echo_server.py"


def _started(cmd: list[str]) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 15)
    if not ready:
        proc.kill()
        proc.wait(5)
        raise AssertionError("the server printed nothing within 15 s")
    line = proc.stdout.readline()
    return proc, int(line.split(":")[-1].split(",")[0])


def _stopped(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        if proc.stdout:
            proc.stdout.close()


@pytest.fixture(params=[False, True], ids=["tcp", "fastpath"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[int, bool]]:
    """``loopfast echo-server`` in its own process: (port, fast path)."""
    fast: bool = request.param
    cmd = [sys.executable, "-m", "loopfast", "echo-server", "--port", "0", "--max-clients", "15"]
    proc, port = _started(cmd + (["--fast-path"] if fast else []))
    try:
        yield port, fast
    finally:
        assert _stopped(proc) == 130


def _client(port: int, fast: bool) -> loopfast.socket:
    sock = loopfast.socket(fast_path=fast)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    return sock


def _echo(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    got = b""
    while len(got) < len(data):  # bounded: each recv waits at most the socket's timeout
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def test_fifteen_concurrent_clients_and_the_sixteenth_waits(server: tuple[int, bool]) -> None:
    port, fast = server
    clients = [_client(port, fast) for _ in range(15)]
    try:
        for rnd in range(3):  # every client has a message in flight before any is read
            for i, sock in enumerate(clients):
                sock.sendall(f"client {i} round {rnd};".encode())
            for i, sock in enumerate(clients):
                want = f"client {i} round {rnd};".encode()
                assert sock.recv(len(want), socket.MSG_WAITALL) == want
        assert all(sock.fast_path_active is fast for sock in clients)
        big = os.urandom(1 << 20)  # more than a socket buffer: the server must buffer
        assert _echo(clients[0], big) == big
        sixteenth = _client(port, fast)  # connects: the kernel's backlog holds it
        with sixteenth:
            sixteenth.sendall(b"me too")
            sixteenth.settimeout(0.3)
            with pytest.raises(TimeoutError):
                sixteenth.recv(6)  # queued: no slot for it yet
            clients.pop().close()
            sixteenth.settimeout(5)
            assert sixteenth.recv(6, socket.MSG_WAITALL) == b"me too"
    finally:
        for sock in clients:
            sock.close()


def _vanish_midway(pipe: object, port: int, fast: bool) -> None:
    sock = _client(port, fast)
    sock.sendall(b"half a mess")
    os.kill(os.getpid(), signal.SIGKILL)


def test_survives_clients_that_vanish_mid_message(server: tuple[int, bool]) -> None:
    port, fast = server
    steady = _client(port, fast)
    with steady:
        for _ in range(3):
            with child(_vanish_midway, port, fast) as (proc, _pipe):
                proc.join(10)
            sock = _client(port, fast)  # closes mid-message, never reading
            sock.sendall(b"x" * 100_000)
            sock.close()
            sock = _client(port, fast)  # resets
            sock.sendall(b"partial")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            sock = _client(port, fast)  # half-closes, still reads
            with sock:
                sock.sendall(b"bye")
                sock.shutdown(socket.SHUT_WR)
                assert sock.recv(3, socket.MSG_WAITALL) == b"bye"
            assert _echo(steady, b"still here") == b"still here"


def test_echo_server_in_process_stops_and_closes_everything() -> None:
    with loopfast.create_server(("127.0.0.1", 0)) as listener:
        lines: list[str] = []
        server = EchoServer(listener, 2, poll_timeout_ms=50, log=lines.append)
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        try:
            with _client(listener.getsockname()[1], False) as sock:
                assert _echo(sock, b"ping") == b"ping"
                deadline = time.monotonic() + 5
                while server.clients != 1 and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert server.clients == 1
        finally:
            server.stop.set()
            thread.join(10)
        assert not thread.is_alive() and server.clients == 0
        assert any("accepted" in line for line in lines)


def test_the_example_script_echoes() -> None:
    proc, port = _started([sys.executable, str(EXAMPLE), "0"])
    try:
        with _client(port, False) as sock:
            assert _echo(sock, b"seed") == b"seed"
    finally:
        assert _stopped(proc) == 0


def test_cli_refuses_a_bad_port(capsys: pytest.CaptureFixture[str]) -> None:
    from loopfast._tools.cli import main

    with loopfast.create_server(("127.0.0.1", 0)) as taken:
        assert main(["echo-server", "--port", str(taken.getsockname()[1])]) == 1
    assert "cannot listen" in capsys.readouterr().err
