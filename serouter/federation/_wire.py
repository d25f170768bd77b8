"""The client side of WAMP over RawSocket, sans-IO: what the proxy needs to talk to routers.

A proxy is a WAMP *client* of the name server and of other routers. The router's own codecs
(``transport/_rawsocket_codec.py``, ``core/messages.parse``) are its server side; this module is
the mirror image: the client's handshake, the frames a router sends (pings answered here), and
validation of the messages a router sends to a client. A remote router is another VM, so its
messages are checked as strictly as a router checks a client's: a malformed one is a
:class:`WireError` and the connection is dropped. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MAGIC = 0x7F
FRAME_MESSAGE, FRAME_PING, FRAME_PONG = 0, 1, 2
MAX_EXPONENT = 15  # we accept messages up to 2**24 bytes: the RawSocket maximum
MAX_PING = 4096
ERR_SERIALIZER_UNSUPPORTED = 1

# WAMP message codes (Basic and Advanced Profile)
HELLO, WELCOME, ABORT, CHALLENGE, GOODBYE, ERROR = 1, 2, 3, 4, 6, 8
PUBLISH, PUBLISHED, SUBSCRIBE, SUBSCRIBED, UNSUBSCRIBE, UNSUBSCRIBED, EVENT = (
    16, 17, 32, 33, 34, 35, 36)
CALL, CANCEL, RESULT = 48, 49, 50
MAX_ID = 2**53


class WireError(Exception):
    """The router broke the protocol (framing or message shape): drop the connection."""


class HandshakeRefused(Exception):
    """The router refused the RawSocket handshake with error ``code`` (1: serializer)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"RawSocket handshake refused with error {code}")
        self.code = code


def handshake(serializer_id: int) -> bytes:
    """The client's 4 handshake bytes: we take up to 2**24, in ``serializer_id``."""
    return bytes((MAGIC, (MAX_EXPONENT << 4) | serializer_id, 0, 0))


def frame(payload: bytes) -> bytes:
    """A message frame (type 0): the type byte and 3-byte length read as one 4-byte length."""
    return len(payload).to_bytes(4, "big") + payload


class ClientFraming:
    """Cuts what a router sends into WAMP payloads; pings are answered into ``out``."""

    __slots__ = ("_buf", "out", "peer_max", "serializer_id")

    def __init__(self, serializer_id: int) -> None:
        self.serializer_id = serializer_id
        self.peer_max = 0  # the largest message the router accepts, once the handshake is done
        self._buf = bytearray()
        self.out: list[bytes] = []  # control frames (pongs) to write

    @property
    def ready(self) -> bool:
        return self.peer_max > 0

    def receive(self, data: bytes) -> list[bytes]:
        """The complete payloads in ``data``; HandshakeRefused or WireError if it is wrong."""
        if self._buf:  # only a partial frame is ever kept: usually nothing is
            buf = bytes(self._buf) + data
            self._buf = bytearray()
        else:
            buf = data
        if not self.peer_max:
            if len(buf) < 4:
                self._buf = bytearray(buf)
                return []
            self._handshake(buf[:4])
            buf = buf[4:]
        payloads: list[bytes] = []
        pos, n = 0, len(buf)
        while n - pos >= 4:
            ftype = buf[pos]
            length = int.from_bytes(buf[pos + 1 : pos + 4], "big")
            if ftype > FRAME_PONG:
                raise WireError(f"invalid RawSocket frame type {ftype:#04x}")
            if ftype != FRAME_MESSAGE and length > MAX_PING:
                raise WireError(f"a ping or pong of {length} bytes")
            end = pos + 4 + length
            if end > n:
                break
            if ftype == FRAME_MESSAGE:
                payloads.append(buf[pos + 4 : end])
            elif ftype == FRAME_PING:
                self.out.append(bytes((FRAME_PONG,)) + buf[pos + 1 : end])
            pos = end
        if pos < n:
            self._buf = bytearray(buf[pos:])
        return payloads

    def _handshake(self, reply: bytes) -> None:
        if reply[0] != MAGIC or reply[2] or reply[3]:
            raise WireError(f"not a RawSocket handshake reply: {reply.hex()}")
        if reply[1] & 0x0F == 0:
            raise HandshakeRefused(reply[1] >> 4)
        if reply[1] & 0x0F != self.serializer_id:
            raise WireError("the router chose another serializer than ours")
        self.peer_max = 2 ** (9 + (reply[1] >> 4))


# -- what a router may send a client ---------------------------------------------------------------


def _id(value: object) -> bool:
    return type(value) is int and 0 < value <= MAX_ID


def _payload_ok(m: list[Any], start: int) -> bool:
    n = len(m)
    if n > start + 2:
        return False
    return (n <= start or type(m[start]) is list) and (n <= start + 1 or type(m[start + 1]) is dict)


def _welcome(m: list[Any]) -> bool:
    return len(m) == 3 and _id(m[1]) and type(m[2]) is dict


def _reason(m: list[Any]) -> bool:  # ABORT, GOODBYE
    return len(m) == 3 and type(m[1]) is dict and type(m[2]) is str


def _error(m: list[Any]) -> bool:
    return (len(m) >= 5 and type(m[1]) is int and _id(m[2]) and type(m[3]) is dict
            and type(m[4]) is str and _payload_ok(m, 5))


def _ack(m: list[Any]) -> bool:  # PUBLISHED, SUBSCRIBED
    return len(m) == 3 and _id(m[1]) and _id(m[2])


def _unsubscribed(m: list[Any]) -> bool:
    # [UNSUBSCRIBED, Request] or, router-initiated, [UNSUBSCRIBED, 0, {subscription, reason}]
    return (len(m) == 2 and _id(m[1])) or (len(m) == 3 and m[1] == 0 and type(m[2]) is dict)


def _event(m: list[Any]) -> bool:
    return len(m) >= 4 and _id(m[1]) and _id(m[2]) and type(m[3]) is dict and _payload_ok(m, 4)


def _result(m: list[Any]) -> bool:
    return len(m) >= 3 and _id(m[1]) and type(m[2]) is dict and _payload_ok(m, 3)


_CHECKS: dict[int, Callable[[list[Any]], bool]] = {
    WELCOME: _welcome, ABORT: _reason, GOODBYE: _reason, ERROR: _error, PUBLISHED: _ack,
    SUBSCRIBED: _ack, UNSUBSCRIBED: _unsubscribed, EVENT: _event, RESULT: _result,
    CHALLENGE: lambda m: len(m) == 3 and type(m[1]) is str and type(m[2]) is dict,
}


def check(message: object) -> list[Any]:
    """``message`` if it is a well-formed message a router may send us, else WireError.

    We never register, so INVOCATION and INTERRUPT are as wrong as an unknown type.
    """
    if type(message) is not list or not message or type(message[0]) is not int:
        raise WireError(f"not a WAMP message: {message!r:.120}")
    verify = _CHECKS.get(message[0])
    if verify is None or not verify(message):
        raise WireError(f"malformed or unexpected message from the router: {message!r:.200}")
    return message


def args_kwargs(m: list[Any], start: int) -> tuple[list[Any] | None, dict[str, Any] | None]:
    """The optional Arguments and ArgumentsKw of a checked message."""
    n = len(m)
    return (m[start] if n > start else None), (m[start + 1] if n > start + 1 else None)
