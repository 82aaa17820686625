"""Winsock's constants, with Winsock's values.

The values are those of the Windows SDK headers (mstcpip.h, winsock2.h,
sdkddkver.h), so code written against Winsock reads the same here. Flags are
translated to Linux's own values at the edge, never here.
"""

from __future__ import annotations

import enum

__all__ = [
    "NTDDI_LONGHORN",
    "NTDDI_VISTA",
    "NTDDI_WIN2K",
    "NTDDI_WIN7",
    "NTDDI_WIN8",
    "NTDDI_WIN10",
    "NTDDI_WINBLUE",
    "NTDDI_WINXP",
    "NTDDI_WS03",
    "POLLERR",
    "POLLHUP",
    "POLLIN",
    "POLLNVAL",
    "POLLOUT",
    "POLLPRI",
    "POLLRDBAND",
    "POLLRDNORM",
    "POLLWRBAND",
    "POLLWRNORM",
    "SIO_LOOPBACK_FAST_PATH",
    "SIO_SET_COMPATIBILITY_MODE",
    "SO_BUSY_POLL",
    "WSA_COMPATIBILITY_BEHAVIOR_ID",
    "WsaBehaviorAll",
    "WsaBehaviorAutoTuning",
    "WsaBehaviorReceiveBuffering",
]

# Linux's SO_BUSY_POLL (asm-generic/socket.h), which the socket module does not name:
# loopfast reads it as a ring-carried socket's spin time in microseconds (SPEC F13).
SO_BUSY_POLL = 46

# Socket I/O control codes (mstcpip.h): _WSAIOW(IOC_VENDOR, 16) and (IOC_VENDOR, 300).
SIO_LOOPBACK_FAST_PATH = 0x98000010
SIO_SET_COMPATIBILITY_MODE = 0x9800012C

# WSAPoll flags (winsock2.h). POLLIN and POLLOUT are unions, as there.
POLLRDNORM = 0x0100
POLLRDBAND = 0x0200
POLLIN = POLLRDNORM | POLLRDBAND
POLLPRI = 0x0400
POLLWRNORM = 0x0010
POLLOUT = POLLWRNORM
POLLWRBAND = 0x0020
POLLERR = 0x0001
POLLHUP = 0x0002
POLLNVAL = 0x0004


class WSA_COMPATIBILITY_BEHAVIOR_ID(enum.IntEnum):
    """The behaviours SIO_SET_COMPATIBILITY_MODE can select (mstcpip.h)."""

    WsaBehaviorAll = 0
    WsaBehaviorReceiveBuffering = 1
    WsaBehaviorAutoTuning = 2


WsaBehaviorAll = WSA_COMPATIBILITY_BEHAVIOR_ID.WsaBehaviorAll
WsaBehaviorReceiveBuffering = WSA_COMPATIBILITY_BEHAVIOR_ID.WsaBehaviorReceiveBuffering
WsaBehaviorAutoTuning = WSA_COMPATIBILITY_BEHAVIOR_ID.WsaBehaviorAutoTuning

# Target OS versions (sdkddkver.h).
NTDDI_WIN2K = 0x05000000
NTDDI_WINXP = 0x05010000
NTDDI_WS03 = 0x05020000
NTDDI_VISTA = 0x06000000
NTDDI_LONGHORN = NTDDI_VISTA
NTDDI_WIN7 = 0x06010000
NTDDI_WIN8 = 0x06020000
NTDDI_WINBLUE = 0x06030000
NTDDI_WIN10 = 0x0A000000
