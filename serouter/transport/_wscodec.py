"""Sans-IO WebSocket (RFC 6455) server side of one connection: bytes in, events and bytes out.

The router's Twisted glue feeds every read to `WebSocketServerConnection.receive_data`, writes
whatever `data_to_send` and the `send_*` methods return, and drops the transport once `closed`
is true. The HTTP opening handshake is parsed by h11 (`_wshandshake` decides the answer); the
frame codec is our own (`_wsframe` holds its primitives) because it is the router's hot path:
one complete masked frame costs one slice, one C unmask and one event.

It must never import Twisted or sockets, never do I/O or keep time (keepalive timers belong to
the glue), never buffer more than `max_message_size` of payload for one message (the limit is
enforced from frame headers before the payload arrives), and never negotiate extensions.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from dataclasses import dataclass

import h11

from serouter.transport._wsframe import (
    BINARY_HEADERS,
    FIN,
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    TEXT_HEADERS,
    U16,
    U64,
    apply_mask,
    close_payload,
    encode_frame,
    oversize,
    valid_wire_close_code,
)
from serouter.transport._wshandshake import (
    HttpReply,
    accept_key,
    negotiate,
    switching_protocols,
)

__all__ = [
    "Accepted",
    "CloseReceived",
    "Event",
    "Failed",
    "Message",
    "Ping",
    "Pong",
    "WebSocketServerConnection",
    "accept_key",
]


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Accepted:
    """The opening handshake succeeded; the 101 reply is already in `data_to_send()`."""

    subprotocol: str
    path: str


@dataclass(slots=True)  # not frozen: built per message, and frozen init costs 0.15 us more
class Message:
    """A complete data message: `str` for text (valid UTF-8), `bytes` for binary."""

    data: bytes | str


@dataclass(frozen=True, slots=True)
class Ping:
    """The peer pinged; the pong is already queued in `data_to_send()`."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    """The peer ponged (normally answering our keepalive ping)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class CloseReceived:
    """The peer closed; any echo is queued in `data_to_send()` and `closed` is set."""

    code: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class Failed:
    """The peer broke the protocol (or the connection was lost); `closed` is set, nothing follows.

    After the handshake `code` is the close code we sent (1006 when the TCP stream just ended);
    a rejected handshake uses 1002 and names the HTTP status in `reason`.
    """

    code: int
    reason: str


Event = Accepted | Message | Ping | Pong | CloseReceived | Failed


# --- the connection -------------------------------------------------------------------------


