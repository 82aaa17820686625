"""A hostile peer against the C rings (SPEC F12): scribbles never crash, hang or misroute a copy.

The fuzz runs the peer in a forked child that maps the same memfd from the fd
it inherited and writes seeded random values into the header (positions, wake-up
fields, flags, magic) and the data, interleaved with honest sends and receives
of its own Channel, while this process (the victim, the client side) sends and
receives with short timeouts. Every call must return data, b"" or raise an
OSError subclass within its timeout; corrupted positions reset the connection
with an error naming the cause, and sends keep failing after that.

The deterministic cases write through a mapping of our own: the peer's
position ahead, behind, wrapped; our own positions (which we never read back);
huge bells; and Channel() given a memfd or fds that are not what it needs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import random
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import pytest

from loopfast import _ring

from ._procs import child, receive
from .ring_pair import (
    C2S,
    FIELDS,
    FOREIGN,
    RESET,
    S2C,
    WR_SHUT,
    Header,
    RingPair,
    make_pair_fds,
    map_memfd,
    no_fd_leaks,
)

SIZE = 4096
VICTIM_OPS = 2000
VICTIM_BUDGET = 8.0  # seconds for the victim's loop, whatever the timeouts add up to
SLACK = 1.0  # a call may overrun its timeout by this much before it counts as a hang

@pytest.fixture(autouse=True)
def _closes_every_fd() -> Iterator[None]:
    with no_fd_leaks():
        yield


# -- the hostile child ------------------------------------------------------------

GROUPS = {
    "positions": ["head", "tail"],
    "wakeup": ["bells", "consumer_waiting", "producer_waiting", "magic"],
    "flags": ["flags"],
    "window": ["window"],
    "data": ["data"],
    "everything": [*FIELDS, "magic", "data"],
}


def stream(seed: int, start: int, n: int) -> bytes:
    """Bytes start..start+n of a side's deterministic stream (blocks of 1 KiB)."""
    out = bytearray()
    block = start // 1024
    while len(out) < (start % 1024) + n:
        out += random.Random(seed * 1_000_003 + block).randbytes(1024)
        block += 1
    return bytes(out[start % 1024:start % 1024 + n])


def hostile_value(rng: random.Random, name: str, current: int) -> int:
    """A value a hostile peer might write: plausible, off by one or a ring, or wild."""
    if name in ("head", "tail"):
        return rng.choice([
            0, 1, current - 1, current + 1, current + SIZE, current + SIZE + 1,
            current - SIZE, current + rng.randrange(SIZE), 2**64 - 1, 2**63,
            rng.getrandbits(64), current,
        ]) % 2**64
    if name == "window":
        return rng.choice([0, 1, SIZE - 1, SIZE, SIZE + 1, 2**31, 0xFFFFFFFF, rng.getrandbits(32)])
    if name == "flags":
        return rng.choice([0, WR_SHUT, RESET, rng.randrange(8), 0xFFFFFFFF, rng.getrandbits(32)])
    return rng.choice([0, 1, 2, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, rng.getrandbits(32)])


def scribble(rng: random.Random, header: Header, names: list[str]) -> None:
    name = rng.choice(names)
    if name == "magic":
        header.set_u32(rng.choice([0, 4, 8]), rng.getrandbits(32))
    elif name == "data":
        ring = rng.choice([C2S, S2C])
        start, size = header.data_span(ring)
        at = start + rng.randrange(size)
        n = min(rng.randrange(1, 65), start + size - at)
        header.mem[at:at + n] = rng.randbytes(n)
    else:
        ring = rng.choice([C2S, S2C])
        header.set(ring, name, hostile_value(rng, name, header.get(ring, name)))


