"""Tests for the sans-IO WebSocket server codec: handshake, frame rules, a real client, fuzzing."""

from __future__ import annotations

import base64
import os
import random
import struct
from collections.abc import Iterable, Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from serouter.transport import _wscodec, _wsframe
from serouter.transport._wscodec import (
    Accepted,
    CloseReceived,
    Event,
    Failed,
    Message,
    Ping,
    Pong,
    WebSocketServerConnection,
)

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 section 1.3
MASK = b"\x37\xfa\x21\x3d"
SUBPROTOCOLS = ("wamp.2.json", "wamp.2.cbor")

HeaderValue = str | list[str] | None


# --- helpers ----------------------------------------------------------------------------------


def request(
    *,
    method: str = "GET",
    target: str = "/ws",
    http: str = "HTTP/1.1",
    headers: Mapping[str, HeaderValue] | None = None,
    body: bytes = b"",
) -> bytes:
    """Build an opening handshake; `headers` overrides defaults (None drops, a list repeats)."""
    fields: dict[str, HeaderValue] = {
        "Host": "router.example",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": RFC_KEY,
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Protocol": "wamp.2.json",
    }
    fields.update(headers or {})
    lines = [f"{method} {target} {http}"]
    for name, value in fields.items():
        lines += [
            f"{name}: {item}" for item in ([value] if isinstance(value, str) else value or [])
        ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


HANDSHAKE = request()


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    mask: bytes = MASK,
    length_bits: int | None = None,
) -> bytes:
    """Encode a client frame; `length_bits` (7, 16, 64) forces a length encoding."""
    size = len(payload)
    bits = length_bits or (7 if size < 126 else 16 if size < 0x10000 else 64)
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    mask_bit = 0x80 if masked else 0
    if bits == 7:
        head += bytes([mask_bit | size])
    elif bits == 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", size)
    if not masked:
        return head + payload
    return head + mask + _wsframe._py_apply_mask(payload, mask)


def binary(payload: bytes, **kwargs: object) -> bytes:
    """A client binary frame."""
    return frame(0x2, payload, **kwargs)  # type: ignore[arg-type]


def text(payload: str | bytes, **kwargs: object) -> bytes:
    """A client text frame (bytes are sent as they are, to test invalid UTF-8)."""
    raw = payload.encode() if isinstance(payload, str) else payload
    return frame(0x1, raw, **kwargs)  # type: ignore[arg-type]


def close(code: int | None = 1000, reason: bytes = b"") -> bytes:
    """A client close frame."""
    return frame(0x8, b"" if code is None else struct.pack("!H", code) + reason)


def new_conn(max_size: int = 1 << 20, server_name: str = "serouter") -> WebSocketServerConnection:
    """A fresh server connection on /ws speaking the WAMP subprotocols."""
    return WebSocketServerConnection(
        path="/ws", subprotocols=SUBPROTOCOLS, max_message_size=max_size, server_name=server_name
    )


def opened(max_size: int = 1 << 20) -> WebSocketServerConnection:
    """A server connection past the handshake, with the 101 already drained."""
    conn = new_conn(max_size)
    assert conn.receive_data(HANDSHAKE) == [Accepted("wamp.2.json", "/ws")]
    conn.data_to_send()
    return conn


Outcome = tuple[list[Event], bytes, bool]


def feed(chunks: Iterable[bytes], max_size: int = 1 << 20) -> Outcome:
    """Feed non-empty chunks (b"" would mean EOF) to a new connection; return what happened."""
    conn = new_conn(max_size)
    events: list[Event] = []
    out = b""
    for chunk in filter(None, chunks):
        events += conn.receive_data(chunk)
        out += conn.data_to_send()
    return events, out, conn.closed


def split_points(stream: bytes) -> Sequence[int]:
    """Every offset for short streams; a spread plus both ends for long ones."""
    if len(stream) <= 4096:
        return range(len(stream) + 1)
    return sorted({*range(0, len(stream), 997), *range(len(stream) - 40, len(stream) + 1)})


def all_ways(stream: bytes, max_size: int = 1 << 20) -> Outcome:
    """Feed `stream` whole, byte by byte and split in two everywhere; all must agree."""
    whole = feed([stream], max_size)
    assert feed([stream[i : i + 1] for i in range(len(stream))], max_size) == whole
    for cut in split_points(stream):
        assert feed([stream[:cut], stream[cut:]], max_size) == whole, f"split at {cut}"
    return whole


def after_handshake(*frames: bytes, max_size: int = 1 << 20) -> Outcome:
    """Run handshake + frames all ways; return events after Accepted and the bytes after 101."""
    events, out, closed = all_ways(HANDSHAKE + b"".join(frames), max_size)
    assert events[0] == Accepted("wamp.2.json", "/ws")
    head, sep, rest = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ") and sep
    return events[1:], rest, closed


def server_frames(data: bytes) -> list[tuple[bool, int, bytes]]:
    """Decode server frames as (fin, opcode, payload), insisting they are not masked."""
    frames = []
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        assert not b1 & 0x80, "server frames must not be masked"
        size, pos = b1 & 0x7F, pos + 2
        if size == 126:
            (size,), pos = struct.unpack_from("!H", data, pos), pos + 2
        elif size == 127:
            (size,), pos = struct.unpack_from("!Q", data, pos), pos + 8
        frames.append((bool(b0 & 0x80), b0 & 0x0F, data[pos : pos + size]))
        pos += size
    return frames


