"""SIO_SET_COMPATIBILITY_MODE (SPEC C1-C7) on real loopback connections, checked via TCP_INFO.

The scale a socket offers in its SYN is its own ``tcpi_rcv_wscale`` and its
peer's ``tcpi_snd_wscale``; the true window it advertises is what its peer
reads as ``tcpi_snd_wnd`` (the receiver's own ``tcpi_rcv_wnd`` is Linux's
figure before the 16-bit field and the scale cut it, see docs/compat.md).
"""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest

import loopfast
from loopfast import compat
from loopfast._winsock import tcpinfo as _tcpinfo
from loopfast.constants import (
    NTDDI_LONGHORN,
    NTDDI_VISTA,
    NTDDI_WIN2K,
    NTDDI_WIN10,
    NTDDI_WINXP,
    NTDDI_WS03,
    SIO_SET_COMPATIBILITY_MODE,
    WsaBehaviorAll,
    WsaBehaviorAutoTuning,
    WsaBehaviorReceiveBuffering,
)

from .conftest import TIMEOUT, Pair

Closing = Callable[[socket.socket], Any]
MakePair = Callable[..., Pair]
Mode = loopfast.WSACompatibilityMode
HOSTS = ["127.0.0.1", "::1"]
VISTA_TARGETS = [NTDDI_VISTA, NTDDI_WIN10]
PRE_VISTA_TARGETS = [NTDDI_WINXP, NTDDI_WS03, NTDDI_WIN2K]
RCVBUF = socket.SOL_SOCKET, socket.SO_RCVBUF


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


@pytest.fixture
def tcp_pair(closing: Closing, connect_to: MakePair) -> MakePair:
    """``tcp_pair(host, client=None, server=None, client_rcvbuf=None)``: a TCP connection;
    *client*/*server* modes set before connect()/on the listener."""

    def make(host: str = "127.0.0.1", client: Mode | None = None, server: Mode | None = None,
             client_rcvbuf: int | None = None) -> Pair:
        family = _family(host)
        srv = closing(loopfast.socket(family, socket.SOCK_STREAM))
        srv.bind((host, 0))
        srv.listen()
        if server is not None:  # after listen(): it still reaches every later SYN
            srv.ioctl(SIO_SET_COMPATIBILITY_MODE, server)
        cli = closing(loopfast.socket(family, socket.SOCK_STREAM, compatibility_mode=client))
        if client_rcvbuf is not None:
            cli.setsockopt(*RCVBUF, client_rcvbuf)
        return connect_to(srv, cli)

    return make


def _default_wscale() -> int:
    from loopfast._tools.info import default_wscale

    return default_wscale()


# -- the struct (C1, C2) -------------------------------------------------------------------


def test_struct_round_trip_and_winsock_values() -> None:
    mode = Mode(WsaBehaviorAutoTuning, NTDDI_LONGHORN)
    assert mode.to_bytes() == bytes([2, 0, 0, 0, 0, 0, 0, 6])
    assert Mode.from_bytes(mode.to_bytes()) == mode
    assert Mode.from_bytes(mode.to_bytes() + b"\xff" * 4) == mode  # longer input: Winsock reads 8
    assert Mode(1, NTDDI_WINXP).behavior_id is WsaBehaviorReceiveBuffering
    assert mode.vista_or_later and not Mode(WsaBehaviorAll, NTDDI_WS03).vista_or_later


@pytest.mark.parametrize("raw", [b"", b"\x02\x00\x00\x00", bytes(7)])
def test_short_raw_input_is_einval(raw: bytes, closing: Closing) -> None:
    sock = closing(loopfast.socket())
    with pytest.raises(OSError) as err:
        sock.ioctl(SIO_SET_COMPATIBILITY_MODE, raw)
    assert err.value.errno == errno.EINVAL and "8 bytes" in str(err.value)


@pytest.mark.parametrize("behavior", [3, 0x100, 0x02000000, 0xFFFFFFFF])
def test_unknown_behaviour_in_raw_bytes_is_einval(behavior: int, closing: Closing) -> None:
    sock = closing(loopfast.socket())
    bad = behavior.to_bytes(4, "little") + NTDDI_VISTA.to_bytes(4, "little")
    with pytest.raises(OSError) as err:
        sock.ioctl(SIO_SET_COMPATIBILITY_MODE, bad)
    assert err.value.errno == errno.EINVAL and "WsaBehaviorAutoTuning" in str(err.value)


