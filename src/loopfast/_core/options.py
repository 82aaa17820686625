"""Socket options on a fast-path connection (SPEC F8).

Winsock keeps a short list of options working on fast-path sockets. loopfast
decides, for every common option, one of:

- honoured: the kernel applies it to the stream that carries the data;
- no-op: accepted and returned as set, because the fast path makes it
  meaningless (there are no segments, routes or retransmissions to tune);
- refused: ``OSError(ENOPROTOOPT)`` naming the fast path.

Values of no-op options live on a "shadow" TCP socket that is never connected
(the client's reserved-port socket, or a lazily made one on the server side):
the kernel validates and normalises them exactly as it would on TCP, and
``getsockopt`` returns what TCP would. docs/options.md is this table for
people; tests/test_options.py checks that the two agree.

SO_BUSY_POLL is loopfast's own on every kind of socket (SPEC F13): on a
ring-carried connection it is the spin time in microseconds of every blocking
call (0 parks at once, no CPU burned while idle; N spins up to N µs first,
"poll" as Registered I/O does; never set, the spin adapts). loopfast keeps the
value, so it needs no privilege; on a kernel TCP socket the kernel's own busy
polling (which needs CAP_NET_ADMIN to raise) is asked for too, best effort.
"""

from __future__ import annotations

import enum
import errno
import socket as _stdsocket
from typing import Any, Protocol

from ..constants import SO_BUSY_POLL
from .stdlib import StdSocket

S, T = _stdsocket.SOL_SOCKET, _stdsocket.IPPROTO_TCP
IP, IP6 = _stdsocket.IPPROTO_IP, _stdsocket.IPPROTO_IPV6
BUSY_POLL_MAX_US = 10_000_000


class Connection(Protocol):
    """What the option calls need of a fast-path connection's state."""

    def shadow(self) -> _stdsocket.socket:
        """The never-connected TCP socket that holds no-op options."""
        ...

    def note(self, level: int, optname: int, value: int) -> None:
        """Keep a boolean no-op option's value (0 or 1) without a shadow socket."""
        ...

    def noted(self, level: int, optname: int) -> int | None:
        """The value ``note`` kept, or None: the shadow socket knows it."""
        ...


class Treatment(enum.Enum):
    """What a fast-path socket does with an option."""

    KERNEL = "honoured"  # applied by the kernel to the data stream
    BOTH = "honoured (mirrored)"  # applied to the stream, and reported as TCP reports it
    NOOP = "no-op"  # kept on the shadow socket and returned; no effect on the data
    REFUSED = "refused"


def _c(name: str, fallback: int) -> int:
    return int(getattr(_stdsocket, name, fallback))


# (level, optname) -> (level name, option name, treatment, why).
OPTIONS: dict[tuple[int, int], tuple[str, str, Treatment, str]] = {}


def _add(level: int, level_name: str, name: str, value: int, treatment: Treatment,
         why: str) -> None:
    OPTIONS[(level, value)] = (level_name, name, treatment, why)


for _name, _treat, _why in [
    ("SO_RCVBUF", Treatment.BOTH, "kept as TCP reports it; the ring sizes itself from it"),
    ("SO_SNDBUF", Treatment.BOTH, "bounds the bytes this side has in flight"),
    ("SO_RCVLOWAT", Treatment.KERNEL, "stream: recv waits for this many bytes, as on TCP, "
     "poll() reports readable from the first byte; ring: kept, recv returns what is there"),
    ("SO_BUSY_POLL", Treatment.KERNEL, "ring: a blocked call spins this many µs before it "
     "parks (0: at once; unset: adaptive); stream: kept"),
    ("SO_RCVTIMEO", Treatment.KERNEL, "kernel receive timeout, as on TCP (the ring keeps it too)"),
    ("SO_SNDTIMEO", Treatment.KERNEL, "kernel send timeout, as on TCP (the ring keeps it too)"),
    ("SO_OOBINLINE", Treatment.KERNEL, "stream: urgent byte delivered in line; ring: kept, "
     "urgent data is refused (EOPNOTSUPP)"),
    ("SO_ERROR", Treatment.KERNEL, "pending error of the stream"),
    ("SO_TYPE", Treatment.KERNEL, "SOCK_STREAM"),
    ("SO_ACCEPTCONN", Treatment.KERNEL, "0 on a connection"),
    ("SO_PEERCRED", Treatment.KERNEL, "the peer process's real pid, uid, gid (TCP has none)"),
    ("SO_DOMAIN", Treatment.NOOP, "reports AF_INET/AF_INET6, the family the socket presents"),
    ("SO_PROTOCOL", Treatment.NOOP, "reports IPPROTO_TCP"),
    ("SO_KEEPALIVE", Treatment.NOOP, "a dead peer is noticed at once, without probes"),
    ("SO_LINGER", Treatment.NOOP, "close never waits (data is in the peer's buffer); "
     "on the ring (1, 0) makes the last close reset the peer, as TCP's abortive close; "
     "on the stream it ends the stream as a plain close does"),
    ("SO_REUSEADDR", Treatment.NOOP, "matters only for bind"),
    ("SO_REUSEPORT", Treatment.NOOP, "matters only for bind"),
    ("SO_PRIORITY", Treatment.NOOP, "no queueing discipline on the fast path"),
    ("SO_MARK", Treatment.NOOP, "no packets for netfilter to mark"),
    ("SO_BROADCAST", Treatment.NOOP, "meaningless for TCP"),
    ("SO_DONTROUTE", Treatment.NOOP, "nothing is routed"),
    ("SO_DEBUG", Treatment.NOOP, "no TCP state to debug"),
    ("SO_BINDTODEVICE", Treatment.REFUSED, "the fast path uses no device"),
    ("SO_INCOMING_CPU", Treatment.REFUSED, "no receive queue on a CPU"),
    ("SO_PASSCRED", Treatment.REFUSED, "would add ancillary data TCP never carries"),
    ("SO_PASSSEC", Treatment.REFUSED, "would add ancillary data TCP never carries"),
    ("SO_PEERSEC", Treatment.REFUSED, "no security label on the fast path"),
]:
    value = SO_BUSY_POLL if _name == "SO_BUSY_POLL" else _c(_name, -1)
    _add(S, "SOL_SOCKET", _name, value, _treat, _why)

