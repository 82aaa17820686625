"""tools/check_layers.py: loopfast's imports flow one way, and the check catches it when not."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "loopfast"
SCRIPT = ROOT / "tools" / "check_layers.py"


def _checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_layers", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _copy_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "loopfast"
    shutil.copytree(SRC, tree, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    return tree


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")


def test_the_tree_keeps_its_layers() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "no cycle" in done.stdout


def test_an_upward_import_is_reported(tmp_path: Path) -> None:
    tree = _copy_tree(tmp_path)
    # The fast path reaching up to the socket classes, inside a function as a cycle dodge would.
    _append(tree / "_fastpath" / "connector.py",
            "def _dodge() -> None:\n    from .._core.sockets import become  # noqa")
    problems = _checker().check(tree)
    assert any("_fastpath.connector (layer fastpath) imports _core.sockets" in p
               for p in problems), problems


def test_a_cycle_within_a_layer_is_reported(tmp_path: Path) -> None:
    tree = _copy_tree(tmp_path)
    _append(tree / "_winsock" / "flags.py", "from . import socket_poll  # noqa")
    problems = _checker().check(tree)
    cycles = [p for p in problems if p.startswith("import cycle:")]
    assert cycles and "_winsock.flags" in cycles[0], problems


def test_a_module_in_no_layer_is_reported(tmp_path: Path) -> None:
    tree = _copy_tree(tmp_path)
    (tree / "_stray.py").write_text('"""Nobody placed me."""\n', encoding="utf-8")
    problems = _checker().check(tree)
    assert any("module '_stray' is in no layer" in p for p in problems), problems


def test_the_benchmark_may_use_only_the_public_api(tmp_path: Path) -> None:
    tree = _copy_tree(tmp_path)
    _append(tree / "bench" / "rows.py", "from .._core import ringcore  # noqa")
    problems = _checker().check(tree)
    assert any("bench.rows imports _core.ringcore, which is not loopfast's public API" in p
               for p in problems), problems
