"""Counting this process's open fds for leak checks."""

from __future__ import annotations

import os

from loopfast._fastpath import ring_link


def open_fds() -> int:
    """Open fds, less those the ring offers' pool holds (made ahead of need, no connection's)."""
    return len(os.listdir("/proc/self/fd")) - ring_link.pooled_fds()


def is_open(fd: int) -> bool:
    """True when *fd* is open in this process."""
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def open_fd_set() -> set[int]:
    """The fds open now (not the one listing /proc/self/fd takes while it lists)."""
    listed = {int(name) for name in os.listdir("/proc/self/fd")}
    return {fd for fd in listed if is_open(fd)}
