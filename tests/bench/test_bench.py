"""Tests of loopfast.bench: statistics by hand, the workload, pinning, children, real runs."""

from __future__ import annotations

import json
import math
import os
import socket
import statistics
import subprocess
import sys
import threading
import types
from array import array
from pathlib import Path
from typing import Any

import pytest

from loopfast.bench import ROWS, BenchConfig, BenchResult, RowResult, run_bench
from loopfast.bench.channels import AdaptiveChannel, SpinChannel
from loopfast.bench.conn import Conn
from loopfast.bench.distribution import Distribution, summary_of
from loopfast.bench.distribution import main as distribution_main
from loopfast.bench.machine import cpu_model, describe_machine
from loopfast.bench.peers import ZmqRow
from loopfast.bench.pinning import PinPlan, plan_pinning
from loopfast.bench.plot import write_plot
from loopfast.bench.process import Child, ChildError
from loopfast.bench.report import to_json
from loopfast.bench.rows import FastPathMismatchError
from loopfast.bench.stats import Summary, compare, percentile, summarize
from loopfast.bench.workload import (
    MESSAGE_SIZE,
    EchoMismatchError,
    drain,
    echo,
    measure,
    pour,
)

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


def _conn(active: bool | None, transport: str | None = None) -> Conn:
    handle = types.SimpleNamespace()
    if active is not None:
        handle.fast_path_active = active
        handle.fast_path_transport = transport
    return Conn(handle, handle, lambda: None, lambda: None)


def test_fast_path_rows_refuse_the_wrong_fast_path_state() -> None:
    ring, off, tcp, stream = (ROWS[k] for k in ("ring-poll", "off-wait", "tcp", "stream"))
    assert ring.check(_conn(True, "ring"), "client") is True
    assert stream.check(_conn(True, "stream"), "client") is True
    assert off.check(_conn(False), "server") is False
    assert tcp.check(_conn(None), "client") is None
    with pytest.raises(FastPathMismatchError, match="is False on the client"):
        ring.check(_conn(False), "client")
    with pytest.raises(FastPathMismatchError, match="is True on the server"):
        off.check(_conn(True), "server")
    with pytest.raises(FastPathMismatchError, match="no fast_path_active"):
        ring.check(_conn(None), "server")
    with pytest.raises(FastPathMismatchError, match="transport is 'stream'"):
        ring.check(_conn(True, "stream"), "server")


def test_config_validation_and_baseline_first() -> None:
    assert BenchConfig(rows=("unix", "tcp", "unix")).row_keys() == ["tcp", "unix"]
    assert BenchConfig(rows=("unix",)).row_keys() == ["tcp", "unix"]
    assert BenchConfig(rows=("ring-poll", "mp-pipe")).row_keys("setup") == ["tcp"]
    assert BenchConfig(modes=("idle", "echo")).mode_names() == ["echo", "idle"]
    for bad in ({"rows": ("nope",)}, {"count": 0}, {"warmup": -1}, {"pin": "x"},
                {"timeout": 0.0}, {"modes": ("fast",)}, {"modes": ()}, {"size": 0},
                {"duration": 0.0}, {"idle": 0}):
        with pytest.raises(ValueError):
            BenchConfig(**bad)


def test_row_kinds_and_styles() -> None:
    kinds = {key: (getattr(row, "style", None), getattr(row, "transport", None))
             for key, row in ROWS.items()}
    assert [k for k in kinds if k.startswith("ring-")] == ["ring-wait", "ring-adaptive",
                                                            "ring-poll"]
    assert [k for k in kinds if k.startswith("off-")] == ["off-wait", "off-adaptive",
                                                           "off-poll"]
    assert kinds["tcp-busy"] == ("poll", None) and kinds["ring-poll"] == ("poll", "ring")
    assert {"mp-pipe", "zmq-ipc"} <= set(ROWS) and next(iter(ROWS)) == "tcp"


