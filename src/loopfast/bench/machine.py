"""A description of the machine a run measured, for the JSON document and the table."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Machine", "cpu_model", "describe_machine"]


@dataclass(frozen=True)
class Machine:
    """The facts a reader needs to compare runs between machines.

    Attributes:
        cpu_model: the first ``model name`` in /proc/cpuinfo (or platform's guess).
        cpu_count: the CPUs the system has (``os.cpu_count()``).
        cpus_allowed: the CPUs this process may use (its affinity mask).
        kernel: the kernel release (``uname -r``).
        system: the operating system's name.
        python: the Python version, e.g. ``3.11.7``.
        python_implementation: e.g. ``CPython``.
        clock: ``time.perf_counter``'s implementation and resolution (ns).
    """

    cpu_model: str
    cpu_count: int
    cpus_allowed: list[int]
    kernel: str
    system: str
    python: str
    python_implementation: str
    clock: dict[str, str | float] = field(default_factory=dict)


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """Return the CPU's model name from ``cpuinfo``, or platform's answer when it has none."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("model name", "Model", "cpu model", "Processor"):
            return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def describe_machine() -> Machine:
    """Describe this machine, its kernel, this Python and its clock."""
    clock = time.get_clock_info("perf_counter")
    return Machine(
        cpu_model=cpu_model(),
        cpu_count=os.cpu_count() or 0,
        cpus_allowed=sorted(os.sched_getaffinity(0)),
        kernel=platform.release(),
        system=platform.system(),
        python=platform.python_version(),
        python_implementation=platform.python_implementation(),
        clock={"implementation": clock.implementation, "resolution_ns": clock.resolution * 1e9},
    )