def hostile_peer(pipe: Connection, memfd: int, fds: tuple[int, int, int], group: str,
                 seed: int) -> None:
    """The server side, in a child: an honest Channel of its own, and scribbles."""
    mem = map_memfd(memfd, SIZE, SIZE)
    header = Header(mem, SIZE, SIZE)
    r, w, peer_w = fds
    ch = _ring.Channel(memfd, SIZE, SIZE, True, r, w, peer_w)
    ch.timeout = 0.0
    rng = random.Random(seed)
    sent = got = 0
    intact = True
    pipe.send("ready")
    for _ in range(20_000):  # bounded; the victim says stop long before
        if pipe.poll():
            break
        action = rng.random()
        with contextlib.suppress(OSError):
            if action < 0.4:
                data = stream(seed + 1, sent, rng.randrange(1, 3000))
                sent += ch.send(data)
            elif action < 0.7:
                chunk = ch.recv(rng.randrange(1, 3000))
                intact = intact and chunk == stream(seed, got, len(chunk))
                got += len(chunk)
            else:
                scribble(rng, header, GROUPS[group])
        if rng.random() < 0.3:
            time.sleep(0.0002)
    pipe.send((sent, got, intact))


# -- the victim -------------------------------------------------------------------


@dataclass
class Victim:
    """The client side of a connection whose server side a child plays."""

    memfd: int
    channel: _ring.Channel
    mine: list[socket.socket]
    theirs: tuple[socket.socket, socket.socket, socket.socket]

    def close_theirs(self) -> None:
        for sock in self.theirs:
            sock.close()

    def close(self) -> None:
        self.channel.close()
        for sock in self.mine:
            sock.close()
        self.close_theirs()
        os.close(self.memfd)


@contextlib.contextmanager
def victim() -> Iterator[Victim]:
    memfd = _ring.create_memfd(SIZE, SIZE)
    client_r, client_w = make_pair_fds()
    server_r, server_w = make_pair_fds()
    client_peer, server_peer = server_w.dup(), client_w.dup()
    channel = _ring.Channel(memfd, SIZE, SIZE, False, client_r.fileno(), client_w.fileno(),
                            client_peer.fileno())
    v = Victim(memfd, channel, [client_r, client_w, client_peer],
               (server_r, server_w, server_peer))
    try:
        yield v
    finally:
        v.close()


@dataclass
class Outcome:
    faulted: bool = False  # a ConnectionResetError naming corruption was seen
    received: bytes = b""
    sent: int = 0
    intact: bool = True  # what we received is the peer's stream (no corruption of data)


def timed(call: Callable[[], Any], timeout: float) -> Any:
    start = time.monotonic()
    try:
        return call()
    finally:
        took = time.monotonic() - start
        assert took < timeout + SLACK, f"a call with timeout {timeout} took {took:.2f} s"


