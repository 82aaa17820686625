"""SPEC F9, the administrator's half: environment and policy file force plain TCP."""

from __future__ import annotations

import logging
import os
import pathlib
import time
from collections.abc import Callable

import pytest

import loopfast
from loopfast.policy import Policy, PolicyError

from .conftest import Pair


def test_switch_off_forces_tcp(make_pair: Callable[..., Pair],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPFAST_FAST_PATH", "off")
    cli, acc = make_pair()
    assert not cli.fast_path_active and not acc.fast_path_active
    cli.sendall(b"x")
    assert acc.recv(1) == b"x"


def test_excluded_port_on_the_client_side(make_server: Callable[..., loopfast.socket],
                                          connect_to: Callable[..., Pair],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    srv = make_server()
    port = srv.getsockname()[1]
    monkeypatch.setenv("LOOPFAST_EXCLUDE_PORTS", f"1-10, {port}")
    cli, acc = connect_to(srv)
    assert not cli.fast_path_active and not acc.fast_path_active


def test_excluded_port_on_the_server_side_publishes_nothing(
        closing: Callable[..., loopfast.socket], connect_to: Callable[..., Pair],
        monkeypatch: pytest.MonkeyPatch) -> None:
    probe = closing(loopfast.create_server(("127.0.0.1", 0)))
    port = probe.getsockname()[1]
    probe.close()
    monkeypatch.setenv("LOOPFAST_EXCLUDE_PORTS", str(port))
    srv = closing(loopfast.create_server(("127.0.0.1", port), fast_path=True))
    monkeypatch.delenv("LOOPFAST_EXCLUDE_PORTS")  # the client alone would take the fast path
    cli, acc = connect_to(srv)
    assert not cli.fast_path_active and not acc.fast_path_active


def test_other_ports_keep_the_fast_path(make_pair: Callable[..., Pair],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPFAST_EXCLUDE_PORTS", "1-1023")
    cli, acc = make_pair()
    assert cli.fast_path_active and acc.fast_path_active


def test_policy_file_is_read_and_re_read(make_pair: Callable[..., Pair], tmp_path: pathlib.Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "policy"
    path.write_text("# loopfast policy\nfast_path = off\n", encoding="utf-8")
    monkeypatch.setenv("LOOPFAST_POLICY_FILE", str(path))
    cli, _ = make_pair()
    assert not cli.fast_path_active
    path.write_text("fast_path = on   # back on\nexclude_ports = 1-1023\n", encoding="utf-8")
    os.utime(path, ns=(1, 10**18))  # a different mtime even within one clock tick
    loopfast.policy.invalidate()  # else seen within policy.RECHECK
    cli, acc = make_pair()
    assert cli.fast_path_active and acc.fast_path_active


def test_unusable_policy_file_fails_closed_and_says_why(
        make_pair: Callable[..., Pair], tmp_path: pathlib.Path,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "policy"
    path.write_text("fast_path = maybe\n", encoding="utf-8")
    monkeypatch.setenv("LOOPFAST_POLICY_FILE", str(path))
    with caplog.at_level(logging.ERROR, logger="loopfast"):
        cli, _ = make_pair()
    assert not cli.fast_path_active
    assert any("fast_path must be on or off" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_unusable_switch_fails_closed(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPFAST_FAST_PATH", value)
    policy = loopfast.policy.current()
    assert not policy.allows(8080)
    assert "LOOPFAST_FAST_PATH" in policy.reason


def test_parse_ports() -> None:
    assert Policy.parse_ports("80, 8000-8002,,") == frozenset({80, 8000, 8001, 8002})
    for bad in ("http", "9-1", "70000", "1-2-3"):
        with pytest.raises(PolicyError):
            Policy.parse_ports(bad)


def test_parse_file_errors_name_the_line() -> None:
    with pytest.raises(PolicyError, match="p:2: unknown key 'speed'"):
        Policy.parse("fast_path = on\nspeed = 11\n", "p")
    with pytest.raises(PolicyError, match="p:1: expected 'key = value'"):
        Policy.parse("fast_path\n", "p")
    policy = Policy.parse("exclude_ports = 22\nexclude_ports = 80\n", "p")
    assert policy.excluded_ports == frozenset({22, 80}) and policy.enabled


def test_a_policy_file_change_applies_within_recheck(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "policy"
    path.write_text("fast_path = on\n", encoding="utf-8")
    monkeypatch.setenv("LOOPFAST_POLICY_FILE", str(path))
    monkeypatch.setattr(loopfast.policy, "RECHECK", 0.2)
    assert loopfast.policy.current().allows(8080)
    path.write_text("fast_path = off\n", encoding="utf-8")
    os.utime(path, ns=(1, 10**18))
    deadline = time.monotonic() + 0.2 + 1.0
    while loopfast.policy.current().allows(8080):
        assert time.monotonic() < deadline, "the change never applied"
        time.sleep(0.02)
