"""The C rings against a model: both Channels of one connection, non-blocking, in one process.

A hypothesis state machine sends, receives (plain, MSG_PEEK, MSG_WAITALL,
recv_into with nbytes), sets receive windows, shuts down, closes and kills
either side of a connection with small rings (so wrap-around and full rings
are frequent; a window below the ring's size or zero makes the ring "full") and
checks after every step that the bytes, ``ready()``, ``stats()`` and the
kernel readiness of each side's fileno (``r``) agree with a model of two byte
queues and the shutdown/close state.

The fileno's POLLOUT follows the filler, not the ring: it drops when a send
finds the ring full (BlockingIOError) and comes back when the peer consumes.
So it may say writable while the ring is full (``ready()`` says not) in two
documented cases: a send that filled the ring exactly or partially (no send
has failed yet), and after the consumer's ``recv(0)`` on a non-empty ring
(which releases the filler without freeing space). The model tracks that as
``filled`` and checks POLLOUT == not filled exactly; a writer is never left
unwritable while the ring has room.
"""

from __future__ import annotations

import errno
import random
import select
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from .ring_pair import RingPair, Side, no_fd_leaks

C2S_SIZE = 4096
S2C_SIZE = 8192  # different sizes: ring 1 starts where ring 0 ends, offsets must not mix

# Known bugs in _ring.c that the machine steps around so it can check the rest;
# each has a strict xfail test below that fails the day the bug is fixed.
AVOID_WAITALL_LOSS = False  # test_waitall_keeps_bytes_before_reset (fixed)
AVOID_DEAD_PEER_UNWRITABLE = False  # test_dead_peer_makes_filled_writer_writable (fixed)

@pytest.fixture(autouse=True)
def _closes_every_fd() -> Iterator[None]:
    with no_fd_leaks():
        yield


SIDES = st.booleans()  # True: the server side
CHANCE = st.integers(0, 5)  # close and vanish act on 0 only: connections live a while


@dataclass
class SideModel:
    closed: bool = False  # close() called (or the process vanished)
    vanished: bool = False
    wr_shut: bool = False  # shutdown(SHUT_WR/RDWR) or close: WR_SHUT on our tx ring
    rd_shut: bool = False
    peer_dead: bool = False  # we learned that the peer's process is gone
    dead_told: bool = False
    sent_after_close: bool = False  # a send to the gone peer was taken, or a reset was seen
    filled: bool = False  # our r's send buffer holds filler: fileno not writable
    reset_pending: bool = False  # RESET on our rx ring: the peer closed with our data unread
    bytes_in: int = 0
    bytes_out: int = 0


@dataclass
class Model:
    queues: dict[bool, bytearray] = field(
        default_factory=lambda: {False: bytearray(), True: bytearray()})  # key: sender is server
    sides: dict[bool, SideModel] = field(
        default_factory=lambda: {False: SideModel(), True: SideModel()})
    sizes: dict[bool, int] = field(
        default_factory=lambda: {False: C2S_SIZE, True: S2C_SIZE})  # tx ring size per sender
    windows: dict[bool, int] = field(
        default_factory=lambda: {False: C2S_SIZE, True: S2C_SIZE})  # the receiver's, per sender

    def rxq(self, server: bool) -> bytearray:
        return self.queues[not server]

    def txq(self, server: bool) -> bytearray:
        return self.queues[server]

    def room(self, server: bool) -> int:
        return max(min(self.windows[server], self.sizes[server]) - len(self.txq(server)), 0)

    def readable(self, server: bool) -> bool:
        me, peer = self.sides[server], self.sides[not server]
        return (bool(self.rxq(server)) or peer.wr_shut or me.reset_pending or me.peer_dead
                or me.rd_shut)

    def writable(self, server: bool) -> bool:
        me, peer = self.sides[server], self.sides[not server]
        return (self.room(server) > 0 or (peer.closed and not peer.vanished) or me.peer_dead
                or me.wr_shut)

    def peer_closed(self, server: bool) -> bool:
        me, peer = self.sides[server], self.sides[not server]
        return peer.wr_shut or me.reset_pending or me.peer_dead


