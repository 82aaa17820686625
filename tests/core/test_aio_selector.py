"""The event loop's spin: ``_ring.spin_ready`` and ``RingSelector``, in one process.

``spin_ready`` is checked on a ``RingPair`` (both Channels of one connection,
raw header access): what it reports, that a producer publishes to a spinning
consumer without a bell, that it leaves CW_OUTSIDE behind, and where its spin
ends (budget, epoll event, busy lock, closed channel). ``RingSelector`` is
checked on real ring connections (loopfast sockets): readiness from the rings,
a bell owed back when the caller stops reading, timeouts, TCP beside rings.
"""

from __future__ import annotations

import contextlib
import select
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import loopfast
from loopfast import _ring
from loopfast._core.aio_selector import RingSelector, install, installed, uninstall

from ..ring_pair import C2S, S2C, RingPair

Pair = tuple[loopfast.socket, loopfast.socket]
CW_OUTSIDE = 1
EVERY = 10_000  # ns between the spin's looks at epoll, as RingSelector asks


@pytest.fixture
def pair() -> Iterator[RingPair]:
    with RingPair.open() as made:
        yield made


def _readable(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


def _later(delay: float, action: Callable[[], object]) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        action()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _when_spinning(pair: RingPair, action: Callable[[], object]) -> threading.Thread:
    """Run *action* in a thread once the client's rx ring says its consumer spins
    (consumer_waiting 0), so the publish is one the spin must see, unrung."""
    header = pair.header()

    def run() -> None:
        deadline = time.monotonic() + 2.0
        while header.get(1, "consumer_waiting") != 0 and time.monotonic() < deadline:
            time.sleep(0.0005)
        action()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_nothing_ready_and_no_budget_is_one_look(pair: RingPair) -> None:
    hits, epoll_ready, epoll_at, spun, cap = _ring.spin_ready(
        ((pair.client.channel, 1),), -1, 0, EVERY)
    assert (hits, epoll_ready, epoll_at, spun) == ([], False, 0, False)
    assert cap == 200_000  # an adaptive channel's ceiling in a loop


def test_reports_data_and_room(pair: RingPair) -> None:
    pair.server.channel.sendall(b"x")
    entries = ((pair.client.channel, 3), (pair.server.channel, 1))
    hits, *_ = _ring.spin_ready(entries, -1, 0, EVERY)
    assert hits == [(0, 3)]
    hits, *_ = _ring.spin_ready(((pair.server.channel, 3),), -1, 0, EVERY)
    assert hits == [(0, 2)]


def test_a_spinning_consumer_gets_data_without_a_bell(pair: RingPair) -> None:
    client, server = pair.client, pair.server
    client.channel.busy_poll_us = 2_000_000  # a ceiling far above the sender's wait
    sender = _when_spinning(pair, lambda: server.channel.sendall(b"hello"))
    start = time.monotonic()
    hits, epoll_ready, _at, spun, cap = _ring.spin_ready(((client.channel, 1),), -1,
                                                         1_000_000_000, EVERY)
    sender.join()
    assert (hits, epoll_ready, spun, cap) == ([(0, 1)], False, True, 2_000_000_000)
    assert time.monotonic() - start < 0.5
    assert not _readable(client.r)  # no bell: the producer saw CW_SPINNING
    assert pair.header().get(S2C, "consumer_waiting") == CW_OUTSIDE
    assert client.channel.recv(10) == b"hello"
    assert not _readable(client.r)


def test_leaves_outside_so_later_data_rings_a_bell(pair: RingPair) -> None:
    client = pair.client
    client.channel.busy_poll_us = 5_000
    hits, _ready, _at, spun, _cap = _ring.spin_ready(((client.channel, 1),), -1,
                                                     1_000_000_000, EVERY)
    assert (hits, spun) == ([], True)
    assert pair.header().get(S2C, "consumer_waiting") == CW_OUTSIDE
    pair.server.channel.sendall(b"x")
    assert _readable(client.r)  # the bell select() waits for


def test_the_budget_bounds_the_spin(pair: RingPair) -> None:
    pair.client.channel.busy_poll_us = 2_000_000
    start = time.monotonic()
    hits, *_ = _ring.spin_ready(((pair.client.channel, 1),), -1, 30_000_000, EVERY)
    took = time.monotonic() - start
    assert hits == []
    assert 0.03 <= took < 0.5


def test_busy_poll_zero_turns_the_spin_off(pair: RingPair) -> None:
    pair.client.channel.busy_poll_us = 0
    start = time.monotonic()
    hits, _ready, _at, spun, cap = _ring.spin_ready(((pair.client.channel, 1),), -1,
                                                    1_000_000_000, EVERY)
    assert (hits, spun, cap) == ([], False, 0)
    assert time.monotonic() - start < 0.05


def test_an_epoll_event_ends_the_spin(pair: RingPair) -> None:
    pair.client.channel.busy_poll_us = 2_000_000
    ep = select.epoll()
    a, b = socket.socketpair()
    try:
        ep.register(a.fileno(), select.EPOLLIN)
        poker = _later(0.02, lambda: b.send(b"!"))
        start = time.monotonic()
        hits, epoll_ready, epoll_at, spun, _cap = _ring.spin_ready(
            ((pair.client.channel, 1),), ep.fileno(), 1_000_000_000, EVERY)
        poker.join()
        assert (hits, epoll_ready, spun) == ([], True, True)
        assert 0 < epoll_at <= time.monotonic_ns()
        assert time.monotonic() - start < 0.5
    finally:
        ep.close()
        a.close()
        b.close()


def test_a_channel_in_a_call_is_left_to_epoll(pair: RingPair) -> None:
    client = pair.client
    client.channel.timeout = None
    client.channel.busy_poll_us = 0  # the reader parks at once, holding its locks
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(client.channel.recv(10)))
    reader.start()
    time.sleep(0.05)
    client.channel.busy_poll_us = 2_000_000
    start = time.monotonic()
    hits, _ready, _at, spun, _cap = _ring.spin_ready(((client.channel, 1),), -1,
                                                     1_000_000_000, EVERY)
    assert (hits, spun) == ([], False)  # nothing it could look at: no spin
    assert time.monotonic() - start < 0.05
    pair.server.channel.sendall(b"z")
    reader.join(5)
    assert got == [b"z"]