for _name, _value, _treat, _why in [
    ("TCP_NODELAY", 1, Treatment.NOOP, "every send is delivered at once; there is no Nagle"),
    ("TCP_CORK", 3, Treatment.NOOP, "no segments to hold back"),
    ("TCP_QUICKACK", 12, Treatment.NOOP, "no ACKs"),
    ("TCP_KEEPIDLE", 4, Treatment.NOOP, "no keep-alive probes"),
    ("TCP_KEEPINTVL", 5, Treatment.NOOP, "no keep-alive probes"),
    ("TCP_KEEPCNT", 6, Treatment.NOOP, "no keep-alive probes"),
    ("TCP_USER_TIMEOUT", 18, Treatment.NOOP, "nothing is retransmitted"),
    ("TCP_LINGER2", 8, Treatment.NOOP, "no FIN_WAIT2 state"),
    ("TCP_SYNCNT", 7, Treatment.NOOP, "no SYN retries"),
    ("TCP_WINDOW_CLAMP", 10, Treatment.NOOP, "no advertised window"),
    ("TCP_NOTSENT_LOWAT", 25, Treatment.NOOP, "no unsent queue"),
    ("TCP_DEFER_ACCEPT", 9, Treatment.NOOP, "matters only on a listener"),
    ("TCP_MAXSEG", 2, Treatment.REFUSED, "the fast path has no segments"),
    ("TCP_INFO", 11, Treatment.REFUSED, "no TCP state machine; see fast_path_active"),
    ("TCP_CONGESTION", 13, Treatment.REFUSED, "no congestion control"),
    ("TCP_MD5SIG", 14, Treatment.REFUSED, "no segments to sign"),
    ("TCP_REPAIR", 19, Treatment.REFUSED, "no TCP state to repair"),
    ("TCP_FASTOPEN", 23, Treatment.REFUSED, "matters only on a listener"),
    ("TCP_ULP", 31, Treatment.REFUSED, "kernel TLS needs a TCP socket; use ssl over the socket"),
    ("TCP_ZEROCOPY_RECEIVE", 35, Treatment.REFUSED, "no TCP receive queue to map"),
]:
    _add(T, "IPPROTO_TCP", _name, _c(_name, _value), _treat, _why)

for _name, _value, _treat, _why in [
    ("IP_TTL", 2, Treatment.NOOP, "nothing is routed"),
    ("IP_TOS", 1, Treatment.NOOP, "no packets to mark"),
    ("IP_OPTIONS", 4, Treatment.REFUSED, "no IP header"),
    ("IP_MTU_DISCOVER", 10, Treatment.REFUSED, "no path MTU"),
    ("IP_MTU", 14, Treatment.REFUSED, "no path MTU"),
    ("IP_FREEBIND", 15, Treatment.REFUSED, "matters only for bind"),
    ("IP_TRANSPARENT", 19, Treatment.REFUSED, "matters only for bind"),
    ("IP_RECVERR", 11, Treatment.REFUSED, "no ICMP errors"),
    ("IP_MULTICAST_TTL", 33, Treatment.REFUSED, "multicast is not TCP"),
]:
    _add(IP, "IPPROTO_IP", _name, _c(_name, _value), _treat, _why)

for _name, _value, _treat, _why in [
    ("IPV6_V6ONLY", 26, Treatment.NOOP, "matters only for bind"),
    ("IPV6_UNICAST_HOPS", 16, Treatment.NOOP, "nothing is routed"),
    ("IPV6_TCLASS", 67, Treatment.NOOP, "no packets to mark"),
    ("IPV6_DONTFRAG", 62, Treatment.REFUSED, "no fragments"),
    ("IPV6_MTU_DISCOVER", 23, Treatment.REFUSED, "no path MTU"),
    ("IPV6_RECVERR", 25, Treatment.REFUSED, "no ICMP errors"),
    ("IPV6_MULTICAST_HOPS", 18, Treatment.REFUSED, "multicast is not TCP"),
]:
    _add(IP6, "IPPROTO_IPV6", _name, _c(_name, _value), _treat, _why)


