"""_core/options.py (SPEC F8): docs/options.md and the code agree, row by row, on live
connections."""

from __future__ import annotations

import errno
import os
import pathlib
import socket
import struct
from collections.abc import Callable
from typing import Any

import pytest

from loopfast._core.options import OPTIONS, Treatment

from ..conftest import Pair

TABLE = pathlib.Path(__file__).resolve().parents[2] / "docs" / "options.md"
LEVELS = {"SOL_SOCKET": socket.SOL_SOCKET, "IPPROTO_TCP": socket.IPPROTO_TCP,
          "IPPROTO_IP": socket.IPPROTO_IP, "IPPROTO_IPV6": socket.IPPROTO_IPV6}

# A value to set, where setting makes sense; None = read only. Booleans default to 1.
VALUES: dict[str, Any] = {
    "SO_RCVBUF": 65536, "SO_SNDBUF": 65536, "SO_RCVLOWAT": 4, "SO_PRIORITY": 3, "SO_MARK": 7,
    "SO_LINGER": struct.pack("ii", 1, 5), "SO_RCVTIMEO": struct.pack("ll", 1, 500000),
    "SO_SNDTIMEO": struct.pack("ll", 2, 0), "TCP_KEEPIDLE": 60, "TCP_KEEPINTVL": 10,
    "TCP_KEEPCNT": 3, "TCP_USER_TIMEOUT": 1000, "TCP_LINGER2": 10, "TCP_SYNCNT": 3,
    "TCP_NOTSENT_LOWAT": 16384, "TCP_DEFER_ACCEPT": 1, "TCP_WINDOW_CLAMP": 65535,
    "IP_TTL": 32, "IP_TOS": 0x10, "IPV6_UNICAST_HOPS": 7, "IPV6_TCLASS": 0x20,
}
READ_ONLY = {"SO_ERROR", "SO_TYPE", "SO_ACCEPTCONN", "SO_DOMAIN", "SO_PROTOCOL", "SO_PEERCRED"}
BUFLEN = {"SO_LINGER": 8, "SO_RCVTIMEO": 16, "SO_SNDTIMEO": 16}


def _table() -> list[tuple[str, str, str, str]]:
    rows = []
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] in LEVELS:
            rows.append((cells[0], cells[1], cells[2], cells[3]))
    return rows


TABLE_ROWS = _table()
ROWS = [row[:3] for row in TABLE_ROWS]


def test_table_and_code_say_the_same() -> None:
    in_code = {(lvl, name, t.value, why) for lvl, name, t, why in OPTIONS.values()}
    assert set(TABLE_ROWS) == in_code
    assert len(TABLE_ROWS) == len(in_code) >= 60


def _outcome(sock: socket.socket, level: int, opt: int, name: str) -> Any:
    """What a user sees: the value after setting (and reading), or the error's errno."""
    try:
        if name not in READ_ONLY:
            sock.setsockopt(level, opt, VALUES.get(name, 1))
        if name == "SO_PEERCRED":
            return len(sock.getsockopt(level, opt, 12))
        return sock.getsockopt(level, opt, *([BUFLEN[name]] if name in BUFLEN else []))
    except OSError as exc:
        return ("error", exc.errno)


@pytest.mark.parametrize(("level_name", "name", "treatment"), ROWS, ids=[r[1] for r in ROWS])
@pytest.mark.parametrize(("host", "transport"), [("127.0.0.1", "ring"), ("::1", "ring"),
                                                 ("127.0.0.1", "stream")])
def test_each_row_on_a_live_connection(make_pair: Callable[..., Pair], level_name: str,
                                       name: str, treatment: str, host: str,
                                       transport: str) -> None:
    level = LEVELS[level_name]
    opt = next(o for (lvl, o), row in OPTIONS.items() if lvl == level and row[1] == name)
    fast, _ = make_pair(client_fp=transport, host=host)
    assert fast.fast_path_transport == transport
    tcp, _ = make_pair(client_fp=False, server_fp=False, host=host)
    assert fast.fast_path_active and not tcp.fast_path_active
    got = _outcome(fast, level, opt, name)
    if treatment == Treatment.REFUSED.value:
        with pytest.raises(OSError) as err:
            fast.getsockopt(level, opt)
        assert err.value.errno == errno.ENOPROTOOPT
        assert "fast-path" in str(err.value) and name in str(err.value)
        with pytest.raises(OSError) as err:
            fast.setsockopt(level, opt, VALUES.get(name, 1))
        assert err.value.errno == errno.ENOPROTOOPT
    elif name == "SO_PEERCRED":
        assert got == 12
    else:
        # Honoured and no-op options answer exactly what TCP answers.
        assert got == _outcome(tcp, level, opt, name)


def test_unlisted_option_is_refused_naming_the_fast_path(make_pair: Callable[..., Pair]) -> None:
    fast, _ = make_pair()
    with pytest.raises(OSError) as err:
        fast.getsockopt(socket.IPPROTO_TCP, 99)
    assert err.value.errno == errno.ENOPROTOOPT
    assert "fast-path" in str(err.value)


def test_listener_options_reach_its_tcp_listener(make_pair: Callable[..., Pair],
                                                 closing: Callable[..., socket.socket]) -> None:
    import loopfast

    srv = closing(loopfast.create_server(("127.0.0.1", 0), fast_path=True))
    assert srv.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
    assert srv.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0
    srv.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
    assert srv.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT) > 0


@pytest.mark.parametrize("transport", ["ring", "stream"])
@pytest.mark.parametrize(("level", "name"), [(socket.IPPROTO_TCP, socket.TCP_NODELAY),
                                             (socket.SOL_SOCKET, socket.SO_KEEPALIVE)])
def test_boolean_noops_answer_as_tcp_without_a_socket_each(
        make_pair: Callable[..., Pair], transport: str, level: int, name: int) -> None:
    cli, srv = make_pair(transport)
    with socket.socket() as tcp:
        for value in (5, 0, -1, True, 1):
            tcp.setsockopt(level, name, value)
            for end in (cli, srv):
                before = len(os.listdir("/proc/self/fd"))
                end.setsockopt(level, name, value)
                assert len(os.listdir("/proc/self/fd")) == before  # no shadow socket made
                assert end.getsockopt(level, name) == tcp.getsockopt(level, name)
    for end in (cli, srv):  # a dup() shares it, as TCP's dup shares the socket
        end.setsockopt(level, name, 1)
        with end.dup() as twin:
            assert twin.getsockopt(level, name) == 1
            end.setsockopt(level, name, 0)
            assert twin.getsockopt(level, name) == 0
    # A later option that needs the shadow socket finds the value there too, and so
    # does a dup().
    for end in (cli, srv):
        end.setsockopt(level, name, 1)
        end.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 60)
        assert end.getsockopt(level, name) == 1
        assert end.getsockopt(level, name, 4) == struct.pack("i", 1)
        end.setsockopt(level, name, 0)
        with end.dup() as twin:
            assert twin.getsockopt(level, name) == 0
