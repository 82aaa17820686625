"""The ASGI application uvicorn serves: ``GET /n/<n>`` answers ``reply <n>``."""

from __future__ import annotations

from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer ``GET /n/<n>`` with the body ``reply <n>\\n`` (uvicorn runs it, lifespan off)."""
    body = f"reply {scope['path'].rpartition('/')[2]}\n".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
