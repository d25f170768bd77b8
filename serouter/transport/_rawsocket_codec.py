"""RawSocket framing, server side, sans-IO (WAMP spec, ``rfc/text/basic/bp_transports.md``).

Handshake: the client sends ``0x7F``, ``(max_len_exp << 4) | serializer``, two reserved zero
bytes; the server answers the same shape with its own max length and the chosen serializer, or
``0x7F, error << 4, 0, 0`` and closes. Then frames: 1 byte type (0 message, 1 ping, 2 pong; the
upper 5 bits reserved), 3 bytes big-endian length, payload.

The length of every frame is checked from its header before any payload is buffered.
"""

MAGIC = 0x7F
FRAME_MESSAGE, FRAME_PING, FRAME_PONG = 0, 1, 2
# Handshake error codes.
ERR_SERIALIZER_UNSUPPORTED = 1
ERR_MAX_LENGTH_UNACCEPTABLE = 2
ERR_RESERVED_BITS = 3
ERR_MAX_CONNECTIONS = 4

MAX_FRAME = 2**24  # the 3-byte length field's limit and the largest exponent (15)
MAX_PING = 4096  # pings and pongs carry a token, not data: refuse big ones before buffering
# A client that accepts less cannot even take our WELCOME (its roles and features alone take
# ~750 bytes): refuse it in the handshake, with the spec's error for that, not with silence.
MIN_PEER_EXPONENT = 3  # 2**(9+3) = 4096 bytes


def length_exponent(max_message_size: int) -> int:
    """The largest exponent e with 2**(9+e) <= max_message_size (what we announce)."""
    return max(0, min(15, max_message_size.bit_length() - 10))


class RawSocketError(Exception):
    """The peer broke RawSocket framing; the connection must be closed."""


class RawSocketServerCodec:
    """Feeds on bytes, yields complete WAMP payloads; pings are answered here."""

    __slots__ = (
        "_buf",
        "_need",
        "_out",
        "max_message_size",
        "peer_max",
        "pongs",
        "serializer_id",
        "supported",
    )

    def __init__(self, supported: set[int], max_message_size: int) -> None:
        self.supported = supported
        self.max_message_size = min(max_message_size, MAX_FRAME)
        self.serializer_id = 0  # set once the handshake succeeded
        self.peer_max = 0  # the largest message the client accepts
        self.pongs = 0  # pongs received (the keepalive watches this)
        # Bytes of an incomplete frame, and how many we need before parsing can go on: a big
        # message arriving in small reads is appended, not re-copied at every read.
        self._buf = bytearray()
        self._need = 0
        self._out: list[bytes] = []

    @property
    def has_output(self) -> bool:
        return bool(self._out)

    def data_to_send(self) -> bytes:
        out, self._out = b"".join(self._out), []
        return out

    def receive_data(self, data: bytes) -> list[bytes]:
        """Complete WAMP message payloads in ``data``; raise RawSocketError on bad framing."""
        if self._buf:
            self._buf += data
            if len(self._buf) < self._need:
                return []
            buf, self._buf = bytes(self._buf), bytearray()
        else:
            buf = data
        if not self.serializer_id:
            buf = self._handshake(buf)
        payloads: list[bytes] = []
        pos, n = 0, len(buf)
        while n - pos >= 4:
            ftype = buf[pos]
            length = int.from_bytes(buf[pos + 1 : pos + 4], "big")
            if ftype > FRAME_PONG:
                raise RawSocketError(f"invalid frame type byte {ftype:#04x}")
            limit = self.max_message_size if ftype == FRAME_MESSAGE else MAX_PING
            if length > limit:
                raise RawSocketError(f"frame of {length} bytes over the limit of {limit}")
            end = pos + 4 + length
            if end > n:
                self._need = end - pos
                break
            if ftype == FRAME_MESSAGE:
                payloads.append(buf[pos + 4 : end])
            else:
                self._control(ftype, buf[pos + 1 : end])
            pos = end
        if pos < n:
            self._buf = bytearray(buf[pos:])
            if n - pos < 4:
                self._need = 4
        return payloads

    def _control(self, ftype: int, length_and_payload: bytes) -> None:
        if ftype == FRAME_PING:
            self._out.append(bytes((FRAME_PONG,)) + length_and_payload)
        else:
            self.pongs += 1

    def _handshake(self, buf: bytes) -> bytes:
        """Consume the 4-byte handshake from ``buf`` if complete; return what follows it."""
        if len(buf) < 4:
            self._buf, self._need = bytearray(buf), 4
            return b""
        hs = buf[:4]
        if hs[0] != MAGIC:
            raise RawSocketError("not a RawSocket handshake")
        serializer, exp = hs[1] & 0x0F, hs[1] >> 4
        if hs[2] or hs[3]:
            self._refuse(ERR_RESERVED_BITS)
        if serializer not in self.supported:
            self._refuse(ERR_SERIALIZER_UNSUPPORTED)
        if exp < MIN_PEER_EXPONENT:
            self._refuse(ERR_MAX_LENGTH_UNACCEPTABLE)
        self.serializer_id = serializer
        self.peer_max = 2 ** (9 + exp)
        self._out.append(
            bytes((MAGIC, (length_exponent(self.max_message_size) << 4) | serializer, 0, 0))
        )
        return buf[4:]

    def _refuse(self, code: int) -> None:
        self._out.append(bytes((MAGIC, code << 4, 0, 0)))
        raise RawSocketError(f"handshake refused with error {code}")

    @staticmethod
    def frame(payload: bytes) -> bytes:
        """A message frame: type 0 and a 3-byte length make a 4-byte big-endian length."""
        return len(payload).to_bytes(4, "big") + payload

    @staticmethod
    def ping(payload: bytes = b"") -> bytes:
        return bytes((FRAME_PING,)) + len(payload).to_bytes(3, "big") + payload
