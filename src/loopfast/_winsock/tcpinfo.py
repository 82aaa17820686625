"""Reading Linux's ``struct tcp_info`` (``getsockopt(IPPROTO_TCP, TCP_INFO)``).

The layout is ``include/uapi/linux/tcp.h``; the kernel copies as many bytes as it
has and as the caller asked for, so newer fields (``tcpi_rcv_wnd`` came in 6.x)
are read only when the answer is long enough, else they are None.

Byte 6 holds two 4-bit fields, ``tcpi_snd_wscale : 4, tcpi_rcv_wscale : 4``. On
little-endian Linux the first-declared bitfield takes the low bits, so
``tcpi_rcv_wscale`` is the HIGH nibble (measured: a client that clamps its own
window to 65,535 reads 0 there and 10 in the low nibble, its peer's scale).
"""

from __future__ import annotations

import dataclasses
import errno
import socket as _stdsocket
import struct

from .._core.stdlib import StdSocket

__all__ = ["TcpInfo", "read"]

_ASK = 512  # more than any kernel returns today; the kernel answers with its own size

# name -> (offset, struct format) of the fields loopfast reads.
_FIELDS: dict[str, tuple[int, str]] = {
    "state": (0, "B"),
    "rcv_mss": (20, "I"),
    "unacked": (24, "I"),
    "rcv_ssthresh": (64, "I"),
    "advmss": (84, "I"),
    "rcv_space": (96, "I"),
    "bytes_acked": (120, "Q"),
    "bytes_received": (128, "Q"),
    "rwnd_limited": (176, "Q"),
    "bytes_sent": (200, "Q"),
    "bytes_retrans": (208, "Q"),
    "snd_wnd": (228, "I"),
    "rcv_wnd": (232, "I"),
}


@dataclasses.dataclass(frozen=True)
class TcpInfo:
    """The fields of ``struct tcp_info`` the compatibility mode is checked with.

    Window figures are in bytes, after scaling. ``bytes_sent - bytes_retrans -
    bytes_acked`` is the data in flight (``bytes_sent`` counts retransmissions,
    such as a tail loss probe's when ACKs come late). ``rwnd_limited``
    (microseconds the sender was held back by the peer's window), ``bytes_sent``,
    ``bytes_retrans``, ``snd_wnd`` and ``rcv_wnd`` are None on kernels too old to
    report them.
    """

    state: int
    snd_wscale: int
    rcv_wscale: int
    rcv_mss: int
    unacked: int
    rcv_ssthresh: int
    advmss: int
    rcv_space: int
    bytes_acked: int
    bytes_received: int
    rwnd_limited: int | None
    bytes_sent: int | None
    bytes_retrans: int | None
    snd_wnd: int | None
    rcv_wnd: int | None

    @classmethod
    def from_bytes(cls, raw: bytes) -> TcpInfo:
        """Parse the kernel's answer; fields beyond its length are None.

        Raises:
            OSError: EPROTO when the answer is too short to hold the window scales
                (104 bytes; every kernel since 2.6 gives more).
        """
        if len(raw) < 104:
            raise OSError(errno.EPROTO, f"TCP_INFO answered {len(raw)} bytes, expected at "
                          "least 104; this kernel's tcp_info is not the one loopfast knows")
        values: dict[str, int | None] = {}
        for name, (offset, fmt) in _FIELDS.items():
            fits = offset + struct.calcsize(fmt) <= len(raw)
            values[name] = struct.unpack_from("<" + fmt, raw, offset)[0] if fits else None
        scales = raw[6]
        return cls(snd_wscale=scales & 0x0F, rcv_wscale=scales >> 4, **values)  # type: ignore[arg-type]


def read(sock: _stdsocket.socket) -> TcpInfo:
    """``TCP_INFO`` of a kernel TCP socket, parsed.

    Raises:
        OSError: as ``getsockopt`` (EOPNOTSUPP/ENOPROTOOPT on a socket that is not TCP).
    """
    return TcpInfo.from_bytes(StdSocket.getsockopt(
        sock, _stdsocket.IPPROTO_TCP, _stdsocket.TCP_INFO, _ASK))
