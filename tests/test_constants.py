"""Winsock's values, as the Windows SDK headers give them (issue: foundation, item 2)."""

from __future__ import annotations

import loopfast


def test_control_codes() -> None:
    assert loopfast.SIO_LOOPBACK_FAST_PATH == 0x98000010
    assert loopfast.SIO_SET_COMPATIBILITY_MODE == 0x9800012C


def test_busy_poll_option_is_linux_s() -> None:
    assert loopfast.SO_BUSY_POLL == 46  # asm-generic/socket.h; the socket module lacks it


def test_poll_flags() -> None:
    assert (loopfast.POLLRDNORM, loopfast.POLLRDBAND, loopfast.POLLPRI) == (0x100, 0x200, 0x400)
    assert loopfast.POLLIN == loopfast.POLLRDNORM | loopfast.POLLRDBAND == 0x300
    assert loopfast.POLLOUT == loopfast.POLLWRNORM == 0x10
    assert loopfast.POLLWRBAND == 0x20
    assert (loopfast.POLLERR, loopfast.POLLHUP, loopfast.POLLNVAL) == (1, 2, 4)


def test_compatibility_constants() -> None:
    assert (loopfast.WsaBehaviorAll, loopfast.WsaBehaviorReceiveBuffering,
            loopfast.WsaBehaviorAutoTuning) == (0, 1, 2)
    assert loopfast.NTDDI_WIN2K == 0x05000000
    assert loopfast.NTDDI_WINXP == 0x05010000
    assert loopfast.NTDDI_WS03 == 0x05020000
    assert loopfast.NTDDI_VISTA == loopfast.NTDDI_LONGHORN == 0x06000000
    assert loopfast.NTDDI_WIN7 == 0x06010000
    assert loopfast.NTDDI_WIN8 == 0x06020000
    assert loopfast.NTDDI_WINBLUE == 0x06030000
    assert loopfast.NTDDI_WIN10 == 0x0A000000


def test_everything_exported_exists() -> None:
    for name in loopfast.__all__:
        assert hasattr(loopfast, name), name
