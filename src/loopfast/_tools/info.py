"""``loopfast info``: this machine's TCP settings as ``netsh interface tcp show global`` shows them.

Windows keeps the receive-window behaviours as global settings (autotuning
level, RFC 1323 window scaling) that SIO_SET_COMPATIBILITY_MODE overrides per
socket. On Linux they are sysctls; this report names each one beside the
Windows setting it stands for, measures the window scale real loopback
connections get (default, and under each AutoTuning target), and says whether
the fast path's building blocks are usable here: the rendezvous and owner check
every fast-path connection needs, and what the ring transport adds (a sealed
memfd, AF_UNIX socket pairs for its wake-ups, the C core).
"""

from __future__ import annotations

import _socket as _csocket
import dataclasses
import fcntl
import os
import socket as _stdsocket
from typing import Any

from .. import policy
from .._core import ringcore
from .._core.sockets import socket
from .._core.stdlib import StdSocket
from .._winsock import tcpinfo
from ..compat import WSACompatibilityMode
from ..constants import NTDDI_VISTA, NTDDI_WINXP, WsaBehaviorAutoTuning

__all__ = ["Report", "Row", "default_wscale", "gather", "measured_wscale", "render"]

_SYSCTL = "/proc/sys/net/"
_MAX_WSCALE = 14  # RFC 7323


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the report: Windows' name for it, the value, where it comes from."""

    name: str
    value: str
    source: str = ""


@dataclasses.dataclass(frozen=True)
class Report:
    """The sections of ``loopfast info``, in order."""

    sections: tuple[tuple[str, tuple[Row, ...]], ...]

    def to_json(self) -> dict[str, Any]:
        """The report as plain data: {section: [{name, value, source}, ...]}."""
        return {title: [dataclasses.asdict(row) for row in rows] for title, rows in self.sections}


def _sysctl(name: str) -> str | None:
    try:
        with open(_SYSCTL + name.replace(".", "/"), encoding="ascii") as f:
            return " ".join(f.read().split())
    except OSError:
        return None


def _sysctl_int(name: str, field: int = 0) -> int | None:
    text = _sysctl(name)
    try:
        return int(text.split()[field]) if text else None
    except (ValueError, IndexError):
        return None


def default_wscale() -> int:
    """The window scale Linux offers for a socket with no clamp and no SO_RCVBUF.

    ``tcp_select_initial_window``: ilog2(max(tcp_rmem[2], rmem_max)) - 15, within 0..14;
    0 when window scaling is off.
    """
    if _sysctl_int("ipv4.tcp_window_scaling") == 0:
        return 0
    space = max(_sysctl_int("ipv4.tcp_rmem", 2) or 0, _sysctl_int("core.rmem_max") or 0)
    return min(max(space.bit_length() - 1 - 15, 0), _MAX_WSCALE)


def measured_wscale(mode: WSACompatibilityMode | None = None, timeout: float = 2.0) -> int:
    """The ``tcpi_rcv_wscale`` a client gets on a real 127.0.0.1 connection.

    Raises:
        OSError: when no loopback connection can be made.
    """
    with socket(_stdsocket.AF_INET, _stdsocket.SOCK_STREAM) as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        srv.settimeout(timeout)
        with socket(_stdsocket.AF_INET, _stdsocket.SOCK_STREAM,
                    compatibility_mode=mode) as cli:
            cli.settimeout(timeout)
            cli.connect(srv.getsockname())
            conn, _ = srv.accept()
            with conn:
                return tcpinfo.read(cli).rcv_wscale


def _flag(name: str, on: str = "enabled", off: str = "disabled") -> Row:
    value = _sysctl_int(name)
    text = "unknown" if value is None else (off if value == 0 else on)
    return Row("", text, f"net.{name} = {value}")


def _named(label: str, row: Row) -> Row:
    return dataclasses.replace(row, name=label)


def _tcp_rows() -> tuple[Row, ...]:
    moderate = _sysctl_int("ipv4.tcp_moderate_rcvbuf")
    level = {0: "disabled", 1: "normal"}.get(moderate or 0, "unknown")
    rmem = _sysctl("ipv4.tcp_rmem") or "unknown"
    ecn = _sysctl_int("ipv4.tcp_ecn")
    return (
        Row("Receive Window Auto-Tuning Level", level if moderate is not None else "unknown",
            f"net.ipv4.tcp_moderate_rcvbuf = {moderate}"),
        _named("Window Scaling (RFC 1323)", _flag("ipv4.tcp_window_scaling")),
        _named("RFC 1323 Timestamps", _flag("ipv4.tcp_timestamps")),
        Row("Receive buffer min/default/max", rmem, "net.ipv4.tcp_rmem (autotuning range)"),
        Row("Largest SO_RCVBUF", str(_sysctl_int("core.rmem_max")), "net.core.rmem_max"),
        Row("Default receive buffer (non-TCP)", str(_sysctl_int("core.rmem_default")),
            "net.core.rmem_default"),
        Row("Window advertised from buffer", str(_sysctl_int("ipv4.tcp_adv_win_scale")),
            "net.ipv4.tcp_adv_win_scale"),
        Row("Add-On Congestion Control Provider",
            _sysctl("ipv4.tcp_congestion_control") or "unknown",
            "net.ipv4.tcp_congestion_control"),
        Row("ECN Capability",
            {0: "disabled", 1: "enabled", 2: "answers only"}.get(ecn or 0, "other"),
            f"net.ipv4.tcp_ecn = {ecn}"),
        Row("Fast Open", str(_sysctl_int("ipv4.tcp_fastopen")), "net.ipv4.tcp_fastopen"),
        Row("Max SYN Retransmissions", str(_sysctl_int("ipv4.tcp_syn_retries")),
            "net.ipv4.tcp_syn_retries"),
    )


