"""Tests of loopfast.bench: statistics by hand, the workload, pinning, children, real runs."""

from __future__ import annotations

import json
import math
import os
import socket
import statistics
import threading
from array import array
from pathlib import Path
from typing import Any

import pytest

from loopfast.bench import ROWS, BenchConfig, run_bench
from loopfast.bench.machine import cpu_model, describe_machine
from loopfast.bench.pinning import PinPlan, plan_pinning
from loopfast.bench.process import Child, ChildError
from loopfast.bench.report import to_json
from loopfast.bench.rows import FastPathMismatchError
from loopfast.bench.stats import Summary, compare, percentile, summarize
from loopfast.bench.workload import MESSAGE_SIZE, EchoMismatchError, echo, measure

# --- statistics, against values computed by hand --------------------------------------


def test_summary_of_the_textbook_sample() -> None:
    # mean (2+4+4+4+5+5+7+9)/8 = 5; squared deviations 9+1+1+1+0+0+4+16 = 32; 32/8 = 4.
    s = summarize([9, 2, 5, 4, 4, 7, 4, 5])
    assert (s.count, s.mean_ns, s.stdev_ns, s.min_ns, s.max_ns) == (8, 5.0, 2.0, 2, 9)
    # nearest rank: p50 -> rank ceil(4) = 4 -> 4; p99 -> ceil(7.92) = 8 -> 9.
    assert (s.p50_ns, s.p99_ns, s.p999_ns) == (4, 9, 9)
    assert s.round_trips_per_s == pytest.approx(2e8)  # 1 / 5 ns


def test_summary_of_four_samples() -> None:
    s = summarize([40_000, 10_000, 30_000, 20_000])
    assert s.mean_ns == 25_000.0
    assert s.stdev_ns == pytest.approx(math.sqrt(125_000_000))  # (225+25+25+225)e6 / 4
    assert s.p50_ns == 20_000  # rank ceil(2) = 2
    assert s.round_trips_per_s == pytest.approx(40_000.0)


def test_stdev_is_the_population_one() -> None:
    data = [13, 1, 8, 21, 5, 3, 2, 1, 34]
    assert summarize(data).stdev_ns == pytest.approx(statistics.pstdev(data))


def test_percentiles_of_one_to_a_thousand_are_exact_ranks() -> None:
    data = list(range(1, 1001))
    assert percentile(data, 50) == 500
    assert percentile(data, 99) == 990
    assert percentile(data, 99.9) == 999  # 99.9 / 100 * 1000 is 999.0000000000001 in floats
    assert percentile(data, 100) == 1000
    assert percentile(data, 0.05) == 1


def test_percentile_and_summary_refuse_nonsense() -> None:
    with pytest.raises(ValueError):
        summarize([])
    with pytest.raises(ValueError):
        percentile([1, 2], 0)
    with pytest.raises(ValueError):
        percentile([1, 2], 100.5)


def test_comparison_with_the_baseline() -> None:
    base = Summary(4, 20_000.0, 4_000.0, 1, 1, 1, 1, 1)
    row = Summary(4, 15_000.0, 1_000.0, 1, 1, 1, 1, 1)
    c = compare(row, base)
    assert c.latency_reduction == pytest.approx(0.25)  # (20 - 15) / 20
    assert c.jitter_reduction == pytest.approx(0.75)  # (4 - 1) / 4
    assert c.ratio_to_baseline == pytest.approx(0.75)  # 15 / 20
    slower = compare(Summary(4, 30_000.0, 6_000.0, 1, 1, 1, 1, 1), base)
    assert slower.latency_reduction == pytest.approx(-0.5)
    assert slower.jitter_reduction == pytest.approx(-0.5)
    assert compare(row, Summary(4, 20_000.0, 0.0, 1, 1, 1, 1, 1)).jitter_reduction is None


# --- the workload, in-process over a socketpair ----------------------------------------


def test_measure_against_echo_records_one_rtt_per_round_trip() -> None:
    a, b = socket.socketpair()
    with a, b:
        counted: list[int] = []
        echoer = threading.Thread(target=lambda: counted.append(echo(b)))
        echoer.start()
        samples: array[int] = array("q")
        measure(a, 0, 10, None)
        measure(a, 10, 200, samples)
        a.shutdown(socket.SHUT_WR)
        echoer.join(10)
    assert counted == [210]
    assert len(samples) == 200
    assert all(x > 0 for x in samples)


def _reply(peer: socket.socket, mangle: bool) -> None:
    """Read one message; send back a corrupted echo, or only part of it; then close."""
    data = b""
    while len(data) < MESSAGE_SIZE:
        data += peer.recv(MESSAGE_SIZE - len(data))
    peer.sendall(data[:-1] + bytes([data[-1] ^ 0xFF]) if mangle else data[:10])
    peer.shutdown(socket.SHUT_WR)


@pytest.mark.parametrize("mangle", [True, False], ids=["corrupt-echo", "close-mid-message"])
def test_measure_refuses_a_bad_echo(mangle: bool) -> None:
    a, b = socket.socketpair()
    with a, b:
        peer = threading.Thread(target=_reply, args=(b, mangle))
        peer.start()
        with pytest.raises(EchoMismatchError):
            measure(a, 0, 1, None)
        peer.join(10)