def _connect_into(out: list[Conn], row: Any, address: Any) -> None:
    out.append(row.connect(address, 10))


def test_ring_styles_are_set_on_both_connected_ends() -> None:
    for key, expected in (("ring-wait", 0), ("ring-poll", 1_000_000), ("ring-adaptive", -1)):
        row = ROWS[key]
        listener, address = row.listen()
        with listener:
            client: list[Conn] = []
            t = threading.Thread(target=_connect_into, args=(client, row, address))
            t.start()
            server = row.accept(listener, 10)
            t.join(10)
        with server, client[0]:
            for end in (server, client[0]):
                assert end.handle.fast_path_transport == "ring"
                assert end.handle._state.link.channel.busy_poll_us == expected, key


def test_kernel_completion_styles_over_a_socketpair() -> None:
    a, b = socket.socketpair()
    with a, b:
        for channel in (SpinChannel(a), AdaptiveChannel(a, budget_ns=1000)):
            buf = bytearray(8)
            threading.Timer(0.05, b.sendall, (b"12345678",)).start()
            assert channel.recv_into(buf, 8) == 8 and buf == b"12345678"
        b.shutdown(socket.SHUT_WR)
        assert SpinChannel(a).recv_into(bytearray(8), 8) == 0


def test_pour_and_drain_count_every_byte() -> None:
    a, b = socket.socketpair()
    with a, b:
        got: list[tuple[int, int, int, int]] = []
        reader = threading.Thread(target=lambda: got.append(drain(b, 4096)))
        reader.start()
        sent = pour(a, 4096, 20_000_000)
        a.shutdown(socket.SHUT_WR)
        reader.join(10)
    total, first_bytes, first, last = got[0]
    assert sent > 0 and sent % 4096 == 0 and total == sent
    assert 0 < first_bytes <= 4096 and last >= first > 0


def test_idle_readings_of_a_process_without_rings() -> None:
    # A fresh interpreter: this one may keep arenas of earlier tests' connections mapped.
    code = ("import json; from loopfast.bench.idle import memory_kib, open_fds; "
            "print(json.dumps({**memory_kib(), 'fds': open_fds()}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    reading = json.loads(done.stdout)
    assert reading["rss_kib"] > 1000 and reading["ring_rss_kib"] == 0
    assert reading["fds"] >= 3


def test_plot_unavailable_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import loopfast.bench.plot as plot

    monkeypatch.setattr(plot, "plot_available", lambda: "--plot needs matplotlib")
    with pytest.raises(plot.PlotUnavailableError, match="matplotlib"):
        plot.write_plot(None, "x.png")  # type: ignore[arg-type]


def test_an_absent_peer_is_skipped_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ROWS, "zmq-ipc", ZmqRow(module="loopfast_no_such_module"))
    result = run_bench(BenchConfig(rows=("zmq-ipc",), modes=("echo", "throughput"), count=50,
                                   warmup=5, duration=0.05, timeout=15))
    assert result.ok
    skipped = [row for row in result.rows if row.key == "zmq-ipc"]
    assert [row.mode for row in skipped] == ["echo", "throughput"]
    assert all(row.skipped and "pyzmq is not installed" in row.skipped for row in skipped)
    document = to_json(result)
    zmq = document["rows"][1]
    assert (zmq["status"], zmq["ok"], zmq["mean_us"]) == ("skipped", False, None)
    assert "pyzmq is not installed" in zmq["skipped"]
    assert document["modes"]["throughput"]["rows"][1]["status"] == "skipped"


# --- the stream distribution (python -m loopfast.bench.distribution) ---------------------


def _streamed(rate: float) -> RowResult:
    usage = {"voluntary_csw": 2, "involuntary_csw": 1, "user_s": 0.25, "sys_s": 0.25}
    return RowResult("tcp", "stdlib TCP blocking", "throughput",
                     figures={"mb_per_s": rate, "bytes": 10_000_000, "span_s": 0.5,
                              "sender_usage": usage, "receiver_usage": usage})


