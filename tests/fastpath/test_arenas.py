"""Arenas (``_fastpath/arenas.py``, ``_ring.c`` "arenas"): one memfd holds many connections' rings.

- A client's connections to one server share one arena, which the server process maps
  once (server in another process).
- Bytes stay whole across reused slots, with more connections open at once than an
  arena has slots.
- A finished slot gives its pages back but each ring's first.
- The C core's slot rules: claim, unclaim, lost slots; sizes and slots checked.
- A client naming a slot its server already uses, or offering one arena with other
  sizes, is refused, and accept() does not notice.
- A fork()ed child makes an arena of its own; its parent goes on with its own.
- A socket object whose fd was closed everywhere behind its back, and whose slot
  went to another connection, is reset and takes nothing from it.
"""

from __future__ import annotations

import errno
import os
import random
import socket
from collections.abc import Callable
from multiprocessing.connection import Connection

import pytest

import loopfast
from loopfast import _ring
from loopfast._fastpath import arenas

from .._procs import child, receive
from .._streams import recv_exactly
from ..conftest import TIMEOUT, Pair

SIZE = 4096


def _ring_mappings() -> dict[int, list[str]]:
    """This process's mappings of ring memfds: inode -> the address ranges mapping it."""
    found: dict[int, list[str]] = {}
    with open("/proc/self/maps") as maps:
        for line in maps:
            if "loopfast-ring" in line:
                fields = line.split()
                found.setdefault(int(fields[4]), []).append(fields[0])
    return found


def _serve(pipe: Connection, count: int) -> None:
    srv = loopfast.create_server(("127.0.0.1", 0), fast_path=True)
    srv.settimeout(TIMEOUT)
    pipe.send(srv.getsockname()[1])
    seen = []
    for _ in range(count):
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(TIMEOUT)
            conn.sendall(recv_exactly(conn, 4))
            seen.append(_ring_mappings())
    pipe.send(seen)


@pytest.mark.timeout(60)
def test_connections_to_one_server_share_one_arena_mapped_once_per_process() -> None:
    count = 100
    before = set(_ring_mappings())  # other tests' arenas, if any
    with child(_serve, count) as (proc, pipe):
        port = receive(pipe)
        used = []
        for i in range(count):
            with loopfast.create_connection(("127.0.0.1", port), timeout=TIMEOUT,
                                            fast_path=True) as cli:
                cli.sendall(b"%04d" % i)
                assert recv_exactly(cli, 4) == b"%04d" % i
                assert cli.fast_path_transport == "ring"
                used.append(_ring_mappings())
        server_seen = receive(pipe)
        proc.join(TIMEOUT)
    ours = {inode for maps in used for inode in maps} - before
    assert len(ours) == 1, f"{len(ours)} memfds for {count} connections"
    (arena,) = ours
    assert all(maps[arena] == used[0][arena] for maps in used)  # one mapping, never remade
    assert len(server_seen[0][arena]) == 1  # the server's one mapping, from the first hello on
    assert all(maps[arena] == server_seen[0][arena] for maps in server_seen)


@pytest.mark.timeout(60)
def test_bytes_stay_whole_across_reused_slots(make_server: Callable[..., loopfast.socket]
                                              ) -> None:
    srv = make_server()
    rng = random.Random(12)
    width = arenas.SLOTS + 8  # more at once than one arena holds
    for round_ in range(3):
        pairs = []
        for _ in range(width):
            cli = loopfast.create_connection(srv.getsockname(), timeout=TIMEOUT,
                                             fast_path=True)
            acc, _ = srv.accept()
            acc.settimeout(TIMEOUT)
            payload = rng.randbytes(rng.choice([1, 4095, 4097, 70_000, 300_000]))
            cli.sendall(payload)
            pairs.append((cli, acc, payload))
        for _cli, acc, payload in pairs:
            assert recv_exactly(acc, len(payload)) == payload, round_
            acc.sendall(payload[::-1])
        for cli, acc, payload in pairs:
            assert recv_exactly(cli, len(payload)) == payload[::-1], round_
            assert cli.fast_path_transport == "ring"
            cli.close()
            acc.close()


@pytest.mark.timeout(30)
def test_a_finished_slot_gives_back_all_but_each_rings_first_page(
        make_pair: Callable[..., Pair]) -> None:
    before = set(_ring_mappings())
    cli, acc = make_pair()
    (arena,) = set(_ring_mappings()) - before  # ours: the client's, and the server's mapping
    burst = os.urandom(1 << 20)
    for sender, receiver in ((cli, acc), (acc, cli)):
        sender.sendall(burst)
        assert recv_exactly(receiver, len(burst)) == burst
    address = _ring_mappings()[arena][0]
    cli.close()
    acc.close()
    fd = os.open(f"/proc/self/map_files/{address}", os.O_RDONLY)
    try:
        resident_kib = os.fstat(fd).st_blocks * 512 / 1024
    finally:
        os.close(fd)
    assert resident_kib <= 12  # the header page and each ring's first


def test_claim_hands_out_free_slots_and_never_a_lost_one() -> None:
    fd = _ring.create_memfd(SIZE, SIZE, -1, -1, 3)
    try:
        arena = _ring.Arena(fd, SIZE, SIZE, 3, True)
    finally:
        os.close(fd)
    assert (arena.slots, arena.sizes, arena.in_use) == (3, (SIZE, SIZE), 0)
    assert [arena.claim(), arena.claim(), arena.claim(), arena.claim()] == [0, 1, 2, None]
    arena.unclaim(1, False)  # its hello never went: free again
    arena.unclaim(2, True)  # its hello went: a server may hold it, never claimed again
    assert arena.in_use == 1
    assert [arena.claim(), arena.claim()] == [1, None]
    with pytest.raises(OSError) as err:
        arena.unclaim(2, False)  # not claimed now
    assert err.value.errno == errno.EINVAL


