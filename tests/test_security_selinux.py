"""The ``selinux`` backend with libselinux faked at its boundary (KernelApi): class mapping,
the AVC in front of the kernel, permissive domains, enforcing changes and policy loads.

What stays unverified here is libselinux itself against a live SELinux kernel (see
docs/selinux.md): the calls, their argument types and the status page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from serouter.config import AccessConfig
from serouter.core.access import AccessCheckFailed, Action, Subject
from serouter.core.peer import TransportInfo
from serouter.security import SecurityError, build_security
from serouter.security._libselinux import SELINUX_AVD_FLAGS_PERMISSIVE, LibSelinux
from serouter.security._manager import ObjectManager
from serouter.security._servers import KernelServer

DOMAIN = "system_u:system_r:svc_t:s0"
PERMISSIVE_DOMAIN = "system_u:system_r:trying_t:s0"
URI = "system_u:object_r:example_uri_t:s0"
REALM = "system_u:object_r:wamp_realm_t:s0"
UNLABELED = "system_u:object_r:unlabeled_t:s0"
CONTEXTS = f"realm * {REALM}\nuri * {URI}\n"
PERMS = {"wamp_realm": {"join": 1}, "wamp_uri": {"register": 1, "call": 2, "subscribe": 4,
                                                  "publish": 8, "announce": 16, "lookup": 32}}


@dataclass
class FakeKernel:
    """A kernel security server as libselinux shows it: classes, rules, mode, loads."""

    enabled: bool = True
    enforce: bool = True
    deny: bool = True
    classes: dict[str, int] = field(default_factory=lambda: {"wamp_realm": 70, "wamp_uri": 71})
    # (scontext, tcontext, class value) -> allowed mask
    rules: dict[tuple[str, str, int], int] = field(default_factory=dict)
    auditallow: dict[tuple[str, str, int], int] = field(default_factory=dict)
    permissive: set[str] = field(default_factory=set)
    valid: set[str] = field(default_factory=lambda: {DOMAIN, PERMISSIVE_DOMAIN, URI, REALM,
                                                      UNLABELED})
    updated: bool = False
    computed: int = 0
    opened: bool = False

    def is_enabled(self) -> bool:
        return self.enabled

    def status_open(self) -> None:
        self.opened = True

    def status_updated(self) -> bool:
        updated, self.updated = self.updated, False
        return updated

    def enforcing(self) -> bool:
        return self.enforce

    def deny_unknown(self) -> bool:
        return self.deny

    def class_value(self, name: str) -> int:
        return self.classes.get(name, 0)

    def perm_bit(self, tclass: int, name: str) -> int:
        names = [n for n, v in self.classes.items() if v == tclass]
        return PERMS[names[0]].get(name, 0) if names else 0

    def check_context(self, context: str) -> bool:
        return context in self.valid

    def compute_av(self, scontext: str, tcontext: str, tclass: int) -> tuple[int, int, int, int]:
        self.computed += 1
        if scontext not in self.valid or tcontext not in self.valid:
            raise OSError(22, "Invalid argument")
        key = (scontext, tcontext, tclass)
        flags = SELINUX_AVD_FLAGS_PERMISSIVE if scontext.split(":")[2] in self.permissive else 0
        return self.rules.get(key, 0), self.auditallow.get(key, 0), 0xFFFFFFFF, flags

    # -- what an admin or the kernel does meanwhile
    def load_policy(self, **changes: object) -> None:
        for name, value in changes.items():
            setattr(self, name, value)
        self.updated = True


def allow(kernel: FakeKernel, scontext: str, cls: str, *perms: str) -> None:
    tclass = kernel.classes.get(cls, 0)
    target = REALM if cls == "wamp_realm" else URI
    mask = 0
    for perm in perms:
        mask |= PERMS[cls][perm]
    kernel.rules[(scontext, target, tclass)] = mask


@dataclass
class Rig:
    kernel: FakeKernel
    manager: ObjectManager
    lines: list[tuple[str, bool]]

    def check(self, label: str, action: Action, uri: str = "com.example.x") -> bool:
        return self.manager.check(Subject(3, "a", "r", label), action, "realm1", uri)


def make(tmp_path: Path, kernel: FakeKernel | None = None, allow_unknown: bool = False) -> Rig:
    kernel = kernel or FakeKernel()
    allow(kernel, DOMAIN, "wamp_realm", "join")
    allow(kernel, DOMAIN, "wamp_uri", "call", "subscribe")
    contexts = tmp_path / "wamp_contexts"
    contexts.write_text(CONTEXTS)
    lines: list[tuple[str, bool]] = []
    manager = ObjectManager(KernelServer(kernel), str(contexts), unlabeled=UNLABELED,
                            audit=lambda line, denied: lines.append((line, denied)),
                            allow_unknown_classes=allow_unknown)
    manager.start()
    return Rig(kernel, manager, lines)


def test_decisions_come_from_the_kernel_through_the_avc(tmp_path: Path) -> None:
    """Class and permission names are mapped through libselinux; one kernel query per
    (source, target, class) serves every permission until a policy load."""
    rig = make(tmp_path)
    assert rig.kernel.opened
    assert rig.check(DOMAIN, Action.CALL) and rig.check(DOMAIN, Action.SUBSCRIBE)
    assert not rig.check(DOMAIN, Action.PUBLISH) and not rig.check(DOMAIN, Action.REGISTER)
    assert rig.check(DOMAIN, Action.JOIN, "realm1")
    assert rig.kernel.computed == 2  # wamp_uri once, wamp_realm once
    assert rig.lines[0][0].endswith("tclass=wamp_uri permissive=0")


def test_permissive_domain_is_allowed_and_reported_once(tmp_path: Path) -> None:
    """A denial for a domain the policy marks permissive is allowed, reported once."""
    kernel = FakeKernel(permissive={"trying_t"})
    rig = make(tmp_path, kernel)
    assert rig.check(PERMISSIVE_DOMAIN, Action.CALL) and rig.check(PERMISSIVE_DOMAIN, Action.CALL)
    assert not rig.check(DOMAIN, Action.PUBLISH)
    assert [line.split(" tcontext")[0][-40:] for line, _ in rig.lines] and len(rig.lines) == 2
    assert rig.lines[0][0].endswith("permissive=1") and rig.lines[1][0].endswith("permissive=0")


def test_enforcing_change_is_noticed_and_flushes(tmp_path: Path) -> None:
    """setenforce 0 (seen through the status page): denials are allowed and reported, the cache
    is flushed; setenforce 1: denied again."""
    rig = make(tmp_path)
    assert not rig.check(DOMAIN, Action.PUBLISH)
    rig.kernel.load_policy(enforce=False)
    assert rig.check(DOMAIN, Action.PUBLISH)
    assert rig.lines[-1][0].endswith("permissive=1")
    assert rig.manager.avc.flushes >= 2
    rig.kernel.load_policy(enforce=True)
    assert not rig.check(DOMAIN, Action.PUBLISH)


def test_policy_load_is_noticed_and_remaps_classes(tmp_path: Path) -> None:
    """A policy load (status page) flushes the AVC and maps class values anew: a new policy
    may number the classes differently, and its rules apply at once."""
    rig = make(tmp_path)
    assert not rig.check(DOMAIN, Action.PUBLISH)
    kernel = rig.kernel
    kernel.classes = {"wamp_realm": 80, "wamp_uri": 81}
    kernel.rules = {}
    allow(kernel, DOMAIN, "wamp_uri", "publish")
    kernel.load_policy()
    assert rig.check(DOMAIN, Action.PUBLISH)
    assert not rig.check(DOMAIN, Action.CALL)


def test_check_fails_when_the_kernel_refuses_the_query(tmp_path: Path) -> None:
    """A context the kernel rejects (EINVAL) is a failed check, not a decision."""
    rig = make(tmp_path)
    with pytest.raises(AccessCheckFailed, match="security_compute_av"):
        rig.check("system_u:system_r:gone_t:s0", Action.CALL)


def test_auditallow_from_the_kernel(tmp_path: Path) -> None:
    """The kernel's auditallow mask is honoured."""
    kernel = FakeKernel()
    kernel.auditallow[(DOMAIN, URI, 71)] = 2
    rig = make(tmp_path, kernel)
    assert rig.check(DOMAIN, Action.CALL)
    assert rig.lines == [(rig.lines[0][0], False)] and "granted  { call }" in rig.lines[0][0]


