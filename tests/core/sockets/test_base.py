"""_core/sockets/base.py, the switch: SPEC F1 (opt-in, errors of the switch) and F3 (timing,
inheritance by accepted sockets; a listener's switch is _core/sockets/listener.py's)."""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable

import pytest

import loopfast

from ...conftest import Pair


def test_off_by_default_is_plain_tcp(make_pair: Callable[..., Pair]) -> None:
    cli, acc = make_pair(client_fp=False, server_fp=False)
    assert not cli.fast_path and not cli.fast_path_active and not acc.fast_path_active
    assert cli.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN) == socket.AF_INET
    assert cli.peer_credentials is None


def test_ioctl_opts_in(closing: Callable[[socket.socket], socket.socket]) -> None:
    s = closing(loopfast.socket(socket.AF_INET, socket.SOCK_STREAM))
    s.ioctl(loopfast.SIO_LOOPBACK_FAST_PATH, True)
    assert s.fast_path
    s.ioctl(loopfast.SIO_LOOPBACK_FAST_PATH, False)
    assert not s.fast_path
    s.ioctl(loopfast.SIO_LOOPBACK_FAST_PATH, (1).to_bytes(4, "little"))
    assert s.fast_path
    s.ioctl(loopfast.SIO_LOOPBACK_FAST_PATH, bytes(4))
    assert not s.fast_path


@pytest.mark.parametrize("kind", [socket.SOCK_DGRAM])
@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6, socket.AF_UNIX])
def test_non_tcp_socket_is_refused(family: int, kind: int) -> None:
    with loopfast.socket(family, kind) as s, pytest.raises(OSError) as err:
        s.ioctl(loopfast.SIO_LOOPBACK_FAST_PATH, True)
    assert err.value.errno == errno.EOPNOTSUPP
    assert "TCP" in str(err.value)


def test_unix_stream_keyword_is_refused() -> None:
    with pytest.raises(OSError) as err:
        loopfast.socket(socket.AF_UNIX, socket.SOCK_STREAM, fast_path=True)
    assert err.value.errno == errno.EOPNOTSUPP


@pytest.mark.parametrize("bad", [2, -1, "yes", None, 1.0, [True]])
def test_non_boolean_is_einval(bad: object) -> None:
    with loopfast.socket() as s, pytest.raises(OSError) as err:
        s.ioctl(loopfast.SIO_LOOPBACK_FAST_PATH, bad)
    assert err.value.errno == errno.EINVAL
    assert not s.fast_path


@pytest.mark.parametrize("size", [0, 1, 2, 3, 5, 8])
def test_raw_bytes_of_wrong_size_name_the_size(size: int) -> None:
    with loopfast.socket() as s, pytest.raises(OSError) as err:
        s.ioctl(loopfast.SIO_LOOPBACK_FAST_PATH, b"\x01" * size)
    assert err.value.errno == errno.EINVAL
    assert "4 bytes" in str(err.value) and f"got {size} bytes" in str(err.value)


def test_unknown_control_code() -> None:
    with loopfast.socket() as s, pytest.raises(OSError) as err:
        s.ioctl(0x12345678, True)
    assert err.value.errno == errno.EINVAL
    assert "0x12345678" in str(err.value)


@pytest.mark.parametrize("fast", [False, True])
def test_opting_in_after_connect_is_eisconn(make_pair: Callable[..., Pair], fast: bool) -> None:
    cli, acc = make_pair(client_fp=fast, server_fp=fast)
    for sock in (cli, acc):
        with pytest.raises(OSError) as err:
            sock.ioctl(loopfast.SIO_LOOPBACK_FAST_PATH, True)
        assert err.value.errno == errno.EISCONN
        assert "before connect()" in str(err.value) and "accept()" in str(err.value)
    assert cli.fast_path_active is fast  # unchanged by the refused call


@pytest.mark.parametrize("listener_fp", [False, True])
def test_accepted_socket_inherits_the_listeners_setting(
        make_pair: Callable[..., Pair], listener_fp: bool) -> None:
    _cli, acc = make_pair(client_fp=False, server_fp=listener_fp)
    assert acc.fast_path is listener_fp
    assert not acc.fast_path_active  # the client did not opt in


def test_listener_may_opt_in_after_listen_before_accept(
        make_server: Callable[..., loopfast.socket], connect_to: Callable[..., Pair]) -> None:
    srv = make_server(fast_path=False)
    srv.ioctl(loopfast.SIO_LOOPBACK_FAST_PATH, True)
    cli, acc = connect_to(srv)
    assert cli.fast_path_active and acc.fast_path_active


def test_listener_opting_out_serves_tcp_again(
        make_server: Callable[..., loopfast.socket], connect_to: Callable[..., Pair]) -> None:
    srv = make_server()
    srv.ioctl(loopfast.SIO_LOOPBACK_FAST_PATH, False)
    cli, acc = connect_to(srv)
    assert not cli.fast_path_active and not acc.fast_path_active
    cli.sendall(b"tcp")
    assert acc.recv(3) == b"tcp"


def test_repr_says_the_state(make_pair: Callable[..., Pair]) -> None:
    cli, _ = make_pair()
    assert repr(cli).startswith("<loopfast.socket fast_path=active fd=")
    assert "raddr=('127.0.0.1'," in repr(cli)


# dup() kept only the switch and the mode: the duplicate connected over the ring (issue 10).
def test_dup_keeps_the_stream_transport_and_spin(
        closing: Callable[[socket.socket], socket.socket]) -> None:
    srv = closing(loopfast.create_server(("127.0.0.1", 0), fast_path=True))
    srv.settimeout(10.0)
    original = closing(loopfast.socket(socket.AF_INET, socket.SOCK_STREAM, fast_path="stream",
                                       busy_poll_us=7))
    twin = closing(original.dup())
    twin.settimeout(10.0)
    twin.connect(srv.getsockname())
    acc, _ = srv.accept()
    closing(acc)
    assert twin.fast_path_transport == "stream"
    assert twin.getsockopt(socket.SOL_SOCKET, loopfast.SO_BUSY_POLL) == 7
    twin.sendall(b"over the stream")
    acc.settimeout(10.0)
    assert acc.recv(100) == b"over the stream"