def run_victim(ch: _ring.Channel, seed: int, rng: random.Random) -> Outcome:
    out = Outcome()
    deadline = time.monotonic() + VICTIM_BUDGET
    for _ in range(VICTIM_OPS):
        if time.monotonic() > deadline:
            break
        timeout = rng.choice([0.0, 0.0, 0.001, 0.003])
        ch.timeout = timeout
        op = rng.choice(["send", "sendall", "recv", "recv_into", "peek", "waitall"])
        n = rng.choice([1, 7, 100, 1000, SIZE - 1, SIZE, SIZE + 1, 3 * SIZE])
        try:
            if op in ("send", "sendall"):
                data = stream(seed, out.sent, n)
                if op == "send":
                    sent = timed(lambda: ch.send(data), timeout)  # noqa: B023
                    assert isinstance(sent, int) and 0 <= sent <= n
                    out.sent += sent
                else:
                    before = ch.stats()["bytes_out"]
                    try:
                        assert timed(lambda: ch.sendall(data), timeout) is None  # noqa: B023
                    finally:
                        out.sent += ch.stats()["bytes_out"] - before
                assert not out.faulted, "a send succeeded after the connection was reset"
            elif op == "recv_into":
                buf = bytearray(n + 3)
                got = timed(lambda: ch.recv_into(buf, n), timeout)  # noqa: B023
                assert isinstance(got, int) and 0 <= got <= n
                out.received += buf[:got]
            else:
                flags = {"recv": 0, "peek": socket.MSG_PEEK, "waitall": socket.MSG_WAITALL}[op]
                chunk = timed(lambda: ch.recv(n, flags), timeout)  # noqa: B023
                assert isinstance(chunk, bytes) and len(chunk) <= n
                if op != "peek":
                    out.received += chunk
        except OSError as exc:
            if "corrupted" in str(exc):
                assert isinstance(exc, ConnectionResetError) and exc.errno == errno.ECONNRESET
                out.faulted = True
            elif out.faulted and op in ("send", "sendall"):
                raise AssertionError(f"after the reset a send raised {exc!r}") from exc
        readable, writable, closed = ch.ready()
        assert all(isinstance(x, bool) for x in (readable, writable, closed))
        assert set(ch.stats()) >= {"rx_fill", "tx_fill", "bytes_in", "bytes_out"}
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("group", list(GROUPS))
def test_hostile_peer_fuzz(group: str, seed: int) -> None:
    with victim() as v:
        server_r, server_w, server_peer = v.theirs
        fds = (server_r.fileno(), server_w.fileno(), server_peer.fileno())
        with child(hostile_peer, v.memfd, fds, group, seed) as (proc, pipe):
            v.close_theirs()  # only the child holds the server's fds now
            assert receive(pipe) == "ready"
            out = run_victim(v.channel, seed, random.Random(seed))
            pipe.send("stop")
            peer_sent, peer_got, peer_intact = receive(pipe)
            proc.join(timeout=5)
            assert proc.exitcode == 0
    if group == "positions":
        assert out.faulted, "corrupted positions went unnoticed"
    if group == "wakeup":
        # Wake-up fields steer only who waits and who rings: never the bytes.
        assert not out.faulted
        assert out.received == stream(seed + 1, 0, len(out.received))
        assert len(out.received) <= peer_sent
        assert peer_intact and peer_got <= out.sent
        assert len(out.received) > 0 and peer_got > 0, "no data moved at all"
    if group in ("wakeup", "flags", "window"):
        assert not out.faulted, "flags, wake-up fields and windows are not positions"
    if group == "window":
        # A window steers only how much may be sent: a zero one stalls, a huge one is
        # the ring's size; what arrives is the peer's stream, whole and in order.
        assert out.received == stream(seed + 1, 0, len(out.received))
        assert len(out.received) <= peer_sent
        assert peer_intact and peer_got <= out.sent


# -- deterministic scribbles through our own mapping ---------------------------------


@pytest.fixture
def pair() -> Iterator[RingPair]:
    with RingPair.open(SIZE, SIZE, timeout=0.2) as p:
        yield p


def assert_reset(call: Callable[[], Any], why: str = "corrupted") -> None:
    with pytest.raises(ConnectionResetError) as info:
        call()
    assert why in str(info.value), info.value


def test_head_far_ahead_resets(pair: RingPair) -> None:
    header, client = pair.header(), pair.client.channel
    pair.server.channel.sendall(b"x" * 10)
    header.set(S2C, "head", 10 + SIZE + 1)  # more than a ring's worth waiting
    assert_reset(lambda: client.recv(100))
    assert client.ready()[0]  # readable: the reset waits to be read
    header.set(S2C, "head", 10)
    assert_reset(lambda: client.send(b"y"))  # the reset is sticky
    assert_reset(lambda: client.sendall(b"y"))


@pytest.mark.parametrize("head", [2**64 - 1, 2**63, SIZE + 1, 2**64 - SIZE])
def test_wild_heads_reset(pair: RingPair, head: int) -> None:
    header, client = pair.header(), pair.client.channel
    header.set(S2C, "head", head)
    assert_reset(lambda: client.recv(SIZE, socket.MSG_WAITALL))
    assert_reset(lambda: client.send(b"y"))


