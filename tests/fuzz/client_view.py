"""The fuzzed client's view of the router's bytes: parsed exactly as a client would parse them.

Anything a client could not parse (a bad handshake reply, a masked or reserved server frame, a
payload that does not decode in the serializer the router chose, or bytes after a refusal) is a
ValueError, which the fuzz targets report as a crash.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import cbor2
import msgpack

_LOADS: dict[str, Callable[[bytes], Any]] = {
    "json": lambda b: json.loads(b.decode("utf-8")),
    "msgpack": lambda b: msgpack.unpackb(b, raw=False, strict_map_key=False),
    "cbor": cbor2.loads,
}


class ClientView:
    """Parses the router's bytes for one connection as a client would; raises ValueError."""

    def __init__(self, transport: str, serializer: str) -> None:
        self.transport = transport
        self.loads = _LOADS[serializer]
        self.buf = b""
        self.opened = False  # handshake reply seen
        self.refused = False  # the router refused the handshake: nothing more may follow
        self.pings: list[bytes] = []

    def feed(self, data: bytes) -> list[Any]:
        if self.refused:
            raise ValueError(f"router sent {data[:40]!r} after refusing the handshake")
        self.buf += data
        if not self.opened and not self._opening():
            return []
        if self.refused:
            return []
        if self.transport == "rawsocket":
            return self._rawsocket()
        return self._websocket()

    def _opening(self) -> bool:
        """Consume the handshake reply; False while incomplete. The serializer is the one
        the router chose (a mutated handshake may have asked for another)."""
        if self.transport == "rawsocket":
            if len(self.buf) < 4:
                return False
            reply, self.buf = self.buf[:4], self.buf[4:]
            if reply[0] != 0x7F or reply[2:] != b"\0\0":
                raise ValueError(f"bad RawSocket handshake reply {reply!r}")
            chosen = {1: "json", 2: "msgpack", 3: "cbor"}.get(reply[1] & 0x0F)
            self.refused = chosen is None
        else:
            head, sep, rest = self.buf.partition(b"\r\n\r\n")
            if not sep:
                return False
            if not head.startswith(b"HTTP/1.1 "):
                raise ValueError(f"bad HTTP reply {head[:40]!r}")
            self.buf = rest
            self.refused = not head.startswith(b"HTTP/1.1 101 ")
            chosen = None
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"sec-websocket-protocol: wamp.2."):
                    chosen = line.split(b"wamp.2.", 1)[1].decode()
        if chosen is not None:
            self.loads = _LOADS[chosen]
        self.opened = True
        if self.refused:
            self.buf = b""  # an HTTP error body, or nothing
        return True

    def _rawsocket(self) -> list[Any]:
        out = []
        while len(self.buf) >= 4:
            size = int.from_bytes(self.buf[1:4], "big")
            if len(self.buf) < 4 + size:
                break
            kind, body, self.buf = self.buf[0], self.buf[4 : 4 + size], self.buf[4 + size :]
            if kind == 0:
                out.append(self._message(body))
            elif kind == 1:
                self.pings.append(body)
            elif kind != 2:
                raise ValueError(f"router sent RawSocket frame type {kind}")
        return out

    def _websocket(self) -> list[Any]:
        out = []
        while len(self.buf) >= 2:
            b0, b1 = self.buf[0], self.buf[1]
            if b1 & 0x80 or b0 & 0x70 or not b0 & 0x80:
                raise ValueError(f"router sent a masked, reserved or fragmented frame {b0:#x}")
            size, start = b1, 2
            if size == 126:
                size, start = int.from_bytes(self.buf[2:4], "big"), 4
            elif size == 127:
                size, start = int.from_bytes(self.buf[2:10], "big"), 10
            if len(self.buf) < start + size:
                break
            opcode, body = b0 & 0x0F, self.buf[start : start + size]
            self.buf = self.buf[start + size :]
            if opcode in (1, 2):
                out.append(self._message(body))
            elif opcode == 9:
                self.pings.append(body)
            elif opcode not in (8, 10):
                raise ValueError(f"router sent opcode {opcode:#x}")
        return out

    def _message(self, body: bytes) -> Any:
        msg = self.loads(body)
        if type(msg) is not list or not msg or type(msg[0]) is not int:
            raise ValueError(f"router sent {msg!r:.200}, not a WAMP message")
        return msg
