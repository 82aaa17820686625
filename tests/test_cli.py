"""Tests of the ``loopfast`` command: in-process through main(), once through python -m."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loopfast._cli import main
from loopfast.bench.rows import SocketRow

QUICK = ["--rows", "tcp,unix", "--count", "200", "--warmup", "20", "--timeout", "15"]


def test_bench_writes_table_and_json_file(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "bench.json"
    assert main(["bench", *QUICK, "--pin", "same", "--json", str(target)]) == 0
    out = capsys.readouterr().out
    assert "stdlib TCP" in out and "stdlib AF_UNIX" in out and "p99.9" in out
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
])
def test_bad_arguments_exit_2_with_a_message(argv: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert "error:" in capsys.readouterr().err


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