@pytest.mark.parametrize(("behavior", "target"), [(3, NTDDI_VISTA), (-1, NTDDI_VISTA),
                                                  (True, NTDDI_VISTA), ("2", NTDDI_VISTA),
                                                  (2, -1), (2, 2**32), (2, 6.0)])
def test_bad_constructor_arguments_are_einval(behavior: Any, target: Any) -> None:
    with pytest.raises(OSError) as err:
        Mode(behavior, target)
    assert err.value.errno == errno.EINVAL


@pytest.mark.parametrize("option", [None, True, 2, (2, NTDDI_VISTA), "mode"])
def test_other_inputs_are_einval(option: object, closing: Closing) -> None:
    sock = closing(loopfast.socket())
    with pytest.raises(OSError) as err:
        sock.ioctl(SIO_SET_COMPATIBILITY_MODE, option)
    assert err.value.errno == errno.EINVAL and "WSACompatibilityMode" in str(err.value)


def test_bad_keyword_raises_and_closes_the_socket() -> None:
    with pytest.raises(OSError) as err:
        loopfast.socket(compatibility_mode=b"short")
    assert err.value.errno == errno.EINVAL  # and no ResourceWarning (filterwarnings=error)


# -- timing and socket kind (C6) ---------------------------------------------------------


def test_after_connect_and_on_accepted_is_eisconn(tcp_pair: MakePair) -> None:
    cli, acc = tcp_pair()
    for sock in (cli, acc):
        with pytest.raises(OSError) as err:
            sock.ioctl(SIO_SET_COMPATIBILITY_MODE, Mode(WsaBehaviorAutoTuning, NTDDI_VISTA))
        assert err.value.errno == errno.EISCONN and "before" in str(err.value)


@pytest.mark.parametrize("kind", [(socket.AF_INET, socket.SOCK_DGRAM),
                                  (socket.AF_INET6, socket.SOCK_DGRAM),
                                  (socket.AF_UNIX, socket.SOCK_STREAM)])
def test_not_tcp_is_eopnotsupp(kind: tuple[int, int], closing: Closing) -> None:
    sock = closing(loopfast.socket(*kind))
    for option in (Mode(WsaBehaviorAll, NTDDI_VISTA), Mode(WsaBehaviorAll, NTDDI_VISTA).to_bytes()):
        with pytest.raises(OSError) as err:
            sock.ioctl(SIO_SET_COMPATIBILITY_MODE, option)
        assert err.value.errno == errno.EOPNOTSUPP


def test_going_back_from_pre_vista_autotuning_is_einval(closing: Closing) -> None:
    sock = closing(loopfast.socket())
    sock.ioctl(SIO_SET_COMPATIBILITY_MODE, Mode(WsaBehaviorAutoTuning, NTDDI_WINXP))
    with pytest.raises(OSError) as err:
        sock.ioctl(SIO_SET_COMPATIBILITY_MODE, Mode(WsaBehaviorAll, NTDDI_VISTA))
    assert err.value.errno == errno.EINVAL and "new socket" in str(err.value)


# -- AutoTuning (C3, C4) ---------------------------------------------------------------


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("target", VISTA_TARGETS)
@pytest.mark.parametrize("side", ["client", "listener"])
def test_autotuning_vista_offers_scale_2(side: str, target: int, host: str,
                                         tcp_pair: MakePair) -> None:
    mode = Mode(WsaBehaviorAutoTuning, target)
    cli, acc = tcp_pair(host, **{"client" if side == "client" else "server": mode})
    mine, peer = (cli, acc) if side == "client" else (acc, cli)
    assert _tcpinfo.read(mine).rcv_wscale == 2
    assert _tcpinfo.read(peer).snd_wscale == 2
    assert _tcpinfo.read(peer).rcv_wscale == _default_wscale()  # the other side is untouched
    assert compat.settings_of(mine).autotuning == target


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("target", PRE_VISTA_TARGETS)
@pytest.mark.parametrize("side", ["client", "listener"])
def test_autotuning_pre_vista_offers_no_scaling(side: str, target: int, host: str,
                                                tcp_pair: MakePair) -> None:
    mode = Mode(WsaBehaviorAutoTuning, target)
    cli, acc = tcp_pair(host, **{"client" if side == "client" else "server": mode})
    mine, peer = (cli, acc) if side == "client" else (acc, cli)
    assert _tcpinfo.read(mine).rcv_wscale == 0
    assert _tcpinfo.read(peer).snd_wscale == 0
    assert _tcpinfo.read(peer).snd_wnd is None or _tcpinfo.read(peer).snd_wnd <= 65_535


