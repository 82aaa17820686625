"""_core/patch.py and _tools/run.py: loopfast.patch() and ``python -m loopfast run`` (SPEC A2),
unchanged programs, as processes."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import loopfast
from loopfast._core.stdlib import StdSocket

from .._procs import stop

RUN = [sys.executable, "-m", "loopfast", "run"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
STEP = 15


# -- in-process --------------------------------------------------------------------


@pytest.mark.usefixtures("patched")
def test_patch_makes_tcp_sockets_opt_in() -> None:
    original = StdSocket
    with socket.socket() as tcp, socket.socket(socket.AF_INET6) as tcp6, \
            socket.socket(type=socket.SOCK_DGRAM) as udp, \
            socket.socket(socket.AF_UNIX) as unix:
        assert tcp.fast_path and tcp6.fast_path  # type: ignore[attr-defined]
        assert not udp.fast_path and not unix.fast_path  # type: ignore[attr-defined]
        assert isinstance(tcp, socket.socket) and isinstance(tcp, original)
        with socket.socket(fileno=os.dup(tcp.fileno())) as rebuilt:
            assert not rebuilt.fast_path  # type: ignore[attr-defined]  # made around an fd
    a, b = socket.socketpair()
    with a, b:
        assert isinstance(a, socket.socket)


def test_isinstance_answers_as_without_the_patch(patched: None) -> None:
    import ssl

    with StdSocket() as plain:
        assert isinstance(plain, socket.socket)
    assert issubclass(ssl.SSLSocket, socket.socket)
    assert not isinstance(object(), socket.socket)


def test_unpatch_restores_the_class() -> None:
    loopfast.patch("ring")
    assert loopfast.patched()
    loopfast.unpatch()
    assert socket.socket is StdSocket and not loopfast.patched()


def test_patch_refuses_an_unknown_transport() -> None:
    with pytest.raises(OSError, match="stream"):
        loopfast.patch("pipe")
    assert not loopfast.patched()


@pytest.mark.usefixtures("patched")
def test_create_connection_goes_fast() -> None:
    with socket.create_server(("127.0.0.1", 0)) as srv:
        srv.settimeout(5)
        with socket.create_connection(srv.getsockname(), timeout=5) as cli:
            conn, _ = srv.accept()
            with conn:
                assert cli.fast_path_active and conn.fast_path_active  # type: ignore[attr-defined]
                assert cli.fast_path_transport == "ring"  # type: ignore[attr-defined]
                cli.sendall(b"hi")
                assert conn.recv(2) == b"hi"


# -- unchanged programs --------------------------------------------------------------


def _spawn(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(args, cwd=cwd, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _first_line(proc: subprocess.Popen[str], pattern: str) -> re.Match[str]:
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the server prints it at once (bounded by the timeout)
    found = re.search(pattern, line)
    if found is None:
        proc.kill()
        _, err = proc.communicate(timeout=STEP)
        raise AssertionError(f"server said {line!r}; stderr: {err}")
    return found


def _script(where: Path, name: str, text: str) -> Path:
    path = where / name
    path.write_text(textwrap.dedent(text))
    return path


FETCH = """
    import sys, urllib.request
    with urllib.request.urlopen(sys.argv[1], timeout=10) as reply:
        print(reply.status, reply.read().decode())
"""


@pytest.mark.parametrize(("server_run", "transport"),
                         [(True, "stream"), (True, "ring"), (False, "stream")])
def test_http_server_and_urllib(tmp_path: Path, server_run: bool, transport: str) -> None:
    (tmp_path / "hello.txt").write_text("hello over loopback")
    fetch = _script(tmp_path, "fetch.py", FETCH)
    prefix = [*RUN, "--transport", transport] if server_run else [sys.executable]
    server = _spawn([*prefix, "-m", "http.server", "0", "--bind", "127.0.0.1"], tmp_path)
    try:
        port = _first_line(server, r"port (\d+)").group(1)
        client = subprocess.run(
            [*RUN, "--transport", transport, "--report", "--", str(fetch),
             f"http://127.0.0.1:{port}/hello.txt"],
            cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=STEP)
    finally:
        stop(server)
    assert client.returncode == 0, client.stderr
    assert client.stdout == "200 hello over loopback\n"
    fast = 1 if server_run else 0
    assert f"{fast} connection(s) made over the fast path" in client.stderr
    assert f"{1 - fast} over TCP" in client.stderr


ASYNC_SERVER = """
    import asyncio, ssl, sys

    async def echo(reader, writer):
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    async def main():
        context = None
        if len(sys.argv) == 3:  # a certificate and its key: serve TLS
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(sys.argv[1], sys.argv[2])
        server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=context)
        print("port", server.sockets[0].getsockname()[1], flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())