def test_close_from_another_thread_ends_the_spin(pair: RingPair) -> None:
    client = pair.client
    client.channel.busy_poll_us = 2_000_000
    closer = _later(0.02, client.channel.close)
    start = time.monotonic()
    hits, *_ = _ring.spin_ready(((client.channel, 1),), -1, 1_000_000_000, EVERY)
    closer.join(5)
    assert hits == [(0, 1)]  # as ready() answers for a closed channel
    assert time.monotonic() - start < 0.5
    hits, *_ = _ring.spin_ready(((client.channel, 3),), -1, 1_000_000_000, EVERY)
    assert hits == [(0, 3)]


def test_settle_gives_the_bell_back(pair: RingPair) -> None:
    client = pair.client
    client.channel.busy_poll_us = 2_000_000
    # Not a fixed delay: on a loaded machine the spin may start after it, and the
    # publish then rings the bell it should not need.
    sender = _when_spinning(pair, lambda: pair.server.channel.sendall(b"x"))
    hits, *_ = _ring.spin_ready(((client.channel, 1),), -1, 1_000_000_000, EVERY)
    sender.join()
    assert hits == [(0, 1)] and not _readable(client.r)
    client.channel.settle()  # nobody will recv here now: the fd must say so
    assert _readable(client.r)


@pytest.mark.parametrize("entries", [[], ((1, 1),), ((object(), 1),), (("x",),)])
def test_bad_entries(entries: object) -> None:
    with pytest.raises(TypeError):
        _ring.spin_ready(entries, -1, 0, EVERY)  # type: ignore[arg-type]


def test_a_drained_bell_needs_one_look_at_r(pair: RingPair) -> None:
    """A recv that finds nothing sweeps r only when r holds bytes (foreign ones here)."""
    pair.server.peer_w.send(b"?")  # a byte someone put in the client's r, no bell counted
    assert _readable(pair.client.r)
    with pytest.raises(BlockingIOError):
        pair.client.channel.recv(10)
    assert not _readable(pair.client.r)  # swept: one spurious wake-up, never a spin
    with pytest.raises(BlockingIOError):
        pair.client.channel.recv(10)
    assert pair.header().get(C2S, "bells") == 0