def close_code(data: bytes) -> int | None:
    """The code of the single close frame in `data` (None for an empty close)."""
    [(fin, opcode, payload)] = server_frames(data)
    assert fin and opcode == 0x8
    return struct.unpack("!H", payload[:2])[0] if payload else None


def http_reply(data: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    """Split an HTTP response into status, lower-cased headers and body."""
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    pairs = [line.split(b": ", 1) for line in lines]
    headers = {name.lower(): value for name, value in pairs}
    assert int(headers.get(b"content-length", len(body))) == len(body)
    return int(status_line.split()[1]), headers, body


def rejected(data: bytes, status: int) -> bytes:
    """Assert `data` fed all ways is refused with HTTP `status` and a Failed; return the body."""
    events, out, closed = all_ways(data)
    assert closed
    assert len(events) == 1 and isinstance(events[0], Failed)
    assert events[0].code == 1002 and f"HTTP {status}" in events[0].reason
    got, _, body = http_reply(out)
    assert got == status
    return body


# --- opening handshake ------------------------------------------------------------------------


def test_accept_key_matches_rfc_sample() -> None:
    """The accept key for RFC 6455's sample nonce is the RFC's sample answer."""
    assert _wscodec.accept_key(RFC_KEY.encode()) == RFC_ACCEPT


def test_handshake_succeeds_with_101() -> None:
    """A valid upgrade gets 101 with accept key, subprotocol and Server, then Accepted."""
    conn = new_conn(server_name="serouter-test")
    events = conn.receive_data(HANDSHAKE)
    assert events == [Accepted("wamp.2.json", "/ws")]
    status, headers, body = http_reply(conn.data_to_send())
    assert status == 101 and body == b""
    assert headers[b"sec-websocket-accept"] == RFC_ACCEPT
    assert headers[b"sec-websocket-protocol"] == b"wamp.2.json"
    assert headers[b"upgrade"] == b"websocket"
    assert headers[b"connection"] == b"Upgrade"
    assert headers[b"server"] == b"serouter-test"
    assert conn.subprotocol == "wamp.2.json"
    assert (b"host", b"router.example") in conn.request_headers
    assert not conn.closed
    assert conn.data_to_send() == b""


def test_accept_key_is_sent_verbatim() -> None:
    """The Sec-WebSocket-Accept header carries the exact RFC sample value."""
    conn = new_conn()
    conn.receive_data(HANDSHAKE)
    assert b"\r\nSec-WebSocket-Accept: " + RFC_ACCEPT + b"\r\n" in conn.data_to_send()


def test_handshake_split_everywhere_gives_same_result() -> None:
    """The handshake parses identically however its bytes are split."""
    events, _, closed = all_ways(HANDSHAKE)
    assert events == [Accepted("wamp.2.json", "/ws")] and not closed


def test_query_string_is_ignored_for_path() -> None:
    """The query string does not take part in path matching."""
    events, _, _ = feed([request(target="/ws?ticket=abc")])
    assert events == [Accepted("wamp.2.json", "/ws")]


@pytest.mark.parametrize(
    ("offered", "selected"),
    [
        ("wamp.2.json", "wamp.2.json"),
        ("wamp.2.cbor, wamp.2.json", "wamp.2.cbor"),
        ("mqtt,wamp.2.json,wamp.2.cbor", "wamp.2.json"),
        (["foo, bar", "wamp.2.cbor", "wamp.2.json"], "wamp.2.cbor"),
        (["foo", " wamp.2.json , wamp.2.cbor"], "wamp.2.json"),
    ],
)
def test_subprotocol_is_clients_first_supported(offered: HeaderValue, selected: str) -> None:
    """The first subprotocol in the client's (possibly repeated) list that we speak wins."""
    conn = new_conn()
    events = conn.receive_data(request(headers={"Sec-WebSocket-Protocol": offered}))
    assert events == [Accepted(selected, "/ws")]
    assert conn.subprotocol == selected
    assert f"Sec-WebSocket-Protocol: {selected}\r\n".encode() in conn.data_to_send()


@pytest.mark.parametrize("offered", ["mqtt", "WAMP.2.JSON", None])
def test_no_common_subprotocol_is_400(offered: str | None) -> None:
    """Without a subprotocol we speak the handshake is refused with 400 naming ours."""
    body = rejected(request(headers={"Sec-WebSocket-Protocol": offered}), 400)
    assert b"wamp.2.json, wamp.2.cbor" in body


@pytest.mark.parametrize("version", ["8", "12", "14", "13, 8", ["13", "8"], None])
def test_wrong_version_is_426(version: HeaderValue) -> None:
    """Any version other than exactly 13 gets 426 announcing version 13."""
    events, out, closed = all_ways(request(headers={"Sec-WebSocket-Version": version}))
    status, headers, _ = http_reply(out)
    assert status == 426 and headers[b"sec-websocket-version"] == b"13"
    assert closed and isinstance(events[0], Failed) and "HTTP 426" in events[0].reason


@pytest.mark.parametrize("target", ["/", "/ws/", "/wss", "/WS", "/ws%20"])
def test_wrong_path_is_404(target: str) -> None:
    """A handshake for another path gets 404."""
    rejected(request(target=target), 404)


def test_plain_get_gets_status_page() -> None:
    """A browser's plain GET gets a small 200 text page, is closed, and is no failure."""
    plain = request(headers={"Upgrade": None, "Connection": "keep-alive"})
    events, out, closed = all_ways(plain)
    status, headers, body = http_reply(out)
    assert status == 200 and events == [] and closed
    assert headers[b"content-type"].startswith(b"text/plain")
    assert headers[b"connection"] == b"close"
    assert body == (
        b"serouter WAMP router: use a WebSocket client (subprotocols wamp.2.json, wamp.2.cbor)\n"
    )


@pytest.mark.parametrize("method", ["POST", "PUT", "HEAD", "DELETE", "OPTIONS"])
def test_non_get_is_405(method: str) -> None:
    """Methods other than GET get 405 with Allow: GET."""
    data = request(method=method, headers={"Content-Length": "0"})
    assert rejected(data, 405)
    _, out, _ = feed([data])
    assert http_reply(out)[1][b"allow"] == b"GET"


@pytest.mark.parametrize("connection", ["keep-alive", "close", None])
def test_connection_without_upgrade_is_400(connection: str | None) -> None:
    """A Connection header lacking the upgrade token is refused with 400."""
    rejected(request(headers={"Connection": connection}), 400)


@pytest.mark.parametrize(
    ("connection", "upgrade"),
    [
        ("keep-alive, Upgrade", "websocket"),
        ("UPGRADE", "WebSocket"),
        (["keep-alive", "upgrade"], "websocket"),
    ],
)
def test_connection_and_upgrade_are_case_insensitive_lists(
    connection: HeaderValue, upgrade: str
) -> None:
    """Connection is a case-insensitive comma list (maybe repeated); Upgrade is case-insensitive."""
    events, _, _ = feed([request(headers={"Connection": connection, "Upgrade": upgrade})])
    assert events == [Accepted("wamp.2.json", "/ws")]


def test_upgrade_to_something_else_is_400() -> None:
    """An Upgrade that does not name websocket is refused with 400."""
    rejected(request(headers={"Upgrade": "h2c"}), 400)


def test_http10_upgrade_is_400() -> None:
    """WebSocket needs HTTP/1.1; an HTTP/1.0 upgrade is refused with 400."""
    rejected(request(http="HTTP/1.0"), 400)


@pytest.mark.parametrize(
    "key",
    [
        None,
        "not base64!!",
        base64.b64encode(b"x" * 15).decode(),
        base64.b64encode(b"x" * 17).decode(),
        RFC_KEY.rstrip("="),
        [RFC_KEY, RFC_KEY],
    ],
)
def test_bad_key_is_400(key: HeaderValue) -> None:
    """A missing, malformed, wrong-length or repeated Sec-WebSocket-Key gets 400."""
    rejected(request(headers={"Sec-WebSocket-Key": key}), 400)


def test_oversized_headers_are_431() -> None:
    """More than 16 KiB of headers without the end of the request gets 431."""
    start = b"GET /ws HTTP/1.1\r\nHost: x\r\n"
    filler = b"X-Filler: " + b"a" * 1000 + b"\r\n"
    conn = new_conn()
    events: list[Event] = conn.receive_data(start)
    for _ in range(17):
        events += conn.receive_data(filler)
    assert len(events) == 1 and isinstance(events[0], Failed) and "HTTP 431" in events[0].reason
    assert conn.closed and http_reply(conn.data_to_send())[0] == 431


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # a TLS ClientHello
        b"GET\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nNo colon here\r\n\r\n",
        request(headers={"Host": None}),
    ],
)
def test_garbage_request_is_400(garbage: bytes) -> None:
    """Requests h11 rejects (including HTTP/1.1 without Host) get 400."""
    rejected(garbage, 400)


