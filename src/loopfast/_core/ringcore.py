"""The C core, ``loopfast._ring``, or None where it could not be built or loaded.

Every module that needs the rings imports them from here, so a build without
a compiler (or for an interpreter the C core does not support) still imports:
the ring transport then falls back to the stream transport (see
``_fastpath.connector``) and everything else works.
"""

from __future__ import annotations

import importlib
from types import ModuleType

ring: ModuleType | None
missing: str | None  # why the C core is absent, for the log and ``loopfast info``

REMEDY = ("install a C compiler and the Python headers (e.g. gcc and python3-dev), "
          "then reinstall loopfast")

try:
    # By its full name: ``from .. import _ring`` would blame a circular import
    # when the module is simply not there (loopfast is half-imported here).
    ring = importlib.import_module("loopfast._ring")
except ImportError as exc:
    ring = None
    missing = f"the C core loopfast._ring was not built or does not load ({exc})"
else:
    missing = None
