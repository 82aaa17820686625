"""The committed list of expected differences: ``expected_differences.toml``.

Each entry is a table keyed by transport (``ring``, ``stream``, or ``any`` for
both) and test id, as unittest prints it::

    [ring."test.test_socket.GeneralModuleTests.testDetach"]
    reason = "the ring refuses detach() with EOPNOTSUPP (README: Where the fast path differs)"
    category = "limitation"      # "limitation" (documented in README/docs) or "environment"
    status = "error"             # optional: the outcome expected over the fast path

A test id may be an ``fnmatch`` pattern (``test.test_ssl.ThreadedTests.test_*``) for
a whole family with one reason. With ``status`` the entry covers only that
outcome, so a documented failure that turns into a hang is reported again.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CATEGORIES", "DEFAULT_PATH", "Expected", "ExpectedList", "load"]

DEFAULT_PATH = Path(__file__).with_name("expected_differences.toml")
CATEGORIES = ("limitation", "environment")
_TRANSPORTS = ("ring", "stream", "any")


@dataclass(frozen=True)
class Expected:
    """One documented difference."""

    transport: str
    test: str
    reason: str
    category: str
    status: str | None = None

    def covers(self, transport: str, test_id: str, status: str) -> bool:
        """True if this entry documents *test_id* ending in *status* on *transport*."""
        if self.transport not in (transport, "any"):
            return False
        if self.status is not None and self.status != status:
            return False
        return test_id == self.test or fnmatch.fnmatchcase(test_id, self.test)


@dataclass(frozen=True)
class ExpectedList:
    """All entries of one file, looked up by transport, test id and status."""

    entries: tuple[Expected, ...]

    def find(self, transport: str, test_id: str, status: str) -> Expected | None:
        """The first entry that documents this difference, exact ids before patterns."""
        hits = [e for e in self.entries if e.covers(transport, test_id, status)]
        hits.sort(key=lambda e: e.test != test_id)
        return hits[0] if hits else None


def load(path: Path = DEFAULT_PATH) -> ExpectedList:
    """Read and check an expected-differences file (a missing file is an empty list).

    Raises:
        ValueError: an unknown transport, a missing reason or an unknown category.
        tomllib.TOMLDecodeError: the file is not TOML.
    """
    if not path.exists():
        return ExpectedList(())
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    entries = []
    for transport, tests in data.items():
        if transport not in _TRANSPORTS or not isinstance(tests, dict):
            raise ValueError(f"{path}: [{transport}] is not one of {', '.join(_TRANSPORTS)}")
        for test_id, fields in tests.items():
            entries.append(_entry(path, transport, test_id, fields))
    return ExpectedList(tuple(entries))


def _entry(path: Path, transport: str, test_id: str, fields: object) -> Expected:
    where = f"{path}: [{transport}.{test_id!r}]"
    if not isinstance(fields, dict) or not str(fields.get("reason", "")).strip():
        raise ValueError(f"{where} needs a reason")
    category = str(fields.get("category", "limitation"))
    if category not in CATEGORIES:
        raise ValueError(f"{where}: category {category!r} is not one of {CATEGORIES}")
    status = fields.get("status")
    return Expected(transport, test_id, str(fields["reason"]), category,
                    None if status is None else str(status))