def test_frames_after_request_in_same_read_are_processed() -> None:
    """Frames that arrived together with the request are parsed, not lost."""
    conn = new_conn()
    events = conn.receive_data(HANDSHAKE + binary(b"one") + text("two"))
    assert events == [Accepted("wamp.2.json", "/ws"), Message(b"one"), Message("two")]


def test_extension_offers_are_ignored() -> None:
    """A permessage-deflate offer is not accepted and compressed (RSV1) frames then fail."""
    deflate = "permessage-deflate; client_max_window_bits"
    offer = request(headers={"Sec-WebSocket-Extensions": deflate})
    events, out, closed = all_ways(offer + binary(b"x", rsv=0x40))
    assert b"sec-websocket-extensions" not in out.lower()
    assert events[0] == Accepted("wamp.2.json", "/ws")
    assert events[1:] == [Failed(1002, "reserved bits set")] and closed


def test_eof_during_handshake_is_connection_lost() -> None:
    """EOF before the request is complete is Failed(1006) with nothing to send."""
    conn = new_conn()
    assert conn.receive_data(HANDSHAKE[:20]) == []
    assert conn.receive_data(b"") == [Failed(1006, "connection lost")]
    assert conn.closed and conn.data_to_send() == b""


def test_nothing_happens_after_rejection() -> None:
    """Once a handshake was refused, more input yields no events."""
    conn = new_conn()
    conn.receive_data(request(target="/nope"))
    assert conn.closed
    assert conn.receive_data(HANDSHAKE) == []
    assert conn.receive_data(b"") == []


