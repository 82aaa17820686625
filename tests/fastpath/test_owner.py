"""_fastpath/owner.py (SPEC F10): a local process cannot catch fast-path clients of a port it
does not own.

Anyone in the network namespace can bind an abstract AF_UNIX name, so anyone can
take a port's rendezvous name. A client trusts what answers there only when the
peer's uid (SO_PEERCRED) is the uid that owns the TCP listener the address
reaches; otherwise it closes the stream unused, logs a warning and uses TCP.

The processes are real: forked children (``tests.netns.Child``), the squatters
running as nobody (65534) while the test process and its listeners are root
(where the test process cannot change uid, those tests skip and say why).
What the client does to a squatter is asserted exactly as _fastpath/connector.py's find()
does it: it connects (so the squatter's accept() does return one connection), reads
the peer's credentials, and closes the stream before connect() returns, without
writing a byte: the squatter reads EOF at once, and no hello.
"""

from __future__ import annotations

import errno
import logging
import os
import socket as stdsocket
import struct
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import loopfast
import loopfast._core.sockets  # the children (nobody) cannot import the stdlib lazily
from loopfast._core.addresses import name_for
from loopfast._fastpath import owner as _owner

from .._streams import recv_exactly
from ..netns import NOBODY, Child, child_or_skip, squat

pytestmark = pytest.mark.timeout(60)

AF_INET, AF_INET6 = stdsocket.AF_INET, stdsocket.AF_INET6
TIMEOUT = 5.0
ME = os.getuid()  # the test process, and the listeners it makes (root here)
NO_POLICY = "/nonexistent/loopfast-policy"  # a path nobody can stat and find missing

Closing = Callable[[stdsocket.socket], Any]


# -- what runs in the children (module level: sent by reference) --------------------------


def _squat_report(state: dict[str, Any], window: float) -> list[dict[str, Any]]:
    """Every connection the squatter's listener got: who, and what its stream held right away.

    ``state`` is ``"eof"`` (closed, and nothing was written), ``"data"`` (bytes were
    written, e.g. a hello) or ``"open"`` (the client still holds the stream).
    """
    squatter: stdsocket.socket = state["squatter"]
    seen: list[dict[str, Any]] = []
    squatter.settimeout(window)
    for _ in range(16):
        try:
            conn, _ = squatter.accept()
        except TimeoutError:
            break
        with conn:
            pid, uid, _gid = struct.unpack(
                "=iII", conn.getsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_PEERCRED, 12))
            try:
                data = conn.recv(4096, stdsocket.MSG_DONTWAIT)
                status = "data" if data else "eof"
            except BlockingIOError:
                data, status = b"", "open"
        seen.append({"pid": pid, "uid": uid, "state": status, "data": data})
        squatter.settimeout(0.2)  # anything else would already be queued
    return seen


def _fast_server(state: dict[str, Any], family: int, host: str) -> int:
    """A fast-path listener on *host*, port chosen by the kernel; the port."""
    os.environ["LOOPFAST_POLICY_FILE"] = NO_POLICY
    srv = loopfast.create_server((host, 0), family=family, fast_path=True)
    state.setdefault("sockets", []).append(srv)
    srv.settimeout(TIMEOUT)
    state["server"] = srv
    return int(srv.getsockname()[1])


def _serve_one(state: dict[str, Any], size: int) -> dict[str, Any]:
    """Accept one connection, read *size* bytes, answer them reversed; what it saw."""
    conn, _ = state["server"].accept()
    state["sockets"].append(conn)
    conn.settimeout(TIMEOUT)
    data = recv_exactly(conn, size)
    conn.sendall(data[::-1])
    return {"fast_path_active": conn.fast_path_active, "data": data,
            "peer_credentials": tuple(conn.peer_credentials) if conn.fast_path_active else None}