@pytest.mark.parametrize("order", ["rcvbuf-after-mode", "rcvbuf-before-mode"])
def test_pre_vista_ignores_a_larger_rcvbuf(order: str, closing: Closing,
                                           make_server: Callable[..., loopfast.socket],
                                           connect_to: MakePair) -> None:
    cli = closing(loopfast.socket())
    if order == "rcvbuf-before-mode":
        cli.setsockopt(*RCVBUF, 1 << 20)
    cli.ioctl(SIO_SET_COMPATIBILITY_MODE, Mode(WsaBehaviorAutoTuning, NTDDI_WINXP).to_bytes())
    if order == "rcvbuf-after-mode":
        cli.setsockopt(*RCVBUF, 1 << 20)
    connect_to(make_server(fast_path=False), cli)
    assert cli.getsockopt(*RCVBUF) == min(2 << 20, 2 * _rmem_max())
    assert _tcpinfo.read(cli).rcv_wscale == 0


def test_without_mode_the_kernel_default_scale(tcp_pair: MakePair) -> None:
    cli, acc = tcp_pair()
    assert _tcpinfo.read(cli).rcv_wscale == _default_wscale()
    assert _tcpinfo.read(acc).rcv_wscale == _default_wscale()


def test_a_listener_mode_set_before_listen_reaches_accepted(closing: Closing) -> None:
    srv = closing(loopfast.socket(compatibility_mode=Mode(WsaBehaviorAll, NTDDI_WINXP)))
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.settimeout(TIMEOUT)
    cli = closing(socket.create_connection(srv.getsockname(), timeout=TIMEOUT))
    acc = closing(srv.accept()[0])
    assert _tcpinfo.read(acc).rcv_wscale == 0 and _tcpinfo.read(cli).snd_wscale == 0
    assert compat.settings_of(acc) == compat.CompatibilitySettings(NTDDI_WINXP, NTDDI_WINXP)
    with pytest.raises(OSError) as err:
        acc.setsockopt(*RCVBUF, 4096)
    assert err.value.errno == errno.EINVAL


# -- ReceiveBuffering (C5) and All (C7) ------------------------------------------------


def _shrink(sock: socket.socket) -> int | None:
    """Shrink SO_RCVBUF from 256 KiB (set before connect) to 16 KiB: the size now, or None."""
    try:
        sock.setsockopt(*RCVBUF, 16_384)
    except OSError as exc:
        assert exc.errno == errno.EINVAL
        assert "shrink" in str(exc) and "WsaBehaviorReceiveBuffering" in str(exc)
        return None
    return int(sock.getsockopt(*RCVBUF))


@pytest.mark.parametrize(("mode", "allowed"), [
    (None, False),
    (Mode(WsaBehaviorReceiveBuffering, NTDDI_VISTA), True),
    (Mode(WsaBehaviorReceiveBuffering, NTDDI_WIN10), True),
    (Mode(WsaBehaviorReceiveBuffering, NTDDI_WINXP), False),
    (Mode(WsaBehaviorReceiveBuffering, NTDDI_WS03), False),
    (Mode(WsaBehaviorAll, NTDDI_VISTA), True),
    (Mode(WsaBehaviorAll, NTDDI_WIN2K), False),
    (Mode(WsaBehaviorAutoTuning, NTDDI_VISTA), False),  # ReceiveBuffering keeps its default
], ids=lambda v: f"{v.behavior_id.name}-{v.target_os_version:#x}" if isinstance(v, Mode)
    else repr(v))
