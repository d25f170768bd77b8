"""libsepol through ctypes: access decisions from a compiled binary policy, offline.

libsepol keeps ONE policy per process (a global policydb and SID table), so one
:class:`SepolPolicy` owns it: a second owner is refused while the first is open. Every load
resets the SID table, so every SID handed out before is void: this class drops its SID cache on
load, and its users must drop what they derived (decisions).

libsepol frees a policy it fails to read and then leaves its global pointer on the freed memory
(3.4, ``sepol_set_policydb_from_file``): a policy is therefore read into a private policydb
first, and only bytes that parsed there are ever given to the global load. This module never
decides anything itself and never touches the reactor.
"""

from __future__ import annotations

import ctypes
import struct
from ctypes import POINTER, byref, c_char_p, c_int, c_size_t, c_uint, c_uint16, c_uint32, c_void_p
from dataclasses import dataclass
from typing import ClassVar

from serouter.security._errors import SecurityError

# The binary policy's header: magic, the length of "SE Linux", the string, version, config.
POLICYDB_MAGIC = 0xF97CFF8C
_CONFIG_MLS = 0x1
_CONFIG_REJECT_UNKNOWN = 0x2
_CONFIG_ALLOW_UNKNOWN = 0x4
# sepol_compute_av_reason: which part of the policy denied
REASON_TE, REASON_CONSTRAINT, REASON_RBAC, REASON_BOUNDS = 1, 2, 4, 8


class _AvDecision(ctypes.Structure):
    _fields_ = [
        ("allowed", c_uint32),
        ("decided", c_uint32),
        ("auditallow", c_uint32),
        ("auditdeny", c_uint32),
        ("seqno", c_uint32),
    ]


@dataclass(frozen=True, slots=True)
class PolicyHeader:
    """What the binary header says, read without libsepol."""

    version: int
    mls: bool
    handle_unknown: str  # "deny" | "reject" | "allow"


def read_header(data: bytes) -> PolicyHeader:
    """The header of a binary kernel policy; SecurityError if ``data`` is not one."""
    try:
        magic, length = struct.unpack_from("<II", data, 0)
        if magic != POLICYDB_MAGIC or length > 64:
            raise SecurityError("not a binary SELinux kernel policy (bad magic)")
        version, config = struct.unpack_from("<II", data, 8 + length)
    except struct.error:
        raise SecurityError("not a binary SELinux kernel policy (truncated header)") from None
    if config & _CONFIG_ALLOW_UNKNOWN:
        unknown = "allow"
    elif config & _CONFIG_REJECT_UNKNOWN:
        unknown = "reject"
    else:
        unknown = "deny"
    return PolicyHeader(version, bool(config & _CONFIG_MLS), unknown)


def _library() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL("libsepol.so.2", use_errno=True)
    except OSError as e:
        raise SecurityError(f"libsepol is not installed (libsepol2): {e}") from None
    if not hasattr(lib, "sepol_compute_av_reason_buffer"):
        raise SecurityError("libsepol >= 3.4 is needed (sepol_compute_av is not exported)")
    lib.sepol_debug.argtypes = [c_int]
    lib.sepol_debug(0)  # its messages go to stderr; ours go to the log
    lib.sepol_set_policydb_from_file.argtypes = [c_void_p]
    lib.sepol_context_to_sid.argtypes = [c_char_p, c_size_t, POINTER(c_uint32)]
    lib.sepol_sid_to_context.argtypes = [c_uint32, POINTER(c_void_p), POINTER(c_size_t)]
    lib.sepol_string_to_security_class.argtypes = [c_char_p, POINTER(c_uint16)]
    lib.sepol_string_to_av_perm.argtypes = [c_uint16, c_char_p, POINTER(c_uint32)]
    lib.sepol_compute_av.argtypes = [c_uint32, c_uint32, c_uint16, c_uint32, POINTER(_AvDecision)]
    lib.sepol_compute_av_reason_buffer.argtypes = [
        c_uint32, c_uint32, c_uint16, c_uint32, POINTER(_AvDecision),
        POINTER(c_uint), POINTER(c_void_p), c_uint,
    ]
    lib.sepol_policydb_create.argtypes = [POINTER(c_void_p)]
    lib.sepol_policydb_free.argtypes = [c_void_p]
    lib.sepol_policydb_free.restype = None
    lib.sepol_policy_file_create.argtypes = [POINTER(c_void_p)]
    lib.sepol_policy_file_free.argtypes = [c_void_p]
    lib.sepol_policy_file_free.restype = None
    lib.sepol_policy_file_set_mem.argtypes = [c_void_p, c_char_p, c_size_t]
    lib.sepol_policy_file_set_mem.restype = None
    lib.sepol_policydb_read.argtypes = [c_void_p, c_void_p]
    return lib


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fmemopen.argtypes = [c_void_p, c_size_t, c_char_p]
    libc.fmemopen.restype = c_void_p
    libc.fclose.argtypes = [c_void_p]
    libc.free.argtypes = [c_void_p]
    libc.free.restype = None
    return libc