def _tcp_listener(state: dict[str, Any], family: int, host: str, v6only: bool | None) -> int:
    """A stdlib TCP listener on *host* (port chosen by the kernel); the port."""
    sock = stdsocket.socket(family, stdsocket.SOCK_STREAM)
    state.setdefault("sockets", []).append(sock)
    if v6only is not None:
        sock.setsockopt(stdsocket.IPPROTO_IPV6, stdsocket.IPV6_V6ONLY, int(v6only))
    sock.bind((host, 0))
    sock.listen()
    return int(sock.getsockname()[1])


# -- helpers ----------------------------------------------------------------------------


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "loopfast" and r.levelno >= logging.WARNING]


def _hung_up_unused(holder: Child, caplog: pytest.LogCaptureFixture) -> str:
    """The client connected to *holder*'s name once and closed without writing a byte
    (what the owner check does); the one warning it logged."""
    assert holder.call(_squat_report, 1.0) == [
        {"pid": os.getpid(), "uid": ME, "state": "eof", "data": b""}]
    logged = _warnings(caplog)
    assert len(logged) == 1, logged
    return logged[0]


def _assert_tcp_exchange(client: loopfast.socket, server: stdsocket.socket) -> None:
    """*client* is plain TCP to *server*'s listener, and data flows both ways."""
    conn, addr = server.accept()
    with conn:
        conn.settimeout(TIMEOUT)
        assert client.fast_path_active is False
        assert not getattr(conn, "fast_path_active", False)
        # The kernel's word: the client's fd is a TCP socket, not an AF_UNIX stream.
        assert stdsocket.socket.getsockopt(
            client, stdsocket.SOL_SOCKET, stdsocket.SO_DOMAIN) == client.family
        assert addr == client.getsockname()
        assert conn.getpeername() == client.getsockname()
        client.sendall(b"to the real server")
        assert recv_exactly(conn, 18) == b"to the real server"
        conn.sendall(b"from the real server")
        assert recv_exactly(client, 20) == b"from the real server"


@pytest.fixture
def nobody() -> Iterator[Child]:
    """A process running as nobody, to own listeners."""
    with child_or_skip(NOBODY) as child:
        yield child


# -- (a) a squatter of another uid ------------------------------------------------------

_SQUATS = [
    pytest.param(AF_INET, "127.0.0.1", "127.0.0.1", id="ipv4-exact-name"),
    pytest.param(AF_INET, "127.0.0.1", "0.0.0.0", id="ipv4-wildcard-name"),
    pytest.param(AF_INET6, "::1", "::1", id="ipv6-exact-name"),
    pytest.param(AF_INET6, "::1", "::", id="ipv6-wildcard-name"),
]


@pytest.mark.parametrize(("family", "host", "squat_host"), _SQUATS)
def test_squatter_of_another_uid_does_not_catch_the_client(
        squatter: Child, closing: Closing, caplog: pytest.LogCaptureFixture,
        family: int, host: str, squat_host: str) -> None:
    caplog.set_level(logging.WARNING, logger="loopfast")
    server = closing(loopfast.create_server((host, 0), family=family))  # root, no fast path
    server.settimeout(TIMEOUT)
    port = server.getsockname()[1]
    assert squatter.call(squat, name_for(squat_host, port)) == NOBODY

    client = closing(loopfast.create_connection((host, port), TIMEOUT, fast_path=True))
    _assert_tcp_exchange(client, server)

    # The client looked, saw uid 65534 where root owns the port, and hung up unused.
    warning = _hung_up_unused(squatter, caplog)
    assert f"pid {squatter.pid}, uid {NOBODY}" in warning
    assert "does not own" in warning
    assert f"(uid {ME})" in warning
    assert f":{port}" in warning


# -- (b) a name held where no TCP listener is ---------------------------------------------