def test_receive_buffering_shrink_after_connect(mode: Mode | None, allowed: bool,
                                                tcp_pair: MakePair) -> None:
    cli, _ = tcp_pair(client=mode, client_rcvbuf=262_144)
    assert cli.getsockopt(*RCVBUF) == 524_288
    assert _shrink(cli) == (32_768 if allowed else None)
    if not allowed:
        assert cli.getsockopt(*RCVBUF) == 524_288  # nothing changed
        cli.setsockopt(*RCVBUF, 262_144)  # the same size: not a shrink
        cli.setsockopt(*RCVBUF, 1 << 20)  # growing is always allowed
        assert cli.getsockopt(*RCVBUF) == min(2 << 20, 2 * _rmem_max())
    assert compat.shrink_allowed(mode) is allowed


def test_shrinking_before_connect_is_always_allowed(closing: Closing) -> None:
    sock = closing(loopfast.socket(compatibility_mode=Mode(WsaBehaviorAll, NTDDI_WINXP)))
    sock.setsockopt(*RCVBUF, 8_192)
    assert sock.getsockopt(*RCVBUF) == 16_384


def test_receive_buffering_on_the_listener_reaches_accepted(tcp_pair: MakePair) -> None:
    _, acc = tcp_pair(server=Mode(WsaBehaviorReceiveBuffering, NTDDI_VISTA))
    assert _shrink(acc) is not None
    _, acc = tcp_pair(server=Mode(WsaBehaviorReceiveBuffering, NTDDI_WS03))
    assert _shrink(acc) is None


@pytest.mark.parametrize(("target", "wscale", "allowed"), [(NTDDI_VISTA, 2, True),
                                                           (NTDDI_WINXP, 0, False)])
def test_behavior_all_applies_both(target: int, wscale: int, allowed: bool,
                                   tcp_pair: MakePair) -> None:
    cli, _ = tcp_pair(client=Mode(WsaBehaviorAll, target))
    assert _tcpinfo.read(cli).rcv_wscale == wscale
    assert (_shrink(cli) is not None) is allowed


def test_two_calls_combine_behaviours(closing: Closing) -> None:
    sock = closing(loopfast.socket())
    sock.ioctl(SIO_SET_COMPATIBILITY_MODE, Mode(WsaBehaviorAutoTuning, NTDDI_WINXP))
    sock.ioctl(SIO_SET_COMPATIBILITY_MODE, Mode(WsaBehaviorReceiveBuffering, NTDDI_VISTA))
    assert compat.settings_of(sock) == compat.CompatibilitySettings(NTDDI_WINXP, NTDDI_VISTA)


def test_rcvbuf_as_bytes_follows_the_rule(tcp_pair: MakePair) -> None:
    cli, _ = tcp_pair(client_rcvbuf=262_144)
    with pytest.raises(OSError) as err:
        cli.setsockopt(*RCVBUF, (16_384).to_bytes(4, "little"))
    assert err.value.errno == errno.EINVAL


# -- bulk transfers: the window the sender is allowed ------------------------------------

def _window_and_sent(sock: socket.socket) -> tuple[int, int]:
    """(peer window, data sent beyond snd_una + bytes_acked) from one TCP_INFO snapshot.

    ``tcpi_bytes_sent`` counts every transmission, retransmissions included (a tail
    loss probe resends up to one segment when ACKs are late, as under CPU load), so
    the new data sent is ``bytes_sent - bytes_retrans``; less ``bytes_acked`` (from
    the start of the transfer) that is snd_nxt - snd_una, the data truly in flight.
    One getsockopt, so all three come from the same moment (the kernel fills them
    under the socket lock).
    """
    raw = socket.socket.getsockopt(sock, socket.IPPROTO_TCP, socket.TCP_INFO, 512)
    info = _tcpinfo.TcpInfo.from_bytes(raw)
    assert info.snd_wnd is not None and info.bytes_sent is not None
    assert info.bytes_retrans is not None
    return info.snd_wnd, info.bytes_sent - info.bytes_retrans - info.bytes_acked