def test_sending_before_handshake_yields_nothing() -> None:
    """Messages and pings sent before the handshake produce no bytes."""
    conn = new_conn()
    assert conn.send_message(b"x") == b"" and conn.send_ping() == b""


def test_send_close_before_handshake_just_closes() -> None:
    """Closing before the handshake sets closed and sends nothing."""
    conn = new_conn()
    assert conn.send_close() == b""
    assert conn.closed and conn.receive_data(HANDSHAKE) == []


# --- frame rules ------------------------------------------------------------------------------


def test_single_messages_binary_and_text() -> None:
    """Complete binary and text frames become bytes and str messages, in order."""
    events, out, closed = after_handshake(
        binary(b"\x00\xffbin"), text("h\u00e9llo \u20ac \U0001f600"), binary(b""), text("")
    )
    assert events == [
        Message(b"\x00\xffbin"),
        Message("h\u00e9llo \u20ac \U0001f600"),
        Message(b""),
        Message(""),
    ]
    assert out == b"" and not closed


def test_many_frames_in_one_read() -> None:
    """A read holding many frames yields all their messages in order."""
    conn = opened()
    payloads = [os.urandom(n) for n in range(0, 300, 7)]
    events = conn.receive_data(b"".join(binary(p) for p in payloads))
    assert events == [Message(p) for p in payloads]


def test_unmasked_frame_is_1002() -> None:
    """A client frame without the mask bit closes with 1002."""
    events, out, closed = after_handshake(binary(b"hi", masked=False), binary(b"later"))
    assert events == [Failed(1002, "client frame not masked")]
    assert close_code(out) == 1002 and closed


def test_unmasked_empty_ping_fails_without_waiting() -> None:
    """An unmasked 2-byte frame fails at once rather than waiting for mask bytes."""
    conn = opened()
    assert conn.receive_data(frame(0x9, masked=False)) == [Failed(1002, "client frame not masked")]


@pytest.mark.parametrize("rsv", [0x40, 0x20, 0x10, 0x70])
def test_rsv_bits_are_1002(rsv: int) -> None:
    """Any reserved bit set closes with 1002 (no extension was negotiated)."""
    events, out, _ = after_handshake(binary(b"x", rsv=rsv))
    assert events == [Failed(1002, "reserved bits set")] and close_code(out) == 1002


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_unknown_opcode_is_1002(opcode: int) -> None:
    """Reserved opcodes close with 1002."""
    events, out, _ = after_handshake(frame(opcode, b"x"))
    assert events == [Failed(1002, f"unknown opcode {opcode:#x}")] and close_code(out) == 1002


@pytest.mark.parametrize("opcode", [0x8, 0x9, 0xA])
def test_control_frame_over_125_is_1002(opcode: int) -> None:
    """Control frames longer than 125 bytes close with 1002."""
    events, out, _ = after_handshake(frame(opcode, b"x" * 126))
    assert events == [Failed(1002, "control frame payload over 125 bytes")]
    assert close_code(out) == 1002


@pytest.mark.parametrize("opcode", [0x8, 0x9, 0xA])
def test_fragmented_control_frame_is_1002(opcode: int) -> None:
    """Control frames without FIN close with 1002."""
    events, out, _ = after_handshake(frame(opcode, b"", fin=False))
    assert events == [Failed(1002, "fragmented control frame")] and close_code(out) == 1002


def test_control_frames_ignore_message_size_limit() -> None:
    """The message size limit applies to data, not to a 125-byte ping."""
    events, out, _ = after_handshake(frame(0x9, b"p" * 125), max_size=10)
    assert events == [Ping(b"p" * 125)]
    assert server_frames(out) == [(True, 0xA, b"p" * 125)]


@pytest.mark.parametrize("payload", [b"", b"keepalive-17", bytes(range(125))])
def test_ping_is_answered_with_same_payload(payload: bytes) -> None:
    """A ping yields Ping and queues a pong with the same payload."""
    events, out, closed = after_handshake(frame(0x9, payload))
    assert events == [Ping(payload)] and not closed
    assert server_frames(out) == [(True, 0xA, payload)]


def test_pong_is_reported_and_not_answered() -> None:
    """A pong yields Pong and queues nothing."""
    events, out, _ = after_handshake(frame(0xA, b"ka"))
    assert events == [Pong(b"ka")] and out == b""


def test_continuation_without_message_is_1002() -> None:
    """A continuation frame with no message in progress closes with 1002."""
    events, out, _ = after_handshake(frame(0x0, b"x"))
    assert events == [Failed(1002, "continuation frame without a message")]
    assert close_code(out) == 1002


@pytest.mark.parametrize("opcode", [0x1, 0x2])
def test_new_message_during_fragmented_message_is_1002(opcode: int) -> None:
    """A text or binary frame inside a fragmented message closes with 1002."""
    events, out, _ = after_handshake(binary(b"a", fin=False), frame(opcode, b"b"))
    assert events == [Failed(1002, "new message inside a fragmented message")]
    assert close_code(out) == 1002


