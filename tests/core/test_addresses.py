"""_core/addresses.py (SPEC F4): a destination outside loopback is reached by plain TCP,
opted in or not; a listener on a non-loopback address publishes no rendezvous name.

Real hosts: forked children, each in a network namespace of its own. Two of
them are joined by a veth pair (addresses from the benchmarking ranges
198.18.0.0/15 and 2001:2::/48); a third carries a non-loopback address on its
own ``lo``. The test process's namespace is never configured: ``netns.ip``
refuses to run there.

Each case has a twin that must take the fast path (the same listener reached
through 127.0.0.1, ::1 or ::ffff:127.0.0.1), so a fast path that never engages
cannot pass, and every host that could wrongly catch a client offers the fast
path on the port the client asks for: host B, where the client runs, holds a
decoy fast-path listener on the destination's port, which the owner check would
accept (root owns the wildcard TCP listener there), so a client that looked up
rendezvous names for a remote address would end up on the decoy.

"Plain TCP" is checked on the kernel's word, not only ``fast_path_active``: the
application's fd must be an AF_INET/AF_INET6 TCP socket, not AF_UNIX.
"""

from __future__ import annotations

import _socket as _csocket  # the C methods, under loopfast's overrides
import errno
import shutil
import socket as stdsocket
from collections.abc import Iterator
from typing import Any

import pytest

import loopfast
from loopfast._core.addresses import name_for

from .._streams import recv_exactly
from ..netns import Child, ChildUnavailable, ip, wait_lower_up

pytestmark = [pytest.mark.netns, pytest.mark.timeout(60)]

AF_INET, AF_INET6 = stdsocket.AF_INET, stdsocket.AF_INET6
PORT_V4 = 8080  # a fast-path listener on 0.0.0.0
PORT_DS = 8081  # a fast-path listener on [::], dual-stack
A4, B4 = "198.18.0.1", "198.18.0.2"  # the veth pair
A6, B6 = "2001:2::1", "2001:2::2"
LO4, LO6 = "198.18.1.1", "2001:2:0:1::1"  # extra addresses on a private lo
TIMEOUT = 5.0


# -- what runs inside the hosts (module level: sent to the children by reference) ---------


def _configure(state: dict[str, Any], commands: list[list[str]], carrier: str | None) -> None:
    for command in commands:
        ip(*command)
    if carrier is not None:
        wait_lower_up(carrier)


def _name_held(name: bytes) -> bool:
    probe = stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    try:
        probe.bind(name)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        return True
    finally:
        probe.close()
    return False


def _serve(state: dict[str, Any]) -> list[bytes]:
    """Fast-path listeners on 0.0.0.0:PORT_V4 and dual-stack [::]:PORT_DS; the names they hold."""
    v4 = loopfast.create_server(("0.0.0.0", PORT_V4), fast_path=True)
    state.setdefault("sockets", []).append(v4)
    ds = loopfast.create_server(("::", PORT_DS), family=AF_INET6, dualstack_ipv6=True,
                                fast_path=True)
    state["sockets"].append(ds)
    state["servers"] = {PORT_V4: v4, PORT_DS: ds}
    for srv in (v4, ds):
        srv.settimeout(TIMEOUT)
    names = [name_for("0.0.0.0", PORT_V4), name_for("0.0.0.0", PORT_DS), name_for("::", PORT_DS)]
    return [name for name in names if _name_held(name)]


def _describe(sock: loopfast.socket) -> dict[str, Any]:
    return {
        "fast_path_active": sock.fast_path_active,
        "domain": _csocket.socket.getsockopt(sock, stdsocket.SOL_SOCKET, stdsocket.SO_DOMAIN),
        "protocol": _csocket.socket.getsockopt(sock, stdsocket.SOL_SOCKET,
                                               stdsocket.SO_PROTOCOL),
        "sockname": sock.getsockname(),
        "peername": sock.getpeername(),
    }


def _connect(state: dict[str, Any], family: int, host: str, port: int,
             message: bytes) -> dict[str, Any]:
    client = loopfast.socket(family, stdsocket.SOCK_STREAM, fast_path=True)
    state.setdefault("sockets", []).append(client)
    client.settimeout(TIMEOUT)
    client.connect((host, port))
    client.sendall(message)
    state["client"] = client
    return _describe(client)


