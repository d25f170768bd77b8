"""The WebSocket opening handshake (RFC 6455 section 4.2) for the server codec in `_wscodec`.

h11 parses the HTTP request; this module decides what to answer: the 101 upgrade with the
chosen subprotocol, or a plain HTTP reply (a status page, or the reason the request was
refused) after which the connection closes. Like the codec, it must never import Twisted or
do I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import h11

_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    426: "Upgrade Required",
    431: "Request Header Fields Too Large",
}


@dataclass(frozen=True, slots=True)
class HttpReply:
    """A plain HTTP answer that ends the connection instead of upgrading it."""

    status: int
    body: str
    headers: tuple[tuple[str, str], ...] = ()

    def encode(self, server_name: str) -> bytes:
        """Serialize as an HTTP/1.1 response that tells the client we will close."""
        body = self.body.encode()
        lines = [
            f"HTTP/1.1 {self.status} {_REASONS.get(self.status, 'Error')}",
            f"Server: {server_name}",
            "Content-Type: text/plain; charset=utf-8",
            f"Content-Length: {len(body)}",
            "Connection: close",
            *(f"{name}: {value}" for name, value in self.headers),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def accept_key(key: bytes) -> bytes:
    """Compute `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def _values(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    """Every value of a possibly repeated header, stripped, in order."""
    return [value.strip() for key, value in headers if key == name]


def _comma_values(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    """All comma-separated tokens of a possibly repeated header, stripped, in order."""
    return [token.strip() for value in _values(headers, name) for token in value.split(b",")]


def _valid_key(values: list[bytes]) -> bool:
    """Whether there is exactly one key and it is base64 of 16 bytes."""
    if len(values) != 1:
        return False
    try:
        return len(base64.b64decode(values[0], validate=True)) == 16
    except binascii.Error:
        return False


def negotiate(
    request: h11.Request, path: str, subprotocols: Sequence[str]
) -> HttpReply | tuple[str, bytes]:
    """Check a request against RFC 6455 section 4.2.1: (subprotocol, key) or the HTTP reply."""
    headers = list(request.headers)
    offered_names = ", ".join(subprotocols) or "none"
    if request.method != b"GET":
        return HttpReply(405, "only GET is allowed here\n", (("Allow", "GET"),))
    if request.target.split(b"?", 1)[0].decode("latin-1") != path:
        return HttpReply(404, "serouter: no WebSocket endpoint at this path\n")
    upgrade = [token.lower() for token in _comma_values(headers, b"upgrade")]
    if not upgrade:
        return HttpReply(
            200,
            f"serouter WAMP router: use a WebSocket client (subprotocols {offered_names})\n",
        )
    if b"websocket" not in upgrade or request.http_version != b"1.1":
        return HttpReply(400, "expected an HTTP/1.1 WebSocket upgrade\n")
    if b"upgrade" not in [token.lower() for token in _comma_values(headers, b"connection")]:
        return HttpReply(400, "Connection header must contain 'upgrade'\n")
    if _values(headers, b"sec-websocket-version") != [b"13"]:
        return HttpReply(
            426, "only WebSocket version 13 is supported\n", (("Sec-WebSocket-Version", "13"),)
        )
    key = _values(headers, b"sec-websocket-key")
    if not _valid_key(key):
        return HttpReply(400, "Sec-WebSocket-Key must be base64 of 16 bytes\n")
    for offered in _comma_values(headers, b"sec-websocket-protocol"):
        name = offered.decode("latin-1")
        if name in subprotocols:
            return name, key[0]
    return HttpReply(400, f"no common subprotocol; this router speaks {offered_names}\n")


def switching_protocols(key: bytes, subprotocol: str, server_name: str) -> bytes:
    """The 101 reply that completes the handshake for `key` with the chosen subprotocol."""
    return (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_key(key) + b"\r\n"
        b"Sec-WebSocket-Protocol: " + subprotocol.encode("latin-1") + b"\r\n"
        b"Server: " + server_name.encode("latin-1") + b"\r\n\r\n"
    )