def test_fragmented_binary_is_reassembled() -> None:
    """Binary fragments are joined into one message."""
    events, _, _ = after_handshake(
        binary(b"ab", fin=False), frame(0x0, b"", fin=False), frame(0x0, b"cd"), binary(b"next")
    )
    assert events == [Message(b"abcd"), Message(b"next")]


def test_fragmented_text_with_interleaved_control_frames() -> None:
    """Pings and pongs between fragments are handled; the text splits inside a character."""
    raw = "gr\u00fc\u00df \U0001f600!".encode()
    events, out, _ = after_handshake(
        text(raw[:3], fin=False),
        frame(0x9, b"p1"),
        frame(0x0, raw[3:8], fin=False),
        frame(0xA, b"q"),
        frame(0x9, b"p2"),
        frame(0x0, raw[8:]),
    )
    assert events == [Ping(b"p1"), Pong(b"q"), Ping(b"p2"), Message("gr\u00fc\u00df \U0001f600!")]
    assert server_frames(out) == [(True, 0xA, b"p1"), (True, 0xA, b"p2")]


@pytest.mark.parametrize(
    ("size", "bits"), [(126, 16), (200, 16), (65535, 16), (65536, 64), (70000, 64)]
)
def test_extended_lengths(size: int, bits: int) -> None:
    """16-bit and 64-bit payload lengths are decoded."""
    payload = random.Random(size).randbytes(size)
    events, _, _ = after_handshake(binary(payload), binary(b"end"))
    assert events == [Message(payload), Message(b"end")]
    assert frame(0x2, payload)[1] & 0x7F == (126 if bits == 16 else 127)


@pytest.mark.parametrize("bits", [16, 64])
def test_non_minimal_length_is_accepted(bits: int) -> None:
    """A short payload announced with a longer length encoding is still accepted."""
    events, _, _ = after_handshake(binary(b"tiny", length_bits=bits))
    assert events == [Message(b"tiny")]


@pytest.mark.parametrize(
    "header",
    [
        bytes([0x82, 0x80 | 126]) + struct.pack("!H", 101),
        bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 1 << 40),
        bytes([0x81, 0x80 | 101]),
        bytes([0x02, 0x80 | 126]) + struct.pack("!H", 5000),
    ],
)
def test_oversize_is_refused_from_header_alone(header: bytes) -> None:
    """A frame declaring more than max_message_size fails with 1009 before any payload."""
    conn = opened(max_size=100)
    assert conn.receive_data(header) == [Failed(1009, "message too big")]
    assert close_code(conn.data_to_send()) == 1009 and conn.closed


def test_exact_size_limit_is_allowed() -> None:
    """A message of exactly max_message_size bytes is delivered."""
    events, _, _ = after_handshake(binary(b"x" * 100), text("y" * 100), max_size=100)
    assert events == [Message(b"x" * 100), Message("y" * 100)]


def test_fragment_sum_over_limit_is_refused_from_header() -> None:
    """When fragments together would exceed the limit, the offending header fails with 1009."""
    conn = opened(max_size=100)
    assert conn.receive_data(binary(b"a" * 60, fin=False)) == []
    assert conn.receive_data(frame(0x0, b"b" * 40, fin=False)) == []
    assert conn.receive_data(bytes([0x80, 0x80 | 1])) == [Failed(1009, "message too big")]
    assert close_code(conn.data_to_send()) == 1009


def test_fragment_sum_at_limit_is_allowed() -> None:
    """Fragments adding up to exactly the limit are reassembled; the budget then resets."""
    events, _, _ = after_handshake(
        binary(b"a" * 60, fin=False), frame(0x0, b"b" * 40), binary(b"c" * 100), max_size=100
    )
    assert events == [Message(b"a" * 60 + b"b" * 40), Message(b"c" * 100)]


def test_length_with_top_bit_is_1002() -> None:
    """A 64-bit length with the most significant bit set fails with 1002 from the header."""
    conn = opened()
    header = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 1 << 63)
    assert conn.receive_data(header) == [Failed(1002, "frame length has the top bit set")]
    assert close_code(conn.data_to_send()) == 1002