def treatment(level: int, optname: int) -> Treatment:
    """How a fast-path connection treats (*level*, *optname*); unknown options are refused."""
    entry = OPTIONS.get((level, optname))
    return entry[2] if entry else Treatment.REFUSED


def _refusal(level: int, optname: int) -> OSError:
    entry = OPTIONS.get((level, optname))
    what = f"{entry[0]}/{entry[1]}" if entry else f"option (level {level}, name {optname})"
    why = f" ({entry[3]})" if entry else ""
    return OSError(
        errno.ENOPROTOOPT,
        f"{what} is not supported on a fast-path connection{why}; "
        "open the connection without fast_path=True if you need it",
    )


def setsockopt(conn: Connection, stream: _stdsocket.socket, level: int, optname: int,
               *args: Any) -> None:
    """Apply an option to a fast-path connection whose data flows on *stream*.

    Raises:
        OSError: ENOPROTOOPT for a refused option; what the kernel raises for a bad value.
    """
    how = treatment(level, optname)
    if how is Treatment.REFUSED:
        raise _refusal(level, optname)
    if (level, optname) in _BOOLEAN and len(args) == 1 and type(args[0]) in (int, bool) \
            and _INT_MIN <= args[0] <= _INT_MAX:
        conn.note(level, optname, 1 if args[0] else 0)  # as the kernel keeps it
        return
    if how is not Treatment.KERNEL:
        conn.shadow().setsockopt(level, optname, *args)
    if how is not Treatment.NOOP:
        StdSocket.setsockopt(stream, level, optname, *args)


def getsockopt(conn: Connection, stream: _stdsocket.socket, level: int, optname: int,
               *args: Any) -> Any:
    """Read an option of a fast-path connection whose data flows on *stream*.

    Raises:
        OSError: ENOPROTOOPT for a refused option.
    """
    how = treatment(level, optname)
    if how is Treatment.REFUSED:
        raise _refusal(level, optname)
    if how is Treatment.KERNEL:
        return StdSocket.getsockopt(stream, level, optname, *args)
    if not args:
        value = conn.noted(level, optname)
        if value is not None:
            return value
    return conn.shadow().getsockopt(level, optname, *args)


_READ_ONLY = {(S, _stdsocket.SO_DOMAIN), (S, _stdsocket.SO_PROTOCOL)}
# No-op options the kernel keeps as 0 or 1 (getsockopt answers !!value), set on
# nearly every connection: kept on the connection (``note``), no shadow socket made.
_BOOLEAN = frozenset({(T, _stdsocket.TCP_NODELAY), (S, _stdsocket.SO_KEEPALIVE)})
_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1
_BUFLEN = {(S, _stdsocket.SO_LINGER): 8}
_DOUBLED = {(S, _stdsocket.SO_RCVBUF), (S, _stdsocket.SO_SNDBUF)}


def inheritable(listener: _stdsocket.socket) -> tuple[tuple[int, int, Any], ...]:
    """The no-op options of *listener* that differ from a new socket's, as (level, name, value).

    A TCP socket accepted from a listener starts with the listener's options
    (TCP_NODELAY, SO_KEEPALIVE, ...); a fast-path connection's shadow socket
    takes these to answer the same.
    """
    changed = []
    with StdSocket(listener.family, _stdsocket.SOCK_STREAM) as fresh:
        for key, (_lvl, _name, how, _why) in OPTIONS.items():
            if how not in (Treatment.NOOP, Treatment.BOTH) or key in _READ_ONLY:
                continue
            extra = (_BUFLEN[key],) if key in _BUFLEN else ()
            try:
                value = listener.getsockopt(*key, *extra)
            except OSError:
                continue  # e.g. an IPv6 option on an IPv4 listener
            if value != fresh.getsockopt(*key, *extra):
                if key in _DOUBLED:
                    value //= 2  # the kernel doubles what setsockopt gives it
                changed.append((*key, value))
    return tuple(changed)


# -- SO_BUSY_POLL ------------------------------------------------------------------------


def is_busy_poll(level: int, optname: int) -> bool:
    """True when (*level*, *optname*) is SO_BUSY_POLL."""
    return level == S and optname == SO_BUSY_POLL


def parse_busy_poll(value: Any) -> int:
    """The microseconds a SO_BUSY_POLL value asks for.

    Raises:
        OSError: EINVAL for anything but an int (or 4 raw bytes) in 0..10,000,000.
    """
    if isinstance(value, (bytes, bytearray)) and len(value) == 4:
        value = int.from_bytes(value, "little", signed=True)
    if type(value) is not int or not 0 <= value <= BUSY_POLL_MAX_US:
        raise OSError(errno.EINVAL, "SO_BUSY_POLL takes microseconds from 0 to "
                      f"{BUSY_POLL_MAX_US:,}, got {value!r}")
    return value
