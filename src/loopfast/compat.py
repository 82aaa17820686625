"""SIO_SET_COMPATIBILITY_MODE: Winsock's per-socket receive-window behaviours, on Linux TCP.

The rules this module keeps (SPEC C1-C8, docs/compat.md):

- AutoTuning, target Vista or later: ``TCP_WINDOW_CLAMP`` 262,140 before the
  SYN, so the window scale Linux offers is ilog2(262,140) - 15 = 2 and the
  advertised window can never exceed 65,535 << 2. Autotuning stays on; it
  later raises the kernel's clamp past 262,140, so the scale agreed in the SYN,
  not the clamp, is what keeps the cap (docs/compat.md).
- AutoTuning, target before Vista: ``TCP_WINDOW_CLAMP`` 65,535 (scale 0, window
  at most 65,535 whatever ``SO_RCVBUF`` says) and ``SO_RCVBUF`` locked at its
  current size (at least 64 KiB), which is what turns Linux's receive-buffer
  autotuning off for one socket. Linux cannot unlock it again, so going back
  to a Vista target on the same socket is refused.
- ReceiveBuffering: after the connection is made, ``setsockopt(SO_RCVBUF)``
  may shrink the buffer only when the target is Vista or later; without any
  compatibility mode shrinking is refused (the Vista default the seed gives).
- Only before the SYN: a connected or accepted socket answers EISCONN. A
  listener's mode reaches every connection it accepts (the kernel copies the
  clamp and the lock into each child; the accepted socket takes the settings).

This module takes and returns ``CompatibilitySettings``; the socket keeps them.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import socket as _stdsocket
import struct
from typing import ClassVar

from ._core.stdlib import StdSocket, is_tcp
from .constants import NTDDI_VISTA, WSA_COMPATIBILITY_BEHAVIOR_ID

__all__ = [
    "AUTOTUNING_WINDOW_CAP",
    "PRE_VISTA_WINDOW_CAP",
    "CompatibilitySettings",
    "WSACompatibilityMode",
    "apply",
    "check_rcvbuf",
    "ring_capacity",
    "settings_of",
    "shrink_allowed",
]

PRE_VISTA_WINDOW_CAP = 65_535  # no window scaling: the 16-bit window field
AUTOTUNING_WINDOW_CAP = 65_535 << 2  # 262,140: scale factor 2
_PRE_VISTA_RCVBUF = 65_535  # SO_RCVBUF asked for when locking (the kernel doubles it)
_STRUCT = struct.Struct("<II")  # WSA_COMPATIBILITY_BEHAVIOR_ID (enum), ULONG TargetOsVersion
_NAME = "SIO_SET_COMPATIBILITY_MODE"


def _invalid(message: str) -> OSError:
    return OSError(errno.EINVAL, message)


@dataclasses.dataclass(frozen=True)
class WSACompatibilityMode:
    """Winsock's ``WSA_COMPATIBILITY_MODE``: a behaviour and the Windows version to mimic.

    Args:
        behavior_id: ``WsaBehaviorAll``, ``WsaBehaviorReceiveBuffering`` or
            ``WsaBehaviorAutoTuning`` (0, 1, 2).
        target_os_version: an ``NTDDI_*`` constant; what counts is whether it is
            ``NTDDI_VISTA`` (= ``NTDDI_LONGHORN``) or later.

    Raises:
        OSError: EINVAL for an unknown behaviour or a version outside a ULONG.
    """

    behavior_id: WSA_COMPATIBILITY_BEHAVIOR_ID
    target_os_version: int
    SIZE: ClassVar[int] = _STRUCT.size

    def __post_init__(self) -> None:
        behavior: object = self.behavior_id
        if type(behavior) is bool or not isinstance(behavior, int):
            raise _invalid(f"{_NAME}: behavior_id must be a WSA_COMPATIBILITY_BEHAVIOR_ID, got "
                           f"{behavior!r}")
        try:
            known = WSA_COMPATIBILITY_BEHAVIOR_ID(behavior)
        except ValueError:
            names = ", ".join(f"{b.name} ({b.value})" for b in WSA_COMPATIBILITY_BEHAVIOR_ID)
            raise _invalid(f"{_NAME}: unknown behavior_id {behavior}; use one of {names}") from None
        version: object = self.target_os_version
        if type(version) is bool or not isinstance(version, int) or not 0 <= version < 2**32:
            raise _invalid(f"{_NAME}: target_os_version must be an NTDDI_* constant (a ULONG, "
                           f"e.g. NTDDI_VISTA = {NTDDI_VISTA:#010x}), got {version!r}")
        object.__setattr__(self, "behavior_id", known)

    @property
    def vista_or_later(self) -> bool:
        """True when the target is Windows Vista (NTDDI_LONGHORN) or later."""
        return self.target_os_version >= NTDDI_VISTA

    def to_bytes(self) -> bytes:
        """The 8-byte C struct, little-endian, as ``WSAIoctl`` reads it."""
        return _STRUCT.pack(self.behavior_id, self.target_os_version)

    @classmethod
    def from_bytes(cls, raw: bytes | bytearray | memoryview) -> WSACompatibilityMode:
        """Parse the C struct; bytes beyond the first 8 are ignored, as Winsock does.

        Raises:
            OSError: EINVAL for fewer than 8 bytes or an unknown behaviour.
        """
        data = bytes(raw)
        if len(data) < cls.SIZE:
            raise _invalid(f"{_NAME} takes a WSA_COMPATIBILITY_MODE of {cls.SIZE} bytes "
                           f"(behavior id, target OS version), got {len(data)} bytes")
        behavior, version = _STRUCT.unpack_from(data)
        return cls(behavior, version)

    @classmethod
    def parse(cls, option: object) -> WSACompatibilityMode:
        """The mode an ioctl input carries: a ``WSACompatibilityMode`` or its raw bytes.

        Raises:
            OSError: EINVAL for anything else, or bytes that ``from_bytes`` refuses.
        """
        if isinstance(option, cls):
            return option
        if isinstance(option, (bytes, bytearray, memoryview)):
            return cls.from_bytes(option)
        raise _invalid(f"{_NAME} takes a loopfast.WSACompatibilityMode(behavior_id, "
                       f"target_os_version) or its {cls.SIZE} raw bytes, got {option!r}")


@dataclasses.dataclass(frozen=True)
class CompatibilitySettings:
    """What a socket holds: the target version set for each behaviour (None = not set)."""

    autotuning: int | None = None
    receive_buffering: int | None = None

    def with_mode(self, mode: WSACompatibilityMode) -> CompatibilitySettings:
        """These settings with *mode* applied (WsaBehaviorAll sets both behaviours)."""
        b = WSA_COMPATIBILITY_BEHAVIOR_ID
        target = mode.target_os_version
        return CompatibilitySettings(
            autotuning=target if mode.behavior_id in (b.WsaBehaviorAll,
                                                      b.WsaBehaviorAutoTuning)
            else self.autotuning,
            receive_buffering=target if mode.behavior_id in (b.WsaBehaviorAll,
                                                             b.WsaBehaviorReceiveBuffering)
            else self.receive_buffering)


Mode = WSACompatibilityMode | CompatibilitySettings | None


def _settings(mode: Mode) -> CompatibilitySettings:
    if mode is None:
        return CompatibilitySettings()
    if isinstance(mode, WSACompatibilityMode):
        return CompatibilitySettings().with_mode(mode)
    return mode


def settings_of(sock: _stdsocket.socket) -> CompatibilitySettings:
    """The compatibility settings of a loopfast socket (all None when never set)."""
    return getattr(sock, "_compat", None) or CompatibilitySettings()


def shrink_allowed(mode: Mode) -> bool:
    """True when ``SO_RCVBUF`` may shrink after connect (ReceiveBuffering, Vista or later)."""
    target = _settings(mode).receive_buffering
    return target is not None and target >= NTDDI_VISTA


def window_cap(mode: Mode) -> int | None:
    """The largest true receive window the AutoTuning behaviour allows; None = no cap."""
    target = _settings(mode).autotuning
    if target is None:
        return None
    return AUTOTUNING_WINDOW_CAP if target >= NTDDI_VISTA else PRE_VISTA_WINDOW_CAP


def ring_capacity(rcvbuf: int, mode: Mode) -> int:
    """Bytes a fast-path connection may hold in flight towards a receiver.

    The ring follows ``SO_RCVBUF`` (SPEC F7) and, under AutoTuning, never holds
    more than the window a TCP connection in that mode could advertise:
    262,140 bytes (Vista or later) or 65,535 (before Vista). The result is an
    upper bound: a ring that rounds its size must round down.
    """
    cap = window_cap(mode)
    return rcvbuf if cap is None else min(rcvbuf, cap)


# -- applying a mode to a kernel TCP socket ------------------------------------------------


def apply(sock: _stdsocket.socket, settings: CompatibilitySettings | None, option: object,
          connected: bool) -> CompatibilitySettings:
    """``ioctl(SIO_SET_COMPATIBILITY_MODE, option)``: apply it to *sock*; the new settings.

    *settings* are the socket's until now (None: never set); *connected* says
    whether its connection is made (then it is too late, as on Windows).

    Raises:
        OSError: EINVAL for a bad input (or a Vista AutoTuning target after a pre-Vista
            one on the same socket); EOPNOTSUPP on a socket that is not TCP; EISCONN on
            a connected or accepted socket.
    """
    mode = WSACompatibilityMode.parse(option)
    if not is_tcp(sock):
        raise OSError(errno.EOPNOTSUPP, f"{_NAME} applies only to TCP sockets (AF_INET/"
                      "AF_INET6, SOCK_STREAM), as on Windows; a datagram socket has no "
                      "receive window")
    if connected:
        raise OSError(errno.EISCONN, f"{_NAME} must be set before the SYN: right after "
                      "creating the socket, before connect() on a client or on the listening "
                      "socket before clients connect; this socket is already connected")
    old = _settings(settings)
    new = old.with_mode(mode)
    if new.autotuning != old.autotuning and new.autotuning is not None:
        _apply_autotuning(sock, old.autotuning, new.autotuning)
    return new


def _apply_autotuning(sock: _stdsocket.socket, old: int | None, target: int) -> None:
    tcp = _stdsocket.IPPROTO_TCP
    if target >= NTDDI_VISTA:
        if old is not None and old < NTDDI_VISTA:
            raise _invalid(f"{_NAME}: this socket already has pre-Vista AutoTuning, which "
                           "locked SO_RCVBUF; Linux cannot turn receive autotuning back on for "
                           "it. Create a new socket for the Vista behaviour")
        sock.setsockopt(tcp, _stdsocket.TCP_WINDOW_CLAMP, AUTOTUNING_WINDOW_CAP)
        return
    sock.setsockopt(tcp, _stdsocket.TCP_WINDOW_CLAMP, PRE_VISTA_WINDOW_CAP)
    current = sock.getsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_RCVBUF)
    # Setting SO_RCVBUF (even to the size it has) locks it: no autotuning from here on.
    sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_RCVBUF,
                    max(_PRE_VISTA_RCVBUF, current // 2))


# -- the ReceiveBuffering rule -------------------------------------------------------------


def _read_int(path: str, default: int) -> int:
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return default


@functools.cache
def _min_rcvbuf() -> int:
    """SOCK_MIN_RCVBUF, as this kernel reports it for the smallest SO_RCVBUF."""
    with StdSocket(_stdsocket.AF_INET, _stdsocket.SOCK_STREAM) as probe:
        probe.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_RCVBUF, 1)
        return int(probe.getsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_RCVBUF))


def kernel_rcvbuf(value: int) -> int:
    """The buffer size Linux keeps for ``setsockopt(SO_RCVBUF, value)``: doubled, capped."""
    rmem_max = _read_int("/proc/sys/net/core/rmem_max", 212_992)
    asked = value if value >= 0 else 2**32 - 1  # the kernel reads it as unsigned
    return max(min(asked, rmem_max) * 2, _min_rcvbuf())


def check_rcvbuf(sock: _stdsocket.socket, settings: CompatibilitySettings | None,
                 value: object, connected: bool) -> None:
    """Refuse an ``SO_RCVBUF`` that would shrink a connected socket's buffer (SPEC C5).

    Growing is always allowed, and so is any size before the connection is made.

    Raises:
        OSError: EINVAL when the buffer would shrink and the socket's ReceiveBuffering
            behaviour (or its absence: the Vista default) forbids it.
    """
    if shrink_allowed(settings):
        return
    if isinstance(value, (bytes, bytearray)) and len(value) == 4:
        value = int.from_bytes(value, "little", signed=True)
    if type(value) is not int or not connected:
        return  # the kernel judges other inputs; unconnected sockets may shrink
    current = int(sock.getsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_RCVBUF))
    wanted = kernel_rcvbuf(value)
    if wanted < current:
        raise _invalid(
            f"SO_RCVBUF {value} would shrink the receive buffer of a connected socket from "
            f"{current} to {wanted} bytes, which the Vista default forbids; set it before "
            f"connect(), or set {_NAME} WsaBehaviorReceiveBuffering with NTDDI_VISTA or later "
            "before connect()")
