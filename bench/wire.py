"""WAMP wire formats for the load generator: serializers, RawSocket and WebSocket client framing.

Sans-IO: everything here turns bytes into messages and messages into bytes; sockets live in
``bench.peer``. Built for low CPU per message, not for conformance: it must never be used to
judge whether the router's framing is correct.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
RAWSOCKET_MAGIC = 0x7F
RAWSOCKET_MAX_LEN_EXP = 15  # 2**(9+15) = 16 MiB, the largest a client may announce
RAWSOCKET_ERRORS = {
    0: "illegal (must not be used)",
    1: "serializer unsupported",
    2: "maximum message length unacceptable",
    3: "use of reserved bits (unsupported feature)",
    4: "maximum connection count reached",
}
# A client frame header for "FIN + opcode" followed by a masked length and an all-zero mask key:
# masking with zeros leaves the payload unchanged, so the generator pays nothing for it.
_ZERO_MASK = b"\x00\x00\x00\x00"
_U32_AT = struct.Struct(">I").unpack_from
_U32 = struct.Struct(">I").pack
_SENTINEL = 0x7A3B5C1D9E8F  # stands in for a request ID while a message template is packed


class BenchError(Exception):
    """The benchmark cannot go on; the message says what the router did (or failed to do)."""


class WireError(BenchError):
    """The router sent bytes the generator cannot accept (its fault, not ours)."""


@dataclass(frozen=True, slots=True)
class Codec:
    """One WAMP serializer: how to turn a message list into bytes and back."""

    name: str
    rawsocket_id: int
    ws_protocol: str
    ws_opcode: int
    dumps: Callable[[Any], bytes]
    loads: Callable[[bytes], Any]
    pack_id: Callable[[int], bytes]  # cheaper than dumps() for a bare request ID

    def template(self, message: list[Any]) -> tuple[bytes, bytes]:
        """Split ``message``, packed, around its request ID (element 1): (before, after).

        ``before + dumps(request_id) + after`` then packs the same message with any request ID,
        so a generator packs only the small integer per message. Works for every codec here
        because each encodes an array as a header followed by its elements' own encodings.
        """
        packed = self.dumps([message[0], _SENTINEL, *message[2:]])
        marker = self.dumps(_SENTINEL)
        if packed.count(marker) != 1:
            raise ValueError(f"cannot split {message!r} around its request ID")
        before, _, after = packed.partition(marker)
        return before, after


def _msgpack_codec() -> Codec:
    import msgpack

    packer = msgpack.Packer(use_bin_type=True, autoreset=True)

    # unpackb's defaults (raw=False, string map keys) suit WAMP; passing them as keywords
    # would double its cost per message.
    return Codec("msgpack", 2, "wamp.2.msgpack", 0x2, packer.pack, msgpack.unpackb, packer.pack)


def _json_codec() -> Codec:
    encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
    decoder = json.JSONDecoder()

    def dumps(obj: Any) -> bytes:
        return encoder.encode(obj).encode()

    def loads(data: bytes) -> Any:
        return decoder.decode(data.decode())

    def pack_id(request_id: int) -> bytes:
        return b"%d" % request_id

    return Codec("json", 1, "wamp.2.json", 0x1, dumps, loads, pack_id)


def _cbor_codec() -> Codec:
    import cbor2

    return Codec("cbor", 3, "wamp.2.cbor", 0x2, cbor2.dumps, cbor2.loads, cbor2.dumps)


CODECS: dict[str, Callable[[], Codec]] = {
    "msgpack": _msgpack_codec,
    "json": _json_codec,
    "cbor": _cbor_codec,
}


def get_codec(name: str) -> Codec:
    """Return the codec called ``name`` (msgpack, json or cbor)."""
    try:
        return CODECS[name]()
    except KeyError:
        raise ValueError(f"unknown serializer {name!r}; choose from {sorted(CODECS)}") from None


class Framing(Protocol):
    """Client side of one transport's framing, after its opening handshake."""

    control_out: bytearray  # replies to control frames (pongs) waiting to be sent
    closed: str | None  # set when the router sent a close frame (what it said)

    def header(self, length: int) -> bytes:
        """The header of a client frame carrying ``length`` bytes of one WAMP message."""
        ...

    def frame(self, payload: bytes) -> bytes:
        """Return ``payload`` wrapped as one client frame."""
        ...

    def feed(self, data: bytes) -> list[bytes]:
        """Take bytes from the router; return the complete WAMP message payloads in them."""
        ...


# --- RawSocket -------------------------------------------------------------------------------


def rawsocket_hello(codec: Codec) -> bytes:
    """The 4-byte RawSocket opening handshake a client sends."""
    return bytes((RAWSOCKET_MAGIC, (RAWSOCKET_MAX_LEN_EXP << 4) | codec.rawsocket_id, 0, 0))


def check_rawsocket_reply(reply: bytes, codec: Codec) -> int:
    """Check the router's 4-byte handshake reply; return the router's max message length."""
    if len(reply) != 4 or reply[0] != RAWSOCKET_MAGIC:
        raise WireError(f"RawSocket handshake: bad reply {reply!r}")
    serializer, exp = reply[1] & 0x0F, reply[1] >> 4
    if serializer == 0:
        reason = RAWSOCKET_ERRORS.get(exp, "unknown error code")
        raise WireError(f"RawSocket handshake refused: error {exp} ({reason})")
    if serializer != codec.rawsocket_id:
        raise WireError(f"RawSocket handshake: router chose serializer {serializer}")
    if reply[2] or reply[3]:
        raise WireError(f"RawSocket handshake: reserved bytes set in {reply!r}")
    return int(2 ** (9 + exp))


