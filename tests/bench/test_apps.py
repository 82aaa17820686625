"""Tests of ``loopfast bench apps``: its options, its JSON, a stdlib pair end to end, and
(stress) every pair under ``loopfast run`` taking the fast path where it should."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loopfast._tools.cli import build_parser, main
from loopfast.bench.apps import PAIRS, AppsConfig, Pair
from loopfast.bench.apps.cli import config_from
from loopfast.bench.apps.launch import VARIANTS, command, listening
from loopfast.bench.apps.runner import run_pair

TINY = ["--repeats", "1", "--seconds", "0.1", "--warmup", "2", "--no-progress"]


def test_bench_apps_options_and_quick() -> None:
    args = build_parser().parse_args(["bench", "apps", "--quick", "--pairs", "redis,aiohttp"])
    assert config_from(args) == AppsConfig(pairs=("redis", "aiohttp"), repeats=1,
                                           seconds=0.3, warmup=20)
    args = build_parser().parse_args(["bench", "apps", "--quick", "--repeats", "3"])
    assert (config_from(args).repeats, config_from(args).pairs) == (3, tuple(PAIRS))
    assert config_from(build_parser().parse_args(["bench", "apps"])) == AppsConfig()
    assert build_parser().parse_args(["bench", "--count", "5"]).suite is None


@pytest.mark.parametrize("bad", [["--pairs", "nginx"], ["--repeats", "0"], ["--seconds", "-1"]])
def test_bench_apps_refuses_bad_options(bad: list[str], capsys: pytest.CaptureFixture[str]) \
        -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", "apps", *bad])
    assert exc.value.code == 2
    assert "bench apps" in capsys.readouterr().err


def test_commands_run_plain_or_under_loopfast_run() -> None:
    assert command("plain", ["x.py", "1"])[1:] == ["x.py", "1"]
    assert command("ring", ["x.py"])[1:] == ["-m", "loopfast", "run", "--transport", "ring",
                                              "--report", "--", "x.py"]
    assert command("stream", ["-m", "uvicorn"])[-3:] == ["--report", "-m", "uvicorn"]


def test_listening_reads_proc_net_tcp(tmp_path: Path) -> None:
    table = tmp_path / "tcp"
    table.write_text(
        "  sl  local_address rem_address   st tx_queue rx_queue\n"
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000\n"
        "   1: 0100007F:1F91 0100007F:9C40 01 00000000:00000000\n")
    assert listening(0x1F90, table)
    assert not listening(0x1F91, table)  # established, not listening
    assert not listening(0x1F90, tmp_path / "absent")


def test_a_pair_whose_package_is_missing_is_skipped() -> None:
    pair = Pair("ghost", "ghost", lambda port: [], "urllib", ("loopfast_no_such_package",))
    result = run_pair(pair, AppsConfig(repeats=1, seconds=0.1))
    assert result.ok and not result.runs["plain"]
    assert result.skipped and "loopfast_no_such_package" in result.skipped
    assert "loopfast[apps]" in result.skipped


def test_the_stdlib_pair_end_to_end_over_the_fast_path(tmp_path: Path) -> None:
    # http.server + urllib needs nothing beyond the standard library.
    target = tmp_path / "apps.json"
    assert main(["bench", "apps", "--pairs", "http.server-urllib", *TINY,
                 "--json", str(target)]) == 0
    document = json.loads(target.read_text())
    assert document["ok"] is True
    assert set(document) >= {"config", "machine", "pairs", "anchors", "started", "seconds"}
    assert document["config"]["pairs"] == ["http.server-urllib"]
    (pair,) = document["pairs"]
    assert (pair["key"], pair["status"], pair["connections"]) == (
        "http.server-urllib", "ok", "per request")
    assert set(pair["variants"]) == set(VARIANTS)
    for name, variant in pair["variants"].items():
        assert len(variant["requests_per_s"]) == 1 and variant["median"] > 0
        if name == "plain":
            assert (variant["path"], variant["vs_plain"]) == (None, 1.0)
        else:
            assert variant["path"] == "fast path" and variant["tcp_connections"] == 0
            assert variant["fast_path_connections"] >= 3  # warm-up requests included


@pytest.mark.stress
@pytest.mark.timeout(120)
@pytest.mark.parametrize("key", list(PAIRS))
def test_each_pair_takes_the_path_it_should(key: str) -> None:
    pair = PAIRS[key]
    if reason := pair.missing():
        pytest.skip(reason)
    result = run_pair(pair, AppsConfig(repeats=1, seconds=0.2, warmup=5))
    assert result.error is None
    for variant in ("ring", "stream"):
        fast, tcp = result.connections(variant)
        if pair.fast_path:
            assert (fast > 0, tcp) == (True, 0), variant
        else:  # a pair that says why it should not: every connection over TCP
            assert (fast, tcp > 0) == (0, True), variant
    assert result.ok