def _accept(state: dict[str, Any], port: int, expect: bytes, answer: bytes) -> dict[str, Any]:
    conn, addr = state["servers"][port].accept()
    state["sockets"].append(conn)
    conn.settimeout(TIMEOUT)
    info = _describe(conn)
    info["accept_address"] = addr
    info["received"] = recv_exactly(conn, len(expect))
    conn.sendall(answer)
    return info


def _client_receives(state: dict[str, Any], size: int) -> bytes:
    return recv_exactly(state["client"], size)


def _idle_servers(state: dict[str, Any]) -> list[int]:
    """Ports whose listener has a connection waiting (a decoy must have none)."""
    busy = []
    for port, srv in state.get("servers", {}).items():
        srv.settimeout(0.0)
        try:
            conn, _ = srv.accept()
        except BlockingIOError:
            continue
        finally:
            srv.settimeout(TIMEOUT)
        conn.close()
        busy.append(port)
    return busy


def _exchange(server: Child, client: Child, family: int, host: str, port: int,
              fast: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Connect from *client* to *host*:*port* served by *server*, data both ways; both views."""
    ask, answer = f"ping {host}".encode(), f"pong {host}".encode()
    seen_by_client = client.call(_connect, family, host, port, ask)
    assert seen_by_client["fast_path_active"] is fast, (
        f"client to {host}: fast_path_active is {seen_by_client['fast_path_active']}")
    seen_by_server = server.call(_accept, port, ask, answer)
    assert seen_by_server["received"] == ask
    back = client.call(_client_receives, len(answer))
    assert back == answer
    return seen_by_client, seen_by_server


def _tcp_style(family: int, host: str, port: int) -> tuple[Any, ...]:
    return (host, port) if family == AF_INET else (host, port, 0, 0)


def _assert_tcp(client: dict[str, Any], server: dict[str, Any], family: int,
                client_ip: str, server_ip: str, port: int) -> None:
    for end in (client, server):
        assert end["fast_path_active"] is False
        assert end["domain"] == family, "the fd is not a TCP socket of the client's family"
        assert end["protocol"] == stdsocket.IPPROTO_TCP
    assert client["sockname"][0] == client_ip
    assert client["sockname"] == _tcp_style(family, client_ip, client["sockname"][1])
    assert client["peername"] == _tcp_style(family, server_ip, port)
    assert server["sockname"] == _tcp_style(family, server_ip, port)
    assert server["peername"] == client["sockname"]
    assert server["accept_address"] == client["sockname"]


def _assert_fast(client: dict[str, Any], server: dict[str, Any]) -> None:
    for end in (client, server):
        assert end["fast_path_active"] is True
        assert end["domain"] == stdsocket.AF_UNIX
    assert server["peername"] == client["sockname"]
    assert client["peername"] == server["sockname"]


# -- fixtures ---------------------------------------------------------------------------


def _host() -> Child:
    if shutil.which("ip") is None:
        pytest.skip("iproute2's ip is not installed")
    try:
        return Child(netns=True)
    except ChildUnavailable as exc:
        pytest.skip(f"cannot make a network namespace: {exc}")


@pytest.fixture
def two_hosts() -> Iterator[tuple[Child, Child]]:
    """Hosts A and B, each in its own namespace, joined by vethA <-> vethB."""
    a = _host()
    try:
        b = _host()
        try:
            try:
                a.call(_configure, [["link", "add", "vethA", "type", "veth", "peer", "name",
                                     "vethB", "netns", str(b.pid)]], None)
            except Exception as exc:
                pytest.skip(f"cannot make a veth pair: {exc}")
            up = [["link", "set", "lo", "up"]]
            a.call(_configure, [*up, ["addr", "add", f"{A4}/24", "dev", "vethA"],
                                ["-6", "addr", "add", f"{A6}/64", "dev", "vethA", "nodad"],
                                ["link", "set", "vethA", "up"]], None)
            b.call(_configure, [*up, ["addr", "add", f"{B4}/24", "dev", "vethB"],
                                ["-6", "addr", "add", f"{B6}/64", "dev", "vethB", "nodad"],
                                ["link", "set", "vethB", "up"]], "vethB")
            a.call(_configure, [], "vethA")
            yield a, b
        finally:
            b.close()
    finally:
        a.close()


@pytest.fixture
def lo_host() -> Iterator[Child]:
    """One host whose lo also carries the non-loopback addresses LO4 and LO6."""
    host = _host()
    try:
        host.call(_configure, [["link", "set", "lo", "up"],
                               ["addr", "add", f"{LO4}/32", "dev", "lo"],
                               ["-6", "addr", "add", f"{LO6}/128", "dev", "lo", "nodad"]], None)
        yield host
    finally:
        host.close()


# -- the tests --------------------------------------------------------------------------

_REMOTE = [
    pytest.param(AF_INET, A4, B4, PORT_V4, "127.0.0.1", id="ipv4"),
    pytest.param(AF_INET6, A6, B6, PORT_DS, "::1", id="ipv6"),
    pytest.param(AF_INET6, f"::ffff:{A4}", f"::ffff:{B4}", PORT_DS, "::ffff:127.0.0.1",
                 id="ipv4-mapped"),
]


@pytest.mark.parametrize(("family", "server_ip", "client_ip", "port", "loopback"), _REMOTE)
def test_other_host_is_reached_by_tcp(two_hosts: tuple[Child, Child], family: int,
                                      server_ip: str, client_ip: str, port: int,
                                      loopback: str) -> None:
    a, b = two_hosts
    expected_names = [name_for("0.0.0.0", PORT_V4), name_for("0.0.0.0", PORT_DS),
                      name_for("::", PORT_DS)]
    assert a.call(_serve) == expected_names
    assert b.call(_serve) == expected_names  # the decoy, where the client runs

    client, server = _exchange(a, b, family, server_ip, port, fast=False)
    _assert_tcp(client, server, family, client_ip, server_ip, port)
    assert b.call(_idle_servers) == [], "the client's own host caught the connection"

    # Control: the same listener, from its own host through loopback, is the fast path.
    client, server = _exchange(a, a, family, loopback, port, fast=True)
    _assert_fast(client, server)
    assert client["peername"] == _tcp_style(family, loopback, port)


_LOCAL = [
    pytest.param(AF_INET, LO4, PORT_V4, "127.0.0.1", id="ipv4"),
    pytest.param(AF_INET6, LO6, PORT_DS, "::1", id="ipv6"),
    pytest.param(AF_INET6, f"::ffff:{LO4}", PORT_DS, "::ffff:127.0.0.1", id="ipv4-mapped"),
]


@pytest.mark.parametrize(("family", "address", "port", "loopback"), _LOCAL)
def test_non_loopback_address_on_lo_is_reached_by_tcp(lo_host: Child, family: int,
                                                      address: str, port: int,
                                                      loopback: str) -> None:
    """Same host, traffic through lo, names reachable: only the address keeps it TCP."""
    assert len(lo_host.call(_serve)) == 3

    client, server = _exchange(lo_host, lo_host, family, address, port, fast=False)
    _assert_tcp(client, server, family, address, address, port)

    client, server = _exchange(lo_host, lo_host, family, loopback, port, fast=True)
    _assert_fast(client, server)
    assert client["peername"] == _tcp_style(family, loopback, port)
    assert server["sockname"] == _tcp_style(family, loopback, port)


def _serve_exact(state: dict[str, Any], family: int, host: str, port: int) -> list[bytes]:
    srv = loopfast.create_server((host, port), family=family, fast_path=True)
    srv.settimeout(TIMEOUT)
    state.setdefault("sockets", []).append(srv)
    state["servers"] = {port: srv}
    candidates = [name_for(host, port), name_for("0.0.0.0", port), name_for("::", port),
                  name_for("127.0.0.1", port), name_for("::1", port)]
    return [name for name in candidates if _name_held(name)]


@pytest.mark.parametrize(("family", "address"), [(AF_INET, LO4), (AF_INET6, LO6)],
                         ids=["ipv4", "ipv6"])
def test_listener_on_non_loopback_address_publishes_no_name(lo_host: Child, family: int,
                                                            address: str) -> None:
    """A listener bound to a non-loopback address offers nothing, and serves TCP."""
    port = 8082
    assert lo_host.call(_serve_exact, family, address, port) == []
    client, server = _exchange(lo_host, lo_host, family, address, port, fast=False)
    _assert_tcp(client, server, family, address, address, port)

