"""tools/setup_ab.py: connection set-up of source trees side by side, for real.

One round of a few connections per variant, with this tree as both trees: the
table has a row per tree and one for TCP, each a positive time and ratio, and
every server process is gone afterwards.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["ring", "stream", "tcp-server"])
def test_one_round_prints_a_row_per_tree_and_tcp(kind: str) -> None:
    src = str(ROOT / "src")
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "setup_ab.py"), "--trees", f"{src},{src}",
         "--kind", kind, "--rounds", "1", "--per-round", "20"],
        capture_output=True, text=True, timeout=100, check=False)
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[1:]]
    assert [row[0] for row in rows] == [src, "tcp"]  # the same tree twice is one variant
    for _name, micros, ratio in rows:
        assert float(micros) > 0 and ratio.endswith("x") and float(ratio[:-1]) > 0
    assert rows[1][2] == "1.000x"
