"""SO_BUSY_POLL on loopfast sockets: how long a blocked call spins before it parks (SPEC F13).

On a ring-carried connection the value is the spin time in microseconds of
every blocking call: 0 parks at once (no CPU burned while idle), N spins up to
N µs first ("poll", as Registered I/O does); never set, the spin adapts. The
value is kept by loopfast, so it needs no privilege; the kernel's own busy
polling of a TCP socket (which needs CAP_NET_ADMIN to raise) is asked for too,
best effort, when the socket is TCP.
"""

from __future__ import annotations

import errno
import socket as _stdsocket
from typing import Any

SO_BUSY_POLL = 46
MAX_US = 10_000_000


def addresses(level: int, optname: int) -> bool:
    """True when (*level*, *optname*) is SO_BUSY_POLL."""
    return level == _stdsocket.SOL_SOCKET and optname == SO_BUSY_POLL


def parse(value: Any) -> int:
    """The microseconds a SO_BUSY_POLL value asks for.

    Raises:
        OSError: EINVAL for anything but an int (or 4 raw bytes) in 0..10,000,000.
    """
    if isinstance(value, (bytes, bytearray)) and len(value) == 4:
        value = int.from_bytes(value, "little", signed=True)
    if type(value) is not int or not 0 <= value <= MAX_US:
        raise OSError(errno.EINVAL, f"SO_BUSY_POLL takes microseconds from 0 to {MAX_US:,}, "
                      f"got {value!r}")
    return value
