"""loopfast installs and works where its C core cannot be built.

For real: pip builds this tree with ``CC`` pointing at a compiler that always
fails and installs it into a temporary directory; child interpreters that see
that install first and not the repository's ``src`` (``-S``: no ``.pth`` file,
so not the editable install either) then use the fast path (ring falls back to
stream, one warning), ``loopfast.poll``, the compatibility mode and the CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from loopfast.constants import POLLRDNORM, POLLWRNORM

REPO = Path(__file__).resolve().parent.parent
PIP_TIMEOUT = 60.0
CHILD_TIMEOUT = 30.0
BUILD_WARNING = "loopfast's C core (loopfast._ring) was not built"
FALLBACK_WARNING = "the ring transport is unavailable"


def _tree(dest: Path) -> Path:
    """What an sdist holds, copied without built objects (no stale _ring*.so, no build/)."""
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "src", dest / "src",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__", "*.egg-info"))
    return dest


def _isolation() -> list[str]:
    """--no-build-isolation when this venv can build the tree; else pip fetches the backend."""
    with open(REPO / "pyproject.toml", "rb") as f:
        requires = tomllib.load(f)["build-system"]["requires"]
    for text in requires:
        req = Requirement(text)
        try:
            if metadata.version(req.name) not in req.specifier:
                return []
        except metadata.PackageNotFoundError:
            return []
    return ["--no-build-isolation"]


def _pip_install(tree: Path, target: Path, failing_cc: Path,
                 **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("LOOPFAST_REQUIRE_C", "LOOPFAST_SANITIZE", "CFLAGS", "LDSHARED")}
    return subprocess.run(
        [sys.executable, "-m", "pip", "install", "-v", "--no-deps", "--no-compile",
         "--disable-pip-version-check", *_isolation(), "--target", str(target), str(tree)],
        env={**clean, "CC": str(failing_cc), **env}, cwd=tree, capture_output=True, text=True,
        timeout=PIP_TIMEOUT)


@pytest.fixture(scope="module")
def failing_cc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = tmp_path_factory.mktemp("nocc") / "cc"
    cc.write_text("#!/bin/sh\necho 'cc: no compiler here (loopfast test)' >&2\nexit 1\n")
    cc.chmod(0o755)
    return cc


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory,
              failing_cc: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The target directory of an install whose C core failed to build, and pip's run."""
    tree = _tree(tmp_path_factory.mktemp("tree"))
    target = tmp_path_factory.mktemp("target")
    done = _pip_install(tree, target, failing_cc)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return target, done


def _env(target: Path) -> dict[str, str]:
    """The target first, then this venv's site-packages (not processed: no editable .pth)."""
    site = list(dict.fromkeys((sysconfig.get_path("purelib"), sysconfig.get_path("platlib"))))
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), *site]),
            "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def _python(target: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-S", *args], env=_env(target), cwd=cwd or target,
                          capture_output=True, text=True, timeout=CHILD_TIMEOUT)


