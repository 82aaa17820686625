"""Unchanged HTTPS programs under ``loopfast run`` take the ring (its default transport).

http.server behind ``SSLContext.wrap_socket`` of its listening socket, against
http.client's ``HTTPSConnection`` and urllib's ``urlopen(context=...)``, each a
child process run by ``python -m loopfast run --report``.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from .._procs import stop

RUN = [sys.executable, "-m", "loopfast", "run"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
STEP = 15

HTTPS_SERVER = """
    import http.server, ssl, sys

    class Hello(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            body = (b"hello " + type(self.connection).__name__.encode()
                    + b" " + self.path.encode())
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[1], sys.argv[2])
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    print("port", httpd.server_address[1], flush=True)
    httpd.serve_forever()
"""

HTTP_CLIENT = """
    import http.client, ssl, sys
    context = ssl.create_default_context(cafile=sys.argv[2])
    conn = http.client.HTTPSConnection("localhost", int(sys.argv[1]), context=context,
                                       timeout=10)
    for path in ("/a", "/b", "/c"):  # one connection, kept alive
        conn.request("GET", path)
        reply = conn.getresponse()
        print(reply.status, reply.read().decode())
    print(type(conn.sock).__name__, conn.sock.version(), conn.sock.fast_path_transport)
    conn.close()
"""

URLLIB_CLIENT = """
    import ssl, sys, urllib.request
    context = ssl.create_default_context(cafile=sys.argv[2])
    url = f"https://localhost:{sys.argv[1]}/urllib"
    with urllib.request.urlopen(url, context=context, timeout=10) as reply:
        print(reply.status, reply.read().decode())
"""


def _script(where: Path, name: str, text: str) -> Path:
    path = where / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def https_server(tmp_path: Path, self_signed_cert: tuple[Path, Path]) -> Iterator[str]:
    """The port of an http.server over TLS run by ``loopfast run`` (the default transport)."""
    cert, key = self_signed_cert
    srv = _script(tmp_path, "server.py", HTTPS_SERVER)
    proc = subprocess.Popen([*RUN, str(srv), str(cert), str(key)], cwd=tmp_path, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"port (\d+)", line)
        if found is None:
            proc.kill()
            raise AssertionError(f"server said {line!r}; stderr: {proc.communicate(timeout=STEP)}")
        yield found.group(1)
    finally:
        stop(proc, STEP)


def _run_client(tmp_path: Path, text: str, port: str, cert: Path,
                *options: str) -> subprocess.CompletedProcess[str]:
    cli = _script(tmp_path, "client.py", text)
    return subprocess.run([*RUN, *options, "--report", str(cli), port, str(cert)],
                          cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=STEP)


def test_http_client_https_over_the_ring(tmp_path: Path, https_server: str,
                                         self_signed_cert: tuple[Path, Path]) -> None:
    done = _run_client(tmp_path, HTTP_CLIENT, https_server, self_signed_cert[0])
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "200 hello RingTLSSocket /a", "200 hello RingTLSSocket /b",
        "200 hello RingTLSSocket /c", "RingTLSSocket TLSv1.3 ring"]
    assert "1 connection(s) made over the fast path (ring 1, stream 0), 0 over TCP" in (
        done.stderr)


@pytest.mark.parametrize("transport", ["ring", "stream"])
def test_urllib_with_a_context(tmp_path: Path, https_server: str,
                               self_signed_cert: tuple[Path, Path], transport: str) -> None:
    done = _run_client(tmp_path, URLLIB_CLIENT, https_server, self_signed_cert[0],
                       "--transport", transport)
    assert done.returncode == 0, done.stderr
    # the server's socket is a ring's, or the stdlib's on the stream, as the client chose
    kind = "RingTLSSocket" if transport == "ring" else "StreamTLSSocket"
    assert done.stdout == f"200 hello {kind} /urllib\n"
    assert f"made over the fast path (ring {int(transport == 'ring')}, " in done.stderr


def test_plain_tcp_client_reaches_the_tls_listener(tmp_path: Path, https_server: str,
                                                   self_signed_cert: tuple[Path, Path]) -> None:
    """A client not under loopfast run connects over TCP; the wrapped listener serves it."""
    cli = _script(tmp_path, "client.py", URLLIB_CLIENT)
    done = subprocess.run([sys.executable, str(cli), https_server, str(self_signed_cert[0])],
                          cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=STEP)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "200 hello SSLSocket /urllib\n"


@pytest.mark.usefixtures("patched")
def test_wrapped_before_connect_falls_back_to_tcp(self_signed_cert: tuple[Path, Path]) -> None:
    """``ctx.wrap_socket(socket.socket())`` then ``connect()``: the stdlib's SSLSocket, over
    TCP (it cannot become a ring socket at connect; _core/sockets/tls.py says why)."""
    cert, key = self_signed_cert
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    with socket.create_server(("127.0.0.1", 0)) as raw_listener:
        raw_listener.settimeout(5)
        port = raw_listener.getsockname()[1]
        with client_ctx.wrap_socket(socket.socket(), server_hostname="localhost",
                                    do_handshake_on_connect=False) as tls:
            assert type(tls) is ssl.SSLSocket
            tls.settimeout(5)
            tls.connect(("127.0.0.1", port))
            conn, _ = raw_listener.accept()
            with conn:
                assert not conn.fast_path_active  # type: ignore[attr-defined]
                conn.settimeout(5)
                with server_ctx.wrap_socket(conn, server_side=True,
                                            do_handshake_on_connect=False) as tconn:
                    server_side = threading.Thread(target=tconn.do_handshake)
                    server_side.start()
                    tls.do_handshake()
                    server_side.join(5)
                    tls.sendall(b"over tcp")
                    assert tconn.recv(20) == b"over tcp"