def kernel_events(sock: socket.socket) -> int:
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLOUT)
    got = poller.poll(0)
    return got[0][1] if got else 0


class RingMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.pair = RingPair.open(C2S_SIZE, S2C_SIZE, timeout=0.0)
        self.model = Model()

    def teardown(self) -> None:
        self.pair.close()

    # -- helpers ----------------------------------------------------------

    def side(self, server: bool) -> Side:
        return self.pair.side(server)

    def is_open(self, server: bool) -> bool:
        return not self.model.sides[server].closed

    def any_open(self) -> bool:
        return self.is_open(False) or self.is_open(True)

    def expect_send_error(self, server: bool) -> type[OSError] | str | None:
        """What a send of at least one byte meets, as on Linux TCP; updates the model.

        "taken": the first send after the peer's FIN succeeds and goes nowhere (TCP's
        peer answers it with a reset); a peer that left our bytes unread reset the
        connection, which the first call to look reports; EPIPE after either.
        """
        model = self.model
        me, peer = model.sides[server], model.sides[not server]
        if me.wr_shut:
            return BrokenPipeError
        if not (me.peer_dead or (peer.closed and not peer.vanished)):
            return None
        if me.reset_pending or (not me.dead_told and not peer.wr_shut and model.txq(server)):
            me.reset_pending, me.dead_told, me.sent_after_close = False, True, True
            return ConnectionResetError
        if not me.sent_after_close:
            me.sent_after_close = True
            return "taken"
        return BrokenPipeError

    @initialize(c2s=st.integers(0, C2S_SIZE - 1), s2c=st.integers(0, S2C_SIZE - 1))
    def start_mid_ring(self, c2s: int, s2c: int) -> None:
        """Move both rings' positions to a random offset, so most fills wrap around."""
        for server, skip in ((False, c2s), (True, s2c)):
            if skip:
                self.side(server).channel.sendall(b"-" * skip)
                assert self.side(not server).channel.recv(skip) == b"-" * skip
                self.model.sides[server].bytes_out += skip
                self.model.sides[not server].bytes_in += skip

    # -- sending ----------------------------------------------------------

    @rule(server=SIDES, kind=st.sampled_from(["any", "small", "small", "room", "room-1", "room+1",
                                              "size", "zero"]),
          n=st.integers(0, 3 * S2C_SIZE), small=st.integers(1, 997),
          seed=st.integers(0, 2**32 - 1), sendall=st.booleans(), dontwait=st.booleans())
    def send(self, server: bool, kind: str, n: int, small: int, seed: int, sendall: bool,
             dontwait: bool) -> None:
        if not self.is_open(server):
            server = not server
        if not self.is_open(server):
            return
        model, ch = self.model, self.side(server).channel
        me = model.sides[server]
        room = model.room(server)
        size = {"any": n, "small": small, "room": room, "room-1": max(room - 1, 0),
                "room+1": room + 1, "size": model.sizes[server], "zero": 0}[kind]
        data = random.Random(seed).randbytes(size)
        flags = socket.MSG_DONTWAIT if dontwait else 0
        before = ch.stats()["bytes_out"]
        # Nothing to send: 0 even to a closed peer, as TCP after a FIN.
        error = None if size == 0 and not me.wr_shut else self.expect_send_error(server)
        if error == "taken":
            event("send taken after the peer's close")
            assert (ch.sendall(data, flags) if sendall else ch.send(data, flags)) in (None, size)
            assert ch.stats()["bytes_out"] == before
            return
        if error is not None:
            assert not isinstance(error, str)
            event(f"send raises {error.__name__}")
            with pytest.raises(error):
                ch.sendall(data, flags) if sendall else ch.send(data, flags)
            assert ch.stats()["bytes_out"] == before
            return
        if size == 0:
            assert (ch.sendall(data, flags) if sendall else ch.send(data, flags)) in (None, 0)
            return
        if room == 0:
            event("send on a full ring")
            with pytest.raises(BlockingIOError):
                ch.sendall(data, flags) if sendall else ch.send(data, flags)
            me.filled = True
            assert ch.stats()["bytes_out"] == before
            return
        put = min(size, room)
        if put == room:
            event("send fills the ring")
        if me.bytes_out % model.sizes[server] + put > model.sizes[server]:
            event("send wraps around")
        if sendall and size > room:
            # Non-blocking sendall: whatever fits goes, then EAGAIN (as socket.sendall);
            # bytes_out tells how much went.
            with pytest.raises(BlockingIOError):
                ch.sendall(data, flags)
            me.filled = True
        elif sendall:
            assert ch.sendall(data, flags) is None
        else:
            assert ch.send(data, flags) == put  # a partial send never waits for room
        assert ch.stats()["bytes_out"] - before == put
        model.txq(server).extend(data[:put])
        me.bytes_out += put

    # -- receiving --------------------------------------------------------

    @rule(server=SIDES, kind=st.sampled_from(["any", "small", "half", "avail", "avail+1",
                                              "zero"]),
          n=st.integers(0, 3 * S2C_SIZE), small=st.integers(1, 997),
          mode=st.sampled_from(["plain", "peek", "waitall", "dontwait", "peek|waitall"]),
          into=st.booleans(), spare=st.integers(0, 9))
    def recv(self, server: bool, kind: str, n: int, small: int, mode: str, into: bool,
             spare: int) -> None:
        if not self.is_open(server):
            server = not server
        if not self.is_open(server):
            return
        model, ch = self.model, self.side(server).channel
        me, peer = model.sides[server], model.sides[not server]
        rxq = model.rxq(server)
        avail = len(rxq)
        want = {"any": n, "small": small, "half": avail // 2 + 1, "avail": avail,
                "avail+1": avail + 1, "zero": 0}[kind]
        flags = {"plain": 0, "peek": socket.MSG_PEEK, "waitall": socket.MSG_WAITALL,
                 "dontwait": socket.MSG_DONTWAIT,
                 "peek|waitall": socket.MSG_PEEK | socket.MSG_WAITALL}[mode]
        peek = bool(flags & socket.MSG_PEEK)
        waitall = bool(flags & socket.MSG_WAITALL) and not peek
        if (AVOID_WAITALL_LOSS and waitall and 0 < avail < want
                and (me.reset_pending or (me.peer_dead and not me.dead_told))):
            want = avail  # the bytes would be lost to the reset (known bug)
        if into and want == 0:
            into = False  # recv_into(buf, 0) means len(buf)

        # What the model says the call gives.
        take = min(want, avail)
        error: int | None = None
        if take == 0 and not (avail > 0):  # nothing to copy: the stream's state answers
            if me.reset_pending:
                error = errno.ECONNRESET
            elif peer.wr_shut or me.rd_shut or want == 0:
                pass
            elif me.peer_dead:
                if not me.dead_told and model.txq(server):
                    error = errno.ECONNRESET
            else:
                error = errno.EAGAIN

        def call() -> bytes:
            if into:
                buf = bytearray(b"\xee" * (want + spare))
                got = ch.recv_into(buf, want, flags)
                assert buf[got:] == b"\xee" * (len(buf) - got), "wrote past what it reported"
                return bytes(buf[:got])
            return ch.recv(want, flags)

        before = ch.stats()["bytes_in"]
        if error is not None:
            with pytest.raises(OSError) as info:
                call()
            assert info.value.errno == error, info.value
            if error == errno.ECONNRESET:
                if me.reset_pending:
                    me.reset_pending = False
                    peer.wr_shut = True  # the reset leaves end of stream behind
                else:
                    me.dead_told = True
                me.sent_after_close = True  # after a reset every send fails with EPIPE
            consumed = 0 if peek else take
        else:
            got = call()
            assert got == bytes(rxq[:take]), "bytes differ from what was sent"
            consumed = 0 if peek else len(got)
        if avail > 0 and not peek:
            peer.filled = False  # release_space drains the producer's filler
        if me.bytes_in % model.sizes[not server] + consumed > model.sizes[not server]:
            event("recv wraps around")
        if error is not None:
            event(f"recv raises {errno.errorcode[error]}")
        del rxq[:consumed]
        me.bytes_in += consumed
        assert ch.stats()["bytes_in"] - before == consumed

    # -- the receive window -------------------------------------------------

    @rule(server=SIDES, window=st.one_of(st.sampled_from([0, 1, 100, C2S_SIZE, S2C_SIZE, 2**40]),
                                         st.integers(0, 2 * S2C_SIZE)))
    def set_window(self, server: bool, window: int) -> None:
        """The receiving side *server* sets its window; a producer waiting for room wakes."""
        if not self.is_open(server):
            return
        model = self.model
        self.side(server).channel.window = window
        model.windows[not server] = min(window, model.sizes[not server])
        if window == 0:
            event("zero window")
        if model.sides[not server].filled:
            event("window set while the producer waits")
        model.sides[not server].filled = False  # release_space drains the producer's filler

    # -- shutdown, close, death --------------------------------------------

    @rule(server=SIDES, how=st.sampled_from([socket.SHUT_RD, socket.SHUT_WR, socket.SHUT_RDWR]))
    def shutdown(self, server: bool, how: int) -> None:
        if not self.is_open(server):
            server = not server
        if not self.is_open(server):
            return
        self.side(server).channel.shutdown(how)
        me = self.model.sides[server]
        if how != socket.SHUT_RD:
            me.wr_shut = True
            me.filled = False  # our filler is drained: writable, as TCP after SHUT_WR
        if how != socket.SHUT_WR:
            me.rd_shut = True

    @rule(server=SIDES, chance=CHANCE)
    def close(self, server: bool, chance: int) -> None:
        if not self.is_open(server):
            server = not server
        if chance or not self.is_open(server):
            return
        model = self.model
        me, peer = model.sides[server], model.sides[not server]
        self.side(server).close()
        # The last close of our r tells the peer in the header (hang_up), as TCP's last
        # close sends the FIN, or a reset when it leaves the peer's bytes unread; the
        # peer watcher then sees the same hang-up as a death.
        me.closed = True
        if self.is_open(not server):
            if model.rxq(server):
                peer.reset_pending = True
            me.wr_shut = True
            self._peer_learns(server)

    @rule(server=SIDES, chance=CHANCE)
    def vanish(self, server: bool, chance: int) -> None:
        """The process of one side dies; the other learns it as the peer watcher tells it."""
        if chance or not (self.is_open(False) and self.is_open(True)):
            return
        me, peer = self.model.sides[server], self.model.sides[not server]
        self.side(server).vanish()
        event("vanish, survivor filled" if peer.filled else "vanish")
        me.closed = me.vanished = True
        self._peer_learns(server)

    def _peer_learns(self, server: bool) -> None:
        """The survivor's copy of our w hangs up; the watcher marks the peer dead."""
        peer = self.model.sides[not server]
        survivor = self.side(not server)
        poller = select.poll()
        poller.register(survivor.peer_w, 0)
        assert poller.poll(0) and poller.poll(0)[0][1] & select.POLLHUP
        survivor.channel.peer_dead = True
        peer.peer_dead = True
        peer.filled = False  # mark_dead drains the filler: writable, sends fail at once

    @rule(server=SIDES, recv=st.booleans())
    def use_closed(self, server: bool, recv: bool) -> None:
        """A closed Channel: EBADF for data calls, ready() all true, stats() empty."""
        if self.is_open(server) or self.model.sides[server].vanished:
            return
        ch = self.side(server).channel
        with pytest.raises(OSError) as info:
            ch.recv(10) if recv else ch.send(b"x")
        assert info.value.errno == errno.EBADF
        assert ch.ready() == (True, True, True)
        stats = ch.stats()
        assert (stats["rx_fill"], stats["tx_fill"]) == (0, 0)
        ch.close()  # idempotent

    # -- invariants -----------------------------------------------------------

    @invariant()
    def agrees_with_model(self) -> None:
        for server in (False, True):
            if self.is_open(server):
                self.check_side(server)

    def check_side(self, server: bool) -> None:
        model, side = self.model, self.side(server)
        me = model.sides[server]
        ch = side.channel
        readable, writable = model.readable(server), model.writable(server)
        assert ch.ready() == (readable, writable, model.peer_closed(server))
        stats = ch.stats()
        assert stats["rx_fill"] == len(model.rxq(server))
        assert stats["tx_fill"] == len(model.txq(server))
        assert (stats["bytes_in"], stats["bytes_out"]) == (me.bytes_in, me.bytes_out)
        assert (stats["rx_size"], stats["tx_size"]) == (model.sizes[not server],
                                                        model.sizes[server])
        assert ch.window == model.windows[not server]
        events = kernel_events(side.r)
        assert bool(events & select.POLLIN) == readable, "fileno's POLLIN disagrees"
        if AVOID_DEAD_PEER_UNWRITABLE and me.peer_dead and me.filled:
            return
        assert bool(events & select.POLLOUT) == (not me.filled), "fileno's POLLOUT disagrees"
        if writable:
            assert events & select.POLLOUT, "room in the ring but the fileno is not writable"


