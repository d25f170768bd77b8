"""Security servers: where decisions come from, behind one small interface.

:class:`PolicyFileServer` computes them offline with libsepol from a compiled policy file (the
``policy-file`` backend); :class:`KernelServer` asks the running kernel through libselinux (the
``selinux`` backend). Neither caches, audits or knows WAMP: the object manager does that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from serouter.core.access import AccessCheckFailed
from serouter.security._avc import Decision
from serouter.security._errors import SecurityError
from serouter.security._libselinux import SELINUX_AVD_FLAGS_PERMISSIVE, KernelApi
from serouter.security._sepol import PolicyHeader, SepolPolicy, read_header


class SecurityServer(Protocol):
    """A source of access decisions."""

    name: str
    enforcing: bool
    # called before every check where the policy can change under us: True after a change
    poll: Callable[[], bool] | None

    def start(self) -> None:
        """Load or attach to the policy; SecurityError if impossible."""

    def describe(self) -> str:
        """The policy, for the log."""

    def refresh(self) -> None:
        """``poll`` said the policy or the mode changed: read the mode again."""

    def stage_reload(self) -> None:
        """Load the policy anew (SIGHUP); SecurityError leaves the old one in place."""

    def rollback(self) -> None:
        """Undo the last ``stage_reload`` (its policy failed a later check)."""

    def unknown_allowed(self) -> bool:
        """The policy allows what it has no class for (handle_unknown allow)."""

    def class_value(self, name: str) -> int: ...

    def perm_bit(self, tclass: int, name: str) -> int: ...

    def valid(self, context: str) -> bool: ...

    def compute(self, scontext: str, tcontext: str, tclass: int) -> Decision:
        """Every permission of ``tclass``; AccessCheckFailed if it cannot be computed."""

    def explain(self, scontext: str, tcontext: str, tclass: int, perm: int) -> str | None:
        """Why ``perm`` is denied, if the server can tell."""


class PolicyFileServer:
    """Decisions from a compiled binary policy, with libsepol."""

    name = "policy-file"
    poll: Callable[[], bool] | None = None

    def __init__(self, path: str, enforcing: bool) -> None:
        self.path = path
        self.enforcing = enforcing
        self._sepol: SepolPolicy | None = None
        self._data = b""
        self._header = PolicyHeader(0, False, "deny")
        self._previous: tuple[bytes, PolicyHeader] | None = None

    @property
    def sepol(self) -> SepolPolicy:
        if self._sepol is None:
            raise SecurityError("the policy is not loaded")
        return self._sepol

    def start(self) -> None:
        if self._sepol is None:
            self._sepol = SepolPolicy()
        self._load(self._read())

    def close(self) -> None:
        """Give libsepol up, so that another server may use it (tests)."""
        if self._sepol is not None:
            self._sepol.close()
            self._sepol = None

    def describe(self) -> str:
        mode = "enforcing" if self.enforcing else "permissive"
        return (f"policy {self.path} (version {self._header.version}, "
                f"handle_unknown={self._header.handle_unknown}), {mode}")

    def refresh(self) -> None:
        """Nothing changes a policy file's decisions behind our back."""

    def _read(self) -> bytes:
        try:
            with open(self.path, "rb") as file:
                return file.read()
        except OSError as e:
            raise SecurityError(f"{self.path}: cannot read the policy: {e.strerror}") from None

    def _load(self, data: bytes) -> None:
        try:
            header = read_header(data)
            self.sepol.load(data)
        except SecurityError as e:
            raise SecurityError(f"{self.path}: {e}") from None
        self._data, self._header = data, header

    def stage_reload(self) -> None:
        data = self._read()
        self._previous = None
        if data == self._data:
            return  # unchanged: libsepol would keep the old copy in memory for nothing
        previous = (self._data, self._header)
        try:
            self._load(data)
        except SecurityError:
            if not self.sepol.loaded:  # libsepol failed after all: put the old policy back
                self.sepol.load(previous[0])
            raise
        self._previous = previous

    def rollback(self) -> None:
        if self._previous is not None:
            data, _header = self._previous
            self._previous = None
            self._load(data)

    def unknown_allowed(self) -> bool:
        return self._header.handle_unknown == "allow"

    def class_value(self, name: str) -> int:
        return self.sepol.class_value(name)

    def perm_bit(self, tclass: int, name: str) -> int:
        return self.sepol.perm_bit(tclass, name)

    def valid(self, context: str) -> bool:
        return self.sepol.valid(context)

    def _sids(self, scontext: str, tcontext: str) -> tuple[int, int]:
        sepol = self.sepol
        ssid, tsid = sepol.sid(scontext), sepol.sid(tcontext)
        for context, sid in ((scontext, ssid), (tcontext, tsid)):
            if sid is None:
                raise AccessCheckFailed(f"context {context} is not valid in policy {self.path}")
        assert ssid is not None and tsid is not None
        return ssid, tsid

    def compute(self, scontext: str, tcontext: str, tclass: int) -> Decision:
        ssid, tsid = self._sids(scontext, tcontext)
        try:
            allowed, auditallow, auditdeny = self.sepol.compute_av(ssid, tsid, tclass)
        except SecurityError as e:
            raise AccessCheckFailed(str(e)) from None
        return allowed, auditallow, auditdeny, False

    def explain(self, scontext: str, tcontext: str, tclass: int, perm: int) -> str | None:
        ssid, tsid = self._sids(scontext, tcontext)
        return self.sepol.explain(ssid, tsid, tclass, perm)


