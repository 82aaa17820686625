"""_fastpath/handshake.py: the hello's wire format, as the module's docstring writes it down."""

from __future__ import annotations

import dataclasses
import socket
import struct

import pytest

from loopfast._fastpath.handshake import (
    HELLO_SIZE,
    MAGIC,
    RING,
    HandshakeError,
    Hello,
    decode,
    encode,
    judged_part,
    with_slot,
)


def test_size_and_layout() -> None:
    raw = encode(Hello(socket.AF_INET, "127.0.0.1", 40000, "127.0.0.2", 8080))
    assert len(raw) == HELLO_SIZE == 48
    assert raw[:4] == MAGIC and struct.unpack("!HHB", raw[4:9]) == (4, 0, 4)
    assert raw[12:16] == bytes([127, 0, 0, 1]) and struct.unpack("!H", raw[28:30]) == (40000,)
    assert raw[30:34] == bytes([127, 0, 0, 2]) and struct.unpack("!H", raw[46:48]) == (8080,)


def test_ring_layout_names_the_slot_and_the_judged_part_leaves_port_and_slot_out() -> None:
    hello = Hello(socket.AF_INET, "127.0.0.1", 40000, "127.0.0.2", 8080, (8192, 16384), 7)
    raw = encode(hello)
    assert len(raw) == 60 and struct.unpack("!H", raw[6:8]) == (RING,)
    assert struct.unpack("!III", raw[48:60]) == (8192, 16384, 7)
    assert decode(raw) == hello
    other = encode(dataclasses.replace(hello, client_port=1, slot=63))
    assert with_slot(raw, 63) == encode(dataclasses.replace(hello, slot=63))
    assert judged_part(raw) == judged_part(other) and raw != other
    assert judged_part(raw) != judged_part(encode(dataclasses.replace(hello, ring=(8192, 8192))))


@pytest.mark.parametrize("hello", [
    Hello(socket.AF_INET, "127.0.0.1", 1, "127.255.255.254", 65535),
    Hello(socket.AF_INET6, "::1", 50000, "::1", 1),
])
def test_round_trip(hello: Hello) -> None:
    assert decode(encode(hello)) == hello


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda b: b[:47], "hello of 47 bytes"),
    (lambda b: b"XXXX" + b[4:], "wrong magic"),
    (lambda b: b[:4] + b"\x00\x01" + b[6:], "protocol version 1"),
    (lambda b: b[:6] + b"\x00\x02" + b[8:], "unknown flags"),
    (lambda b: b[:8] + b"\x05" + b[9:], "unknown family 5"),
])
def test_malformed_hellos_are_refused(mutate: object, message: str) -> None:
    good = encode(Hello(socket.AF_INET, "127.0.0.1", 1, "127.0.0.1", 2))
    with pytest.raises(HandshakeError, match=message) as err:
        decode(mutate(good))  # type: ignore[operator]
    assert isinstance(err.value, ConnectionRefusedError)