@pytest.mark.parametrize(("sizes", "slots", "why"), [
    ((SIZE, 2 * SIZE), 3, "wrong size"),  # not whole slots of these sizes
    ((SIZE, SIZE), 2, "wrong size"),
    ((SIZE, SIZE), 65, "1 to 64"),
    ((SIZE, SIZE), 0, "1 to 64"),
    ((SIZE + 1, SIZE), 3, "powers of two"),
])
def test_an_arena_that_does_not_match_is_refused(sizes: tuple[int, int], slots: int,
                                                 why: str) -> None:
    fd = _ring.create_memfd(SIZE, SIZE, -1, -1, 3)
    try:
        with pytest.raises(OSError, match=why) as err:
            _ring.Arena(fd, *sizes, slots)
        assert err.value.errno == errno.EINVAL
    finally:
        os.close(fd)


def test_a_channel_needs_the_arenas_sizes_and_a_free_slot() -> None:
    fd = _ring.create_memfd(SIZE, SIZE, -1, -1, 2)
    try:
        server_side = _ring.Arena(fd, SIZE, SIZE, 2)
    finally:
        os.close(fd)
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    with a, b, c, d:
        fds = (a.fileno(), b.fileno(), c.fileno())
        cases = [((2 * SIZE, SIZE, True, *fds, False, 0), "other sizes"),
                 ((SIZE, SIZE, True, *fds, False, 2), "out of range"),
                 ((SIZE, SIZE, False, *fds, True, 0), "out of range")]  # ours, not claimed
        for args, why in cases:
            with pytest.raises(OSError, match=why) as err:
                _ring.Channel(server_side, *args)
            assert err.value.errno == errno.EINVAL
        first = _ring.Channel(server_side, SIZE, SIZE, True, *fds, False, 0)
        with pytest.raises(OSError, match="in use"):
            _ring.Channel(server_side, SIZE, SIZE, True, *fds, False, 0)
        first.close()
        assert server_side.in_use == 0


def _child_arena(pipe: Connection, port: int, inherited: list[int]) -> None:
    with loopfast.create_connection(("127.0.0.1", port), timeout=TIMEOUT, fast_path=True) as c:
        c.sendall(b"child")
        pipe.send(sorted(set(_ring_mappings()) - set(inherited)))
        assert recv_exactly(c, 2) == b"ok"


@pytest.mark.timeout(30)
def test_a_forked_child_makes_its_own_arena(make_server: Callable[..., loopfast.socket]
                                            ) -> None:
    srv = make_server()
    before = set(_ring_mappings())

    def arena_of_a_connection() -> set[int]:
        with loopfast.create_connection(srv.getsockname(), timeout=TIMEOUT,
                                        fast_path=True):
            acc, _ = srv.accept()
            with acc:
                return set(_ring_mappings()) - before

    first = arena_of_a_connection()
    assert len(first) == 1
    with child(_child_arena, srv.getsockname()[1], sorted(_ring_mappings())) as (proc, pipe):
        acc, _ = srv.accept()
        with acc:
            acc.settimeout(TIMEOUT)
            assert recv_exactly(acc, 5) == b"child"
            childs = receive(pipe)
            acc.sendall(b"ok")
        proc.join(TIMEOUT)
    assert len(childs) == 1 and set(childs) != first
    assert arena_of_a_connection() - set(childs) == first  # the parent's goes on


_kept: list[socket.socket] = []  # handed to the child by fork alone


def _stale_holder(pipe: Connection) -> None:
    cli, acc = _kept
    os.close(cli.fileno())  # behind the socket objects' backs: r is gone from this process
    os.close(acc.fileno())
    pipe.send("closed")
    assert pipe.poll(TIMEOUT) and pipe.recv() == "go"  # the slot carries another connection
    try:
        cli.recv(10)
    except ConnectionResetError as exc:
        pipe.send(str(exc))
    else:
        pipe.send("recv returned")


@pytest.mark.timeout(30)
def test_a_socket_whose_slot_went_to_another_connection_is_reset(
        make_server: Callable[..., loopfast.socket]) -> None:
    srv = make_server()
    cli = loopfast.create_connection(srv.getsockname(), timeout=TIMEOUT, fast_path=True)
    acc = srv.accept()[0]
    cli.settimeout(TIMEOUT)
    _kept[:] = [cli, acc]
    before = set(_ring_mappings())
    with child(_stale_holder) as (proc, pipe):
        assert receive(pipe) == "closed"
        cli.close()  # the last copies of both r: the slot is free on both sides
        acc.close()
        _kept.clear()
        with loopfast.create_connection(srv.getsockname(), timeout=TIMEOUT,
                                        fast_path=True) as again:
            acc2 = srv.accept()[0]
            with acc2:
                assert set(_ring_mappings()) == before  # the same arena
                again.sendall(b"mine")
                pipe.send("go")
                said = receive(pipe)
                assert recv_exactly(acc2, 4) == b"mine"  # the stale holder took nothing
                acc2.sendall(b"yours")
                assert recv_exactly(again, 5) == b"yours"
        proc.join(TIMEOUT)
    assert "handed to another one" in said