"""

ASYNC_CLIENT = """
    import asyncio, sys

    async def main():
        reader, writer = await asyncio.open_connection("127.0.0.1", int(sys.argv[1]))
        writer.write(b"hello asyncio\\n")
        print((await asyncio.wait_for(reader.readline(), 10)).decode(), end="")
        writer.close()
        await writer.wait_closed()

    asyncio.run(main())
"""


@pytest.mark.parametrize("transport", ["stream", "ring"])
def test_asyncio_server_and_client(tmp_path: Path, transport: str) -> None:
    srv = _script(tmp_path, "server.py", ASYNC_SERVER)
    cli = _script(tmp_path, "client.py", ASYNC_CLIENT)
    server = _spawn([*RUN, "--transport", transport, str(srv)], tmp_path)
    try:
        port = _first_line(server, r"port (\d+)").group(1)
        client = subprocess.run([*RUN, "--transport", transport, "--report", str(cli), port],
                                cwd=tmp_path, env=ENV, capture_output=True, text=True,
                                timeout=STEP)
    finally:
        stop(server)
    assert client.returncode == 0, client.stderr
    assert client.stdout == "hello asyncio\n"
    assert f"1 connection(s) made over the fast path ({transport} 1" in client.stderr.replace(
        "ring 1, stream 0", "ring 1").replace("ring 0, stream 1", "stream 1")


TLS_CLIENT = """
    import socket, ssl, sys
    context = ssl.create_default_context(cafile=sys.argv[2])
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"hello tls\\n")
            print(tls.recv(100).decode(), tls.version(), end="")
"""


@pytest.mark.parametrize("transport", ["stream", "ring"])
def test_blocking_tls_client(tmp_path: Path, self_signed_cert: tuple[Path, Path],
                             transport: str) -> None:
    """SSLContext.wrap_socket works on both transports: the stream hands OpenSSL its fd,
    the ring carries the records itself (_core/sockets/tls.py)."""
    cert, key = self_signed_cert
    srv = _script(tmp_path, "server.py", ASYNC_SERVER)
    cli = _script(tmp_path, "client.py", TLS_CLIENT)
    server = _spawn([*RUN, "--transport", transport, str(srv), str(cert), str(key)],
                    tmp_path)
    try:
        port = _first_line(server, r"port (\d+)").group(1)
        client = subprocess.run(
            [*RUN, "--transport", transport, "--report", str(cli), port, str(cert)],
            cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=STEP)
    finally:
        stop(server)
    assert client.returncode == 0, client.stderr
    assert client.stdout.startswith("hello tls\n TLSv1.")
    assert "1 connection(s) made over the fast path" in client.stderr
    assert f"{transport} 1" in client.stderr


def test_run_passes_the_exit_status_and_argv(tmp_path: Path) -> None:
    script = _script(tmp_path, "exit.py", """
        import socket, sys
        print(sys.argv[1:], socket.socket().fast_path)
        raise SystemExit(3)
    """)
    done = subprocess.run([*RUN, "--", str(script), "-x", "--y"], env=ENV, capture_output=True,
                          text=True, timeout=STEP)
    assert done.returncode == 3
    assert done.stdout == "['-x', '--y'] True\n"


def test_run_c_runs_code_as_python_c(tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import socket, sys
        srv = socket.create_server(("127.0.0.1", 0))
        cli = socket.create_connection(srv.getsockname(), 5)
        conn, _ = srv.accept()
        cli.sendall(b"hi")
        print(sys.argv, __name__, sys.path[0] == "", conn.recv(2), cli.fast_path_transport)
        raise SystemExit(4)
    """)
    done = subprocess.run([*RUN, "--report", "-c", code, "a", "-b"], env=ENV, cwd=tmp_path,
                          capture_output=True, text=True, timeout=STEP)
    assert done.returncode == 4, done.stderr
    assert done.stdout == "['-c', 'a', '-b'] __main__ True b'hi' ring\n"
    assert "(ring 1, stream 0), 0 over TCP" in done.stderr


def test_run_without_a_program_says_how() -> None:
    done = subprocess.run(RUN, env=ENV, capture_output=True, text=True, timeout=STEP)
    assert done.returncode == 2
    assert "name a script" in done.stderr