def test_distribution_points_are_nearest_ranks() -> None:
    rates = [float(r) for r in range(20, 0, -1)]
    result = Distribution(BenchConfig(modes=("throughput",)), 20,
                          {"tcp": [*map(_streamed, rates), RowResult("tcp", "t", error="boom")]})
    s = summary_of(result, "tcp")
    # 20 samples: p10 is rank 2, the median rank 10, p90 rank 18.
    assert (s["min"], s["p10"], s["median"], s["p90"], s["max"]) == (1, 2, 10, 18, 20)
    assert (s["runs"], s["failed"]) == (20, 1) and not result.ok
    assert s["mb_per_cpu_s"] == 10.0  # 10 MB over 1 CPU-second (both ends, user + sys)
    assert s["sender_voluntary_csw_per_mb"] == 0.2


def test_distribution_runs_each_row_and_keeps_every_sample(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = "tcp,ring-adaptive" if not ROWS["ring-adaptive"].optional else "tcp,stream"
    target = tmp_path / "distribution.json"
    assert distribution_main(["--runs", "3", "--duration", "0.05", "--size", "4096",
                              "--rows", rows, "--timeout", "15", "--json", str(target)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "3 runs per row, interleaved" in lines[0]
    for word in ("min", "p10", "median", "p90", "max", "MB/CPU-s"):
        assert word in lines[2]
    table = {line.split("  ")[1]: line for line in lines[4:6]}
    assert set(table) == {ROWS[key].label for key in rows.split(",")}
    assert lines[6] == "sorted samples, GB/s:" and len(lines[7].split()) == 3 + 3
    document = json.loads(target.read_text())
    assert document["ok"] and document["config"]["runs"] == 3
    assert [row["key"] for row in document["rows"]] == rows.split(",")
    for row in document["rows"]:
        assert row["runs"] == 3 and row["failed"] == 0
        assert row["min"] <= row["p10"] <= row["median"] <= row["p90"] <= row["max"]
        assert [sample["run"] for sample in row["samples"]] == [0, 1, 2]
        for sample in row["samples"]:
            assert sample["mb_per_s"] > 0 and sample["bytes"] > 0
            assert sample["receiver_usage"]["user_s"] >= 0
            assert set(sample["sender_usage"]) == {"voluntary_csw", "involuntary_csw",
                                                   "user_s", "sys_s"}


# --- a short real run of every row --------------------------------------------------------

COUNT = 300
SMALL = BenchConfig(count=COUNT, warmup=30, timeout=15, duration=0.1, setup_count=30,
                    connections=4, rounds=10, idle=40)


@pytest.fixture(scope="module")
def run() -> tuple[BenchResult, dict[str, Any]]:
    result = run_bench(SMALL)
    loaded: dict[str, Any] = json.loads(json.dumps(to_json(result)))  # well-formed JSON
    return result, loaded


@pytest.fixture(scope="module")
def document(run: tuple[BenchResult, dict[str, Any]]) -> dict[str, Any]:
    return run[1]


def _ran(row: dict[str, Any]) -> bool:
    if row["status"] == "skipped":
        assert ROWS[row["key"]].optional and row["skipped"]
        return False
    assert row["ok"], f"row {row['key']} failed: {row['error']}"
    return True


def test_document_describes_the_run(document: dict[str, Any]) -> None:
    assert document["config"]["rows"] == list(ROWS)
    assert document["config"]["modes"] == ["echo", "throughput", "setup", "many", "idle"]
    assert document["baseline"] == "tcp"
    machine = document["machine"]
    assert machine["cpu_model"] and machine["python"] and machine["kernel"]
    assert machine["cpu_count"] >= 1
    assert document["pinning"]["mode"] in ("split", "same")
    assert set(document["ratio_to_baseline"]) == set(ROWS)
    assert document["ok"] is True


@pytest.mark.parametrize("key", list(ROWS))
def test_row_is_measured(document: dict[str, Any], key: str) -> None:
    row = next(r for r in document["rows"] if r["key"] == key)
    if not _ran(row):
        return
    assert row["count"] == COUNT
    for name in ("mean_us", "stdev_us", "min_us", "max_us", "p50_us", "p99_us", "p999_us",
                 "round_trips_per_s", "measured_round_trips_per_s", "ratio_to_baseline",
                 "elapsed_s"):
        assert isinstance(row[name], float) and row[name] > 0, name
    assert row["min_us"] <= row["p50_us"] <= row["p99_us"] <= row["p999_us"] <= row["max_us"]
    assert isinstance(row["latency_reduction"], float)
    assert row["ratio_to_baseline"] == pytest.approx(1 - row["latency_reduction"])
    assert document["ratio_to_baseline"][key] == row["ratio_to_baseline"]
    expected = getattr(ROWS[key], "fast_path", None)
    assert row["fast_path_active"] == {"client": expected, "server": expected}
    assert set(row["cpus"]) == {"client", "server"}


@pytest.mark.parametrize("mode,figure", [("throughput", "mb_per_s"),
                                         ("setup", "connections_per_s"),
                                         ("many", "round_trips_per_s")])
def test_mode_rows_are_measured(document: dict[str, Any], mode: str, figure: str) -> None:
    section = document["modes"][mode]
    assert section["rate"] == figure
    keys = [row["key"] for row in section["rows"]]
    assert keys == [k for k in ROWS if mode in ROWS[k].modes] and keys[0] == "tcp"
    for row in section["rows"]:
        if _ran(row):
            assert isinstance(row[figure], float) and row[figure] > 0, row["key"]
            assert row["ratio_to_baseline"] == pytest.approx(
                row[figure] / section["rows"][0][figure])
            expected = getattr(ROWS[row["key"]], "fast_path", None)
            assert row["fast_path_active"] == {"client": expected, "server": expected}


def test_idle_connections_are_counted(document: dict[str, Any]) -> None:
    rows = {row["key"]: row for row in document["modes"]["idle"]["rows"]}
    assert set(rows) == {"tcp", "ring-adaptive"}
    for row in rows.values():
        assert row["ok"] and row["reached"] == 40 and row["stopped"] is None
        assert row["peer"]["held"] == 40
        assert row["after"]["fds"] - row["before"]["fds"] == round(40 * row["fds_per_connection"])
    assert rows["tcp"]["fds_per_connection"] == 1.0
    assert rows["ring-adaptive"]["fds_per_connection"] >= 2
    assert rows["ring-adaptive"]["ring_rss_kib_per_connection"] > 0
    assert rows["ring-adaptive"]["nofile"]["after"][0] >= rows["ring-adaptive"]["nofile"][
        "before"][0]


def test_named_ratios(document: dict[str, Any]) -> None:
    ratios = document["ratios"]
    for key in ("ring_poll_vs_tcp_blocking", "ring_poll_vs_tcp_busy",
                "ring_adaptive_vs_tcp_blocking", "ring_wait_vs_unix_blocking",
                "throughput_ring_vs_tcp", "setup_ring_vs_tcp", "many_ring_vs_tcp"):
        assert isinstance(ratios[key], float) and ratios[key] > 0, key
        assert key in document["definitions"]["ratios"]
    rows = {row["key"]: row for row in document["rows"]}
    assert ratios["ring_poll_vs_tcp_busy"] == pytest.approx(
        rows["ring-poll"]["mean_us"] / rows["tcp-busy"]["mean_us"])


def test_plot_is_a_png_that_opens(run: tuple[BenchResult, dict[str, Any]],
                                  tmp_path: Path) -> None:
    from matplotlib import image

    target = tmp_path / "latency.png"
    write_plot(run[0], str(target))
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = image.imread(str(target))
    assert pixels.shape[0] > 300 and pixels.shape[1] > 600