RingMachine.TestCase.settings = settings(
    max_examples=400,
    stateful_step_count=60,
    deadline=5000,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_ring_model = RingMachine.TestCase


# -- the bugs the machine steps around --------------------------------------------


def test_waitall_keeps_bytes_before_reset() -> None:
    """TCP returns the bytes it copied and reports the reset on the next call; the ring
    copies them, advances the tail, then raises ECONNRESET and the bytes are gone."""
    with RingPair.open(timeout=0.0) as pair:
        client, server = pair.client.channel, pair.server.channel
        client.sendall(b"a" * 100)
        server.sendall(b"unread")
        pair.client.close()  # leaves b"unread" unread: RESET
        got = b""
        for _ in range(3):  # bounded: data, then the reset, then end of stream
            try:
                got += server.recv(1000, socket.MSG_WAITALL)
            except ConnectionResetError:
                break
        assert got == b"a" * 100


def test_dead_peer_makes_filled_writer_writable() -> None:
    with RingPair.open(timeout=0.0) as pair:
        client = pair.client.channel
        client.send(b"x" * C2S_SIZE)  # ring full
        with pytest.raises(BlockingIOError):
            client.send(b"x")  # filler: the fileno turns unwritable
        pair.server.vanish()
        client.peer_dead = True  # what the peer watcher does on POLLHUP
        assert client.ready()[1]  # the ring says writable: send fails at once
        with pytest.raises(ConnectionResetError):  # it died with our bytes unread (TCP: RST)
            client.send(b"x")
        with pytest.raises(BrokenPipeError):  # and after the reset, as TCP
            client.send(b"x")
        assert kernel_events(pair.client.r) & select.POLLOUT


def test_own_shut_wr_is_writable_like_tcp() -> None:
    with RingPair.open(timeout=0.0) as pair:
        client = pair.client.channel
        client.send(b"x" * C2S_SIZE)
        with pytest.raises(BlockingIOError):
            client.send(b"x")
        client.shutdown(socket.SHUT_WR)
        with pytest.raises(BrokenPipeError):
            client.send(b"x")
        assert client.ready()[1]
        assert kernel_events(pair.client.r) & select.POLLOUT


def test_tcp_reference_own_shut_wr_writable() -> None:
    """What the test above holds the ring to: a full TCP socket after shutdown(SHUT_WR)."""
    srv = socket.create_server(("127.0.0.1", 0))
    with srv, socket.create_connection(srv.getsockname()) as cli:
        acc, _ = srv.accept()
        with acc:
            cli.setblocking(False)
            for _ in range(100_000):  # bounded: a loopback TCP buffer fills in a few MB
                try:
                    cli.send(b"x" * 65536)
                except BlockingIOError:
                    break
            assert not kernel_events(cli) & select.POLLOUT
            cli.shutdown(socket.SHUT_WR)
            assert kernel_events(cli) & select.POLLOUT
