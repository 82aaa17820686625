"""uvloop under ``patch()``: its TCP servers and loopback clients take the fast path.

uvloop makes its sockets in libuv, where the patched ``socket.socket`` does not
reach, so ``loop.create_server(host=..., port=...)`` (what uvicorn, aiohttp and
``asyncio.start_server`` call) would listen on plain TCP only. While patched,
``uvloop.Loop.create_server`` and ``create_connection`` are loopfast's:

- ``create_server`` with a host and port, or with a ``loopfast.socket`` that
  opted in, serves fast-path listeners (``loopfast.asyncio.create_server``):
  fast-path arrivals ride ``aio_transport.SocketTransport`` (spun on by
  ``aio_spin``), TCP arrivals uvloop's own transport. Any other ``sock=``
  (plain TCP, AF_UNIX) is uvloop's, unchanged.
- ``create_connection`` to a loopback address connects a loopfast socket (the
  patch's transport) and carries it as ``create_server``'s connections are;
  one that fell back to TCP is handed to uvloop's own ``create_connection``.
  Other hosts, and ``sock=`` that is no fast-path connection, are uvloop's.

uvloop need not be imported yet: ``install()`` then waits for its import (a
``sys.meta_path`` finder that wraps its loader) and patches the class as the
import finishes. ``uninstall()`` puts uvloop's methods back.

Invariants: ``_originals`` holds uvloop's methods exactly while the class is
patched; the finder is in ``sys.meta_path`` only while waiting for uvloop.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import socket as _stdsocket
import sys
import types
from collections.abc import Callable, Sequence
from typing import Any

from .. import asyncio as lfa
from .addresses import is_loopback
from .sockets import socket

__all__ = ["install", "installed", "uninstall"]

_originals: dict[str, tuple[Any, bool]] = {}  # name -> (uvloop's method, in Loop's own dict)
_transport = "ring"


def _nothing(sock: socket) -> None:
    """install() replaces it with the patch's counter."""


_made: Callable[[socket], None] = _nothing


def _offers_fast_path(sock: Any) -> bool:
    return isinstance(sock, socket) and sock.fast_path


def _loopback(host: Any) -> bool:
    if not isinstance(host, str):
        return False
    if host == "localhost":
        return True
    family = _stdsocket.AF_INET6 if ":" in host else _stdsocket.AF_INET
    return is_loopback(family, host)


async def _create_server(self: Any, protocol_factory: Callable[[], Any],
                         host: str | Sequence[str] | None = None, port: int | None = None,
                         *, sock: Any = None, **kw: Any) -> Any:
    """uvloop's ``create_server``, with fast-path listeners (see the module docstring)."""
    theirs = sock is not None and not _offers_fast_path(sock)
    if theirs or kw.get("family") == _stdsocket.AF_UNIX:
        return await _originals["create_server"][0](self, protocol_factory, host, port,
                                                    sock=sock, **kw)
    return await lfa.create_server(protocol_factory, host, port, sock=sock, fast_path=True, **kw)


async def _create_connection(self: Any, protocol_factory: Callable[[], Any],
                             host: str | None = None, port: int | None = None,
                             *, sock: Any = None, **kw: Any) -> Any:
    """uvloop's ``create_connection``, over the fast path to loopback (see the module docstring)."""
    native = functools.partial(_originals["create_connection"][0], self)
    if sock is not None:
        if isinstance(sock, socket) and sock.fast_path_active:
            return await lfa.create_connection(protocol_factory, sock=sock, **kw)
        return await native(protocol_factory, host, port, sock=sock, **kw)
    if not _loopback(host):
        return await native(protocol_factory, host, port, **kw)
    made = await lfa._connected_socket(self, host, port, _transport, kw.pop("family", 0),
                                       kw.pop("proto", 0), kw.pop("flags", 0),
                                       kw.pop("local_addr", None))
    _made(made)
    # One that fell back to TCP comes back here as sock=, and goes to uvloop's own.
    return await lfa.create_connection(protocol_factory, host, port, sock=made, **kw)


_METHODS = {"create_server": _create_server, "create_connection": _create_connection}


def _patch_class(module: types.ModuleType) -> None:
    loop_class = getattr(module, "Loop", None)
    if loop_class is None or _originals:
        return
    for name, method in _METHODS.items():
        _originals[name] = (getattr(loop_class, name), name in loop_class.__dict__)
        setattr(loop_class, name, method)


class _WaitForUvloop(importlib.abc.MetaPathFinder):
    """Finds uvloop as the other finders do, and patches it once its module ran."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        """The other finders' spec of uvloop, its loader wrapped; None for other modules."""
        if fullname != "uvloop":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None and hasattr(spec.loader,
                                                                        "exec_module"):
                spec.loader = _PatchingLoader(spec.loader)
                return spec
            if spec is not None:
                return spec
        return None


class _PatchingLoader(importlib.abc.Loader):
    """uvloop's loader; patches ``uvloop.Loop`` right after the module ran."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)  # get_code, is_package, resources: uvloop's

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        """As uvloop's loader."""
        return self._loader.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: types.ModuleType) -> None:
        """Run uvloop's module, then patch its Loop (if still wanted)."""
        self._loader.exec_module(module)
        _stop_waiting()
        if _waiting_for_patch:
            _patch_class(module)


_finder = _WaitForUvloop()
_waiting_for_patch = False


def _stop_waiting() -> None:
    if _finder in sys.meta_path:
        sys.meta_path.remove(_finder)


def install(transport: str, made: Callable[[socket], None]) -> None:
    """Patch ``uvloop.Loop`` now, or as soon as uvloop is imported.

    Args:
        transport: the fast path a loopback client takes ("ring" or "stream").
        made: called with each client socket the patched ``create_connection`` made
            (the patch's per-process counts).
    """
    global _transport, _made, _waiting_for_patch
    _transport, _made = transport, made
    _waiting_for_patch = True
    module = sys.modules.get("uvloop")
    if module is not None:
        _patch_class(module)
    elif _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)


def uninstall() -> None:
    """Put uvloop's own ``create_server`` and ``create_connection`` back."""
    global _waiting_for_patch
    _waiting_for_patch = False
    _stop_waiting()
    module = sys.modules.get("uvloop")
    loop_class = getattr(module, "Loop", None)
    if loop_class is not None:
        for name, (original, own) in _originals.items():
            if loop_class.__dict__.get(name) is not _METHODS[name]:
                continue  # someone else's since: theirs to keep
            if own:
                setattr(loop_class, name, original)
            else:
                delattr(loop_class, name)  # inherited from uvloop's compiled base again
    _originals.clear()


def installed() -> bool:
    """True while ``uvloop.Loop`` is patched."""
    return bool(_originals)