class WebSocketServerConnection:
    """One server-side WebSocket connection, from the HTTP request to the closing handshake.

    `send_message`, `send_ping` and `send_close` return the frame for the caller to write (they
    queue nothing); replies the codec owes the peer (101 or HTTP error, pongs, close echoes,
    failure closes) accumulate in `data_to_send()`. Sending before the handshake or after a
    close returns b"".
    """

    __slots__ = (
        "_buf",
        "_close_sent",
        "_decoder",
        "_fast",
        "_frag_opcode",
        "_http",
        "_max_size",
        "_open",
        "_out",
        "_parts",
        "_path",
        "_room",
        "_server_name",
        "_subprotocols",
        "_text_parts",
        "closed",
        "request_headers",
        "subprotocol",
    )

    def __init__(
        self,
        *,
        path: str,
        subprotocols: Sequence[str],
        max_message_size: int,
        server_name: str = "serouter",
    ) -> None:
        self._path = path
        self._subprotocols = tuple(subprotocols)
        self._max_size = max_message_size
        self._server_name = server_name
        # 16 KiB is h11's default too; spelled out because the limit is part of our contract.
        self._http: h11.Connection | None = h11.Connection(
            h11.SERVER, max_incomplete_event_size=16 * 1024
        )
        self.subprotocol: str | None = None
        self.request_headers: list[tuple[bytes, bytes]] = []
        self.closed = False
        self._open = False  # may we still send data frames?
        self._close_sent = False
        self._buf = bytearray()  # unparsed input: at most one incomplete frame
        self._out = bytearray()
        # Fragmented message in progress: its opcode (0 = none), its binary parts or its
        # decoded text parts, and the UTF-8 decoder that checks text as it arrives.
        self._frag_opcode = 0
        self._parts: list[bytes] = []
        self._text_parts: list[str] = []
        self._decoder: codecs.IncrementalDecoder | None = None
        # Payload bytes the next data frame may still carry: the size limit minus what is
        # already buffered of a fragmented message.
        self._room = max_message_size
        # True while a complete FIN binary frame can go straight out as a Message.
        self._fast = False

    # --- public API ---

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes read from the peer (b"" for EOF) and return the events they complete."""
        buf = self._buf
        if self._fast and not buf and len(data) >= 6:
            # The router's common case: `data` is exactly one short, masked, final binary
            # frame. A masked 7-bit length (b1 in 0x80-0xFD) means b1 - 0x80 + 6 frame bytes.
            b1 = data[1]
            if (
                data[0] == 0x82
                and b1 <= 0xFD
                and len(data) == b1 - 122
                and b1 - 0x80 <= self._max_size
            ):
                return [Message(apply_mask(data[6:], data[2:6]))]
        if self.closed:
            return []
        if self._http is not None:
            return self._receive_handshake(data)
        if not data:
            return self._lost()
        events: list[Event] = []
        if buf:
            buf += data
            consumed = self._parse(buf, events)
            del buf[:consumed]  # deleting a prefix of a bytearray is O(1) in CPython
        else:
            consumed = self._parse(data, events)
            if consumed < len(data):
                buf += data[consumed:]
        if self.closed:
            buf.clear()
        return events

    def data_to_send(self) -> bytes:
        """Return (and forget) the bytes the codec owes the peer."""
        if not self._out:
            return b""
        out = bytes(self._out)
        self._out.clear()
        return out

    def send_message(self, payload: bytes | str) -> bytes:
        """Return one unfragmented frame: text for `str`, binary for `bytes`."""
        if not self._open:
            return b""
        if isinstance(payload, str):
            raw = payload.encode()
            if len(raw) < 126:
                return TEXT_HEADERS[len(raw)] + raw
            return encode_frame(FIN | OP_TEXT, raw)
        if len(payload) < 126:
            return BINARY_HEADERS[len(payload)] + payload
        return encode_frame(FIN | OP_BINARY, payload)

    def send_ping(self, payload: bytes = b"") -> bytes:
        """Return a ping frame; the peer's `Pong` event will carry the same payload."""
        if len(payload) > 125:
            raise ValueError("a ping payload is at most 125 bytes")
        if not self._open:
            return b""
        return encode_frame(FIN | OP_PING, payload)

    def send_close(self, code: int = 1000, reason: str = "") -> bytes:
        """Start the closing handshake and return the close frame.

        Before the handshake completed there is nobody to say goodbye to: `closed` is set and
        b"" returned. After a close was sent or received this returns b"".
        """
        if not valid_wire_close_code(code):
            raise ValueError(f"close code {code} may not be sent")
        if self._http is not None:
            self.closed = True
            return b""
        if self._close_sent or self.closed:
            return b""
        self._stop_sending()
        return encode_frame(FIN | OP_CLOSE, close_payload(code, reason))

    # --- opening handshake ---

    def _receive_handshake(self, data: bytes) -> list[Event]:
        """Feed h11 until a request is complete, then accept or reject it."""
        assert self._http is not None
        if not data:
            return self._lost()
        self._http.receive_data(data)
        try:
            request = self._http.next_event()
        except h11.RemoteProtocolError as exc:
            # h11's message quotes the peer's bytes; keep those out of replies and logs.
            status = exc.error_status_hint
            problem = "request headers too large" if status == 431 else "malformed HTTP request"
            return self._reject(HttpReply(status, problem + "\n"))
        if request is h11.NEED_DATA:
            return []
        if not isinstance(request, h11.Request):  # pragma: no cover - first event of a server
            return self._reject(HttpReply(400, "expected a request\n"))
        self.request_headers = list(request.headers)
        outcome = negotiate(request, self._path, self._subprotocols)
        if isinstance(outcome, HttpReply):
            return self._reject(outcome)
        return self._accept(request, *outcome)

    def _accept(self, request: h11.Request, subprotocol: str, key: bytes) -> list[Event]:
        """Queue the 101 reply and go on with any frames that came with the request."""
        assert self._http is not None
        trailing, eof = self._http.trailing_data
        self._http = None
        self.subprotocol = subprotocol
        self._open = self._fast = True
        self._out += switching_protocols(key, subprotocol, self._server_name)
        path = request.target.split(b"?", 1)[0].decode("latin-1")
        events: list[Event] = [Accepted(subprotocol, path)]
        if trailing:
            events += self.receive_data(trailing)
        if eof:
            events += self.receive_data(b"")
        return events

    def _reject(self, reply: HttpReply) -> list[Event]:
        """Answer with plain HTTP and close; a 200 status page is not a failure."""
        self._http = None
        self._out += reply.encode(self._server_name)
        self.closed = True
        if reply.status == 200:
            return []
        reason = f"HTTP {reply.status}: {reply.body.strip()}"
        return [Failed(1002, reason)]

    # --- frames ---

    def _parse(self, buf: bytes | bytearray, events: list[Event]) -> int:
        """Consume every complete frame in `buf`; return how many bytes were used."""
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            fast = self._fast and b0 == 0x82 and b1 >= 0x80
            if not fast:
                error = self._check_first_bytes(b0, b1)
                if error is not None:
                    self._fail(1002, error, events)
                    return size
            length = b1 & 0x7F
            start = pos + 6  # 2 header bytes + 4 mask bytes
            if length == 126:
                if size - pos < 4:
                    break
                length = buf[pos + 2] << 8 | buf[pos + 3]
                start = pos + 8
            elif length == 127:
                if size - pos < 10:
                    break
                length = U64.unpack_from(buf, pos + 2)[0]
                start = pos + 14
            # Decided from the header alone, so an oversized payload is never buffered.
            # Control frames were limited to 125 bytes by _check_first_bytes.
            if length > self._room and not b0 & 0x08:
                self._fail(*oversize(length), events)
                return size
            stop = start + length
            if stop > size:
                break
            payload = apply_mask(buf[start:stop], buf[start - 4 : start])
            pos = stop
            if fast:
                events.append(Message(payload))
            else:
                self._on_frame(b0, payload, events)
                if self.closed:
                    return size
        return pos

    def _check_first_bytes(self, b0: int, b1: int) -> str | None:
        """Check what the first two header bytes alone decide; return the 1002 reason if bad."""
        if b1 < 0x80:
            return "client frame not masked"
        if b0 & 0x70:
            return "reserved bits set"
        opcode = b0 & 0x0F
        if opcode >= OP_CLOSE:
            if opcode > OP_PONG:
                return f"unknown opcode {opcode:#x}"
            if not b0 & FIN:
                return "fragmented control frame"
            if b1 & 0x7F > 125:
                return "control frame payload over 125 bytes"
            return None
        if opcode == OP_CONTINUATION:
            return None if self._frag_opcode else "continuation frame without a message"
        if opcode > OP_BINARY:
            return f"unknown opcode {opcode:#x}"
        return "new message inside a fragmented message" if self._frag_opcode else None

    def _on_frame(self, b0: int, payload: bytes, events: list[Event]) -> None:
        """Act on one complete frame that passed the header checks."""
        opcode = b0 & 0x0F
        if opcode == OP_PING:
            if not self._close_sent:  # no pongs after our close frame
                self._out += encode_frame(FIN | OP_PONG, payload)
                events.append(Ping(payload))
        elif opcode == OP_PONG:
            events.append(Pong(payload))
        elif opcode == OP_CLOSE:
            self._on_close(payload, events)
        elif b0 & FIN and opcode != OP_CONTINUATION:
            self._on_whole_message(opcode, payload, events)
        else:
            self._on_fragment(opcode, bool(b0 & FIN), payload, events)

    def _on_whole_message(self, opcode: int, payload: bytes, events: list[Event]) -> None:
        """Deliver an unfragmented message the fast path did not take."""
        if opcode == OP_BINARY:
            self._deliver(payload, events)
            return
        try:
            text = payload.decode()
        except UnicodeDecodeError:
            self._fail(1007, "text message is not valid UTF-8", events)
            return
        self._deliver(text, events)

    def _on_fragment(self, opcode: int, fin: bool, payload: bytes, events: list[Event]) -> None:
        """Collect one fragment; decode text as it arrives so bad UTF-8 fails at once."""
        if opcode != OP_CONTINUATION:
            self._frag_opcode = opcode
            self._fast = False
            self._decoder = codecs.getincrementaldecoder("utf-8")() if opcode == OP_TEXT else None
        self._room -= len(payload)
        if self._decoder is not None:
            try:
                self._text_parts.append(self._decoder.decode(payload, fin))
            except UnicodeDecodeError:
                self._fail(1007, "text message is not valid UTF-8", events)
                return
        else:
            self._parts.append(payload)
        if not fin:
            return
        message: bytes | str = (
            "".join(self._text_parts) if self._decoder is not None else b"".join(self._parts)
        )
        self._frag_opcode = 0
        self._parts = []
        self._text_parts = []
        self._decoder = None
        self._room = self._max_size
        self._fast = not self._close_sent
        self._deliver(message, events)

    def _deliver(self, message: bytes | str, events: list[Event]) -> None:
        """Emit a message unless we already said goodbye (RFC 6455 section 5.5.1)."""
        if not self._close_sent:
            events.append(Message(message))

    def _on_close(self, payload: bytes, events: list[Event]) -> None:
        """Validate the peer's close frame, echo it unless we started, and finish."""
        code: int | None = None
        reason = ""
        if len(payload) == 1:
            self._fail(1002, "close frame with a 1-byte payload", events)
            return
        if payload:
            code = U16.unpack_from(payload)[0]
            if not valid_wire_close_code(code):
                self._fail(1002, f"invalid close code {code}", events)
                return
            try:
                reason = payload[2:].decode()
            except UnicodeDecodeError:
                self._fail(1007, "close reason is not valid UTF-8", events)
                return
        if not self._close_sent:
            self._out += encode_frame(FIN | OP_CLOSE, close_payload(code, ""))
            self._stop_sending()
        self.closed = True
        events.append(CloseReceived(code, reason))

    # --- endings ---

    def _stop_sending(self) -> None:
        """Record that our close frame is out: no more data, pings or closes from us."""
        self._close_sent = True
        self._open = False
        self._fast = False

    def _fail(self, code: int, reason: str, events: list[Event]) -> None:
        """Close with `code` unless our close frame is already out; nothing follows."""
        if not self._close_sent:
            self._out += encode_frame(FIN | OP_CLOSE, close_payload(code, reason))
            self._stop_sending()
        self.closed = True
        events.append(Failed(code, reason))

    def _lost(self) -> list[Event]:
        """The TCP stream ended without a close frame from the peer."""
        self._http = None
        self._stop_sending()
        self.closed = True
        return [Failed(1006, "connection lost")]
