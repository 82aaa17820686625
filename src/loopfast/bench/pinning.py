"""Which CPU each process of the echo runs on (``--pin split|same|none``).

``split`` (the default) puts the sender and the echoer on two different CPUs, the first
two this process may use (CPU 0 and CPU 1 on an unrestricted machine), so each message
crosses between cores as it does between two busy processes. ``same`` puts both on the
first allowed CPU, so every round trip costs two context switches instead. ``none``
leaves the scheduler free. When ``split`` is asked for but only one CPU is allowed, the
plan falls back to ``same`` and says so in its note.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["PIN_MODES", "PinPlan", "allowed_cpus", "pin_to", "plan_pinning"]

PIN_MODES = ("split", "same", "none")


@dataclass(frozen=True)
class PinPlan:
    """Where the sender and the echoer run; ``None`` means not pinned."""

    mode: str
    sender_cpu: int | None
    echoer_cpu: int | None
    note: str | None = None


def allowed_cpus() -> list[int]:
    """Return the CPUs this process may run on, in ascending order."""
    return sorted(os.sched_getaffinity(0))


def plan_pinning(mode: str, cpus: list[int] | None = None) -> PinPlan:
    """Decide the CPUs for ``mode``.

    Args:
        mode: one of :data:`PIN_MODES`.
        cpus: the allowed CPUs; by default :func:`allowed_cpus`.

    Returns:
        The plan; when ``split`` cannot be honoured it falls back to ``same`` with a note.

    Raises:
        ValueError: if ``mode`` is unknown or no CPU is allowed.
    """
    if mode not in PIN_MODES:
        raise ValueError(f"unknown pinning mode {mode!r}; expected one of {PIN_MODES}")
    if mode == "none":
        return PinPlan("none", None, None)
    cpus = allowed_cpus() if cpus is None else sorted(cpus)
    if not cpus:
        raise ValueError("no CPU is allowed for this process")
    if mode == "split" and len(cpus) >= 2:
        return PinPlan("split", cpus[0], cpus[1])
    if mode == "split":
        note = (f"only CPU {cpus[0]} is allowed for this process: sender and echoer share it "
                "(pinning 'same' instead of 'split')")
        return PinPlan("same", cpus[0], cpus[0], note)
    return PinPlan("same", cpus[0], cpus[0])


def pin_to(cpu: int | None) -> list[int]:
    """Pin the calling process to ``cpu`` (``None``: leave it) and return where it may run.

    Raises:
        OSError: if the CPU cannot be chosen (not present or not allowed).
    """
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    return allowed_cpus()
