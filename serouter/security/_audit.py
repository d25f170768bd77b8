"""AVC records: denials (and auditallow grants) in the kernel's form, to audit or to the log.

The line is what ``audit2allow`` reads::

    avc:  denied  { call } for  uri=com.example.add realm=realm1 session=123
    scontext=... tcontext=... tclass=wamp_uri permissive=0

It goes to the Linux audit system as USER_AVC (1107) through libaudit when the kernel takes it,
and always to the router log as well (warn level when audit did not take it, so the log is then
the record). Field values a client chose are hex-encoded when they could break the line, as
audit does with untrusted strings. Nothing here decides whether to log: the caller does.
"""

from __future__ import annotations

import ctypes
import string
from collections.abc import Callable, Sequence
from ctypes import c_char_p, c_int

from twisted.logger import Logger

log = Logger(namespace="serouter.security.avc")

AUDIT_USER_AVC = 1107
_MAX_VALUE = 4000  # keep a record within libaudit's message size
# no quotes: libaudit wraps the record in msg='...'
_SAFE = frozenset(string.ascii_letters + string.digits + "._-:/@+,*~")

AuditSink = Callable[[str, bool], None]  # (line, denied)


def field_value(value: str) -> str:
    """``value`` as it may stand in an audit record: as is, or hex when it has odd bytes."""
    if value and all(char in _SAFE for char in value) and len(value) <= _MAX_VALUE:
        return value
    return value.encode("utf-8", errors="replace")[:_MAX_VALUE].hex().upper()


def avc_line(
    denied: bool,
    perm: str,
    fields: Sequence[tuple[str, str]],
    *,
    scontext: str,
    tcontext: str,
    tclass: str,
    permissive: bool,
) -> str:
    """One AVC record, e.g. ``avc:  denied  { call } for  uri=x ... permissive=0``."""
    what = " ".join(f"{k}={field_value(v)}" for k, v in fields)
    line = (
        f"avc:  {'denied' if denied else 'granted'}  {{ {perm} }} for  {what} "
        f"scontext={scontext} tcontext={tcontext} tclass={tclass}"
    )
    return f"{line} permissive={int(permissive)}" if denied else line


def log_sink(line: str, denied: bool) -> None:
    """The router log only: a denial is a warning, an audited grant is information."""
    if denied:
        log.warn("{avc}", avc=line)
    else:
        log.info("{avc}", avc=line)


class LibauditSink:
    """USER_AVC records through libaudit, each one also in the log; log only if audit fails."""

    def __init__(self, library: str = "libaudit.so.1") -> None:
        self._library = library
        self._fd = -1
        self._send: Callable[..., int] | None = None
        self._opened = False

    def open(self) -> None:
        """Open the audit socket (at start; the first record opens it otherwise)."""
        if self._opened:
            return
        self._opened = True
        try:
            lib = ctypes.CDLL(self._library, use_errno=True)
        except OSError as e:
            log.warn("audit: libaudit unavailable ({error}): AVC records go to this log only",
                     error=str(e))
            return
        lib.audit_log_user_avc_message.argtypes = [
            c_int, c_int, c_char_p, c_char_p, c_char_p, c_char_p, c_int,
        ]
        fd = lib.audit_open()
        if fd < 0:
            log.warn("audit: cannot open the audit socket (errno {errno}): AVC records go to "
                     "this log only", errno=ctypes.get_errno())
            return
        self._fd = fd
        self._send = lib.audit_log_user_avc_message

    def __call__(self, line: str, denied: bool) -> None:
        if not self._opened:
            self.open()
        sent = False
        if self._send is not None:
            sent = self._send(self._fd, AUDIT_USER_AVC, line.encode(), None, None, None, -1) > 0
        if sent:
            log.info("{avc}", avc=line)  # audited: the log copy is for `journalctl -u`
        else:
            log_sink(line, denied)
