"""libselinux through ctypes: the running kernel's security server, as the ``selinux`` backend
needs it.

:class:`KernelApi` is the boundary the tests fake: every call into libselinux goes through it,
in Python types. ``selinux_check_access`` is never used: it answers "allowed" when SELinux is
disabled and in permissive mode. Decisions come from ``security_compute_av_flags_raw``, which
answers for the policy as it is, with the permissive-domain flag; enforcing mode and policy
loads are followed through the SELinux status page (``selinux_status_updated``), which falls
back to the netlink socket where the page is missing.
"""

from __future__ import annotations

import ctypes
from ctypes import POINTER, byref, c_char_p, c_int, c_uint16, c_uint32
from typing import Protocol

from twisted.logger import Logger

from serouter.security._errors import SecurityError

log = Logger(namespace="serouter.security")

SELINUX_AVD_FLAGS_PERMISSIVE = 0x0001
SELINUX_CB_LOG = 0
# message types of libselinux's log callback (selinux.h) that the object manager logs itself
SELINUX_POLICYLOAD, SELINUX_SETENFORCE = 4, 5
# int (*func_log)(int type, const char *fmt, ...): ctypes cannot receive the variadic part, but
# the fixed arguments arrive as in a plain call on the ABIs Linux runs on.
_LogCallback = ctypes.CFUNCTYPE(c_int, c_int, c_char_p)


def _libselinux_log(kind: int, fmt: bytes | None) -> int:
    """libselinux's messages, into the router log rather than onto stderr with no newline
    (where they ran into the next log line). Policy loads and enforcing changes are dropped:
    the object manager logs them with what they changed. Others keep their format string."""
    if kind not in (SELINUX_POLICYLOAD, SELINUX_SETENFORCE):
        log.warn("libselinux: {message}", message=(fmt or b"").decode(errors="replace").strip())
    return 0


_LOG_CALLBACK = _LogCallback(_libselinux_log)  # for the process's life: libselinux keeps it


class KernelApi(Protocol):
    """What the selinux backend asks of libselinux."""

    def is_enabled(self) -> bool:
        """SELinux is enabled in the running kernel (selinuxfs mounted, a policy loaded)."""

    def status_open(self) -> None:
        """Start following the status page; OSError if that is impossible."""

    def status_updated(self) -> bool:
        """True once after each policy load or enforcing change."""

    def enforcing(self) -> bool:
        """The kernel's current mode."""

    def deny_unknown(self) -> bool:
        """The loaded policy denies classes it does not define (handle_unknown deny/reject)."""

    def class_value(self, name: str) -> int:
        """The class's value in the loaded policy, 0 if it has none."""

    def perm_bit(self, tclass: int, name: str) -> int:
        """The permission's bit, 0 if the class has none."""

    def check_context(self, context: str) -> bool:
        """The context is valid in the loaded policy."""

    def compute_av(self, scontext: str, tcontext: str, tclass: int) -> tuple[int, int, int, int]:
        """(allowed, auditallow, auditdeny, flags); OSError (e.g. EINVAL) if it fails."""


class _AvDecision(ctypes.Structure):
    _fields_ = [
        ("allowed", c_uint32),
        ("decided", c_uint32),
        ("auditallow", c_uint32),
        ("auditdeny", c_uint32),
        ("seqno", c_uint32),
        ("flags", c_uint32),
    ]


class LibSelinux:
    """:class:`KernelApi` over libselinux.so.1 (without it, SELinux counts as disabled)."""

    def __init__(self, library: str = "libselinux.so.1") -> None:
        self._lib: ctypes.CDLL | None = None
        try:
            lib = ctypes.CDLL(library, use_errno=True)
        except OSError:
            return
        lib.string_to_security_class.argtypes = [c_char_p]
        lib.string_to_security_class.restype = c_uint16
        lib.string_to_av_perm.argtypes = [c_uint16, c_char_p]
        lib.string_to_av_perm.restype = c_uint32
        lib.security_check_context_raw.argtypes = [c_char_p]
        lib.security_compute_av_flags_raw.argtypes = [
            c_char_p, c_char_p, c_uint16, c_uint32, POINTER(_AvDecision),
        ]
        lib.selinux_status_open.argtypes = [c_int]
        lib.selinux_set_callback.argtypes = [c_int, _LogCallback]
        lib.selinux_set_callback.restype = None
        self._lib = lib
        self._avd = _AvDecision()

    @property
    def lib(self) -> ctypes.CDLL:
        if self._lib is None:
            raise SecurityError("libselinux is not installed (libselinux1)")
        return self._lib

    def is_enabled(self) -> bool:
        return self._lib is not None and self.lib.is_selinux_enabled() == 1

    def status_open(self) -> None:
        # selinux_status_updated() reports each policy load and mode change through the log
        # callback, by default on stderr
        self.lib.selinux_set_callback(SELINUX_CB_LOG, _LOG_CALLBACK)
        # fallback=1: use the netlink socket when the status page cannot be mapped
        if self.lib.selinux_status_open(1) < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, "selinux_status_open failed")

    def status_updated(self) -> bool:
        return bool(self.lib.selinux_status_updated() > 0)

    def enforcing(self) -> bool:
        mode = self.lib.selinux_status_getenforce()
        if mode < 0:
            mode = self.lib.security_getenforce()
        return bool(mode == 1) or mode < 0  # unknown: assume enforcing (fail closed)

    def deny_unknown(self) -> bool:
        return bool(self.lib.security_deny_unknown() != 0)  # -1 (unknown) denies too

    def class_value(self, name: str) -> int:
        return int(self.lib.string_to_security_class(name.encode()))

    def perm_bit(self, tclass: int, name: str) -> int:
        return int(self.lib.string_to_av_perm(tclass, name.encode()))

    def check_context(self, context: str) -> bool:
        return bool(self.lib.security_check_context_raw(context.encode()) == 0)

    def compute_av(self, scontext: str, tcontext: str, tclass: int) -> tuple[int, int, int, int]:
        avd = self._avd
        rc = self.lib.security_compute_av_flags_raw(
            scontext.encode(), tcontext.encode(), tclass, 0xFFFFFFFF, byref(avd)
        )
        if rc < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, "security_compute_av_flags failed")
        return int(avd.allowed), int(avd.auditallow), int(avd.auditdeny), int(avd.flags)


def selinux_enabled() -> bool:
    """SELinux is enabled on this host (False if libselinux is missing)."""
    return LibSelinux().is_enabled()