def test_install_succeeds_without_the_c_core_and_says_why(
        installed: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    target, done = installed
    output = done.stdout + done.stderr
    assert "cc: no compiler here" in output  # the build of _ring was tried, and failed
    assert BUILD_WARNING in output and "install a C compiler" in output
    assert (target / "loopfast" / "__init__.py").is_file()
    assert not list((target / "loopfast").glob("_ring*.so"))


def test_require_c_makes_a_failed_build_fail(tmp_path: Path, failing_cc: Path) -> None:
    done = _pip_install(_tree(tmp_path), tmp_path / "target", failing_cc,
                        LOOPFAST_REQUIRE_C="1")
    assert done.returncode != 0
    assert "cc: no compiler here" in done.stdout + done.stderr


CHILD = textwrap.dedent("""
    import json, logging, socket, sys

    target, repo_src, fallback = sys.argv[1:]
    messages = []

    class Keep(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    logging.getLogger("loopfast").addHandler(Keep())

    import loopfast
    from loopfast._core import ringcore
    from loopfast._winsock import tcpinfo

    report = {"file": loopfast.__file__, "src_on_path": repo_src in sys.path,
              "ring": repr(ringcore.ring), "missing": ringcore.missing, "connections": []}

    def exchange(a, b):
        a.sendall(b"ping")
        got = b.recv(4, socket.MSG_WAITALL)
        b.sendall(b"pong!")
        return [got.decode(), a.recv(5, socket.MSG_WAITALL).decode()]

    srv = loopfast.socket(socket.AF_INET, socket.SOCK_STREAM, fast_path=True)
    srv.settimeout(5)
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    for _ in range(2):  # two connections, one warning
        cli = loopfast.socket(socket.AF_INET, socket.SOCK_STREAM, fast_path=True)
        cli.settimeout(5)
        cli.connect(srv.getsockname())
        acc, _ = srv.accept()
        acc.settimeout(5)
        seen = {"transport": [cli.fast_path_transport, acc.fast_path_transport],
                "active": [cli.fast_path_active, acc.fast_path_active],
                "bytes": exchange(cli, acc)}
        cli.sendall(b"x")
        readable = loopfast.PollFD(acc, loopfast.POLLRDNORM)
        writable = loopfast.PollFD(cli, loopfast.POLLWRNORM)
        seen["poll"] = [loopfast.poll([readable, writable], 2000),
                        readable.revents, writable.revents]
        report["connections"].append(seen)
        cli.close()
        acc.close()
    srv.close()

    mode = loopfast.WSACompatibilityMode(loopfast.WsaBehaviorAutoTuning, loopfast.NTDDI_WINXP)
    with socket.socket() as tcp:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        tcp.settimeout(5)
        with loopfast.socket(socket.AF_INET, socket.SOCK_STREAM,
                             compatibility_mode=mode) as cli:
            cli.settimeout(5)
            cli.connect(tcp.getsockname())
            acc, _ = tcp.accept()
            with acc:
                report["compat"] = {"wscale": tcpinfo.read(cli).rcv_wscale,
                                    "bytes": exchange(cli, acc)}
    report["warnings"] = [m for m in messages if fallback in m]
    print(json.dumps(report))
""")


def test_fast_path_poll_and_compat_work_without_the_c_core(
        installed: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    target, _ = installed
    done = _python(target, "-c", CHILD, str(target), str(REPO / "src"), FALLBACK_WARNING)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert Path(report["file"]).is_relative_to(target) and not report["src_on_path"]
    assert report["ring"] == "None" and "loopfast._ring" in report["missing"]
    for seen in report["connections"]:
        assert seen["transport"] == ["stream", "stream"] and seen["active"] == [True, True]
        assert seen["bytes"] == ["ping", "pong!"]
        assert seen["poll"] == [2, POLLRDNORM, POLLWRNORM]
    assert report["compat"] == {"wscale": 0, "bytes": ["ping", "pong!"]}
    (warning,) = report["warnings"]  # once per process, saying why and what to do
    assert report["missing"] in warning and "install a C compiler" in warning


RUN_SCRIPT = textwrap.dedent("""
    import socket
    with socket.create_server(("127.0.0.1", 0)) as srv:
        with socket.create_connection(srv.getsockname()) as cli:
            acc, _ = srv.accept()
            with acc:
                cli.sendall(b"hi")
                print(acc.recv(2).decode(), cli.fast_path_transport)
""")


def test_cli_works_without_the_c_core(
        installed: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    target, _ = installed
    info = _python(target, "-m", "loopfast", "info")
    assert info.returncode == 0, info.stderr
    core = [line for line in info.stdout.splitlines() if "loopfast._ring" in line]
    assert core and all("unavailable" in line for line in core), info.stdout
    stat = _python(target, "-m", "loopfast", "stat")
    assert stat.returncode == 0, stat.stderr

    script = tmp_path / "talk.py"
    script.write_text(RUN_SCRIPT)
    run = _python(target, "-m", "loopfast", "run", "--transport", "ring", "--report",
                  str(script))
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["hi", "stream"]
    assert run.stderr.count(FALLBACK_WARNING) == 1
    assert "(ring 0, stream 1)" in run.stderr


def test_bench_skips_ring_rows_without_the_c_core(
        installed: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    target, _ = installed
    out = tmp_path / "bench.json"
    bench = _python(target, "-m", "loopfast", "bench", "--mode", "echo",
                    "--rows", "ring-wait,stream", "--count", "200", "--warmup", "20",
                    "--pin", "none", "--no-progress", "--json", str(out))
    assert bench.returncode == 0, bench.stdout + bench.stderr
    rows = {row["key"]: row for row in json.loads(out.read_text())["rows"]}
    assert rows["ring-wait"]["status"] == "skipped"
    assert "loopfast._ring" in rows["ring-wait"]["skipped"]
    assert rows["stream"]["status"] == "ok" and rows["tcp"]["status"] == "ok"