class KernelServer:
    """Decisions from the running kernel's policy, with libselinux."""

    name = "selinux"

    def __init__(self, api: KernelApi) -> None:
        self.api = api
        self.enforcing = True
        self.poll: Callable[[], bool] | None = None

    def start(self) -> None:
        api = self.api
        if not api.is_enabled():
            raise SecurityError(
                'SELinux is not enabled on this host: the "selinux" backend needs it '
                '(use backend = "policy-file" to enforce a compiled policy without it)'
            )
        try:
            api.status_open()
        except OSError as e:
            raise SecurityError(f"cannot follow SELinux policy loads: {e}") from None
        api.status_updated()  # the state as of now is the starting point
        self.poll = api.status_updated
        self.enforcing = api.enforcing()

    def describe(self) -> str:
        mode = "enforcing" if self.enforcing else "permissive"
        unknown = "allow" if self.unknown_allowed() else "deny"
        return f"the running kernel's policy (handle_unknown={unknown}), {mode}"

    def refresh(self) -> None:
        self.enforcing = self.api.enforcing()

    def stage_reload(self) -> None:
        """The kernel's policy is reloaded by the kernel: nothing to do on SIGHUP."""

    def rollback(self) -> None:
        """Nothing was staged."""

    def unknown_allowed(self) -> bool:
        return not self.api.deny_unknown()

    def class_value(self, name: str) -> int:
        return self.api.class_value(name)

    def perm_bit(self, tclass: int, name: str) -> int:
        return self.api.perm_bit(tclass, name)

    def valid(self, context: str) -> bool:
        return self.api.check_context(context)

    def compute(self, scontext: str, tcontext: str, tclass: int) -> Decision:
        try:
            allowed, auditallow, auditdeny, flags = self.api.compute_av(scontext, tcontext, tclass)
        except OSError as e:
            raise AccessCheckFailed(
                f"security_compute_av({scontext}, {tcontext}, {tclass}) failed: {e}"
            ) from None
        return allowed, auditallow, auditdeny, bool(flags & SELINUX_AVD_FLAGS_PERMISSIVE)

    def explain(self, scontext: str, tcontext: str, tclass: int, perm: int) -> str | None:
        return None  # the kernel does not say; `audit2why` does, from the audit record
