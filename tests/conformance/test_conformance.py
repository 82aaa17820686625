"""Every scenario gives the same transcript over stdlib TCP and over loopfast (SPEC F6).

``test_runs[tcp-*]`` runs a scenario over stdlib TCP alone: it must complete,
keep its own expectations and leave no fd open once its sockets are closed.
``test_matches_tcp[<transport>-*]`` runs it over stdlib TCP first, then over
loopfast (``fastpath``: the shared-memory ring; ``fastpath-stream``: the
AF_UNIX stream; ``loopfast-off``: plain TCP through loopfast.socket), compares
the two transcripts and checks that the loopfast run freed every fd.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

import pytest

from .._fds import open_fds
from .scenarios import SCENARIOS, Recorder

# (scenario, transport) -> why the transcripts legitimately differ. Each entry is a
# difference loopfast documents (README, docs/options.md); the test is
# xfail(strict=True) for that transport only, so a difference that goes away is noticed.
_BOTH_FAST_PATHS: dict[str, str] = {
    "tcp_introspection_options": (
        "docs/options.md: TCP_INFO, TCP_MAXSEG and TCP_CONGESTION are refused on the fast "
        "path (ENOPROTOOPT): there is no TCP state machine, segment or congestion control"
    ),
    "so_peercred": (
        "docs/options.md: SO_PEERCRED is honoured on the fast path and names the real peer "
        "process; on TCP the kernel has no peer credentials to give"
    ),
    "so_rcvlowat": (
        "docs/options.md: SO_RCVLOWAT is honoured by recv, but poll()/select() report the "
        "fast-path socket readable from the first byte"
    ),
    "so_rcvbuf_shrink_after_connect": (
        "SPEC C5: without compatibility mode, a loopfast socket refuses to shrink SO_RCVBUF "
        "after connect (the Vista default, EINVAL); Linux TCP allows it"
    ),
    "fromfd_dup": (
        "README: code that takes the fd past the socket object sees the carrier: an AF_UNIX "
        "stream (stream transport) or a wake-up socket that carries no data (ring)"
    ),
    "listener_fromfd_accepts": (
        "README: a fast-path listener's fd is an epoll instance bundling its TCP and AF_UNIX "
        "listeners, so socket.fromfd on it fails with ENOTSOCK"
    ),
    "connect_to_full_backlog_times_out": (
        "README: a fast-path listener has two backlogs, its rendezvous and its TCP one; a "
        "client that finds the rendezvous full for 50 ms takes TCP (a squatter with a full "
        "backlog must not hang clients), so the second connect goes through, over TCP"
    ),
}
_STREAM_ONLY: dict[str, str] = {
    "linger_zero_close_resets_peer": (
        "docs/options.md: on the stream SO_LINGER (1, 0) does not make close() abortive "
        "(AF_UNIX has no reset to send); the peer reads b'' where TCP gives "
        "ConnectionResetError"
    ),
    "accept_of_a_connection_reset_before_accept": (
        "README: on the stream SO_LINGER (1, 0) does not reset (AF_UNIX has no reset to "
        "send) and getpeername() keeps answering: the server reads end of stream"
    ),
    "getpeername_after_a_reset": (
        "README: the stream's getpeername() keeps answering after a reset; Linux TCP's "
        "socket is then CLOSE and raises ENOTCONN"
    ),
    "detach_rewrap_with_stdlib": (
        "FastPathSocket.detach: the fd is the AF_UNIX stream carrying the connection, so a "
        "stdlib socket built on it reports AF_UNIX, proto 0 and an AF_UNIX peer name"
    ),
    "shut_rd_then_peer_sends": (
        "FastPathSocket docstring: shutdown(SHUT_RD) is the kernel's AF_UNIX one, so the "
        "peer's later sends fail with EPIPE where Linux TCP accepts and queues them"
    ),
    "poll_flags_through_close": (
        "README: an AF_UNIX stream reports POLLHUP as soon as the peer closed; TCP waits "
        "for both halves"
    ),
    "sends_after_peer_closed_one_by_one": (
        "README: on the stream transport the first send after the peer's close fails with "
        "EPIPE (AF_UNIX knows at once); Linux TCP takes it and fails the next one"
    ),
    "send_after_peer_closed_leaving_data_unread": (
        "README: on the stream transport a send after the peer closed with our bytes unread "
        "fails with EPIPE and the reset goes to the next recv; Linux TCP reports the reset "
        "to the first call"
    ),
}
# Scenarios the ring cannot run: code that reads, writes or takes the fd itself.
RING_REFUSES: dict[str, str] = {
    "detach": "_core/sockets/ring.py: detach() refuses (EOPNOTSUPP): the ring's fd carries no data",
    "detach_rewrap_with_stdlib": "_core/sockets/ring.py: detach() refuses (EOPNOTSUPP)",
}
_RING_ONLY: dict[str, str] = {
    **RING_REFUSES,
    "msg_oob": "_ring.c: urgent data (MSG_OOB) is not carried by the rings (EOPNOTSUPP)",
    "oob_inline": "_ring.c: urgent data (MSG_OOB) is not carried by the rings (EOPNOTSUPP)",
    "os_level_read_write_on_fileno": (
        "_core/sockets/ring.py: the fd carries wake-ups, not data: os.write on it resets the "
        "connection on both ends naming the cause, os.read returns wake-up bytes"
    ),
    "shut_rd_readiness": (
        "_ring.c: after our own SHUT_RD the fd is readable (a wake-up byte, which os.read "
        "consumes) but shows no POLLRDHUP: nothing ever shuts an r down"
    ),
    "poll_flags_through_close": (
        "_ring.c: POLLHUP is not reported when both halves are shut; the fd's hang-up is kept "
        "for the peer's last close, which it must mean alone"
    ),
    "shut_wr_poll_flags_on_both_ends": (
        "_ring.c: POLLHUP is not reported when both halves are shut (see poll_flags_through_close)"
    ),
}
KNOWN_DIFFERENCES: dict[tuple[str, str], str] = {
    **{(name, "fastpath"): why for name, why in {**_BOTH_FAST_PATHS, **_RING_ONLY}.items()},
    **{
        (name, "fastpath-stream"): why for name, why in {**_BOTH_FAST_PATHS, **_STREAM_ONLY}.items()
    },
    ("so_rcvbuf_shrink_after_connect", "loopfast-off"): _BOTH_FAST_PATHS[
        "so_rcvbuf_shrink_after_connect"
    ],
}
RunOver = Callable[[str, str], Recorder]
OTHERS = ("fastpath", "fastpath-stream", "loopfast-off")


def _params(transports: tuple[str, ...], known: dict[tuple[str, str], str]) -> list[object]:
    params = []
    for transport in transports:
        for name in sorted(SCENARIOS):
            reason = known.get((name, transport))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            params.append(pytest.param(transport, name, marks=marks, id=f"{transport}-{name}"))
    return params


_open_fds = open_fds


def _report(rec: Recorder) -> str:
    return "\n".join(rec.lines())


@pytest.mark.parametrize(("transport", "name"), _params(("tcp",), {}))
def test_runs(run_over: RunOver, transport: str, name: str) -> None:
    """The reference: over stdlib TCP every scenario completes and keeps its expectations."""
    before = _open_fds()
    rec = run_over(name, transport)  # closes everything the scenario made
    leaked = _open_fds() - before
    assert rec.aborted is None, f"scenario aborted\n{_report(rec)}"
    assert not rec.failures, "\n".join(rec.failures) + "\n\n" + _report(rec)
    assert rec.entries, "scenario recorded nothing"
    assert leaked <= 0, f"{leaked} fd(s) still open after every socket was closed"


@pytest.mark.parametrize(("transport", "name"), _params(OTHERS, KNOWN_DIFFERENCES))
def test_matches_tcp(run_over: RunOver, transport: str, name: str) -> None:
    """Over loopfast the transcript is TCP's, and closing every socket frees every fd.

    An abort or a missed expectation shows in the diff: over TCP neither happens.
    """
    reference = run_over(name, "tcp")
    assert reference.aborted is None, f"tcp run aborted\n{_report(reference)}"
    before = _open_fds()
    other = run_over(name, transport)
    leaked = _open_fds() - before
    problems = []
    if other.lines() != reference.lines():
        diff = difflib.unified_diff(
            reference.lines(), other.lines(), "tcp", transport, lineterm="", n=2
        )
        problems.append("transcripts differ:\n" + "\n".join(diff))
    if leaked > 0:
        problems.append(f"{leaked} fd(s) still open after every {transport} socket was closed")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def test_enough_scenarios() -> None:
    assert len(SCENARIOS) >= 45


def test_known_differences_name_real_scenarios() -> None:
    for name, transport in KNOWN_DIFFERENCES:
        assert name in SCENARIOS
        assert transport in OTHERS