class RawSocketFraming:
    """RawSocket frames: 1 byte type (0 message, 1 ping, 2 pong), 3 bytes big-endian length."""

    def __init__(self) -> None:
        self._buf = b""
        self.control_out = bytearray()
        self.closed: str | None = None  # RawSocket has no close frame

    def header(self, length: int) -> bytes:
        return _U32(length)  # type 0 (message) in the high byte

    def frame(self, payload: bytes) -> bytes:
        return _U32(len(payload)) + payload

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf + data if self._buf else data
        out: list[bytes] = []
        off, size, header = 0, len(buf), _U32_AT
        while size - off >= 4:
            head = header(buf, off)[0]  # type in the high byte, length in the low three
            end = off + 4 + (head & 0xFFFFFF)
            if end > size:
                break
            if head < 0x1000000:
                out.append(buf[off + 4 : end])
            elif head >> 24 == 1:  # ping: answer with a pong carrying the same payload
                self.control_out += b"\x02" + buf[off + 1 : end]
            elif head >> 24 != 2:
                raise WireError(f"RawSocket: frame type {head >> 24} is reserved")
            off = end
        self._buf = buf[off:]
        return out


# --- WebSocket -------------------------------------------------------------------------------


def websocket_request(host: str, port: int, path: str, codec: Codec) -> tuple[bytes, bytes]:
    """Return (HTTP upgrade request, the Sec-WebSocket-Accept value the router must answer)."""
    key = base64.b64encode(os.urandom(16))
    accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
    request = (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key.decode()}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: {codec.ws_protocol}\r\n"
        "\r\n"
    ).encode()
    return request, accept


def check_websocket_response(head: bytes, accept: bytes, codec: Codec) -> None:
    """Check the router's HTTP response head (up to the blank line) to our upgrade request."""
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if len(status) < 2 or status[1] != "101":
        raise WireError(f"WebSocket upgrade refused: {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("sec-websocket-accept", "").encode() != accept:
        raise WireError("WebSocket upgrade: wrong or missing Sec-WebSocket-Accept")
    if headers.get("sec-websocket-protocol") != codec.ws_protocol:
        got = headers.get("sec-websocket-protocol")
        raise WireError(f"WebSocket upgrade: subprotocol {got!r}, asked for {codec.ws_protocol}")


class WebSocketFraming:
    """Client WebSocket frames (masked with a zero key); server frames must be unmasked."""

    def __init__(self, opcode: int) -> None:
        self._fin_op = 0x80 | opcode
        self._buf = b""
        self._fragments: list[bytes] = []
        self.control_out = bytearray()
        self.closed: str | None = None

    def header(self, length: int) -> bytes:
        return _client_header(self._fin_op, length)

    def frame(self, payload: bytes) -> bytes:
        return _client_header(self._fin_op, len(payload)) + payload

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf + data if self._buf else data
        out: list[bytes] = []
        off, size = 0, len(buf)
        while size - off >= 2:
            head, length = buf[off], buf[off + 1]
            if length & 0x80:
                raise WireError("WebSocket: the router sent a masked frame")
            start = off + 2
            if length >= 126:
                start += 2 if length == 126 else 8
                if start > size:
                    break
                length = int.from_bytes(buf[off + 2 : start], "big")
            end = start + length
            if end > size:
                break
            if head in (0x82, 0x81):
                out.append(buf[start:end])  # the common case: one unfragmented data frame
            else:
                self._other_frame(head, buf[start:end], out)
                if self.closed is not None:  # nothing may follow a close frame
                    off = size
                    break
            off = end
        self._buf = buf[off:]
        return out

    def _other_frame(self, head: int, payload: bytes, out: list[bytes]) -> None:
        opcode = head & 0x0F
        if head & 0x70:
            raise WireError(f"WebSocket: reserved bits set in frame header {head:#04x}")
        if opcode == 0x9:
            self.control_out += _client_header(0x8A, len(payload)) + payload
        elif opcode == 0xA:
            pass
        elif opcode == 0x8:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.closed = f"WebSocket close {code} {payload[2:]!r}"
        elif opcode in (0x0, 0x1, 0x2):
            self._fragment(head, payload, out)
        else:
            raise WireError(f"WebSocket: unknown opcode {opcode:#x}")

    def _fragment(self, head: int, payload: bytes, out: list[bytes]) -> None:
        self._fragments.append(payload)
        if head & 0x80:
            out.append(b"".join(self._fragments))
            self._fragments.clear()


def _client_header(fin_op: int, size: int) -> bytes:
    if size < 126:
        return bytes((fin_op, 0x80 | size)) + _ZERO_MASK
    if size < 65536:
        return bytes((fin_op, 0xFE)) + size.to_bytes(2, "big") + _ZERO_MASK
    return bytes((fin_op, 0xFF)) + size.to_bytes(8, "big") + _ZERO_MASK


class FramedTemplate:
    """One message packed and framed once, with only its request ID left to fill in."""

    def __init__(self, codec: Codec, framing: Framing, message: list[Any]) -> None:
        self._before, self._after = codec.template(message)
        self._pack_id = codec.pack_id
        self._heads = _Heads(framing, self._before, len(self._before) + len(self._after))

    def frames(self, request_ids: Iterable[int]) -> bytes:
        """The framed messages for ``request_ids``, ready for one ``send``."""
        heads, after = self._heads, self._after
        return b"".join([heads[len(p)] + p + after for p in map(self._pack_id, request_ids)])


class _Heads(dict[int, bytes]):
    """Packed length of a request ID -> frame header + the message's bytes before the ID."""

    def __init__(self, framing: Framing, before: bytes, fixed: int) -> None:
        super().__init__()
        self._framing, self._before, self._fixed = framing, before, fixed

    def __missing__(self, id_size: int) -> bytes:
        head = self[id_size] = self._framing.header(self._fixed + id_size) + self._before
        return head