def test_head_backwards_resets(pair: RingPair) -> None:
    """head < tail: the producer's position moved back over what we consumed."""
    header, client, server = pair.header(), pair.client.channel, pair.server.channel
    server.sendall(b"x" * 100)
    assert client.recv(60) == b"x" * 60
    header.set(S2C, "head", 50)  # behind our tail (60) and behind what we saw (100)
    assert_reset(lambda: client.recv(10))
    assert_reset(lambda: client.send(b"y"))


def test_tail_backwards_resets(pair: RingPair) -> None:
    header, client, server = pair.header(), pair.client.channel, pair.server.channel
    client.sendall(b"x" * 100)
    assert server.recv(100) == b"x" * 100
    client.send(b"y")  # we have seen tail 100
    header.set(C2S, "tail", 40)
    assert_reset(lambda: client.send(b"z"))


def test_tail_ahead_of_head_resets(pair: RingPair) -> None:
    header, client = pair.header(), pair.client.channel
    client.sendall(b"x" * 10)
    header.set(C2S, "tail", 11)  # consumed more than was ever published
    assert_reset(lambda: client.send(b"y"))


def test_tail_wild_resets(pair: RingPair) -> None:
    header, client = pair.header(), pair.client.channel
    header.set(C2S, "tail", 2**64 - 1)
    assert_reset(lambda: client.sendall(b"y" * (3 * SIZE)))


def test_our_own_positions_are_never_read_back(pair: RingPair) -> None:
    """The peer writes over our head and our tail: our next stores repair them."""
    header, client, server = pair.header(), pair.client.channel, pair.server.channel
    server.sendall(b"s" * 5)
    header.set(C2S, "head", 2**63)  # the client's producer position
    header.set(S2C, "tail", 2**64 - 7)  # the client's consumer position
    client.sendall(b"c" * 10)
    assert client.recv(5) == b"s" * 5
    assert server.recv(100) == b"c" * 10
    server.sendall(b"t" * (SIZE - 1))  # free space computed from the repaired tail
    assert client.recv(SIZE, socket.MSG_WAITALL) == b"t" * (SIZE - 1)


def test_huge_bells_do_not_hang(pair: RingPair) -> None:
    """A peer that claims 2**32 - 1 bells are queued: waits end by their timeout, bytes
    still arrive whole."""
    header, client, server = pair.header(), pair.client.channel, pair.server.channel
    for ring in (C2S, S2C):
        header.set(ring, "bells", 0xFFFFFFFF)
        header.set(ring, "consumer_waiting", 0xFFFFFFFF)
        header.set(ring, "producer_waiting", 0xFFFFFFFF)
    client.timeout = 0.05
    with pytest.raises(TimeoutError):
        timed(lambda: client.recv(10), 0.05)
    server.sendall(b"q" * 3000)
    assert client.recv(3000, socket.MSG_WAITALL) == b"q" * 3000
    client.sendall(b"p" * SIZE)
    with pytest.raises(TimeoutError):
        timed(lambda: client.sendall(b"p"), 0.05)  # the ring is full
    assert server.recv(SIZE + 10, socket.MSG_WAITALL) == b"p" * SIZE


@pytest.mark.parametrize("window", [SIZE + 1, 2**31, 0xFFFFFFFF])
def test_a_huge_window_is_the_ring(pair: RingPair, window: int) -> None:
    """A peer that opens more window than its ring holds: we fill the ring, no more."""
    header, client, server = pair.header(), pair.client.channel, pair.server.channel
    header.set(C2S, "window", window)
    client.timeout = 0.0
    assert client.send(b"h" * (3 * SIZE)) == SIZE
    with pytest.raises(BlockingIOError):
        client.send(b"h")
    assert server.recv(3 * SIZE) == b"h" * SIZE


