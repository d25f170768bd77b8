"""WAMP serializers: JSON (with the binary-in-JSON convention), MsgPack and CBOR.

A serializer turns one outgoing message into bytes and one incoming payload into a Python
value; the transport parses that value into a message. EVENTs are encoded once per serializer
and the bytes cached on the shared event object, whatever the number of subscribers.
"""

import base64
import json
from collections.abc import Callable
from typing import Any, Final

import cbor2
import msgpack

from serouter.core.messages import Event, Outgoing


class SerializationError(Exception):
    """A payload could not be decoded (answered as a protocol violation)."""


class Serializer:
    """One WAMP serialization: its names on the wire and its codec."""

    __slots__ = ("_dumps", "binary", "loads", "name", "rawsocket_id", "subprotocol")

    def __init__(
        self,
        name: str,
        rawsocket_id: int,
        binary: bool,
        dumps: Callable[[Any], bytes],
        loads: Callable[[Any], Any],
    ) -> None:
        self.name = name
        self.rawsocket_id = rawsocket_id
        self.binary = binary  # WebSocket: binary frames (msgpack, cbor) or text (json)
        self.subprotocol = f"wamp.2.{name}"
        self._dumps = dumps
        self.loads = loads  # raw: raises the codec's own errors (the transport's hot path)

    def encode(self, msg: Outgoing) -> bytes:
        if type(msg) is Event:
            cached = msg.serialized.get(self.name)
            if cached is None:
                cached = msg.serialized[self.name] = self._dumps(msg.marshal())
            return cached
        return self._dumps(msg.marshal())

    def decode(self, payload: bytes | str) -> Any:
        try:
            return self.loads(payload)
        except Exception as e:  # every codec has its own error types; all mean "malformed"
            raise SerializationError(f"invalid {self.name} payload: {e}") from None


# -- JSON ---------------------------------------------------------------------------------
# WAMP carries binary in JSON as a string: a NUL character followed by the base64 encoding.
# Encoding needs no walk (json calls ``default`` for bytes); decoding walks only payloads
# that contain an escaped NUL at all.

_ESCAPED_NUL = b"\\u0000"
_ESCAPED_NUL_STR = "\\u0000"


def _json_default(o: object) -> str:
    if isinstance(o, bytes | bytearray | memoryview):
        return "\x00" + base64.b64encode(o).decode("ascii")
    raise TypeError(f"cannot serialize {type(o).__name__} to JSON")


_json_encoder = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), default=_json_default, allow_nan=False
)


def _json_dumps(obj: Any) -> bytes:
    return _json_encoder.encode(obj).encode("utf-8")


def _unbinary(obj: Any) -> Any:
    if type(obj) is str:
        return base64.b64decode(obj[1:], validate=True) if obj[:1] == "\x00" else obj
    if type(obj) is list:
        return [_unbinary(v) for v in obj]
    if type(obj) is dict:
        return {k: _unbinary(v) for k, v in obj.items()}
    return obj


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_json_decoder = json.JSONDecoder(parse_constant=_no_constants)


def _json_loads(payload: bytes | str) -> Any:
    # WebSocket text frames arrive as already-validated str, RawSocket payloads as bytes.
    text = payload.decode("utf-8") if type(payload) is bytes else payload
    obj = _json_decoder.decode(text)  # type: ignore[arg-type]
    marker = _ESCAPED_NUL if type(payload) is bytes else _ESCAPED_NUL_STR
    return _unbinary(obj) if marker in payload else obj  # type: ignore[operator]


# -- MsgPack and CBOR -----------------------------------------------------------------------

# Real clients send odd "absent" values in options: one popular JS client encodes JavaScript's
# undefined as a msgpack extension type or CBOR's undefined. WAMP has no such value; the core
# treats None as absent, so msgpack extensions decode to None and CBOR's undefined is dropped
# from the message's options/details dict (element 2 of every message that has one).

_packer = msgpack.Packer(use_bin_type=True, autoreset=True)


def _no_extensions(code: int, data: bytes) -> None:
    return None


def _msgpack_loads(payload: bytes) -> Any:
    return msgpack.unpackb(payload, raw=False, use_list=True, ext_hook=_no_extensions)


def _refuse_references(value: Any, immutable: bool) -> Any:
    raise cbor2.CBORDecodeError("CBOR value sharing and string references are not accepted")


# Value sharing (tags 28, 29) and string references (25, 256) let a few bytes name one value
# many times: re-encoded for a peer (JSON and MsgPack have no references), 254 bytes became
# 68 MB, and a little more would exhaust memory. Map keys and set elements must be strings
# (as with msgpack's strict_map_key): integer keys chosen to collide in the hash table made one
# message cost seconds, growing with the square of their number.
_CBOR_REFUSED_TAGS: Final = dict.fromkeys((25, 28, 29, 256), _refuse_references)


def _cbor_loads(payload: bytes) -> Any:
    obj = cbor2.loads(payload, semantic_decoders=_CBOR_REFUSED_TAGS, strict_hashable_types=True)
    if type(obj) is list and len(obj) > 2 and type(obj[2]) is dict and obj[2]:
        options = obj[2]
        if any(v is cbor2.undefined for v in options.values()):
            obj[2] = {k: v for k, v in options.items() if v is not cbor2.undefined}
    return obj


JSON: Final = Serializer("json", 1, False, _json_dumps, _json_loads)
MSGPACK: Final = Serializer("msgpack", 2, True, _packer.pack, _msgpack_loads)
CBOR: Final = Serializer("cbor", 3, True, cbor2.dumps, _cbor_loads)

BY_NAME: Final = {s.name: s for s in (JSON, MSGPACK, CBOR)}
BY_RAWSOCKET_ID: Final = {s.rawsocket_id: s for s in (JSON, MSGPACK, CBOR)}
BY_SUBPROTOCOL: Final = {s.subprotocol: s for s in (JSON, MSGPACK, CBOR)}
