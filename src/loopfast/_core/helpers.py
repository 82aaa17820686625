"""create_connection and create_server: the stdlib helpers, making loopfast sockets."""

from __future__ import annotations

import socket as _stdsocket
from typing import Any

from .sockets import socket

_GLOBAL_DEFAULT_TIMEOUT: Any = _stdsocket._GLOBAL_DEFAULT_TIMEOUT  # type: ignore[attr-defined]


def create_connection(address: tuple[str | None, int], timeout: Any = _GLOBAL_DEFAULT_TIMEOUT,
                      source_address: tuple[str, int] | None = None, *,
                      fast_path: bool = False) -> socket:
    """``socket.create_connection`` returning a loopfast socket, opted in when *fast_path*.

    Tries every address getaddrinfo gives, as the stdlib does.

    Raises:
        OSError: the last connection error, or gaierror when the name does not resolve.
    """
    host, port = address
    errors: list[OSError] = []
    for family, kind, proto, _canon, addr in _stdsocket.getaddrinfo(
            host, port, 0, _stdsocket.SOCK_STREAM):
        sock = socket(family, kind, proto, fast_path=fast_path)
        try:
            if timeout is not _GLOBAL_DEFAULT_TIMEOUT:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(addr)
            return sock
        except OSError as exc:
            errors.append(exc)
            sock.close()
    if errors:
        try:
            raise errors[-1]
        finally:
            errors.clear()  # break the reference cycle through the traceback
    raise OSError("getaddrinfo returns an empty list")


def create_server(address: tuple[str, int], *, family: int = _stdsocket.AF_INET,
                  backlog: int | None = None, reuse_port: bool = False,
                  dualstack_ipv6: bool = False, fast_path: bool = False) -> socket:
    """``socket.create_server`` returning a listening loopfast socket, opted in when *fast_path*.

    Raises:
        ValueError: as the stdlib, for reuse_port or dualstack_ipv6 where unsupported.
        OSError: bind or listen failed (the message names the address).
    """
    if reuse_port and not hasattr(_stdsocket, "SO_REUSEPORT"):
        raise ValueError("SO_REUSEPORT not supported on this platform")
    if dualstack_ipv6:
        if not _stdsocket.has_dualstack_ipv6():
            raise ValueError("dualstack_ipv6 not supported on this platform")
        if family != _stdsocket.AF_INET6:
            raise ValueError("dualstack_ipv6 requires AF_INET6 family")
    sock = socket(family, _stdsocket.SOCK_STREAM, fast_path=fast_path)
    try:
        sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_REUSEPORT, 1)
        if family == _stdsocket.AF_INET6:
            v6only = int(not dualstack_ipv6)
            sock.setsockopt(_stdsocket.IPPROTO_IPV6, _stdsocket.IPV6_V6ONLY, v6only)
        try:
            sock.bind(address)
        except OSError as err:
            raise OSError(err.errno, f"{err.strerror} (while attempting to bind on address "
                          f"{address!r})") from None
        if backlog is None:
            sock.listen()
        else:
            sock.listen(backlog)
        return sock
    except BaseException:
        sock.close()
        raise