@pytest.mark.parametrize("uid", [NOBODY, ME], ids=["nobody", "same-uid"])
def test_name_without_a_tcp_listener_is_not_trusted(
        closing: Closing, caplog: pytest.LogCaptureFixture, uid: int) -> None:
    """Even a squatter of the client's own uid: no TCP listener means no owner."""
    caplog.set_level(logging.WARNING, logger="loopfast")
    with child_or_skip(uid if uid != ME else None) as holder:
        reserved = closing(stdsocket.socket(AF_INET, stdsocket.SOCK_STREAM))
        reserved.bind(("127.0.0.1", 0))  # bound, never listening: the port stays ours, closed
        port = reserved.getsockname()[1]
        assert holder.call(squat, name_for("127.0.0.1", port)) == uid

        with pytest.raises(ConnectionRefusedError) as refused:
            closing(loopfast.create_connection(("127.0.0.1", port), TIMEOUT, fast_path=True))
        assert refused.value.errno == errno.ECONNREFUSED

        warning = _hung_up_unused(holder, caplog)
        assert f"pid {holder.pid}, uid {uid}" in warning
        assert "no TCP listener" in warning


# -- (c) the legitimate owner ---------------------------------------------------------------

_OWNERS = [
    pytest.param(None, AF_INET, "127.0.0.1", id="own-uid-ipv4"),
    pytest.param(None, AF_INET6, "::1", id="own-uid-ipv6"),
    pytest.param(NOBODY, AF_INET, "127.0.0.1", id="nobody-ipv4"),
    pytest.param(NOBODY, AF_INET6, "::1", id="nobody-ipv6"),
]


@pytest.mark.parametrize(("uid", "family", "host"), _OWNERS)
def test_server_owning_its_port_gets_the_fast_path(
        closing: Closing, caplog: pytest.LogCaptureFixture, uid: int | None, family: int,
        host: str) -> None:
    """Control: the check passes when the peer's uid owns the TCP listener, ours or nobody's."""
    caplog.set_level(logging.WARNING, logger="loopfast")
    with child_or_skip(uid) as owner:
        port = owner.call(_fast_server, family, host)
        owner_uid, owner_gid = (ME, os.getgid()) if uid is None else (uid, uid)
        assert _owner.listener_uid(family, host, port) == owner_uid

        client = closing(loopfast.create_connection((host, port), TIMEOUT, fast_path=True))
        assert client.fast_path_active is True
        assert stdsocket.socket.getsockopt(
            client, stdsocket.SOL_SOCKET, stdsocket.SO_DOMAIN) == stdsocket.AF_UNIX
        assert client.peer_credentials == (owner.pid, owner_uid, owner_gid)
        client.sendall(b"hello owner")
        seen = owner.call(_serve_one, 11)
        assert seen == {"fast_path_active": True, "data": b"hello owner",
                        "peer_credentials": (os.getpid(), ME, os.getgid())}
        assert recv_exactly(client, 11) == b"renwo olleh"
    assert _warnings(caplog) == []


# -- (d) the name is taken before the real server listens ---------------------------------


def test_taken_name_leaves_the_server_serving_tcp(
        squatter: Child, closing: Closing, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="loopfast")
    server = closing(loopfast.socket(AF_INET, stdsocket.SOCK_STREAM, fast_path=True))
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    name = name_for("127.0.0.1", port)
    squatter.call(squat, name)

    server.listen()
    server.settimeout(TIMEOUT)
    logged = _warnings(caplog)
    assert len(logged) == 1, logged
    assert "is taken" in logged[0]
    assert name[1:].decode() in logged[0]
    assert server.fast_path is True  # still opted in; only nothing to offer
    assert _owner.listener_uid(AF_INET, "127.0.0.1", port) == ME

    caplog.clear()
    client = closing(loopfast.create_connection(("127.0.0.1", port), TIMEOUT, fast_path=True))
    _assert_tcp_exchange(client, server)
    assert "does not own" in _hung_up_unused(squatter, caplog)


