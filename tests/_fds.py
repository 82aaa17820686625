"""Counting this process's open fds for leak checks."""

from __future__ import annotations

import os

from loopfast._fastpath import ring_link


def open_fds() -> int:
    """Open fds, less those the ring offers' pool holds (made ahead of need, no connection's)."""
    return len(os.listdir("/proc/self/fd")) - ring_link.pooled_fds()
