"""Both Channels of one ring connection in one process, and raw access to its shared memory.

``RingPair`` wires the two sides as ``_fastpath.ring_link.RingOffer`` does for
two processes: each side has its own socketpair (r, w), r with the smallest
send buffer, and holds its own copy (a dup) of the peer's w, so closing one
side's fds here does what its process exit would do there.

``Header`` reads and writes the shared header (layout of ``shm_header`` in
``_ring.c``) through any mapping of the memfd: a test's own, or one a forked
child made from the fd it inherited (``map_memfd``).
"""

from __future__ import annotations

import contextlib
import gc
import mmap
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from loopfast import _ring

# shm_header: u32 magic, u32 version, u32 server_attached, padding to 64; then
# ring_ctl[2] of four cache lines each ([0] client -> server, [1] server -> client).
MAGIC_AT = 0
VERSION_AT = 4
SERVER_ATTACHED_AT = 8
RING_CTL_AT = 64
RING_CTL_SIZE = 4 * 64
FIELDS: dict[str, tuple[int, str]] = {  # name -> (offset in ring_ctl, struct format)
    "head": (0, "<Q"),
    "tail": (64, "<Q"),
    "consumer_waiting": (128, "<I"),
    "bells": (132, "<I"),
    "window": (136, "<I"),
    "producer_waiting": (192, "<I"),
    "flags": (196, "<I"),
}
WR_SHUT = 0x1
RD_SHUT = 0x2
RESET = 0x4
FOREIGN = 0x8  # bytes were written to a wake-up socket behind the socket object
C2S = 0  # ring index: client -> server
S2C = 1


def open_fds() -> set[str]:
    """Our open fds, without the one listdir used for the listing."""
    return {fd for fd in os.listdir("/proc/self/fd") if os.path.exists(f"/proc/self/fd/{fd}")}


@contextlib.contextmanager
def no_fd_leaks() -> Iterator[None]:
    """Fail when the block leaves fds open that it did not find (listdir's own fd aside)."""
    before = open_fds()
    yield
    gc.collect()
    leaked = open_fds() - before
    assert not leaked, {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in leaked}


def make_pair_fds() -> tuple[socket.socket, socket.socket]:
    """One side's wake-up pair (r, w), as ``_fastpath.ring_link._pair`` makes it."""
    r, w = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    r.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)
    return r, w


def map_memfd(memfd: int, c2s: int, s2c: int) -> mmap.mmap:
    """A shared, writable mapping of the whole memfd (header and both rings)."""
    return mmap.mmap(memfd, _ring.HEADER_SIZE + c2s + s2c, mmap.MAP_SHARED,
                     mmap.PROT_READ | mmap.PROT_WRITE)


class Header:
    """Typed access to the header fields and data bytes of a mapped memfd."""

    def __init__(self, mem: mmap.mmap, c2s: int, s2c: int) -> None:
        self.mem = mem
        self.sizes = (c2s, s2c)

    def _at(self, ring: int, name: str) -> tuple[int, str]:
        offset, fmt = FIELDS[name]
        return RING_CTL_AT + ring * RING_CTL_SIZE + offset, fmt

    def get(self, ring: int, name: str) -> int:
        at, fmt = self._at(ring, name)
        value: int = struct.unpack_from(fmt, self.mem, at)[0]
        return value

    def set(self, ring: int, name: str, value: int) -> None:
        at, fmt = self._at(ring, name)
        bits = 64 if fmt == "<Q" else 32
        struct.pack_into(fmt, self.mem, at, value & ((1 << bits) - 1))

    def magic(self) -> int:
        value: int = struct.unpack_from("<I", self.mem, MAGIC_AT)[0]
        return value

    def set_u32(self, at: int, value: int) -> None:
        struct.pack_into("<I", self.mem, at, value & 0xFFFFFFFF)

    def data_span(self, ring: int) -> tuple[int, int]:
        """(offset, size) of a ring's data in the memfd."""
        start = _ring.HEADER_SIZE + (self.sizes[0] if ring == S2C else 0)
        return start, self.sizes[ring]


@dataclass
class Side:
    """One side's Channel and the fds its process would hold."""

    channel: _ring.Channel
    r: socket.socket
    w: socket.socket
    peer_w: socket.socket  # our own copy (a dup) of the peer's w
    closed: bool = False

    def close(self) -> None:
        """Close as the application's socket and RingLink.release would: r, hang_up, rings."""
        if not self.closed:
            self.closed = True
            self.r.close()
            self.channel.hang_up()
            self.channel.close()
            self.w.close()
            self.peer_w.close()

    def vanish(self) -> None:
        """The process dies: its fds close, its Channel is never closed (nor touched again)."""
        if not self.closed:
            self.closed = True
            self.r.close()
            self.w.close()
            self.peer_w.close()


@dataclass
class RingPair:
    """Both sides of one connection (client first), built from one sealed memfd."""

    memfd: int
    sizes: tuple[int, int]
    client: Side
    server: Side
    extra: list[mmap.mmap] = field(default_factory=list)

    @classmethod
    def open(cls, c2s: int = 4096, s2c: int = 4096, timeout: float | None = 0.0) -> RingPair:
        memfd = _ring.create_memfd(c2s, s2c)
        made: list[socket.socket] = []
        try:
            client_r, client_w = make_pair_fds()
            made += (client_r, client_w)
            server_r, server_w = make_pair_fds()
            made += (server_r, server_w)
            client_peer = server_w.dup()
            made.append(client_peer)
            server_peer = client_w.dup()
            made.append(server_peer)
            client = _ring.Channel(memfd, c2s, s2c, False, client_r.fileno(),
                                   client_w.fileno(), client_peer.fileno())
            server = _ring.Channel(memfd, c2s, s2c, True, server_r.fileno(),
                                   server_w.fileno(), server_peer.fileno())
        except BaseException:
            for sock in made:
                sock.close()
            os.close(memfd)
            raise
        server.settle()
        client.timeout = timeout
        server.timeout = timeout
        return cls(memfd, (c2s, s2c), Side(client, client_r, client_w, client_peer),
                   Side(server, server_r, server_w, server_peer))

    def side(self, server: bool) -> Side:
        return self.server if server else self.client

    def header(self) -> Header:
        """The header through a mapping of our own (unmapped by close())."""
        mem = map_memfd(self.memfd, *self.sizes)
        self.extra.append(mem)
        return Header(mem, *self.sizes)

    def close(self) -> None:
        self.client.close()
        self.server.close()
        for mem in self.extra:
            with contextlib.suppress(BufferError):
                mem.close()
        self.extra.clear()
        if self.memfd >= 0:
            os.close(self.memfd)
            self.memfd = -1

    def __enter__(self) -> RingPair:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
