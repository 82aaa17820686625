"""The fast-path handshake: what a client says when it arrives, byte for byte.

Written down so that another language can speak it.

Transport: a SOCK_STREAM AF_UNIX connection to a rendezvous name (see
``loopfast._core.addresses``). Two ways to carry the data follow the hello:

- stream (flags 0): the connection's data flows on that same stream;
- ring (flags bit 0): the data flows through two shared-memory rings (see
  ``_ring.c`` for their layout and rules); the hello carries 12 more bytes.
  The rings are one slot of an arena: a sealed memfd of one or more slots,
  each a header page and the two rings, which the client makes for one
  destination and offers in every hello to it, so that a server process maps
  it once (``_ring.c``, "arenas").
  The stream stays as the server's wake-up socket pair: the server's end is
  its r (the accepted socket's fd), the client's end its w.

The hello is one message (one sendmsg) with its fds as SCM_RIGHTS: the
server takes it in one read, which the kernel stops right behind a message
that carried fds, so the stream's data after it stays queued. A first
message shorter than a hello may be refused. Every hello carries, last,
a duplicate of the client's own TCP socket, bound to the local port it keeps
reserved: the server reads the client's address from it (``getsockname``),
so what a client claims is never believed, and closes it. A ring hello
carries three fds before it: the arena (a sealed memfd whose size is a whole
number of slots of the hello's sizes), then the client's end of this very
stream (the server's w), then the client's w.

The client's hello, 48 bytes (60 with a ring), network byte order::

    offset size field
    0      4    magic          b"LFP\\x00"
    4      2    version        4
    6      2    flags          bit 0: ring; other bits reserved (a server refuses them)
    8      1    family         4 or 6: the address family the client presents
    9      3    reserved       zero
    12     16   client_ip      the client's TCP-style address (IPv4 in the first 4 bytes);
                               it must be what the reserved socket is bound to
    28     2    client_port    likewise
    30     16   target_ip      the address the client connected to
    46     2    target_port
    48     4    c2s_size       ring: bytes of the client-to-server ring (power of two)
    52     4    s2c_size       ring: bytes of the server-to-client ring
    56     4    slot           ring: the arena's slot that holds this connection's rings

Version 2 added the reserved socket (version 1 believed client_ip and
client_port); version 3 made the stream the server's wake-up pair (version 2
passed a pair of its own and closed the stream); version 4 put the rings in an
arena's slot (version 3 passed a memfd of its own per connection).

There is no answer message. A TCP client's connect() completes when the
kernel has queued the connection, before the server calls accept(); the
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
VERSION = 4  # also in the rendezvous names (_core/addresses.py NAME_PREFIX)
HELLO = struct.Struct("!4sHHB3x16sH16sH")
HELLO_SIZE = HELLO.size
RING = 0x1
RING_EXT = struct.Struct("!III")  # c2s_size, s2c_size, slot
STREAM_FDS = 1  # the client's reserved TCP socket
RING_FDS = 4  # arena memfd, server w (the stream's client end), client w, the reserved TCP socket


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
    ring: tuple[int, int] | None = None  # (c2s_size, s2c_size) when the rings carry the data
    slot: int = 0  # the arena's slot holding the rings

    @property
    def size(self) -> int:
        """Bytes on the wire."""
        return HELLO_SIZE + (RING_EXT.size if self.ring else 0)


def _family_code(family: int) -> int:
    return 4 if family == _stdsocket.AF_INET else 6


def _pack_ip(family: int, ip: str) -> bytes:
    return _stdsocket.inet_pton(family, ip).ljust(16, b"\0")


def encode(hello: Hello) -> bytes:
    """The 48 bytes of *hello*."""
    head = HELLO.pack(
        MAGIC, VERSION, RING if hello.ring else 0, _family_code(hello.family),
        _pack_ip(hello.family, hello.client_ip), hello.client_port,
        _pack_ip(hello.family, hello.target_ip), hello.target_port,
    )
    return head + RING_EXT.pack(*hello.ring, hello.slot) if hello.ring else head


CLIENT_PORT = struct.Struct("!H")  # the client port's field, at CLIENT_PORT_AT
CLIENT_PORT_AT = 28  # see the layout above


def with_client_port(wire: bytes, port: int) -> bytes:
    """*wire* (an encoded hello) presenting *port* as the client's port instead.

    Raises:
        struct.error: *port* is not in [0, 65535].
    """
    return wire[:CLIENT_PORT_AT] + CLIENT_PORT.pack(port) + wire[CLIENT_PORT_AT + 2:]


SLOT = struct.Struct("!I")  # a ring hello's slot field, at SLOT_AT
SLOT_AT = HELLO_SIZE + 8  # see the layout above


def with_slot(wire: bytes, slot: int) -> bytes:
    """*wire* (an encoded ring hello) naming arena slot *slot* instead.

    Raises:
        struct.error: *slot* is not an unsigned 32-bit number.
    """
    return wire[:SLOT_AT] + SLOT.pack(slot) + wire[SLOT_AT + 4:]


def judged_part(wire: bytes) -> bytes:
    """What every hello of one client process to one listener shares: *wire* without
    its client port and its slot, and its length (a listener judges that once, see
    listener.py; a hello cut short never passes for a whole one)."""
    return wire[:CLIENT_PORT_AT] + wire[CLIENT_PORT_AT + 2:SLOT_AT] + len(wire).to_bytes(4, "big")


def wire_size(head: bytes) -> int:
    """The whole hello's size, from its first HELLO_SIZE bytes.

    Raises:
        HandshakeError: the head is not a hello (see decode).
    """
    flags = _check_head(head)
    return HELLO_SIZE + (RING_EXT.size if flags & RING else 0)


def _check_head(head: bytes) -> int:
    magic, version, flags = struct.unpack_from("!4sHH", head)
    if magic != MAGIC:
        raise HandshakeError(errno.ECONNREFUSED, "hello has a wrong magic: not a loopfast peer")
    if version != VERSION:
        raise HandshakeError(errno.ECONNREFUSED, f"hello of protocol version {version}")
    if flags & ~RING:
        raise HandshakeError(errno.ECONNREFUSED, f"hello has unknown flags {flags:#x}")
    return int(flags)


def decode(data: bytes) -> Hello:
    """Parse a hello.

    Raises:
        HandshakeError: wrong size, magic, version, flags or family.
    """
    if len(data) < HELLO_SIZE:
        raise HandshakeError(errno.ECONNREFUSED, f"hello of {len(data)} bytes, want {HELLO_SIZE}")
    want = wire_size(data[:HELLO_SIZE])
    if len(data) != want:
        raise HandshakeError(errno.ECONNREFUSED, f"hello of {len(data)} bytes, want {want}")
    _magic, _version, flags, fam, cip, cport, tip, tport = HELLO.unpack_from(data)
    if fam not in (4, 6):
        raise HandshakeError(errno.ECONNREFUSED, f"hello has unknown family {fam}")
    family = _stdsocket.AF_INET if fam == 4 else _stdsocket.AF_INET6
    width = 4 if fam == 4 else 16
    ring, slot = None, 0
    if flags & RING:
        c2s, s2c, slot = RING_EXT.unpack_from(data, HELLO_SIZE)
        ring = (c2s, s2c)
    return Hello(
        family,
        _stdsocket.inet_ntop(family, cip[:width]), cport,
        _stdsocket.inet_ntop(family, tip[:width]), tport, ring, slot,
    )