def _scale_rows(measure: bool) -> tuple[Row, ...]:
    rows = [Row("Window scale, default socket (computed)", str(default_wscale()),
                "ilog2(max(tcp_rmem[2], rmem_max)) - 15")]
    if not measure:
        return tuple(rows)
    for label, mode in (("default socket", None),
                        ("AutoTuning Vista", WSACompatibilityMode(WsaBehaviorAutoTuning,
                                                                  NTDDI_VISTA)),
                        ("AutoTuning pre-Vista", WSACompatibilityMode(WsaBehaviorAutoTuning,
                                                                      NTDDI_WINXP))):
        try:
            value = str(measured_wscale(mode))
        except OSError as exc:
            value = f"not measured ({exc})"
        rows.append(Row(f"Window scale, {label} (measured)", value,
                        "tcpi_rcv_wscale on 127.0.0.1"))
    return tuple(rows)


def _probe(check: Any) -> str:
    try:
        check()
    except (OSError, AttributeError) as exc:
        return f"unavailable ({exc})"
    return "available"


def _abstract_unix() -> None:
    with StdSocket(_stdsocket.AF_UNIX, _stdsocket.SOCK_STREAM) as s:
        s.bind(f"\0loopfast/info/{os.getpid()}")


def _sealed_memfd() -> None:
    fd = os.memfd_create("loopfast-info", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                    fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
    finally:
        os.close(fd)


def _socket_pair() -> None:
    r, w = _csocket.socketpair(_csocket.AF_UNIX, _csocket.SOCK_STREAM)
    r.close()
    w.close()


def _c_core() -> None:
    if ringcore.missing is not None:
        raise OSError(ringcore.missing)


def _readable(path: str) -> None:
    with open(path, "rb") as f:
        f.read(1)


# Every fast-path connection needs the rendezvous and the owner check; the ring
# transport also needs a sealed memfd (the rings), one AF_UNIX socket pair per
# side (its wake-ups, what select/poll see) and the C core (copies, atomics, a
# shared futex that parked receivers sleep on). Without the ring's parts a
# connection uses the stream transport.
_FAST_PATH = (
    ("Abstract AF_UNIX names", _abstract_unix, "rendezvous"),
    ("/proc/net/tcp readable", lambda: _readable("/proc/net/tcp"), "owner check (F10)"),
    ("/proc/net/tcp6 readable", lambda: _readable("/proc/net/tcp6"), "owner check (F10), IPv6"),
)
_RING = (
    ("memfd_create, sealed", _sealed_memfd, "ring transport: shared-memory rings"),
    ("AF_UNIX socket pairs", _socket_pair, "ring transport: wake-ups, one pair per side"),
    ("C core loopfast._ring", _c_core, "ring transport: copies, atomics, futex parking"),
)


def _fast_path_rows() -> tuple[Row, ...]:
    base = [Row(name, _probe(check), use) for name, check, use in _FAST_PATH]
    ring = [Row(name, _probe(check), use) for name, check, use in _RING]
    ok = all(row.value == "available" for row in base[:2])  # IPv6's table: IPv6 only
    ring_ok = all(row.value == "available" for row in ring)
    current = policy.current()
    rule = "on" if current.enabled else f"off ({current.reason or 'policy'})"
    if current.enabled and current.excluded_ports:
        rule += f", except ports {', '.join(map(str, sorted(current.excluded_ports)))}"
    works = ok and current.enabled
    return (*base, *ring,
            Row("Policy", rule, "LOOPFAST_FAST_PATH / LOOPFAST_EXCLUDE_PORTS / policy file"),
            Row("Loopback fast path", "available" if works else "unavailable",
                "rendezvous, owner check, policy"),
            Row("Ring transport", "available" if works and ring_ok
                else "unavailable (stream transport only)" if works else "unavailable",
                "the fast path and the ring transport's rows"))


def gather(measure: bool = True) -> Report:
    """Collect the report; *measure* makes three short loopback connections."""
    return Report((
        ("TCP Global Parameters (Linux equivalents)", _tcp_rows()),
        ("Receive window scale", _scale_rows(measure)),
        ("Loopback fast path", _fast_path_rows()),
    ))


def render(report: Report) -> str:
    """The report as text, in netsh's ``Name : value`` layout with the source beside it."""
    every = [row for _, rows in report.sections for row in rows]
    width = max(len(row.name) for row in every) + 2
    values = min(max(len(row.value) for row in every), 24)
    lines: list[str] = []
    for title, rows in report.sections:
        lines += ["", title, "-" * max(len(title), 46)]
        for row in rows:
            source = f"  [{row.source}]" if row.source else ""
            lines.append(f"{row.name:<{width}}: {row.value:<{values}}{source}".rstrip())
    return "\n".join(lines[1:]) + "\n"