def test_a_zero_window_stalls_and_never_corrupts(pair: RingPair) -> None:
    """TCP's zero window: sends wait (or refuse), reads and the other way go on."""
    header, client, server = pair.header(), pair.client.channel, pair.server.channel
    client.sendall(b"before")
    header.set(C2S, "window", 0)
    client.timeout = 0.0
    with pytest.raises(BlockingIOError):
        client.send(b"x")
    assert client.ready()[1] is False
    client.timeout = 0.05
    with pytest.raises(TimeoutError):
        timed(lambda: client.sendall(b"x"), 0.05)
    server.sendall(b"back")  # the other direction has its own window
    assert client.recv(10) == b"back"
    assert server.recv(100) == b"before"
    header.set(C2S, "window", SIZE)
    client.sendall(b"after")
    assert server.recv(100) == b"after"


def test_bogus_flags_are_errors_not_crashes(pair: RingPair) -> None:
    header, client = pair.header(), pair.client.channel
    header.set(C2S, "flags", 0xFFFFFFFF & ~FOREIGN)  # WR_SHUT on our own tx: sends fail
    with pytest.raises(BrokenPipeError):
        client.send(b"x")
    header.set(S2C, "flags", RESET)
    with pytest.raises(ConnectionResetError):
        client.recv(10)
    assert client.recv(10) == b""  # the reset turned into end of stream


def test_every_flag_at_once_is_a_reset_not_a_crash(pair: RingPair) -> None:
    header, client = pair.header(), pair.client.channel
    header.set(C2S, "flags", 0xFFFFFFFF)  # FOREIGN among them: a reset naming its cause
    for call in (lambda: client.send(b"x"), lambda: client.recv(10)):
        with pytest.raises(ConnectionResetError, match="behind the socket object"):
            call()


def test_scribbled_data_is_only_data(pair: RingPair) -> None:
    header, client, server = pair.header(), pair.client.channel, pair.server.channel
    server.sendall(b"a" * 100)
    start, _ = header.data_span(S2C)
    header.mem[start:start + 4] = b"EVIL"
    assert client.recv(100) == b"EVIL" + b"a" * 96


def test_channel_refuses_a_ring_that_is_not_fresh() -> None:
    memfd = _ring.create_memfd(SIZE, SIZE)
    mem = map_memfd(memfd, SIZE, SIZE)
    Header(mem, SIZE, SIZE).set(S2C, "tail", 5)  # the client's rx ring was consumed already
    mem.close()
    fds = [*make_pair_fds(), *make_pair_fds()]
    try:
        ch = _ring.Channel(memfd, SIZE, SIZE, False, fds[0].fileno(), fds[1].fileno(),
                           fds[3].fileno())
        assert_reset(lambda: ch.recv(1), "not fresh")
        assert_reset(lambda: ch.send(b"x"), "not fresh")
        ch.close()
    finally:
        for sock in fds:
            sock.close()
        os.close(memfd)


def test_reset_is_sticky_for_recv(pair: RingPair) -> None:
    header, client = pair.header(), pair.client.channel
    pair.server.channel.sendall(b"x" * 10)
    header.set(S2C, "head", 2**63)
    assert_reset(lambda: client.recv(100))
    header.set(S2C, "head", 10)
    assert_reset(lambda: client.recv(100))


# -- Channel() refuses what it must not map or use -------------------------------------


def sealed_memfd(size: int, seals: int) -> int:
    fd = os.memfd_create("test-ring", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, size)
    if seals:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    return fd


ALL_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
RIGHT_SIZE = _ring.HEADER_SIZE + 2 * SIZE


@pytest.fixture
def wake_fds() -> Iterator[list[socket.socket]]:
    socks = [*make_pair_fds(), *make_pair_fds()]
    yield socks
    for sock in socks:
        sock.close()


def assert_einval(memfd: int, fds: tuple[int, int, int], sizes: tuple[int, int] = (SIZE, SIZE),
                  why: str = "") -> None:
    with pytest.raises(OSError) as info:
        _ring.Channel(memfd, *sizes, False, *fds)
    assert info.value.errno == errno.EINVAL, info.value
    assert why in str(info.value)


