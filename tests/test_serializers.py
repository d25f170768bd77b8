"""Serializers: round trips, WAMP's binary-in-JSON convention, one encoding per EVENT."""

import json

import cbor2
import pytest

from serouter.core.messages import Event, Result
from serouter.serializers import BY_NAME, CBOR, JSON, MSGPACK, SerializationError

PAYLOAD = [1, -2, 2**53, 1.5, "text ü", b"\x00\x01bin", None, True, {"k": [1, {"n": b"x"}]}]


@pytest.mark.parametrize("name", ["json", "msgpack", "cbor"])
def test_round_trip(name: str) -> None:
    """What is encoded decodes to the same value, binary included."""
    s = BY_NAME[name]
    data = s.encode(Result(3, {"progress": False}, PAYLOAD, {"b": b"\xff"}))
    assert s.decode(data) == [50, 3, {"progress": False}, PAYLOAD, {"b": b"\xff"}]


def test_json_binary_convention_on_the_wire() -> None:
    """Binary travels in JSON as a NUL character followed by base64."""
    data = JSON.encode(Result(1, {}, [b"\x01\x02"]))
    assert json.loads(data) == [50, 1, {}, ["\x00AQI="]]


def test_json_decodes_binary_strings_anywhere() -> None:
    """Strings starting with NUL become bytes in lists and dict values alike."""
    raw = b'[48,1,{},"a.b",["\\u0000AQI="],{"k":{"z":"\\u0000/w=="}}]'
    assert JSON.decode(raw) == [48, 1, {}, "a.b", [b"\x01\x02"], {"k": {"z": b"\xff"}}]
    assert JSON.decode(raw.decode()) == JSON.decode(raw)


@pytest.mark.parametrize(
    ("serializer", "garbage"),
    [(JSON, b"[1,"), (JSON, b"\xff\xfe"), (JSON, b'["\\u0000!!!"]'),
     (MSGPACK, b"\xc1"), (MSGPACK, b"\x92\x01"), (CBOR, b"\x9f"), (CBOR, b"\xff")],
)
def test_garbage_is_a_serialization_error(serializer: object, garbage: bytes) -> None:
    """Undecodable payloads raise SerializationError, never something else."""
    with pytest.raises(SerializationError):
        serializer.decode(garbage)  # type: ignore[attr-defined]


def test_event_is_encoded_once_per_serializer() -> None:
    """The same EVENT object reuses its bytes for every subscriber of one serializer."""
    event = Event(1, 2, {}, ["x"])
    first = MSGPACK.encode(event)
    assert MSGPACK.encode(event) is first
    assert JSON.encode(event) is JSON.encode(event)
    assert set(event.serialized) == {"msgpack", "json"}


def test_msgpack_extension_values_decode_as_absent() -> None:
    """A msgpack extension value (a JS client's undefined) decodes to None."""
    raw = bytes.fromhex("94") + b"\x20\x01" + b"\x81\xa5match\xd4\x00\x00" + b"\xa1t"
    assert MSGPACK.decode(raw) == [32, 1, {"match": None}, "t"]


def test_cbor_undefined_options_are_dropped() -> None:
    """CBOR undefined in a message's options is treated as absent."""
    raw = cbor2.dumps([32, 1, {"match": cbor2.undefined, "get_retained": True}, "t"])
    assert CBOR.decode(raw) == [32, 1, {"get_retained": True}, "t"]