def test_taken_wildcard_name_spares_the_other_family(
        squatter: Child, closing: Closing, caplog: pytest.LogCaptureFixture) -> None:
    """A dual-stack [::] listener whose IPv4 name is taken: IPv4 clients TCP, IPv6 fast."""
    caplog.set_level(logging.WARNING, logger="loopfast")
    server = closing(loopfast.socket(AF_INET6, stdsocket.SOCK_STREAM, fast_path=True))
    server.setsockopt(stdsocket.IPPROTO_IPV6, stdsocket.IPV6_V6ONLY, 0)
    server.bind(("::", 0))
    port = server.getsockname()[1]
    squatter.call(squat, name_for("0.0.0.0", port))
    server.listen()
    server.settimeout(TIMEOUT)
    logged = _warnings(caplog)
    assert len(logged) == 1, logged
    assert name_for("0.0.0.0", port)[1:].decode() in logged[0]
    assert "is taken" in logged[0]

    caplog.clear()
    v4 = closing(loopfast.create_connection(("127.0.0.1", port), TIMEOUT, fast_path=True))
    assert v4.fast_path_active is False
    conn, addr = server.accept()
    closing(conn)
    assert conn.fast_path_active is False
    assert addr == ("::ffff:127.0.0.1", v4.getsockname()[1], 0, 0)
    v4.sendall(b"v4")
    assert recv_exactly(conn, 2) == b"v4"
    assert "does not own" in _hung_up_unused(squatter, caplog)

    v6 = closing(loopfast.create_connection(("::1", port), TIMEOUT, fast_path=True))
    assert v6.fast_path_active is True
    assert v6.peer_credentials.pid == os.getpid()
    conn, addr = server.accept()
    closing(conn)
    assert conn.fast_path_active is True
    assert addr == v6.getsockname()
    v6.sendall(b"v6")
    assert recv_exactly(conn, 2) == b"v6"
    assert squatter.call(_squat_report, 0.2) == []


# -- (e) the owner lookup itself ------------------------------------------------------------

_PROC_CANNOT_SEE_V6ONLY = pytest.mark.xfail(
    reason="/proc/net/tcp6 does not show IPV6_V6ONLY, so the fall-back takes a v6-only [::] "
           "listener as reaching IPv4 too (sock_diag, the first choice, knows better)",
    strict=True)

# (listener: family, bind host, IPV6_V6ONLY or None), (query family, query host), owned?
_LOOKUPS = [
    pytest.param((AF_INET, "127.0.0.1", None), (AF_INET, "127.0.0.1"), True, id="v4-exact"),
    pytest.param((AF_INET, "0.0.0.0", None), (AF_INET, "127.0.0.1"), True, id="v4-wildcard"),
    pytest.param((AF_INET, "0.0.0.0", None), (AF_INET, "127.0.0.9"), True,
                 id="v4-wildcard-other-loopback"),
    pytest.param((AF_INET, "127.0.0.2", None), (AF_INET, "127.0.0.1"), False,
                 id="v4-other-address"),
    pytest.param((AF_INET, "127.0.0.1", None), (AF_INET6, "::1"), False, id="v4-asked-as-v6"),
    pytest.param((AF_INET6, "::1", True), (AF_INET6, "::1"), True, id="v6-exact"),
    pytest.param((AF_INET6, "::", True), (AF_INET6, "::1"), True, id="v6-wildcard"),
    pytest.param((AF_INET6, "::", True), (AF_INET, "127.0.0.1"), False, id="v6only-asked-as-v4"),
    pytest.param((AF_INET6, "::", False), (AF_INET6, "::1"), True, id="dual-stack-as-v6"),
    pytest.param((AF_INET6, "::", False), (AF_INET, "127.0.0.1"), True, id="dual-stack-as-v4"),
    pytest.param((AF_INET6, "::ffff:127.0.0.1", False), (AF_INET, "127.0.0.1"), True,
                 id="v4-mapped-as-v4"),
]
_PROC_BLIND = {"v6only-asked-as-v4"}