@pytest.mark.parametrize(("size", "seals"), [
    (RIGHT_SIZE, 0),
    (RIGHT_SIZE, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW),  # no F_SEAL_SEAL: more seals may come
    (RIGHT_SIZE, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_GROW),  # may shrink: a peer could SIGBUS us
    (RIGHT_SIZE, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK),  # may grow
    (RIGHT_SIZE - 1, ALL_SEALS),
    (RIGHT_SIZE + SIZE, ALL_SEALS),
    (_ring.HEADER_SIZE, ALL_SEALS),
    (0, ALL_SEALS),
])
def test_memfd_must_be_sealed_and_sized(wake_fds: list[socket.socket], size: int,
                                        seals: int) -> None:
    memfd = sealed_memfd(size, seals)
    try:
        fds = (wake_fds[0].fileno(), wake_fds[1].fileno(), wake_fds[3].fileno())
        assert_einval(memfd, fds, why="sealed" if size == RIGHT_SIZE else "size")
    finally:
        os.close(memfd)


@pytest.mark.parametrize("sizes", [(SIZE, 3000), (2048, SIZE), (SIZE, 0), (SIZE, 6144),
                                   (SIZE, 128 << 20), (2**63, SIZE)])
def test_ring_sizes_must_be_powers_of_two_in_range(wake_fds: list[socket.socket],
                                                   sizes: tuple[int, int]) -> None:
    memfd = _ring.create_memfd(SIZE, SIZE)
    try:
        fds = (wake_fds[0].fileno(), wake_fds[1].fileno(), wake_fds[3].fileno())
        assert_einval(memfd, fds, sizes, why="powers of two")
    finally:
        os.close(memfd)
    with pytest.raises(OSError) as info:
        _ring.create_memfd(*sizes)
    assert info.value.errno == errno.EINVAL


def test_memfd_that_is_a_plain_file_or_a_socket(wake_fds: list[socket.socket]) -> None:
    fds = (wake_fds[0].fileno(), wake_fds[1].fileno(), wake_fds[3].fileno())
    with tempfile.TemporaryFile() as f:
        f.truncate(RIGHT_SIZE)
        assert_einval(f.fileno(), fds, why="sealed")
    assert_einval(wake_fds[2].fileno(), fds, why="sealed")
    assert_einval(-1, fds, why="sealed")


@contextlib.contextmanager
def not_wake_sockets() -> Iterator[dict[str, int]]:
    """fds of every wrong kind: pipe ends, a file, UDP, TCP, AF_UNIX datagram, closed."""
    with contextlib.ExitStack() as stack:
        r, w = os.pipe()
        stack.callback(os.close, r)
        stack.callback(os.close, w)
        f = stack.enter_context(tempfile.TemporaryFile())
        udp = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        tcp = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        dgram = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM))
        closed = os.dup(r)
        os.close(closed)
        yield {"pipe-r": r, "pipe-w": w, "file": f.fileno(), "udp": udp.fileno(),
               "tcp": tcp.fileno(), "unix-dgram": dgram.fileno(), "closed": closed,
               "negative": -5}


@pytest.mark.parametrize("slot", [0, 1, 2])
def test_wake_fds_must_be_unix_stream_sockets(wake_fds: list[socket.socket], slot: int) -> None:
    memfd = _ring.create_memfd(SIZE, SIZE)
    try:
        with not_wake_sockets() as bad:
            for name, fd in bad.items():
                if slot == 2 and name == "negative":
                    continue  # peer_w = -1 means "no peer yet", allowed
                fds = [wake_fds[0].fileno(), wake_fds[1].fileno(), wake_fds[3].fileno()]
                fds[slot] = fd
                assert_einval(memfd, (fds[0], fds[1], fds[2]), why="AF_UNIX stream")
    finally:
        os.close(memfd)
