"""``loopfast bench apps``: real servers and clients from PyPI, with and without ``loopfast run``.

- :mod:`.programs`: the programs run (never imported by loopfast);
- :mod:`.pairs`: which server goes with which client, and which packages they need;
- :mod:`.launch`: one program as a process, plain or under ``loopfast run``;
- :mod:`.runner`: every pair, its variants alternating, medians;
- :mod:`.report`, :mod:`.cli`: the table, the JSON document, the options.

The packages the pairs use are the ``apps`` extra (``pip install 'loopfast[apps]'``);
a pair whose package is missing is skipped with the reason.
"""

from __future__ import annotations

from .pairs import PAIRS, Pair
from .runner import AppsConfig, AppsResult, PairResult, run_apps

__all__ = ["PAIRS", "AppsConfig", "AppsResult", "Pair", "PairResult", "run_apps"]
