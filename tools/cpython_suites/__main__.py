"""``python -m tools.cpython_suites`` (from the repository's root)."""

from .cli import main

raise SystemExit(main())
