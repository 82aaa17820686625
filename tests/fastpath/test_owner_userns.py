"""_fastpath/owner.py inside a user namespace (issue 14, item 1): the overflow uid proves nothing.

A client in a user namespace that maps only its own uid (as Flatpak, bubblewrap and
rootless containers do) sees every other uid as the overflow uid, 65534. A squatter of
one uid and a server of another then look alike, and a check of "same uid" passes
although they are different users. The client must take TCP, and reach the real server.
Users: the test process is root; the server runs as SERVER_UID, the squatter as
SQUATTER_UID, the client as root inside a new user namespace mapping only root.
"""

from __future__ import annotations

import ctypes
import os
import socket as stdsocket
from typing import Any

import pytest

import loopfast
import loopfast._core.sockets  # the children cannot import lazily once they changed uid
from loopfast._core.addresses import name_for
from loopfast._fastpath import owner as _owner

from .._streams import recv_exactly
from ..netns import child_or_skip, squat

SERVER_UID = 23456
SQUATTER_UID = 12345
CLONE_NEWUSER = 0x10000000
TIMEOUT = 5.0


def _tcp_echo_listener(state: dict[str, Any]) -> int:
    """A plain TCP listener on 127.0.0.1 (this child's uid owns it); its port."""
    sock = stdsocket.create_server(("127.0.0.1", 0))
    state.setdefault("sockets", []).append(sock)
    state["listener"] = sock
    return int(sock.getsockname()[1])


def _read_one(state: dict[str, Any], size: int) -> bytes:
    """Accept one TCP connection and read *size* bytes from it; the bytes."""
    listener: stdsocket.socket = state["listener"]
    listener.settimeout(TIMEOUT)
    conn, _ = listener.accept()
    with conn:
        conn.settimeout(TIMEOUT)
        return recv_exactly(conn, size)


def _squatter_got_a_hello(state: dict[str, Any]) -> bool:
    """True if a client connected to the squatter's name and wrote to it."""
    squatter: stdsocket.socket = state["squatter"]
    squatter.settimeout(0.5)
    try:
        conn, _ = squatter.accept()
    except TimeoutError:
        return False
    with conn:
        conn.settimeout(0.5)
        try:
            return bool(conn.recv(4096))
        except (TimeoutError, OSError):
            return False


def _enter_user_namespace(state: dict[str, Any]) -> str:
    """unshare(CLONE_NEWUSER) mapping only root (this process's uid); the uids seen now."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWUSER) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER)")
    for name, text in (("setgroups", "deny"), ("uid_map", "0 0 1"), ("gid_map", "0 0 1")):
        with open(f"/proc/self/{name}", "w", encoding="ascii") as f:
            f.write(text)
    return open("/proc/self/uid_map", encoding="ascii").read().strip()


def _client(state: dict[str, Any], port: int) -> dict[str, Any]:
    """Connect with the fast path asked for and send 5 bytes; what the connection was."""
    os.environ["LOOPFAST_POLICY_FILE"] = "/nonexistent/loopfast-policy"
    with loopfast.create_connection(("127.0.0.1", port), TIMEOUT, fast_path=True) as cli:
        active = cli.fast_path_active
        kind = stdsocket.socket.getsockopt(cli, stdsocket.SOL_SOCKET, stdsocket.SO_DOMAIN)
        cli.sendall(b"hello")
    return {"fast_path_active": active, "carrier_family": kind,
            "listener_uid_seen": _owner.listener_uid(stdsocket.AF_INET, "127.0.0.1", port)}


def test_a_client_in_a_user_namespace_is_not_caught_by_a_squatter() -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to run the server and the squatter as two other users")
    with child_or_skip(SERVER_UID) as server, child_or_skip(SQUATTER_UID) as squatter, \
            child_or_skip() as client:
        port = server.call(_tcp_echo_listener)
        squatter.call(squat, name_for("127.0.0.1", port))
        try:
            client.call(_enter_user_namespace)
        except Exception as exc:  # e.g. user namespaces disabled by the runner
            pytest.skip(f"no user namespace here: {exc}")
        seen = client.call(_client, port, timeout=TIMEOUT * 2)
        assert server.call(_read_one, 5) == b"hello"
        assert squatter.call(_squatter_got_a_hello) is False
    # Inside the namespace the listener's owner shows as the overflow uid, as the squatter
    # does: the client could not tell them apart, so it took TCP to the real server.
    assert seen == {"fast_path_active": False, "carrier_family": stdsocket.AF_INET,
                    "listener_uid_seen": _owner.overflow_uid()}