@pytest.mark.parametrize(
    "raw", [b"\xff", b"abc\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"caf\xc3"]
)
def test_invalid_utf8_text_is_1007(raw: bytes) -> None:
    """A text message that is not valid UTF-8 closes with 1007."""
    events, out, _ = after_handshake(text(raw))
    assert events == [Failed(1007, "text message is not valid UTF-8")]
    assert close_code(out) == 1007


def test_invalid_utf8_prefix_fails_before_message_ends() -> None:
    """An invalid first fragment fails at once, without waiting for the final fragment."""
    conn = opened()
    events = conn.receive_data(text(b"ok \xe0\x80 more", fin=False))
    assert events == [Failed(1007, "text message is not valid UTF-8")]
    assert close_code(conn.data_to_send()) == 1007


def test_incomplete_utf8_at_fragment_end_is_fine_until_final() -> None:
    """A character cut at a fragment boundary waits; a message ending mid-character fails."""
    conn = opened()
    assert conn.receive_data(text(b"caf\xc3", fin=False)) == []
    assert conn.receive_data(frame(0x0, b"\xa9", fin=False)) == []
    assert conn.receive_data(frame(0x0, b"\xe2\x82")) == [
        Failed(1007, "text message is not valid UTF-8")
    ]


def test_close_without_code_is_echoed_empty() -> None:
    """An empty close yields CloseReceived(None) and an empty close echo."""
    events, out, closed = after_handshake(close(None))
    assert events == [CloseReceived(None, "")] and closed
    assert close_code(out) is None


@pytest.mark.parametrize(
    "code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999]
)
def test_valid_close_codes_are_echoed(code: int) -> None:
    """A close with a valid code and reason is reported and its code echoed."""
    events, out, closed = after_handshake(close(code, "bye \u00e9".encode()))
    assert events == [CloseReceived(code, "bye \u00e9")] and closed
    assert close_code(out) == code


@pytest.mark.parametrize(
    "code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
)
def test_invalid_close_codes_are_1002(code: int) -> None:
    """Close codes that may not appear on the wire fail with 1002."""
    events, out, _ = after_handshake(close(code))
    assert events == [Failed(1002, f"invalid close code {code}")]
    assert close_code(out) == 1002


def test_close_with_one_byte_payload_is_1002() -> None:
    """A close payload of exactly one byte fails with 1002."""
    events, out, _ = after_handshake(frame(0x8, b"\x03"))
    assert events == [Failed(1002, "close frame with a 1-byte payload")]
    assert close_code(out) == 1002


def test_close_reason_invalid_utf8_is_1007() -> None:
    """A close reason that is not UTF-8 fails with 1007."""
    events, out, _ = after_handshake(close(1000, b"\xff"))
    assert events == [Failed(1007, "close reason is not valid UTF-8")]
    assert close_code(out) == 1007


def test_nothing_after_peer_close() -> None:
    """Frames after the peer's close (same read or later) produce no events or replies."""
    events, out, closed = after_handshake(close(1000), binary(b"late"), frame(0x9, b"p"))
    assert events == [CloseReceived(1000, "")] and closed
    assert close_code(out) == 1000


def test_nothing_after_failure() -> None:
    """After Failed, the rest of the read and later reads yield nothing."""
    conn = opened()
    stream = binary(b"ok") + binary(b"bad", masked=False) + binary(b"after")
    assert conn.receive_data(stream) == [Message(b"ok"), Failed(1002, "client frame not masked")]
    assert conn.receive_data(binary(b"more")) == []
    assert conn.receive_data(b"") == []


def test_server_initiated_close_handshake() -> None:
    """After send_close, data and pings are ignored and the peer's close is not echoed."""
    conn = opened()
    assert server_frames(conn.send_close(1001, "shutting down")) == [
        (True, 0x8, struct.pack("!H", 1001) + b"shutting down")
    ]
    assert not conn.closed
    assert conn.send_close() == b""
    assert conn.send_message(b"x") == b"" and conn.send_ping() == b""
    stream = binary(b"x") + text("y", fin=False) + frame(0x9, b"p") + frame(0x0, b"z")
    assert conn.receive_data(stream + frame(0xA, b"q")) == [Pong(b"q")]
    assert conn.receive_data(close(1001)) == [CloseReceived(1001, "")]
    assert conn.closed and conn.data_to_send() == b""


def test_protocol_error_after_our_close_sends_no_second_close() -> None:
    """A violation after our close fails without queueing a second close frame."""
    conn = opened()
    conn.send_close()
    assert conn.receive_data(binary(b"x", masked=False)) == [
        Failed(1002, "client frame not masked")
    ]
    assert conn.closed and conn.data_to_send() == b""


def test_send_close_rejects_invalid_codes() -> None:
    """send_close refuses codes that may not be sent."""
    conn = opened()
    for code in (1005, 1006, 999, 5000):
        with pytest.raises(ValueError, match="may not be sent"):
            conn.send_close(code)


def test_send_close_truncates_long_reason() -> None:
    """A long close reason is cut to fit a control frame, on a character boundary."""
    conn = opened()
    [(_, _, payload)] = server_frames(conn.send_close(1000, "\u20ac" * 100))
    assert len(payload) <= 125
    assert payload[2:].decode() == "\u20ac" * 41


@pytest.mark.parametrize("after_close", [False, True])
def test_eof_is_connection_lost(after_close: bool) -> None:
    """EOF without the peer's close frame yields Failed(1006) and sends nothing."""
    conn = opened()
    if after_close:
        conn.send_close()
    assert conn.receive_data(b"") == [Failed(1006, "connection lost")]
    assert conn.closed and conn.data_to_send() == b""
    assert conn.receive_data(binary(b"x")) == []


def test_eof_after_close_handshake_yields_nothing() -> None:
    """EOF after a completed close handshake is not a failure."""
    conn = opened()
    conn.receive_data(close())
    assert conn.receive_data(b"") == []


def test_large_frame_in_small_pieces() -> None:
    """A 4 MiB frame fed in 1 KiB pieces is delivered once, intact."""
    payload = random.Random(4).randbytes(4 << 20)
    data = binary(payload)
    conn = opened(max_size=8 << 20)
    events: list[Event] = []
    for i in range(0, len(data), 1024):
        events += conn.receive_data(data[i : i + 1024])
    assert events == [Message(payload)]


def test_one_frame_per_read_all_short_sizes() -> None:
    """Reads holding exactly one short binary frame (the common case) deliver every size."""
    conn = opened()
    for size in range(126):
        payload = bytes([size]) * size
        assert conn.receive_data(binary(payload, mask=os.urandom(4))) == [Message(payload)]


@pytest.mark.parametrize(("size", "bits"), [(124, 16), (119, 64), (0, 16), (120, 16)])
def test_one_extended_length_frame_per_read(size: int, bits: int) -> None:
    """A lone read of a non-minimal 16/64-bit frame is not mistaken for a 7-bit one."""
    conn = opened()
    assert conn.receive_data(binary(b"z" * size, length_bits=bits)) == [Message(b"z" * size)]


def test_one_oversized_short_frame_per_read() -> None:
    """A lone complete short frame over the limit fails with 1009."""
    conn = opened(max_size=10)
    assert conn.receive_data(binary(b"x" * 11)) == [Failed(1009, "message too big")]
    assert close_code(conn.data_to_send()) == 1009


def test_lone_binary_frame_inside_fragmented_message_is_1002() -> None:
    """A complete binary frame in its own read during a fragmented message fails with 1002."""
    conn = opened()
    assert conn.receive_data(text("a", fin=False)) == []
    assert conn.receive_data(binary(b"b")) == [
        Failed(1002, "new message inside a fragmented message")
    ]


def test_lone_binary_frame_after_our_close_is_ignored() -> None:
    """A complete binary frame in its own read after our close frame yields nothing."""
    conn = opened()
    conn.send_close()
    assert conn.receive_data(binary(b"b")) == []


# --- sending ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "length_byte"), [(0, 0), (125, 125), (126, 126), (65536, 127)])
def test_send_message_framing(size: int, length_byte: int) -> None:
    """Outgoing messages are one unmasked FIN frame: binary for bytes, text for str."""
    conn = opened()
    data = conn.send_message(b"b" * size)
    assert data[1] == length_byte
    assert server_frames(data) == [(True, 0x2, b"b" * size)]
    assert server_frames(conn.send_message("\u00e9" * size)) == [
        (True, 0x1, "\u00e9".encode() * size)
    ]


def test_send_ping_framing_and_limit() -> None:
    """send_ping returns an unmasked ping; payloads over 125 bytes are refused."""
    conn = opened()
    assert server_frames(conn.send_ping(b"ka")) == [(True, 0x9, b"ka")]
    with pytest.raises(ValueError, match="125"):
        conn.send_ping(b"x" * 126)


def test_python_mask_fallback_matches_c() -> None:
    """The pure-Python unmasking fallback agrees with the C version for all tail lengths."""
    from websockets.speedups import apply_mask

    for size in (0, 1, 3, 4, 5, 127, 1000):
        data = os.urandom(size)
        assert _wsframe._py_apply_mask(data, MASK) == apply_mask(data, MASK)


# --- split streams ----------------------------------------------------------------------------

REPRESENTATIVE_STREAMS = {
    "messages": HANDSHAKE
    + binary(b"\x01" * 40)
    + text("hello")
    + frame(0x9, b"ka")
    + text(b"\xe2\x82", fin=False)
    + frame(0xA, b"")
    + frame(0x0, b"\xac!")
    + binary(b"L" * 300)
    + close(1000, b"done"),
    "long": HANDSHAKE + binary(b"m" * 70000) + binary(b"n" * 5),
    "failure": HANDSHAKE + binary(b"ok") + frame(0x8, b"\x03") + binary(b"after"),
    "oversize": HANDSHAKE + bytes([0x82, 0xFE, 0x01, 0x00]),
}


@pytest.mark.parametrize("name", sorted(REPRESENTATIVE_STREAMS))
def test_representative_streams_split_everywhere(name: str) -> None:
    """Representative handshake+frame streams give identical results however they are split."""
    max_size = 100 if name == "oversize" else 100_000
    events, _, _ = all_ways(REPRESENTATIVE_STREAMS[name], max_size)
    assert events[0] == Accepted("wamp.2.json", "/ws") and len(events) >= 2


# --- a real client ------------------------------------------------------------------------------


def connect_client() -> tuple[ClientProtocol, WebSocketServerConnection]:
    """Run a websockets sans-IO client's handshake against a server object in memory."""
    client = ClientProtocol(
        parse_uri("ws://router.example/ws"), subprotocols=[Subprotocol("wamp.2.json")]
    )
    client.send_request(client.connect())
    server = new_conn()
    assert to_server(client, server) == [Accepted("wamp.2.json", "/ws")]
    to_client(server, client)
    [response] = client.events_received()
    assert isinstance(response, Response) and response.status_code == 101
    assert client.handshake_exc is None
    assert client.subprotocol == "wamp.2.json"
    return client, server


def to_server(client: ClientProtocol, server: WebSocketServerConnection) -> list[Event]:
    """Carry the client's pending bytes to the server."""
    return server.receive_data(b"".join(client.data_to_send()))


def to_client(server: WebSocketServerConnection, client: ClientProtocol, *extra: bytes) -> None:
    """Carry the server's queued bytes (and any returned frames) to the client."""
    client.receive_data(server.data_to_send() + b"".join(extra))


def client_frames(client: ClientProtocol) -> list[tuple[Opcode, bytes]]:
    """The frames the client received since last asked, as (opcode, payload)."""
    frames = client.events_received()
    assert all(isinstance(f, Frame) for f in frames)
    return [(f.opcode, bytes(f.data)) for f in frames if isinstance(f, Frame)]


def test_real_client_messages_both_ways() -> None:
    """Text and binary messages flow both ways between websockets' client and our server."""
    client, server = connect_client()
    client.send_text(b'[1, "realm1", {}]')
    client.send_binary(b"\x00\x01\x02")
    assert to_server(client, server) == [Message('[1, "realm1", {}]'), Message(b"\x00\x01\x02")]
    big = os.urandom(70000)
    to_client(server, client, server.send_message("[2, 1, {}] \u00e9"), server.send_message(big))
    assert client_frames(client) == [
        (Opcode.TEXT, "[2, 1, {}] \u00e9".encode()),
        (Opcode.BINARY, big),
    ]


def test_real_client_fragmented_messages_and_ping() -> None:
    """The client's fragmented text and binary messages, with a ping between, reassemble."""
    client, server = connect_client()
    client.send_text("\u20ac".encode()[:2], fin=False)
    client.send_ping(b"hello?")
    client.send_continuation("\u20ac".encode()[2:] + b" end", fin=True)
    client.send_binary(b"a" * 200, fin=False)
    client.send_continuation(b"b" * 70000, fin=False)
    client.send_continuation(b"", fin=True)
    assert to_server(client, server) == [
        Ping(b"hello?"),
        Message("\u20ac end"),
        Message(b"a" * 200 + b"b" * 70000),
    ]
    to_client(server, client)
    assert client_frames(client) == [(Opcode.PONG, b"hello?")]


def test_real_client_answers_our_ping() -> None:
    """Our ping is answered by the client and surfaces as a Pong event."""
    client, server = connect_client()
    to_client(server, client, server.send_ping(b"ka-1"))
    assert client_frames(client) == [(Opcode.PING, b"ka-1")]
    assert to_server(client, server) == [Pong(b"ka-1")]


def test_real_client_closes() -> None:
    """A client-initiated close is reported, echoed and completes the client's handshake."""
    client, server = connect_client()
    client.send_close(1000, "bye")
    assert to_server(client, server) == [CloseReceived(1000, "bye")]
    assert server.closed
    to_client(server, client)
    client.receive_eof()
    assert client.close_rcvd is not None and client.close_rcvd.code == 1000
    assert client.state.name == "CLOSED"


def test_real_client_answers_our_close() -> None:
    """A server-initiated close is echoed by the client and then reported to us."""
    client, server = connect_client()
    to_client(server, client, server.send_close(1001, "restart"))
    assert to_server(client, server) == [CloseReceived(1001, "restart")]
    assert server.closed and server.data_to_send() == b""


# --- property: random message sequences round-trip ----------------------------------------------

TEXT_ALPHABET = "abc xyz\u00e9\u00df\u20ac\u4e2d\U0001f600\x00"


@st.composite
def message_streams(draw: st.DrawFn) -> tuple[bytes, int, list[Event]]:
    """Random messages, fragmented at random with interleaved pings, and a chunking."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    stream = HANDSHAKE
    expected: list[Event] = [Accepted("wamp.2.json", "/ws")]
    for _ in range(draw(st.integers(0, 5))):
        size = draw(st.sampled_from([0, 1, 125, 126, 65535, 65536, 70000]) | st.integers(0, 70000))
        message: bytes | str
        if draw(st.booleans()):
            message = "".join(rng.choices(TEXT_ALPHABET, k=size // 2))
            raw, opcode = message.encode(), 0x1
        else:
            message = rng.randbytes(size)
            raw, opcode = message, 0x2
        cuts = sorted(rng.randrange(len(raw) + 1) for _ in range(draw(st.integers(0, 4))))
        pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
        for index, piece in enumerate(pieces):
            op = opcode if index == 0 else 0x0
            mask = rng.randbytes(4)
            stream += frame(op, piece, fin=index == len(pieces) - 1, mask=mask)
            if index < len(pieces) - 1 and rng.random() < 0.3:
                stream += frame(0x9, b"i%d" % index, mask=mask)
                expected.append(Ping(b"i%d" % index))
        expected.append(Message(message))
    return stream, draw(st.integers(0, 2**32)), expected


@settings(max_examples=60, deadline=None)
@given(message_streams())
def test_random_message_sequences_round_trip(
    case: tuple[bytes, int, list[Event]],
) -> None:
    """Random fragmented text/binary messages fed in random chunks arrive exactly as sent."""
    stream, chunk_seed, expected = case
    rng = random.Random(chunk_seed)
    conn = new_conn()
    events: list[Event] = []
    pos = 0
    while pos < len(stream):
        size = rng.choice([1, 2, 7, 100, 1000, 65536])
        events += conn.receive_data(stream[pos : pos + size])
        pos += size
    assert events == expected
    assert not conn.closed
