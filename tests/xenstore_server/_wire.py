"""The xenstored wire format as the server sees it: message types, the header, error names.

Kept apart from ``serouter.xenstore`` on purpose: the server is the yardstick the client is
measured with, so it must not share the client's codec (a bug in one would hide in both).
Debian's real ``xenstore-*`` tools are the yardstick for this module.
"""

from __future__ import annotations

import enum
import struct

HEADER = struct.Struct("<IIII")  # type, req_id, tx_id, len (xs_wire.h: struct xsd_sockmsg)
PAYLOAD_MAX = 4096  # XENSTORE_PAYLOAD_MAX, both directions
PATH_MAX = 3072  # XENSTORE_ABS_PATH_MAX


class Op(enum.IntEnum):
    """``enum xsd_sockmsg_type`` (value 20, XS_RESTRICT, was removed from Xen)."""

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


# xs_wire.h xsd_errors: the names a client may receive (anything else reads as EINVAL there).
ERRORS = frozenset({
    "EINVAL", "EACCES", "EEXIST", "EISDIR", "ENOENT", "ENOMEM", "ENOSPC", "EIO", "ENOTEMPTY",
    "ENOSYS", "EROFS", "EBUSY", "EAGAIN", "EISCONN", "E2BIG", "EPERM",
})


class XsError(Exception):
    """A request failed; ``name`` is the errno name sent back in an ERROR reply."""

    def __init__(self, name: str) -> None:
        assert name in ERRORS, name
        super().__init__(name)
        self.name = name


def packet(op: int, req_id: int, tx_id: int, payload: bytes) -> bytes:
    """One message: header and payload."""
    return HEADER.pack(op, req_id, tx_id, len(payload)) + payload
