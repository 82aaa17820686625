"""_tools/info.py, ``loopfast info`` (SPEC C8): the system-wide equivalents of Windows' global
TCP settings."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from loopfast._tools import info as _info
from loopfast._tools.cli import main


def _sysctl(path: str) -> str:
    with open("/proc/sys/net/" + path, encoding="ascii") as f:
        return " ".join(f.read().split())


def test_text_report_names_the_sysctls_and_their_values(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    moderate = _sysctl("ipv4/tcp_moderate_rcvbuf")
    assert "Receive Window Auto-Tuning Level" in out
    assert f"net.ipv4.tcp_moderate_rcvbuf = {moderate}" in out
    assert ("normal" if moderate == "1" else "disabled") in out
    assert f"net.ipv4.tcp_window_scaling = {_sysctl('ipv4/tcp_window_scaling')}" in out
    assert _sysctl("ipv4/tcp_rmem") in out and _sysctl("core/rmem_max") in out
    assert "Loopback fast path" in out and "memfd_create" in out
    assert "AF_UNIX socket pairs" in out and "wake-ups" in out and "eventfd" not in out


def test_measured_scales_match_the_kernel_formula_and_the_modes() -> None:
    report = _info.gather().to_json()
    rows = {row["name"]: row["value"] for row in report["Receive window scale"]}
    assert rows["Window scale, default socket (computed)"] == str(_info.default_wscale())
    assert rows["Window scale, default socket (measured)"] == str(_info.default_wscale())
    assert rows["Window scale, AutoTuning Vista (measured)"] == "2"
    assert rows["Window scale, AutoTuning pre-Vista (measured)"] == "0"


def test_fast_path_building_blocks_are_reported_available_here() -> None:
    rows = {row["name"]: row["value"] for row in _info.gather(measure=False)
            .to_json()["Loopback fast path"]}
    for name in ("Abstract AF_UNIX names", "/proc/net/tcp readable", "memfd_create, sealed",
                 "AF_UNIX socket pairs"):
        assert rows[name] == "available"
    assert rows["Policy"] == "on" and rows["Loopback fast path"] == "available"
    if _info.ringcore.missing is None:  # a build with the C core, as make test's
        assert rows["C core loopfast._ring"] == rows["Ring transport"] == "available"


def test_without_the_c_core_only_the_ring_transport_is_unavailable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_info.ringcore, "missing", "the C core is not built (test)")
    rows = {row["name"]: row["value"] for row in _info.gather(measure=False)
            .to_json()["Loopback fast path"]}
    assert rows["C core loopfast._ring"] == "unavailable (the C core is not built (test))"
    assert rows["Loopback fast path"] == "available"
    assert rows["Ring transport"] == "unavailable (stream transport only)"


def test_policy_off_shows_the_fast_path_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPFAST_FAST_PATH", "off")
    rows = {row["name"]: row["value"] for row in _info.gather(measure=False)
            .to_json()["Loopback fast path"]}
    assert rows["Policy"].startswith("off") and rows["Loopback fast path"] == "unavailable"
    assert rows["Ring transport"] == "unavailable"


def test_json_through_python_dash_m() -> None:
    done = subprocess.run([sys.executable, "-m", "loopfast", "info", "--json", "--no-measure"],
                          capture_output=True, text=True, timeout=30, check=True)
    document = json.loads(done.stdout)
    assert set(document) == {"TCP Global Parameters (Linux equivalents)",
                             "Receive window scale", "Loopback fast path"}
    assert all({"name", "value", "source"} == set(row) for rows in document.values()
               for row in rows)
