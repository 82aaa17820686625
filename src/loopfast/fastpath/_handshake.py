"""The fast-path handshake: what a client says when it arrives, byte for byte.

Written down so that another language can speak it.

Transport: a SOCK_STREAM AF_UNIX connection to a rendezvous name (see
``loopfast._addresses``). Protocol version 1 carries the connection's data on
that same stream after the hello.

The client's hello, 48 bytes, network byte order::

    offset size field
    0      4    magic          b"LFP\\x00"
    4      2    version        1
    6      2    flags          0 (reserved; a server refuses bits it does not know)
    8      1    family         4 or 6: the address family the client presents
    9      3    reserved       zero
    12     16   client_ip      the client's TCP-style address (IPv4 in the first 4 bytes)
    28     2    client_port
    30     16   target_ip      the address the client connected to
    46     2    target_port

There is no answer message in version 1. A TCP client's connect() completes when
the kernel has queued the connection, before the server calls accept(); the
fast path keeps that promise, so the client cannot wait for an answer. The
decisions that can refuse a client are made before it arrives: the protocol
version is part of the name it connects to, and a listener whose policy or
filters forbid the fast path publishes no name. A hello the server cannot accept
(malformed, or a filter registered after the client queued) is refused by
closing the stream: the client sees a reset, as when a TCP server closes a
connection at once. The client's credentials travel with the connection itself
(SO_PEERCRED), so nothing in the hello needs to be trusted for security.
"""

from __future__ import annotations

import dataclasses
import errno
import socket as _stdsocket
import struct

MAGIC = b"LFP\x00"
VERSION = 1
HELLO = struct.Struct("!4sHHB3x16sH16sH")
HELLO_SIZE = HELLO.size


class HandshakeError(ConnectionRefusedError):
    """Raised when a hello is malformed, of an unknown version, or presents a bad address."""


@dataclasses.dataclass(frozen=True)
class Hello:
    """A client's hello: the addresses it presents (numeric hosts)."""

    family: int
    client_ip: str
    client_port: int
    target_ip: str
    target_port: int


def _family_code(family: int) -> int:
    return 4 if family == _stdsocket.AF_INET else 6


def _pack_ip(family: int, ip: str) -> bytes:
    return _stdsocket.inet_pton(family, ip).ljust(16, b"\0")


def encode(hello: Hello) -> bytes:
    """The 48 bytes of *hello*."""
    return HELLO.pack(
        MAGIC, VERSION, 0, _family_code(hello.family),
        _pack_ip(hello.family, hello.client_ip), hello.client_port,
        _pack_ip(hello.family, hello.target_ip), hello.target_port,
    )


def decode(data: bytes) -> Hello:
    """Parse a hello.

    Raises:
        HandshakeError: wrong size, magic, version, flags or family.
    """
    if len(data) != HELLO_SIZE:
        raise HandshakeError(errno.ECONNREFUSED, f"hello of {len(data)} bytes, want {HELLO_SIZE}")
    magic, version, flags, fam, cip, cport, tip, tport = HELLO.unpack(data)
    if magic != MAGIC:
        raise HandshakeError(errno.ECONNREFUSED, "hello has a wrong magic: not a loopfast peer")
    if version != VERSION:
        raise HandshakeError(errno.ECONNREFUSED, f"hello of protocol version {version}")
    if flags != 0:
        raise HandshakeError(errno.ECONNREFUSED, f"hello has unknown flags {flags:#x}")
    if fam not in (4, 6):
        raise HandshakeError(errno.ECONNREFUSED, f"hello has unknown family {fam}")
    family = _stdsocket.AF_INET if fam == 4 else _stdsocket.AF_INET6
    width = 4 if fam == 4 else 16
    return Hello(
        family,
        _stdsocket.inet_ntop(family, cip[:width]), cport,
        _stdsocket.inet_ntop(family, tip[:width]), tport,
    )