def _lookup_cases(proc: bool) -> list[Any]:
    if not proc:
        return _LOOKUPS
    return [pytest.param(*case.values, id=case.id, marks=[_PROC_CANNOT_SEE_V6ONLY])
            if case.id in _PROC_BLIND else case for case in _LOOKUPS]


@pytest.mark.parametrize(("listener", "query", "owned"), _lookup_cases(False))
def test_listener_uid_names_the_listeners_owner(
        nobody: Child, listener: tuple[int, str, bool | None], query: tuple[int, str],
        owned: bool) -> None:
    port = nobody.call(_tcp_listener, *listener)
    expected = NOBODY if owned else None
    assert _owner.listener_uid(*query, port) == expected
    assert _owner._diag_lookup(*query, port) == expected


@pytest.mark.parametrize(("listener", "query", "owned"), _lookup_cases(True))
def test_proc_fallback_agrees_with_sock_diag(
        nobody: Child, listener: tuple[int, str, bool | None], query: tuple[int, str],
        owned: bool) -> None:
    port = nobody.call(_tcp_listener, *listener)
    expected = NOBODY if owned else None
    assert _owner._diag_lookup(*query, port) == expected  # the reference
    assert _owner._proc_lookup(*query, port) == expected


@pytest.mark.parametrize(("family", "host"), [(AF_INET, "127.0.0.1"), (AF_INET6, "::1")],
                         ids=["ipv4", "ipv6"])
def test_root_listener_and_no_listener(closing: Closing, family: int, host: str) -> None:
    sock = closing(stdsocket.socket(family, stdsocket.SOCK_STREAM))
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    # Bound but not listening: nobody would answer a SYN.
    for lookup in (_owner.listener_uid, _owner._diag_lookup, _owner._proc_lookup):
        assert lookup(family, host, port) is None, lookup.__name__
    sock.listen()
    for lookup in (_owner.listener_uid, _owner._diag_lookup, _owner._proc_lookup):
        assert lookup(family, host, port) == ME, lookup.__name__
    sock.close()
    for lookup in (_owner.listener_uid, _owner._diag_lookup, _owner._proc_lookup):
        assert lookup(family, host, port) is None, lookup.__name__


# -- (e) a squatter on one name does not push clients of another name to TCP (issue 14) ----


def test_a_squatter_on_the_exact_name_does_not_cost_a_wildcard_server_its_clients(
        squatter: Child, closing: Closing, caplog: pytest.LogCaptureFixture) -> None:
    """Clients try every name: past a squatter on 127.0.0.1's name, the 0.0.0.0 one serves."""
    caplog.set_level(logging.WARNING, logger="loopfast")
    server = closing(loopfast.create_server(("0.0.0.0", 0), fast_path=True))
    server.settimeout(TIMEOUT)
    port = server.getsockname()[1]
    squatter.call(squat, name_for("127.0.0.1", port))

    client = closing(loopfast.create_connection(("127.0.0.1", port), TIMEOUT, fast_path=True))
    assert client.fast_path_active is True
    assert client.peer_credentials.pid == os.getpid()
    conn, addr = server.accept()
    closing(conn)
    assert conn.fast_path_active and addr == client.getsockname()
    client.sendall(b"past the squatter")
    assert recv_exactly(conn, 17) == b"past the squatter"
    assert "does not own" in _hung_up_unused(squatter, caplog)


def test_a_wildcard_server_reports_only_loopback_local_addresses(closing: Closing) -> None:
    """The accepted socket's getsockname() is never an address a client made up."""
    server = closing(loopfast.create_server(("0.0.0.0", 0), fast_path=True))
    server.settimeout(TIMEOUT)
    port = server.getsockname()[1]
    client = closing(loopfast.create_connection(("127.0.0.2", port), TIMEOUT, fast_path=True))
    conn, addr = server.accept()
    closing(conn)
    assert client.fast_path_active and conn.fast_path_active
    assert conn.getsockname() == ("127.0.0.2", port) == client.getpeername()
    assert addr == client.getsockname() and addr[0] == "127.0.0.1"