def _bulk(cli: socket.socket, acc: socket.socket, total: int) -> tuple[int, int]:
    """Send *total* bytes cli -> acc; the largest (peer window, bytes in flight) seen."""
    received: list[int] = []

    def drain() -> None:
        buf = bytearray(1 << 16)
        got = 0
        while got < total:
            n = acc.recv_into(buf)
            if not n:
                break
            got += n
        received.append(got)

    _, start = _window_and_sent(cli)  # bytes_acked already counts the SYN on a client
    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    chunk = memoryview(bytes(1 << 16))
    window = flight = 0
    for _ in range(total // len(chunk)):
        cli.sendall(chunk)
        snd_wnd, sent = _window_and_sent(cli)
        window = max(window, snd_wnd)
        flight = max(flight, sent - start)
    reader.join(TIMEOUT)
    assert received == [total]
    return window, flight


@pytest.mark.parametrize("side", ["client", "listener"])
def test_bulk_pre_vista_never_exceeds_65535(side: str, tcp_pair: MakePair) -> None:
    mode = Mode(WsaBehaviorAutoTuning, NTDDI_WINXP)
    # The receiver is the side with the mode: data flows towards it.
    recv, send = tcp_pair(**{"client" if side == "client" else "server": mode})
    if side == "listener":
        send, recv = recv, send
    before = recv.getsockopt(*RCVBUF)
    window, flight = _bulk(send, recv, 16 << 20)
    assert 0 < window <= 65_535
    assert 0 < flight <= 65_535
    assert recv.getsockopt(*RCVBUF) == before  # no autotuning


def test_bulk_vista_caps_at_262140_with_autotuning_on(tcp_pair: MakePair) -> None:
    """Vista AutoTuning: scaled window, never past 262,140, buffer grows.

    Autotuning raises the receiver's internal clamp (``tcp_rcv_space_adjust``), but
    the 16-bit window field shifted by scale 2 cannot say more than 262,140, so the
    peer's ``tcpi_snd_wnd`` and the data in flight stay within it on every run.
    """
    send, recv = tcp_pair(server=Mode(WsaBehaviorAutoTuning, NTDDI_VISTA))
    before = recv.getsockopt(*RCVBUF)
    window, flight = _bulk(send, recv, 32 << 20)
    assert 65_535 < window <= 262_140  # scaled, and never past 65,535 << 2
    assert flight <= 262_140
    assert recv.getsockopt(*RCVBUF) > before  # autotuning grew the buffer


# -- fast-path sockets (the data plane wires ring_capacity/shrink_allowed) ------------------


def test_fast_path_connected_sockets_are_eisconn(make_pair: Callable[..., Pair]) -> None:
    cli, acc = make_pair()
    assert cli.fast_path_active and acc.fast_path_active
    for sock in (cli, acc):
        for option in (Mode(WsaBehaviorAll, NTDDI_VISTA), Mode(WsaBehaviorAll, NTDDI_VISTA)
                       .to_bytes()):
            with pytest.raises(OSError) as err:
                sock.ioctl(SIO_SET_COMPATIBILITY_MODE, option)
            assert err.value.errno == errno.EISCONN


def test_fast_path_bad_input_is_einval_first(make_pair: Callable[..., Pair]) -> None:
    cli, _ = make_pair()
    with pytest.raises(OSError) as err:
        cli.ioctl(SIO_SET_COMPATIBILITY_MODE, b"1234567")
    assert err.value.errno == errno.EINVAL


@pytest.mark.parametrize(("mode", "rcvbuf", "capacity"), [
    (None, 1 << 20, 1 << 20),
    (Mode(WsaBehaviorReceiveBuffering, NTDDI_WINXP), 1 << 20, 1 << 20),
    (Mode(WsaBehaviorAutoTuning, NTDDI_VISTA), 1 << 20, 262_140),
    (Mode(WsaBehaviorAll, NTDDI_VISTA), 65_536, 65_536),
    (Mode(WsaBehaviorAutoTuning, NTDDI_WINXP), 1 << 20, 65_535),
    (compat.CompatibilitySettings(autotuning=NTDDI_WS03), 4_096, 4_096),
])
def test_ring_capacity(mode: compat.Mode, rcvbuf: int, capacity: int) -> None:
    assert compat.ring_capacity(rcvbuf, mode) == capacity


def _rmem_max() -> int:
    with open("/proc/sys/net/core/rmem_max", encoding="ascii") as f:
        return int(f.read())
