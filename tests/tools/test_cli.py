"""_tools/cli.py, the ``loopfast`` command: in-process through main(), once through python -m."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loopfast._tools.cli import main
from loopfast.bench.peers import ZmqRow
from loopfast.bench.rows import ROWS, SocketRow

QUICK = ["--mode", "echo", "--rows", "tcp,unix", "--count", "200", "--warmup", "20",
         "--timeout", "15"]


def test_bench_writes_table_and_json_file(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "bench.json"
    assert main(["bench", *QUICK, "--pin", "same", "--json", str(target)]) == 0
    out = capsys.readouterr().out
    assert "stdlib TCP blocking" in out and "stdlib AF_UNIX" in out and "p99.9" in out
    document = json.loads(target.read_text())
    assert [row["key"] for row in document["rows"]] == ["tcp", "unix"]
    assert document["config"]["pin"] == "same"
    assert document["ratio_to_baseline"]["tcp"] == 1.0
    assert document["ratio_to_baseline"]["unix"] > 0


def test_bench_json_to_stdout_moves_the_table_to_stderr(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", *QUICK, "--pin", "none", "--json", "-"]) == 0
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert document["ok"] is True
    assert document["pinning"] == {"mode": "none", "sender_cpu": None, "echoer_cpu": None,
                                   "note": None}
    assert "stdlib TCP" in captured.err


def test_a_failed_row_is_loud_and_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    def unavailable(row: SocketRow) -> str | None:
        return "not on this machine (test)" if row.key == "unix" else None

    monkeypatch.setattr(SocketRow, "unavailable", unavailable)
    target = tmp_path / "bench.json"
    assert main(["bench", *QUICK, "--json", str(target)]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "not on this machine (test)" in out
    document = json.loads(target.read_text())
    assert document["ok"] is False
    unix = document["rows"][1]
    assert (unix["ok"], unix["error"], unix["mean_us"]) == (False, "not on this machine (test)",
                                                            None)
    assert document["ratio_to_baseline"] == {"tcp": 1.0, "unix": None}


@pytest.mark.parametrize("argv", [
    [],
    ["frobnicate"],
    ["bench", "--count", "0"],
    ["bench", "--count", "many"],
    ["bench", "--warmup", "-1"],
    ["bench", "--rows", "tcp,carrier-pigeon"],
    ["bench", "--pin", "diagonal"],
    ["bench", "--timeout", "0"],
    ["bench", "--json", "/no/such/directory/out.json"],
    ["bench", "--plot", "/no/such/directory/out.png"],
    ["bench", "--mode", "echo,warp"],
    ["bench", "--size", "0"],
    ["bench", "--duration", "-1"],
    ["bench", "--idle", "0"],
])
def test_bad_arguments_exit_2_with_a_message(argv: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_bench_modes_plot_and_json(tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    target, picture = tmp_path / "bench.json", tmp_path / "bench.png"
    assert main(["bench", "--mode", "echo,throughput,setup", "--rows", "ring-poll,unix",
                 "--count", "100", "--warmup", "10", "--duration", "0.05", "--size", "4096",
                 "--setup-count", "10", "--timeout", "15", "--json", str(target),
                 "--plot", str(picture)]) == 0
    out = capsys.readouterr().out
    assert "throughput, one way: 4,096-byte" in out and "connection setup" in out
    assert "loopfast ring, poll" in out and "vs TCP" in out
    document = json.loads(target.read_text())
    assert [row["key"] for row in document["rows"]] == ["tcp", "ring-poll", "unix"]
    assert [row["key"] for row in document["modes"]["setup"]["rows"]] == ["tcp", "unix"]
    assert document["modes"]["throughput"]["rows"][1]["message_size"] == 4096
    assert document["ratios"]["ring_poll_vs_tcp_blocking"] > 0
    assert picture.read_bytes()[:4] == b"\x89PNG"


def test_an_absent_peer_is_skipped_and_exit_0(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(ROWS, "zmq-ipc", ZmqRow(module="loopfast_no_such_module"))
    assert main(["bench", *QUICK, "--rows", "zmq-ipc", "--json", "-"]) == 0
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert document["rows"][1]["status"] == "skipped"
    assert "skipped: pyzmq is not installed" in captured.err


def test_plot_without_matplotlib_says_so(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    import loopfast.bench.plot as plot

    monkeypatch.setattr(plot, "plot_available", lambda: "--plot needs matplotlib (test)")
    assert main(["bench", *QUICK, "--plot", "x.png"]) == 1
    assert "--plot needs matplotlib (test)" in capsys.readouterr().err


def test_bench_without_rich_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "rich", None)  # what an install without the extra sees
    assert main(["bench", *QUICK]) == 1
    captured = capsys.readouterr()
    assert "pip install 'loopfast[bench]'" in captured.err and "Traceback" not in captured.err
    assert captured.out == ""


def test_the_other_commands_need_no_rich() -> None:
    code = ("import sys; sys.modules['rich'] = None\n"
            "from loopfast._tools.cli import main\n"
            "sys.exit(main(['info', '--no-measure']) or main(['stat', '--json']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert "Loopback fast path" in done.stdout and '"listeners"' in done.stdout


def test_help_lists_bench(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert "bench" in capsys.readouterr().out


def test_python_dash_m_loopfast_bench(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    done = subprocess.run(
        [sys.executable, "-m", "loopfast", "bench", *QUICK, "--json", str(target)],
        capture_output=True, text=True, timeout=50, check=False)
    assert done.returncode == 0, done.stderr
    assert "stdlib TCP" in done.stdout
    assert json.loads(target.read_text())["rows"][1]["key"] == "unix"
