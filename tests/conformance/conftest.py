"""Fixtures for the conformance suite: transports that clean up after themselves."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from .scenarios import Recorder, Transport, run


@pytest.fixture
def run_over() -> Iterator[Callable[[str, str], Recorder]]:
    """``run_over(scenario, transport)`` runs a scenario on a fresh transport.

    Every transport made here is closed at teardown, even when the test failed,
    and teardown fails if a scenario's thread is still running.
    """
    made: list[Transport] = []

    def run_over(name: str, transport: str) -> Recorder:
        t = Transport(transport)
        made.append(t)
        try:
            return run(name, t)
        finally:
            t.close_all()

    yield run_over
    for t in made:
        t.close_all()
