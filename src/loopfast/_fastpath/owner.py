"""Who owns the TCP listener a connection would reach (SPEC F10).

A client trusts a fast-path peer only when the peer's uid (SO_PEERCRED) is the
uid that owns the TCP listener a SYN to the same address and port would reach.
An abstract AF_UNIX name can be taken by anyone in the namespace; the TCP port
cannot be answered by anyone but its owner, so this turns a name squatter into
a plain-TCP fall-back.

The question is asked of the kernel with one sock_diag exact lookup: the kernel
runs its own listener lookup (exact bind first, then wildcard, dual-stack
included) and reports the socket's uid. That costs two syscalls, where reading
/proc/net/tcp costs a walk over every TCP socket of the namespace; the file is
the fall-back when netlink is not available.
"""

from __future__ import annotations

import _socket as _csocket
import functools
import socket as _stdsocket
import struct
from typing import NamedTuple

_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 0x1
_NLMSG_ERROR = 2
_TCP_LISTEN = 10
_NOCOOKIE = 0xFFFFFFFF

_NLMSGHDR = struct.Struct("=IHHII")
# inet_diag_req_v2: family, protocol, ext, pad, states; then inet_diag_sockid.
_REQ = struct.Struct("=BBBBI")
_SOCKID = struct.Struct(">HH16s16s")
_SOCKID_TAIL = struct.Struct("=III")
# inet_diag_msg: family, state, timer, retrans, sockid (48 bytes), expires,
# rqueue, wqueue, uid, inode.
_MSG_STATE = struct.Struct("=BB")
_MSG_UID_OFFSET = 4 + 48 + 12
_MSG_SIZE = 4 + 48 + 20  # struct inet_diag_msg
_INET_DIAG_SKMEMINFO = 7
_EXT_SKMEMINFO = 1 << (_INET_DIAG_SKMEMINFO - 1)


@functools.cache
def overflow_uid() -> int:
    """The uid the kernel shows for a uid not mapped in this user namespace (65534 usually)."""
    try:
        with open("/proc/sys/kernel/overflowuid", encoding="ascii") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 65534


def unmapped(uid: int) -> bool:
    """True when *uid*, as the kernel reported it here, may stand for any unmapped uid.

    Inside a user namespace (Flatpak, bubblewrap, rootless containers) every
    uid the namespace does not map shows as the overflow uid, so two processes
    of different users look alike: a fast-path peer or listener owner seen so
    cannot be told apart from a squatter, and the fast path is not taken. In
    the initial namespace every uid is mapped, and the overflow uid is a real
    user (nobody).
    """
    return uid == overflow_uid() and not _initial_user_namespace()


def _initial_user_namespace() -> bool:
    # Read each time (a process may unshare): only the initial namespace maps all 2**32 - 1.
    try:
        with open("/proc/self/uid_map", encoding="ascii") as f:
            return f.read().split() == ["0", "0", "4294967295"]
    except OSError:
        return False


class Owner(NamedTuple):
    """The TCP listener a connection would reach: its owner, and its receive buffer."""

    uid: int
    rcvbuf: int | None  # SO_RCVBUF as getsockopt reports it; None when unknown


def listener_owner(family: int, host: str, port: int) -> Owner | None:
    """The listener that *host*:*port* reaches, or None if none listens.

    *host* must be a numeric address of *family*.

    Raises:
        OSError: neither sock_diag nor /proc/net/tcp could be read.
    """
    try:
        return _diag_query(family, host, port)
    except OSError:
        uid = _proc_lookup(family, host, port)
        return None if uid is None else Owner(uid, None)


def listener_uid(family: int, host: str, port: int) -> int | None:
    """The uid owning the TCP listener that *host*:*port* reaches, or None if none listens.

    Raises:
        OSError: neither sock_diag nor /proc/net/tcp could be read.
    """
    owner = listener_owner(family, host, port)
    return None if owner is None else owner.uid