# ---- RingSelector on real ring connections --------------------------------


@pytest.fixture
def selector() -> Iterator[RingSelector]:
    made = RingSelector()
    try:
        yield made
    finally:
        made.close()


def _ring_pair(make_pair: Callable[..., Pair]) -> Pair:
    client, server = make_pair(True, True)
    assert client.fast_path_transport == "ring"
    client.setblocking(False)
    server.setblocking(False)
    return client, server


def test_ring_readiness_comes_from_the_rings(selector: RingSelector,
                                             make_pair: Callable[..., Pair]) -> None:
    client, server = _ring_pair(make_pair)
    key = selector.register(server.fileno(), selectors.EVENT_READ, "data")
    assert selector.select(0) == []
    client.send(b"ping")
    assert selector.select(1) == [(key, selectors.EVENT_READ)]
    assert server.recv(10) == b"ping"
    assert selector.select(0) == []


def test_a_socket_object_registers_too(selector: RingSelector,
                                       make_pair: Callable[..., Pair]) -> None:
    client, _server = _ring_pair(make_pair)
    key = selector.register(client, selectors.EVENT_WRITE)
    assert selector.select(0) == [(key, selectors.EVENT_WRITE)]


def test_the_timeout_holds(selector: RingSelector, make_pair: Callable[..., Pair]) -> None:
    _client, server = _ring_pair(make_pair)
    selector.register(server.fileno(), selectors.EVENT_READ)
    for wait in (0.001, 0.05):
        start = time.monotonic()
        assert selector.select(wait) == []
        took = time.monotonic() - start
        assert wait <= took < wait + 0.1


def test_a_sleeping_selector_wakes_for_a_ring(selector: RingSelector,
                                              make_pair: Callable[..., Pair]) -> None:
    client, server = _ring_pair(make_pair)
    key = selector.register(server.fileno(), selectors.EVENT_READ)
    sender = _later(0.1, lambda: client.send(b"late"))  # long after any spin
    start = time.monotonic()
    assert selector.select(5) == [(key, selectors.EVENT_READ)]
    sender.join()
    assert 0.09 < time.monotonic() - start < 2


def test_stopping_to_read_gives_the_bell_back(selector: RingSelector,
                                              make_pair: Callable[..., Pair]) -> None:
    client, server = _ring_pair(make_pair)
    server._channel.busy_poll_us = 2_000_000
    selector.register(server.fileno(), selectors.EVENT_READ)
    sender = _later(0.01, lambda: client.send(b"x"))
    assert len(selector.select(1)) == 1  # found in the ring while spinning: no bell
    sender.join()
    selector.unregister(server.fileno())
    assert _readable(server)  # anyone else watching the fd sees the data
    assert server.recv(1) == b"x"


def test_tcp_beside_rings(selector: RingSelector, make_pair: Callable[..., Pair]) -> None:
    ring_client, ring_server = _ring_pair(make_pair)
    tcp_client, tcp_server = make_pair(False, False)
    tcp_server.setblocking(False)
    ring_key = selector.register(ring_server.fileno(), selectors.EVENT_READ)
    tcp_key = selector.register(tcp_server.fileno(), selectors.EVENT_READ)
    ring_client.send(b"r")
    tcp_client.send(b"t")
    seen: set[selectors.SelectorKey] = set()
    deadline = time.monotonic() + 2
    while len(seen) < 2 and time.monotonic() < deadline:
        seen.update(key for key, _ in selector.select(0.1))
    assert seen == {ring_key, tcp_key}


def test_install_makes_the_default_selector() -> None:
    before = selectors.DefaultSelector
    install()
    try:
        assert installed() and selectors.DefaultSelector is RingSelector
        install()  # twice is once
    finally:
        uninstall()
    assert selectors.DefaultSelector is before and not installed()


def test_patch_installs_it(patched: None) -> None:
    import asyncio

    loop = asyncio.new_event_loop()
    with contextlib.closing(loop):
        assert isinstance(loop._selector, RingSelector)  # type: ignore[attr-defined]
