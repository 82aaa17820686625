"""Addresses: which destinations are loopback, and the rendezvous names of a port.

A fast-path listener is found through abstract AF_UNIX names. Abstract names
belong to the network namespace, as loopback TCP does, and vanish with the
socket that holds them, so nothing is left on disk. Names are versioned so a
future wire format can sit beside this one.

    \\0loopfast/4/<ip>/<port>        a listener bound to that exact address
    \\0loopfast/4/0.0.0.0/<port>     an IPv4 wildcard (or dual-stack ::) listener
    \\0loopfast/4/::/<port>          an IPv6 wildcard listener
"""

from __future__ import annotations

import functools
import ipaddress
import socket as _stdsocket
from typing import Any

NAME_PREFIX = b"\0loopfast/4/"  # 4: the handshake's version (_fastpath/handshake.py)

_V4_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
_V6_LOOPBACK = ipaddress.IPv6Address("::1")


@functools.lru_cache(maxsize=512)
def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """*host* (scope id dropped) as an address object, or None; cached: connect() asks often."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


@functools.lru_cache(maxsize=512)
def loopback_ipv4(family: int, host: str) -> str | None:
    """Return the IPv4 loopback address *host* reaches, or None.

    For AF_INET6 an IPv4-mapped address (::ffff:127.x.y.z) reaches IPv4
    loopback listeners, as it does over TCP.
    """
    ip = _ip(host)
    if ip is None:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if family != _stdsocket.AF_INET6 or ip.ipv4_mapped is None:
            return None
        ip = ip.ipv4_mapped
    return str(ip) if ip in _V4_LOOPBACK else None


def is_loopback(family: int, host: str) -> bool:
    """True when *host* is 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104 (SPEC F4)."""
    if loopback_ipv4(family, host) is not None:
        return True
    ip = _ip(host)
    return family == _stdsocket.AF_INET6 and ip is not None and ip == _V6_LOOPBACK


def name_for(host: str, port: int) -> bytes:
    """The abstract AF_UNIX name of a listener bound to *host*:*port*."""
    return NAME_PREFIX + f"{host}/{port}".encode("ascii")


@functools.lru_cache(maxsize=256)  # asked on every connect; a process has few destinations
def client_names(family: int, host: str, port: int) -> tuple[bytes, ...]:
    """Names a client connecting to *host*:*port* tries, most specific first.

    This is the order in which the kernel matches a SYN to a listener: an
    exact bind wins over a wildcard one.
    """
    v4 = loopback_ipv4(family, host)
    if v4 is not None:
        return (name_for(v4, port), name_for("0.0.0.0", port))
    return (name_for("::1", port), name_for("::", port))


def listener_names(family: int, host: str, port: int, dual_stack: bool) -> list[bytes]:
    """Names a listener bound to *host*:*port* publishes; [] when not reachable by loopback.

    A dual-stack ``::`` listener also accepts IPv4 loopback clients, so it takes
    the IPv4 wildcard name too (no IPv4 wildcard listener can share its port).
    """
    bare = host.split("%", 1)[0]
    if bare in ("0.0.0.0", "::"):
        names = [name_for(bare, port)]
        if bare == "::" and dual_stack:
            names.append(name_for("0.0.0.0", port))
        return names
    if not is_loopback(family, bare):
        return []
    v4 = loopback_ipv4(family, bare)
    return [name_for(v4 if v4 is not None else "::1", port)]


def numeric_host(family: int, host: str, port: int) -> str:
    """Resolve *host* the way connect() would, without a DNS lookup for IP literals.

    Raises:
        socket.gaierror: the name does not resolve.
    """
    if _ip(host) is not None:
        return host
    infos = _stdsocket.getaddrinfo(host, port, family, _stdsocket.SOCK_STREAM)
    return str(infos[0][4][0])


def tcp_style(family: int, ipv4_or_6: str, port: int) -> tuple[Any, ...]:
    """The address tuple getsockname()/getpeername() return on a TCP socket of *family*."""
    if family == _stdsocket.AF_INET:
        return (ipv4_or_6, port)
    if ":" not in ipv4_or_6:
        ipv4_or_6 = "::ffff:" + ipv4_or_6
    return (ipv4_or_6, port, 0, 0)


def same_host(family: int, host: str, other_family: int, other: str) -> bool:
    """True when *host* and *other* are one address (an IPv4-mapped one equals its IPv4)."""
    mine, theirs = ipv4_of(family, host), ipv4_of(other_family, other)
    if mine is not None or theirs is not None:
        return mine == theirs
    a, b = _ip(host), _ip(other)
    return a is not None and a == b


@functools.lru_cache(maxsize=512)
def ipv4_of(family: int, host: str) -> str | None:
    """*host* as plain IPv4 when it is IPv4 or IPv4-mapped, else None."""
    ip = _ip(host)
    if ip is None:
        return None
    if isinstance(ip, ipaddress.IPv4Address):
        return str(ip)
    return str(ip.ipv4_mapped) if ip.ipv4_mapped is not None else None
