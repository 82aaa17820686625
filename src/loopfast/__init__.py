"""loopfast: Windows' TCP loopback fast path, WSAPoll and compatibility mode for Python on Linux.

Two processes that both opt in talk over 127.0.0.1/::1 through a faster
transport than TCP, with the same socket API, the same addresses, and a silent
fall-back to TCP when the peer does not take part::

    server = loopfast.create_server(("127.0.0.1", 8080), fast_path=True)
    client = loopfast.create_connection(("127.0.0.1", 8080), fast_path=True)
"""

from __future__ import annotations

from . import filters, policy
from ._core.helpers import create_connection, create_server
from ._core.patch import patch, patched, unpatch
from ._core.sockets import socket
from ._core.stdlib import PeerCredentials
from ._winsock.poll import PollFD, poll, poll_objects
from ._winsock.socket_poll import SELECT_ERROR, SELECT_READ, SELECT_WRITE, SelectMode
from .compat import WSACompatibilityMode
from .constants import *  # noqa: F403
from .constants import __all__ as _constants_all

__all__ = [
    "SELECT_ERROR",
    "SELECT_READ",
    "SELECT_WRITE",
    "PeerCredentials",
    "PollFD",
    "SelectMode",
    "WSACompatibilityMode",
    "create_connection",
    "create_server",
    "filters",
    "patch",
    "patched",
    "policy",
    "poll",
    "poll_objects",
    "socket",
    "unpatch",
    *_constants_all,
]
