"""The C core, ``loopfast._ring``, or None where it could not be built or loaded.

Every module that needs the rings imports them from here, so a build without
a compiler (or for an interpreter the C core does not support) still imports:
the ring transport then falls back to the stream transport (see
``_fastpath.connector``) and everything else works.
"""

from __future__ import annotations

from types import ModuleType

ring: ModuleType | None
missing: str | None  # why the C core is absent, for the log and ``loopfast info``

try:
    from .. import _ring as ring
except ImportError as exc:
    ring = None
    missing = f"the C core loopfast._ring is not available ({exc})"
else:
    missing = None
