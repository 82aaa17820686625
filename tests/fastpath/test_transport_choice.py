"""``fast_path="auto"`` (``loopfast run``'s default): the ring, or the stream to a destination
whose recent connections were short (``_fastpath/transport_choice.py``).

Real connections to a real listener in this process; the transport each one took is
what ``fast_path_transport`` says.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

import loopfast
from loopfast._core.patch import patched
from loopfast._fastpath import transport_choice

Pair = tuple[loopfast.socket, loopfast.socket]


@pytest.fixture(autouse=True)
def fresh_history(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # A loaded machine may stretch a connection past 50 ms: "short" is 5 s here,
    # except where a test lingers on purpose.
    monkeypatch.setattr(transport_choice, "SHORT_S", 5.0)
    transport_choice.forget()
    yield
    transport_choice.forget()


def _one(srv: loopfast.socket, connect_to: Callable[..., Pair], fast_path: str = "auto",
         payload: bytes = b"x", linger: float = 0.0) -> str | None:
    """One connection to *srv*: *payload* there and back, *linger* seconds, close; its
    transport."""
    client, server = connect_to(srv, fast_path=fast_path)
    kind = client.fast_path_transport
    client.sendall(payload)
    got = 0
    while got < len(payload):
        got += len(server.recv(1 << 20))
    server.sendall(payload)
    got = 0
    while got < len(payload):
        got += len(client.recv(1 << 20))
    if linger:
        time.sleep(linger)
    client.close()
    server.close()
    return kind


def test_short_connections_take_the_stream(make_server: Callable[..., loopfast.socket],
                                           connect_to: Callable[..., Pair]) -> None:
    srv = make_server()
    kinds = [_one(srv, connect_to) for _ in range(6)]
    assert kinds == ["ring"] * transport_choice.STREAK + ["stream"] * (
        6 - transport_choice.STREAK)


def test_a_long_lived_connection_brings_the_ring_back(
        make_server: Callable[..., loopfast.socket], connect_to: Callable[..., Pair],
        monkeypatch: pytest.MonkeyPatch) -> None:
    srv = make_server()
    for _ in range(transport_choice.STREAK):
        _one(srv, connect_to)
    monkeypatch.setattr(transport_choice, "SHORT_S", 0.05)
    assert _one(srv, connect_to, linger=0.2) == "stream"
    assert _one(srv, connect_to) == "ring"


def test_a_busy_connection_is_not_short(make_server: Callable[..., loopfast.socket],
                                        connect_to: Callable[..., Pair]) -> None:
    srv = make_server()
    big = b"b" * transport_choice.SHORT_BYTES
    kinds = [_one(srv, connect_to, payload=big) for _ in range(4)]
    assert kinds == ["ring"] * 4


def test_the_stream_probes_the_ring_now_and_then(
        make_server: Callable[..., loopfast.socket], connect_to: Callable[..., Pair]) -> None:
    srv = make_server()
    count = transport_choice.STREAK + transport_choice.PROBE_EVERY
    kinds = [_one(srv, connect_to) for _ in range(count)]
    assert kinds[:transport_choice.STREAK] == ["ring"] * transport_choice.STREAK
    assert kinds[-1] == "ring"  # the probe
    assert set(kinds[transport_choice.STREAK:-1]) == {"stream"}


def test_destinations_are_judged_apart(make_server: Callable[..., loopfast.socket],
                                       connect_to: Callable[..., Pair]) -> None:
    first, second = make_server(), make_server()
    for _ in range(transport_choice.STREAK):
        _one(first, connect_to)
    assert _one(first, connect_to) == "stream"
    assert _one(second, connect_to) == "ring"


def test_ring_asked_is_ring_always(make_server: Callable[..., loopfast.socket],
                                   connect_to: Callable[..., Pair]) -> None:
    srv = make_server()
    assert [_one(srv, connect_to, fast_path="ring") for _ in range(5)] == ["ring"] * 5


def test_a_bad_word_names_the_good_ones() -> None:
    with pytest.raises(OSError, match="'auto'") as caught:
        loopfast.socket(socket.AF_INET, socket.SOCK_STREAM, fast_path="fastest")
    assert caught.value.errno == 22


def test_patch_and_run_default_to_auto() -> None:
    loopfast.patch()
    try:
        assert patched()
        sock = socket.socket()
        assert sock._transport == "auto"
        sock.close()
    finally:
        loopfast.unpatch()
    code = "import socket; s = socket.socket(); print(s._transport); s.close()"
    done = subprocess.run([sys.executable, "-m", "loopfast", "run", "-c", code],
                          capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout.strip()) == (0, "auto")