def _request(family: int, host: str, port: int) -> bytes:
    src = _stdsocket.inet_pton(family, host).ljust(16, b"\0")
    body = (
        _REQ.pack(family, _stdsocket.IPPROTO_TCP, _EXT_SKMEMINFO, 0, 1 << _TCP_LISTEN)
        + _SOCKID.pack(port, 0, src, b"\0" * 16)
        + _SOCKID_TAIL.pack(0, _NOCOOKIE, _NOCOOKIE)
    )
    header = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, 1, 0)
    return header + body


def _diag_lookup(family: int, host: str, port: int) -> int | None:
    owner = _diag_query(family, host, port)
    return None if owner is None else owner.uid


def _diag_query(family: int, host: str, port: int) -> Owner | None:
    # A socket per question: a cached one would be shared with forked
    # children, and replies could reach the wrong process.
    netlink = _csocket.socket(_csocket.AF_NETLINK, _csocket.SOCK_RAW | _csocket.SOCK_CLOEXEC,
                              _NETLINK_SOCK_DIAG)
    try:
        netlink.sendto(_request(family, host, port), (0, 0))
        reply = netlink.recv(8192)
    finally:
        netlink.close()
    _length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(reply)
    if kind == _NLMSG_ERROR:
        (err,) = struct.unpack_from("=i", reply, _NLMSGHDR.size)
        if err == 0 or -err == 2:  # ENOENT: nothing listens there
            return None
        raise OSError(-err, "sock_diag lookup failed")
    _fam, state = _MSG_STATE.unpack_from(reply, _NLMSGHDR.size)
    if state != _TCP_LISTEN:
        return None
    (uid,) = struct.unpack_from("=I", reply, _NLMSGHDR.size + _MSG_UID_OFFSET)
    return Owner(int(uid), _rcvbuf(reply, _NLMSGHDR.size + _MSG_SIZE))


def _rcvbuf(reply: bytes, offset: int) -> int | None:
    """SK_MEMINFO_RCVBUF from the reply's INET_DIAG_SKMEMINFO attribute, if present."""
    while offset + 4 <= len(reply):
        length, kind = struct.unpack_from("=HH", reply, offset)
        if length < 4:
            return None
        if kind == _INET_DIAG_SKMEMINFO and length >= 4 + 8:
            (rcvbuf,) = struct.unpack_from("=I", reply, offset + 4 + 4)
            return int(rcvbuf)
        offset += (length + 3) & ~3
    return None


def _proc_lookup(family: int, host: str, port: int) -> int | None:
    """The same answer from /proc/net/tcp{,6}: exact bind first, then wildcard.

    An IPv4 address is also reached by IPv6 listeners bound to its mapped form
    or to ``::`` (dual-stack; /proc does not say whether one is v6-only, so a
    v6-only ``::`` listener is taken as reaching IPv4 too: the last resort).
    """
    listeners = _proc_listeners(port)
    if family == _stdsocket.AF_INET6:
        order = [_stdsocket.inet_pton(family, host), bytes(16)]
    else:
        v4 = _stdsocket.inet_pton(family, host)
        order = [v4, b"\0" * 10 + b"\xff\xff" + v4, bytes(4), bytes(16)]
    for addr in order:
        if addr in listeners:
            return listeners[addr]
    return None


def _proc_listeners(port: int) -> dict[bytes, int]:
    """{bound address: owner uid} of the TCP listeners on *port*, IPv4 and IPv6."""
    found: dict[bytes, int] = {}
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(path, encoding="ascii") as table:
            next(table)
            for line in table:
                fields = line.split()
                addr_hex, port_hex = fields[1].split(":")
                if int(fields[3], 16) != _TCP_LISTEN or int(port_hex, 16) != port:
                    continue
                # /proc prints each 32-bit word in host byte order.
                raw = bytes.fromhex(addr_hex)
                found[b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))] = int(
                    fields[7])
    return found
