"""The xenstored wire protocol without I/O: message types, framing, paths and permissions.

Every message, both ways, is a 16-byte header (type, request id, transaction id, payload
length: little-endian uint32) and at most 4096 bytes of payload (xen/include/public/io/
xs_wire.h). Strings in payloads end with a nul; errors come back as type ERROR with the errno
name (``ENOENT\\0``); watch events have request id 0 and the payload ``path\\0token\\0``.
This module never touches a socket or the reactor: ``PacketDecoder.feed(bytes)`` returns whole
packets, ``encode`` builds one.
"""

from __future__ import annotations

import enum
import string
import struct
from dataclasses import dataclass
from typing import Literal, cast

from serouter.xenstore._errors import XenStoreError, XenStoreProtocolError

HEADER = struct.Struct("<IIII")
PAYLOAD_MAX = 4096
PATH_MAX = 3072  # XENSTORE_ABS_PATH_MAX
_PATH_CHARS = frozenset(string.ascii_letters + string.digits + "-/_@")


class Op(enum.IntEnum):
    """Message types (``enum xsd_sockmsg_type``); 20 (RESTRICT) was removed from Xen."""

    CONTROL = 0
    DIRECTORY = 1
    READ = 2
    GET_PERMS = 3
    WATCH = 4
    UNWATCH = 5
    TRANSACTION_START = 6
    TRANSACTION_END = 7
    INTRODUCE = 8
    RELEASE = 9
    GET_DOMAIN_PATH = 10
    WRITE = 11
    MKDIR = 12
    RM = 13
    SET_PERMS = 14
    WATCH_EVENT = 15
    ERROR = 16
    IS_DOMAIN_INTRODUCED = 17
    RESUME = 18
    SET_TARGET = 19
    RESET_WATCHES = 21
    DIRECTORY_PART = 22


@dataclass(frozen=True, slots=True)
class Packet:
    op: int
    req_id: int
    tx_id: int
    payload: bytes


def encode(op: int, req_id: int, tx_id: int, payload: bytes) -> bytes:
    if len(payload) > PAYLOAD_MAX:
        raise XenStoreError("E2BIG")
    return HEADER.pack(op, req_id, tx_id, len(payload)) + payload


class PacketDecoder:
    """Splits a byte stream into packets, whatever the chunking."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Packet]:
        """Every packet completed by ``data``; XenStoreProtocolError on an oversized one."""
        self._buffer += data
        packets = []
        while len(self._buffer) >= HEADER.size:
            op, req_id, tx_id, length = HEADER.unpack_from(self._buffer)
            if length > PAYLOAD_MAX:
                raise XenStoreProtocolError(f"payload of {length} bytes (the limit is 4096)")
            end = HEADER.size + length
            if len(self._buffer) < end:
                break
            packets.append(Packet(op, req_id, tx_id, bytes(self._buffer[HEADER.size : end])))
            del self._buffer[:end]
        return packets


def nul_strings(payload: bytes) -> list[str]:
    """The nul-terminated strings of a payload (``a\\0b\\0`` -> ``["a", "b"]``)."""
    if not payload:
        return []
    if not payload.endswith(b"\0"):
        raise XenStoreProtocolError(f"unterminated string list {payload[:40]!r}")
    return payload[:-1].decode("ascii", "replace").split("\0")


def is_valid_path(path: str, allow_special: bool = False) -> bool:
    """True if xenstored accepts ``path``: ``[A-Za-z0-9-/_@]``, no empty, double or trailing
    ``/`` (but ``/`` itself), at most 3072 characters; ``@...`` only where special paths are
    (watches and permissions). A path without a leading ``/`` is relative to the caller's
    ``/local/domain/<domid>``."""
    if not path or len(path) > PATH_MAX or not _PATH_CHARS.issuperset(path):
        return False
    if path[0] == "@":
        return allow_special
    return "//" not in path and (path == "/" or not path.endswith("/"))


Access = Literal["n", "r", "w", "b"]


@dataclass(frozen=True, slots=True)
class Permission:
    """One permission entry, as in ``r0``: an access letter and a domain id.

    In a node's list the first entry names the owner and the access of every domain not
    listed; later entries grant one domain ``r``ead, ``w``rite, ``b``oth or ``n``one. The
    owner and dom0 always have full access. ``[Permission("r", 0)]`` is "dom0 owns it, every
    other domain may read".
    """

    access: Access
    domid: int

    @classmethod
    def parse(cls, text: str) -> Permission:
        letter, number = text[:1], text[1:]
        if letter not in ("n", "r", "w", "b") or not number.isdigit() or int(number) > 0xFFFF:
            raise ValueError(f"not a XenStore permission: {text!r}")
        return cls(cast(Access, letter), int(number))

    @property
    def readable(self) -> bool:
        return self.access in ("r", "b")

    @property
    def writable(self) -> bool:
        return self.access in ("w", "b")

    def __str__(self) -> str:
        return f"{self.access}{self.domid}"
