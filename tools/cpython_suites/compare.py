"""One suite over one transport against the plain run: the counts and the differences.

A difference is a test whose status over the fast path is not its status in the
plain run (a test run on one side only is ``missing`` on the other). It is
documented when the expected list has an entry for it (``expected.py``);
every other difference is undocumented and makes the runner exit non-zero.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from .expected import ExpectedList
from .outcomes import Outcome

__all__ = ["Difference", "SuiteReport", "compare"]


@dataclass(frozen=True)
class Difference:
    """One test whose outcome over the fast path is not the plain run's."""

    test: str
    plain: str
    fast: str
    fast_connections: int | None
    reason: str | None = None
    category: str | None = None
    detail: str | None = None  # the fast side's traceback tail or skip reason

    @property
    def documented(self) -> bool:
        """True when the expected list gives a reason for it."""
        return self.reason is not None


@dataclass
class SuiteReport:
    """The row of the results table for one suite and transport, and its differences."""

    suite: str
    transport: str
    plain: Counter[str] = field(default_factory=Counter)
    fast: Counter[str] = field(default_factory=Counter)
    used_fast_path: int = 0
    differences: list[Difference] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def documented(self) -> list[Difference]:
        """Differences the expected list explains."""
        return [d for d in self.differences if d.documented]

    @property
    def undocumented(self) -> list[Difference]:
        """Differences nobody explained: each one fails the run."""
        return [d for d in self.differences if not d.documented]

    def as_json(self) -> dict[str, Any]:
        """The row, its counts and its differences, for ``--json``."""
        return {
            "suite": self.suite, "transport": self.transport,
            "plain": dict(self.plain), "fast": dict(self.fast),
            "used_fast_path": self.used_fast_path,
            "documented": len(self.documented), "undocumented": len(self.undocumented),
            "differences": [asdict(d) | {"documented": d.documented} for d in self.differences],
            "notes": list(self.notes),
        }


def compare(suite: str, transport: str, plain: dict[str, Outcome], fast: dict[str, Outcome],
            expected: ExpectedList) -> SuiteReport:
    """Compare the fast-path run of *suite* over *transport* with its plain run."""
    report = SuiteReport(suite, transport)
    report.plain.update(o.status for o in plain.values())
    report.fast.update(o.status for o in fast.values())
    report.used_fast_path = sum(1 for o in fast.values() if o.fast)
    for test_id in sorted(plain.keys() | fast.keys()):
        before = plain.get(test_id, Outcome("missing"))
        after = fast.get(test_id, Outcome("missing"))
        if before.status == after.status:
            continue
        entry = expected.find(transport, test_id, after.status)
        report.differences.append(Difference(
            test_id, before.status, after.status, after.fast,
            None if entry is None else entry.reason, None if entry is None else entry.category,
            after.detail))
    return report