class SepolPolicy:
    """The process's libsepol policy: load bytes, map names to values, compute decisions."""

    _owner: ClassVar[SepolPolicy | None] = None

    def __init__(self) -> None:
        if SepolPolicy._owner is not None:
            raise SecurityError("libsepol holds one policy per process and it is taken")
        self._lib = _library()
        self._libc = _libc()
        self._sids: dict[str, int] = {}
        self._avd = _AvDecision()
        self._avd_ref = byref(self._avd)
        self._sid = c_uint32()
        self.loaded = False
        self.loads = 0
        SepolPolicy._owner = self

    def close(self) -> None:
        """Give libsepol up (its policy stays in memory until another owner loads one)."""
        if SepolPolicy._owner is self:
            SepolPolicy._owner = None
        self._sids.clear()
        self.loaded = False

    # -- loading -------------------------------------------------------------------------

    def parses(self, data: bytes) -> bool:
        """Whether libsepol reads ``data`` as a policy, checked in a private policydb."""
        lib = self._lib
        db, pf = c_void_p(), c_void_p()
        if lib.sepol_policydb_create(byref(db)) < 0:
            raise SecurityError("libsepol: out of memory")
        try:
            if lib.sepol_policy_file_create(byref(pf)) < 0:
                raise SecurityError("libsepol: out of memory")
            try:
                lib.sepol_policy_file_set_mem(pf, data, len(data))
                return bool(lib.sepol_policydb_read(db, pf) == 0)
            finally:
                lib.sepol_policy_file_free(pf)
        finally:
            lib.sepol_policydb_free(db)

    def load(self, data: bytes) -> None:
        """Make ``data`` the policy; every SID from before is void. SecurityError if unreadable."""
        read_header(data)
        if not self.parses(data):
            raise SecurityError("libsepol cannot read the policy (corrupt or unsupported)")
        buf = ctypes.create_string_buffer(data, len(data))
        fp = self._libc.fmemopen(buf, len(data), b"rb")
        if not fp:
            raise SecurityError(f"fmemopen failed: errno {ctypes.get_errno()}")
        try:
            self._sids.clear()
            self.loaded = False
            if self._lib.sepol_set_policydb_from_file(fp) != 0:
                raise SecurityError("libsepol failed to load the policy")
        finally:
            self._libc.fclose(fp)
        self.loaded = True
        self.loads += 1

    # -- names and contexts ------------------------------------------------------------------

    def class_value(self, name: str) -> int:
        """The class's value, 0 if the policy has no such class."""
        value = c_uint16()
        if self._lib.sepol_string_to_security_class(name.encode(), byref(value)) != 0:
            return 0
        return int(value.value)

    def perm_bit(self, tclass: int, name: str) -> int:
        """The permission's bit in ``tclass``, 0 if the class has no such permission."""
        bit = c_uint32()
        if self._lib.sepol_string_to_av_perm(tclass, name.encode(), byref(bit)) != 0:
            return 0
        return int(bit.value)

    def sid(self, context: str) -> int | None:
        """The SID of a context valid in the policy, else None."""
        sid = self._sids.get(context)
        if sid is None:
            raw = context.encode()
            if self._lib.sepol_context_to_sid(raw, len(raw), byref(self._sid)) != 0:
                return None
            sid = self._sids[context] = int(self._sid.value)
        return sid

    def valid(self, context: str) -> bool:
        return self.sid(context) is not None

    # -- decisions -----------------------------------------------------------------------

    def compute_av(self, ssid: int, tsid: int, tclass: int) -> tuple[int, int, int]:
        """(allowed, auditallow, auditdeny) for every permission of ``tclass``."""
        if self._lib.sepol_compute_av(ssid, tsid, tclass, 0xFFFFFFFF, self._avd_ref) != 0:
            raise SecurityError(f"sepol_compute_av failed for class {tclass}")
        avd = self._avd
        return int(avd.allowed), int(avd.auditallow), int(avd.auditdeny)

    def explain(self, ssid: int, tsid: int, tclass: int, perm: int) -> str | None:
        """Why ``perm`` is denied, when more than a missing allow rule denies it: the
        constraint's text, or role-based access control, or type bounds. None otherwise."""
        avd, reason, text = _AvDecision(), c_uint(), c_void_p()
        rc = self._lib.sepol_compute_av_reason_buffer(
            ssid, tsid, tclass, perm, byref(avd), byref(reason), byref(text), 0
        )
        try:
            detail = ctypes.string_at(text.value).decode(errors="replace") if text.value else ""
        finally:
            if text.value:
                self._libc.free(text)
        if rc != 0 or not reason.value & ~REASON_TE:
            return None
        because = ", ".join(name for bit, name in _REASONS if reason.value & bit)
        # the buffer holds every failing constraint on the allowed permissions, not only ours
        if detail and reason.value & REASON_CONSTRAINT:
            return f"{because}: {' '.join(detail.split())}"
        return because


_REASONS = (
    (REASON_TE, "no allow rule"),
    (REASON_CONSTRAINT, "a constraint"),
    (REASON_RBAC, "role-based access control"),
    (REASON_BOUNDS, "type bounds"),
)
