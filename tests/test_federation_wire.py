"""The proxy's client side of RawSocket (serouter/federation/_wire.py): framing fed at awkward
split points, pings answered, and what a router may send a client, strictly checked."""

from __future__ import annotations

import msgpack
import pytest

from serouter.core.messages import with_payload
from serouter.federation import _wire as w


def reply(exponent: int = 15, serializer: int = 2) -> bytes:
    return bytes((0x7F, exponent << 4 | serializer, 0, 0))


def frame(ftype: int, payload: bytes) -> bytes:
    return bytes((ftype,)) + len(payload).to_bytes(3, "big") + payload


def test_handshake_bytes() -> None:
    assert w.handshake(2) == bytes((0x7F, 0xF2, 0, 0))


def test_frames_split_anywhere() -> None:
    """Handshake, a ping and two messages arrive byte by byte: the same result."""
    one, two = msgpack.packb([2, 1, {}]), msgpack.packb([50, 1, {}, [1]])
    data = reply(9) + frame(1, b"tok") + frame(0, one) + frame(0, two)
    framing = w.ClientFraming(2)
    payloads = [p for i in range(len(data)) for p in framing.receive(data[i : i + 1])]
    assert payloads == [one, two]
    assert framing.peer_max == 2 ** 18
    assert framing.out == [frame(2, b"tok")]


def test_handshake_refused_and_wrong() -> None:
    with pytest.raises(w.HandshakeRefused) as refused:
        w.ClientFraming(2).receive(bytes((0x7F, 1 << 4, 0, 0)))
    assert refused.value.code == 1
    with pytest.raises(w.WireError):
        w.ClientFraming(2).receive(reply(serializer=1))
    with pytest.raises(w.WireError):
        w.ClientFraming(2).receive(b"HTTP")


def test_bad_frames() -> None:
    framing = w.ClientFraming(2)
    framing.receive(reply())
    with pytest.raises(w.WireError):
        framing.receive(bytes((7, 0, 0, 0)))
    framing = w.ClientFraming(2)
    framing.receive(reply())
    with pytest.raises(w.WireError):
        framing.receive(bytes((1,)) + (5000).to_bytes(3, "big"))


GOOD = [
    [2, 1, {}], [3, {}, "wamp.error.no_such_realm"], [6, {}, "wamp.close.system_shutdown"],
    [8, 48, 5, {}, "com.err"], [8, 48, 5, {}, "com.err", [1]], [8, 48, 5, {}, "e", [], {"a": 1}],
    [17, 1, 2], [33, 1, 2], [35, 1], [35, 0, {"subscription": 3}],
    [36, 1, 2, {}], [36, 1, 2, {}, ["x"]], [50, 1, {}], [50, 1, {"progress": True}, [1], {}],
    [4, "ticket", {}],
]
BAD = [
    [], "x", [2.0], [99, 1], [2, 0, {}], [2, 1], [8, 48, 5, {}, 3], [8, 48, 5, {}, "e", {}],
    [36, 1, 2, {}, "args"], [50, 1, {}, [1], []], [50, 2**53 + 1, {}], [68, 1, 1, {}],
    [69, 1, {}], [35, 0, "x"], [33, 1, True],
]


@pytest.mark.parametrize("message", GOOD)
def test_well_formed_messages_pass(message: list[object]) -> None:
    assert w.check(message) is message


@pytest.mark.parametrize("message", BAD, ids=repr)
def test_anything_else_is_a_wire_error(message: object) -> None:
    with pytest.raises(w.WireError):
        w.check(message)


def test_payload_helpers() -> None:
    assert with_payload([50, 1, {}], None, None) == [50, 1, {}]
    assert with_payload([50, 1, {}], None, {"k": 1}) == [50, 1, {}, [], {"k": 1}]
    assert w.args_kwargs([50, 1, {}, [1]], 3) == ([1], None)
