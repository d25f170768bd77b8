"""RFC 6455 frame primitives for the server codec in `_wscodec`: opcodes, unmasking, encoding.

Pure functions and constants, shared by the frame parser and the senders of
`WebSocketServerConnection`. Like the codec, this must never import Twisted or do I/O.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable
from typing import Final

# --- unmasking ------------------------------------------------------------------------------


def _py_apply_mask(data: bytes | bytearray | memoryview, mask: bytes | bytearray) -> bytes:
    """XOR `data` with the repeated 4-byte `mask` as one big integer (no per-byte loop)."""
    size = len(data)
    key = mask * (size // 4) + mask[: size % 4]
    value = int.from_bytes(data, sys.byteorder) ^ int.from_bytes(key, sys.byteorder)
    return value.to_bytes(size, sys.byteorder)


apply_mask: Callable[[bytes | bytearray | memoryview, bytes | bytearray], bytes]
try:
    from websockets.speedups import apply_mask as _c_apply_mask
except ImportError:  # pragma: no cover - the C wheel is a declared dependency
    apply_mask = _py_apply_mask
else:
    apply_mask = _c_apply_mask


# --- frame encoding -------------------------------------------------------------------------

OP_CONTINUATION: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA
FIN: Final = 0x80

U16: Final = struct.Struct("!H")
U64: Final = struct.Struct("!Q")

# Short unmasked server frames are one concatenation with a ready-made header.
BINARY_HEADERS: Final = tuple(bytes((FIN | OP_BINARY, n)) for n in range(126))
TEXT_HEADERS: Final = tuple(bytes((FIN | OP_TEXT, n)) for n in range(126))

# Registered codes 1012-1014 are valid on the wire; 1004-1006 and 1015 are reserved and
# 1016-2999 are unassigned IANA space (RFC 6455 section 7.4).
_WIRE_CLOSE_CODES: Final = frozenset(range(1000, 1004)) | frozenset(range(1007, 1015))


def encode_frame(first_byte: int, payload: bytes) -> bytes:
    """Encode one unmasked server frame (servers never mask, RFC 6455 section 5.1)."""
    size = len(payload)
    if size < 126:
        return bytes((first_byte, size)) + payload
    if size < 0x10000:
        return bytes((first_byte, 126)) + U16.pack(size) + payload
    return bytes((first_byte, 127)) + U64.pack(size) + payload


def close_payload(code: int | None, reason: str) -> bytes:
    """Build a close frame body, cutting the reason to fit the 125-byte control limit."""
    if code is None:
        return b""
    raw = reason.encode()[:123].decode("utf-8", "ignore").encode()
    return U16.pack(code) + raw


def oversize(length: int) -> tuple[int, str]:
    """Why a data frame of `length` bytes is refused: malformed (1002) or too big (1009)."""
    if length >> 63:
        return 1002, "frame length has the top bit set"
    return 1009, "message too big"


def valid_wire_close_code(code: int) -> bool:
    """Whether `code` may appear in a close frame (3000-4999 are for libraries and apps)."""
    return code in _WIRE_CLOSE_CODES or 3000 <= code < 5000