def test_disabled_selinux_refuses_to_start(tmp_path: Path) -> None:
    """backend = "selinux" on a host without SELinux does not start (never allow-all)."""
    contexts = tmp_path / "c"
    contexts.write_text(CONTEXTS)
    manager = ObjectManager(KernelServer(FakeKernel(enabled=False)), str(contexts),
                            unlabeled=UNLABELED, audit=lambda line, denied: None)
    with pytest.raises(SecurityError, match="SELinux is not enabled"):
        manager.start()


def test_missing_classes_refuse_the_start_when_enforcing(tmp_path: Path) -> None:
    """A kernel policy without wamp_* (handle_unknown=allow) refuses the start in enforcing
    mode; accepted by allow_unknown_classes, its handle_unknown then decides."""
    with pytest.raises(SecurityError, match="lacks wamp_realm"):
        make(tmp_path, FakeKernel(classes={}, deny=False))
    rig = make(tmp_path, FakeKernel(classes={}, deny=False), allow_unknown=True)
    assert rig.check(DOMAIN, Action.PUBLISH)
    rig = make(tmp_path, FakeKernel(classes={}, deny=True), allow_unknown=True)
    assert not rig.check(DOMAIN, Action.PUBLISH)


def test_build_trusts_peer_contexts_only_with_selinux(tmp_path: Path) -> None:
    """The labeler takes SO_PEERSEC contexts only when SELinux is enabled, and the transport
    is told to read them only then."""
    contexts = tmp_path / "c"
    contexts.write_text(CONTEXTS)
    config = AccessConfig(backend="selinux", contexts=str(contexts), unlabeled=UNLABELED)
    info = TransportInfo("rawsocket", "json", "unix", peer_context=DOMAIN)
    on = build_security(config, kernel=FakeKernel(), audit=lambda line, denied: None)
    on.start()
    assert on.read_peer_context and on.labeler(info, "a", "anonymous") == DOMAIN
    off = build_security(AccessConfig(), kernel=FakeKernel(enabled=False))
    assert not off.read_peer_context
    assert off.labeler(info, "a", "anonymous") == UNLABELED


def test_real_libselinux_reports_disabled_here() -> None:
    """Without an SELinux kernel the real binding says disabled (then the selinux backend
    refuses to start: SELinux off never means allowed)."""
    if Path("/sys/fs/selinux/enforce").exists():
        pytest.skip("this host runs SELinux")
    assert LibSelinux().is_enabled() is False
