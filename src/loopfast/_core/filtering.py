"""What a connection filter sees of one connection (SPEC F9): the decision and the state.

The socket class that carries filtered data is ``sockets.filtered.FilteredSocket``;
this module holds what the base class needs to decide and build one, so the
base never imports its subclasses.
"""

from __future__ import annotations

import socket as _stdsocket
from typing import Any

from .. import filters

Filters = tuple[filters.ConnectionFilter, ...]


class FilterState:
    """The filters of one connection, what they see it as, and data in transit."""

    __slots__ = ("filters", "inbound", "info", "unsent")

    def __init__(self, flts: Filters, info: filters.ConnectionInfo) -> None:
        self.filters = flts
        self.info = info
        self.inbound = bytearray()
        self.unsent = b""


def covering(role: filters.Role, address: Any) -> Filters:
    """The filters that cover a connection to or at *address* (a (host, port, ...) tuple)."""
    if not isinstance(address, tuple) or len(address) < 2:
        return ()
    return filters.covering(role, (address[0], address[1]))


def allowed(flts: Filters, info: filters.ConnectionInfo) -> bool:
    """True when every filter lets the connection through."""
    return all(f.on_connect(info) for f in flts)


def info_for(sock: _stdsocket.socket, role: filters.Role, service: Any) -> filters.ConnectionInfo:
    """The ConnectionInfo of *sock* as far as it is known (remote defaults to *service*)."""
    try:
        remote = sock.getpeername()
    except OSError:
        remote = tuple(service)
    return filters.ConnectionInfo(role, tuple(service[:2]), sock.getsockname(), remote)
