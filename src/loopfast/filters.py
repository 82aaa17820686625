"""Connection filters: application callouts that see a connection's data (SPEC F9).

The Windows Filtering Platform rule: a connection that a data callout inspects
takes the ordinary TCP path, so the callout sees every byte. Here a filter is a
``ConnectionFilter`` registered in the process; a connection it covers is made
over TCP even when both sides asked for the fast path, and every byte the
application sends or receives on it passes through the filter, which may
rewrite it or block the connection.

A filter covers connections by the service address (the server's address and
port): on the client side the address connected to, on the server side the
listening address. A listening socket stops offering the fast path as soon as a
filter that covers it is registered.

Example::

    class Upper(loopfast.filters.ConnectionFilter):
        def covers(self, role, service):
            return service[1] == 8080
        def on_send(self, info, data):
            return data.upper()

    loopfast.filters.register(Upper())
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any, Literal

__all__ = ["ConnectionFilter", "ConnectionInfo", "covering", "register", "registered",
           "unregister"]

Role = Literal["client", "server"]


@dataclasses.dataclass(frozen=True)
class ConnectionInfo:
    """The connection a filter is called for.

    Attributes:
        role: "client" for a connection this process opened, "server" for an accepted one.
        service: the server's (host, port) as the client named it or the listener is bound.
        local: the socket's own TCP address (getsockname()).
        remote: the peer's TCP address (getpeername()).
    """

    role: Role
    service: tuple[Any, ...]
    local: tuple[Any, ...]
    remote: tuple[Any, ...]


class ConnectionFilter:
    """Base class of a connection filter; override what you need.

    The default covers every connection, allows it, and passes data unchanged.
    An exception raised by ``on_send`` or ``on_recv`` propagates to the
    application's send or recv call.
    """

    def covers(self, role: Role, service: tuple[Any, ...]) -> bool:
        """True when this filter wants to see connections to *service*."""
        return True

    def on_connect(self, info: ConnectionInfo) -> bool:
        """Return False to block the connection: the client's connect() raises
        ConnectionRefusedError, the server's accept() drops it and waits for the next."""
        return True

    def on_send(self, info: ConnectionInfo, data: bytes) -> bytes:
        """Return the bytes to put on the wire instead of *data*."""
        return data

    def on_recv(self, info: ConnectionInfo, data: bytes) -> bytes:
        """Return the bytes to hand the application instead of *data*."""
        return data


_lock = threading.Lock()
_filters: tuple[ConnectionFilter, ...] = ()
_watchers: list[Callable[[], None]] = []


def register(flt: ConnectionFilter) -> None:
    """Add *flt*; connections made from now on that it covers take TCP.

    Raises:
        TypeError: *flt* is not a ConnectionFilter.
    """
    global _filters
    if not isinstance(flt, ConnectionFilter):
        raise TypeError(f"expected a loopfast.filters.ConnectionFilter, got {type(flt).__name__}")
    with _lock:
        _filters = (*_filters, flt)
        watchers = list(_watchers)
    for watch in watchers:
        watch()


def unregister(flt: ConnectionFilter) -> None:
    """Remove *flt*. Connections it already covers stay on TCP and keep it (SPEC F5).

    Raises:
        ValueError: *flt* is not registered.
    """
    global _filters
    with _lock:
        if flt not in _filters:
            raise ValueError("this filter is not registered")
        _filters = tuple(f for f in _filters if f is not flt)


def registered() -> bool:
    """True when any filter is registered (a look that costs nothing on every accept)."""
    return bool(_filters)


def covering(role: Role, service: tuple[Any, ...]) -> tuple[ConnectionFilter, ...]:
    """The registered filters that cover a connection to *service* in *role*."""
    if not _filters:  # the usual case, on every connect and accept
        return ()
    return tuple(f for f in _filters if f.covers(role, service))


def watch(callback: Callable[[], None]) -> None:
    """Call *callback* after every ``register`` (listeners use it to withdraw)."""
    with _lock:
        _watchers.append(callback)


def unwatch(callback: Callable[[], None]) -> None:
    """Stop calling *callback*; a no-op if it is not watched."""
    with _lock:
        if callback in _watchers:
            _watchers.remove(callback)
