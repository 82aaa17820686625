"""The stdlib's argument rules for the message calls the ring carries in Python.

``socket.socket``'s C methods check their arguments before any I/O; a ring
socket's ``shutdown``/``sendmsg``/``recvmsg``/``recvmsg_into`` are Python, so
they check here, with the same exceptions and words, before touching the ring
(a bad argument must not consume or send a byte).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from typing import Any

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1


def c_int(value: Any, too_large: str = "Python int too large to convert to C int") -> int:
    """*value* as a C int, as the stdlib parses one.

    Raises:
        TypeError: not an integer; OverflowError: outside a C int.
    """
    number = operator.index(value)
    if not _INT_MIN <= number <= _INT_MAX:
        raise OverflowError(too_large)
    return number


def flags_int(value: Any) -> int:
    """A flags argument as ``recvmsg``/``sendmsg`` parse it (their words for overflow)."""
    number = operator.index(value)
    if number > _INT_MAX:
        raise OverflowError("signed integer is greater than maximum")
    if number < _INT_MIN:
        raise OverflowError("signed integer is less than minimum")
    return number


def recvmsg_sizes(bufsize: Any, ancbufsize: Any, flags: Any) -> tuple[int, int]:
    """(bufsize, flags) of ``recvmsg``, after the stdlib's checks.

    Raises:
        ValueError: a negative size; TypeError, OverflowError: as the stdlib.
    """
    size = operator.index(bufsize)
    if size < 0:
        raise ValueError("negative buffer size in recvmsg()")
    ancillary_space(ancbufsize)
    return size, flags_int(flags)


def ancillary_space(ancbufsize: Any) -> None:
    """Check ``ancbufsize`` as the stdlib does.

    Raises:
        ValueError: a negative length.
    """
    if operator.index(ancbufsize) < 0:
        raise ValueError("invalid ancillary data buffer length")


def writable_views(buffers: Iterable[Any]) -> list[memoryview]:
    """``recvmsg_into``'s buffers as byte views.

    Raises:
        TypeError: an entry is not a writable contiguous buffer.
    """
    views = []
    for buffer in buffers:
        try:
            view = memoryview(buffer)
        except TypeError:
            view = None
        if view is None or view.readonly or not view.contiguous:
            raise TypeError("recvmsg_into() argument 1 must be an iterable of single-segment "
                            "read-write buffers")
        views.append(view.cast("B"))
    return views


def check_ancdata(ancdata: Iterable[Any]) -> list[tuple[int, int, Any]]:
    """``sendmsg``'s ancillary data as (level, type, data) items, after the stdlib's checks.

    Raises:
        TypeError: an item is not a (level, type, bytes-like) sequence.
        OverflowError: a level or type outside a C int.
    """
    items = []
    for item in ancdata:
        try:
            length = len(item)
        except TypeError:
            raise TypeError("[sendmsg() ancillary data items]() argument must be 3-item "
                            f"sequence, not {type(item).__name__}") from None
        if length != 3:
            raise TypeError("[sendmsg() ancillary data items]() argument must be sequence of "
                            f"length 3, not {length}")
        level, kind, data = item
        _bytes_like(data)
        items.append((c_int(level), c_int(kind), data))
    return items


def sendmsg_payload(buffers: Iterable[Any]) -> bytes:
    """The bytes ``sendmsg`` sends from *buffers*.

    Raises:
        TypeError: a buffer is not bytes-like.
    """
    return b"".join(_bytes_like(b).tobytes() for b in buffers)


def _bytes_like(obj: Any) -> memoryview:
    try:
        return memoryview(obj)
    except TypeError:
        raise TypeError(f"a bytes-like object is required, not '{type(obj).__name__}'") from None
