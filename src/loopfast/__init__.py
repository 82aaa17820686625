"""loopfast: Windows' TCP loopback fast path, WSAPoll and compatibility mode for Python on Linux."""

from __future__ import annotations

from .constants import *  # noqa: F403
from .constants import __all__ as _constants_all

__all__ = [*_constants_all]
