"""serouter's SELinux object manager: labels for sessions, a decision for every action.

``build_security(config.access, config.listeners)`` gives the router its ``AccessCheck`` and its
``Labeler``; ``start()`` loads the policy (raising :class:`SecurityError` when the router must
not start) and ``reload()`` is what SIGHUP does. The backends: ``policy-file`` (a compiled policy
evaluated with libsepol), ``selinux`` (the running kernel's policy through libselinux) and
``allow-all`` (only when named, with a warning at every start). See docs/selinux.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.logger import Logger

from serouter.config import AccessConfig, ListenerConfig
from serouter.core.access import AccessCheck, AllowAll
from serouter.core.router import Labeler
from serouter.security._audit import AuditSink, LibauditSink, log_sink
from serouter.security._errors import SecurityError
from serouter.security._labeler import SessionLabeler
from serouter.security._libselinux import KernelApi, LibSelinux, selinux_enabled
from serouter.security._manager import ObjectManager
from serouter.security._servers import KernelServer, PolicyFileServer, SecurityServer

__all__ = ["Security", "SecurityError", "build_security", "selinux_enabled"]

log = Logger(namespace="serouter.security")


class Security:
    """One router's access control: the check, the labeler, and their start and reload."""

    def __init__(
        self,
        access: AccessCheck,
        labeler: Labeler,
        read_peer_context: bool,
        manager: ObjectManager | None = None,
    ) -> None:
        self.access = access
        self.labeler = labeler
        self.read_peer_context = read_peer_context  # read SO_PEERSEC from Unix peers
        self.manager = manager
        self.audit_open: Callable[[], None] | None = None  # opened at start

    @property
    def reloadable(self) -> bool:
        return self.manager is not None

    def start(self) -> None:
        """Load the policy; SecurityError: the router must not start."""
        if self.manager is None:
            log.warn("access control: allow-all: every action of every session is allowed")
            return
        self.manager.start()
        if self.audit_open is not None:
            self.audit_open()

    def reload(self) -> bool:
        """SIGHUP: reload policy and contexts; False (logged) if refused, the old ones stay."""
        if self.manager is None:
            log.info("reload: nothing to reload with allow-all")
            return True
        return self.manager.reload()


def _labels(config: AccessConfig, listeners: Sequence[ListenerConfig]) -> list[tuple[str, str]]:
    """Every configured session label with the key that configures it (for messages)."""
    labels = [(f"listeners[{i}].label", x.label) for i, x in enumerate(listeners) if x.label]
    labels += [(f'access.uid_labels."{k}"', v) for k, v in config.uid_labels.items()]
    labels += [(f'access.authid_labels."{k}"', v) for k, v in config.authid_labels.items()]
    labels += [(f'access.authrole_labels."{k}"', v) for k, v in config.authrole_labels.items()]
    labels += [(f'access.domain_labels."{k}"', v) for k, v in config.domain_labels.items()]
    return labels


def build_security(
    config: AccessConfig,
    listeners: Sequence[ListenerConfig] = (),
    *,
    kernel: KernelApi | None = None,
    audit: AuditSink | None = None,
) -> Security:
    """The access control ``config`` asks for, not yet started (no policy is read here).

    ``kernel`` and ``audit`` replace libselinux and libaudit (tests).
    """
    kernel = kernel or LibSelinux()
    enabled = kernel.is_enabled()

    def labeler_for(valid: Callable[[str], bool]) -> SessionLabeler:
        return SessionLabeler(
            unlabeled=config.unlabeled,
            valid=valid,
            trust_peer_context=enabled,
            uid_labels=config.uid_labels,
            authid_labels=config.authid_labels,
            authrole_labels=config.authrole_labels,
            domain_labels=config.domain_labels,
        )

    if config.backend == "allow-all":
        return Security(AllowAll(), labeler_for(lambda context: True), enabled)
    server: SecurityServer
    if config.backend == "policy-file":
        assert config.policy is not None  # the configuration requires it
        server = PolicyFileServer(config.policy, config.enforcing)
    else:
        server = KernelServer(kernel)
    assert config.contexts is not None  # the configuration requires it
    sink = LibauditSink() if audit is None else None
    manager = ObjectManager(
        server,
        config.contexts,
        unlabeled=config.unlabeled,
        audit=audit or sink or log_sink,
        allow_unknown_classes=config.allow_unknown_classes,
        labels=_labels(config, listeners),
    )
    security = Security(manager, labeler_for(manager.valid), enabled, manager)
    security.audit_open = sink.open if sink is not None else None
    return security
