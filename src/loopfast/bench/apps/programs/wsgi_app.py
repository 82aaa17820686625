"""The WSGI application gunicorn serves: ``GET /n/<n>`` answers ``reply <n>``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Answer ``GET /n/<n>`` with the body ``reply <n>\\n``."""
    body = f"reply {environ['PATH_INFO'].rpartition('/')[2]}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