# --- pinning and the machine ------------------------------------------------------------


def test_pinning_plans() -> None:
    assert plan_pinning("split", [0, 1]) == PinPlan("split", 0, 1)
    assert plan_pinning("split", [3, 2, 5]) == PinPlan("split", 2, 3)
    assert plan_pinning("same", [1, 0]) == PinPlan("same", 0, 0)
    assert plan_pinning("none") == PinPlan("none", None, None)
    alone = plan_pinning("split", [4])
    assert (alone.mode, alone.sender_cpu, alone.echoer_cpu) == ("same", 4, 4)
    assert alone.note is not None and "only CPU 4" in alone.note
    with pytest.raises(ValueError):
        plan_pinning("diagonal")


def test_machine_description(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: X\nmodel name\t: Test CPU @ 3.2GHz\n")
    assert cpu_model(info) == "Test CPU @ 3.2GHz"
    m = describe_machine()
    assert m.cpu_count >= 1 and m.cpus_allowed and m.kernel and m.python
    assert m.cpus_allowed == sorted(os.sched_getaffinity(0))


# --- the child processes -----------------------------------------------------------------


def _echo_spec(row: str) -> dict[str, Any]:
    return {"role": "echo", "row": row, "cpu": None, "parent": os.getpid(), "timeout": 20}


def test_child_reports_its_error() -> None:
    with Child("echoer", _echo_spec("no-such-row")) as child, pytest.raises(ChildError) as err:
        child.expect("listening", 20)
    assert "echoer: KeyError" in str(err.value)


def test_child_silence_is_a_timeout_not_a_hang() -> None:
    with Child("echoer", _echo_spec("tcp")) as child:
        child.expect("listening", 20)
        with pytest.raises(ChildError, match="no word from the child"):
            child.expect("accepted", 0.3)


class _Conn:
    def __init__(self, active: bool | None) -> None:
        if active is not None:
            self.fast_path_active = active


def test_fast_path_rows_refuse_the_wrong_fast_path_state() -> None:
    fast, off, tcp = ROWS["fastpath"], ROWS["fastpath-off"], ROWS["tcp"]
    assert fast.check(_Conn(True), "sender") is True  # type: ignore[arg-type]
    assert off.check(_Conn(False), "echoer") is False  # type: ignore[arg-type]
    assert tcp.check(_Conn(None), "sender") is None  # type: ignore[arg-type]
    with pytest.raises(FastPathMismatchError, match="is False on the sender"):
        fast.check(_Conn(False), "sender")  # type: ignore[arg-type]
    with pytest.raises(FastPathMismatchError, match="is True on the echoer"):
        off.check(_Conn(True), "echoer")  # type: ignore[arg-type]
    with pytest.raises(FastPathMismatchError, match="no fast_path_active"):
        fast.check(_Conn(None), "echoer")  # type: ignore[arg-type]


def test_config_validation_and_baseline_first() -> None:
    assert BenchConfig(rows=("unix", "tcp", "unix")).row_keys() == ["tcp", "unix"]
    assert BenchConfig(rows=("unix",)).row_keys() == ["tcp", "unix"]
    for bad in ({"rows": ("nope",)}, {"count": 0}, {"warmup": -1}, {"pin": "x"},
                {"timeout": 0.0}):
        with pytest.raises(ValueError):
            BenchConfig(**bad)


# --- a short real run of every row --------------------------------------------------------

COUNT = 300


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    result = run_bench(BenchConfig(count=COUNT, warmup=30, timeout=15))
    loaded: dict[str, Any] = json.loads(json.dumps(to_json(result)))  # well-formed JSON
    return loaded


def test_document_describes_the_run(document: dict[str, Any]) -> None:
    assert document["config"]["rows"] == list(ROWS)
    assert document["baseline"] == "tcp"
    assert document["machine"]["cpu_model"] and document["machine"]["python"]
    assert document["pinning"]["mode"] in ("split", "same")
    assert set(document["ratio_to_baseline"]) == set(ROWS)


@pytest.mark.parametrize("key", list(ROWS))
def test_row_is_measured(document: dict[str, Any], key: str) -> None:
    row = next(r for r in document["rows"] if r["key"] == key)
    assert row["ok"], f"row {key} failed: {row['error']}"
    assert row["count"] == COUNT
    for name in ("mean_us", "stdev_us", "min_us", "max_us", "p50_us", "p99_us", "p999_us",
                 "round_trips_per_s", "measured_round_trips_per_s", "ratio_to_baseline",
                 "elapsed_s"):
        assert isinstance(row[name], float) and row[name] > 0, name
    assert row["min_us"] <= row["p50_us"] <= row["p99_us"] <= row["p999_us"] <= row["max_us"]
    assert isinstance(row["latency_reduction"], float)
    assert row["ratio_to_baseline"] == pytest.approx(1 - row["latency_reduction"])
    assert document["ratio_to_baseline"][key] == row["ratio_to_baseline"]
    expected = ROWS[key].fast_path
    assert row["fast_path_active"] == {"sender": expected, "echoer": expected}
    assert set(row["cpus"]) == {"sender", "echoer"}
