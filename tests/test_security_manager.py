"""The object manager with the policy-file backend: decisions, AVC, audit, permissive mode,
fail-closed start, reloads (booleans, bad policies, bad contexts) and failing checks."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import globalLogPublisher

from serouter.core.access import AccessCheckFailed, Action, Subject
from serouter.security._errors import SecurityError
from serouter.security._manager import ObjectManager
from serouter.security._servers import PolicyFileServer
from tests.selinux_policy import (
    A_HIGH,
    CONTEXTS,
    UNLABELED,
    A,
    B,
    C,
    PolicyBuilder,
    policies,
)

__all__ = ["policies"]


@dataclass
class Rig:
    """A started manager over copies of the policy and contexts (tests overwrite them)."""

    manager: ObjectManager
    policy: Path
    contexts: Path
    lines: list[tuple[str, bool]] = field(default_factory=list)

    def check(self, label: str | None, action: Action, uri: str, realm: str = "realm1") -> bool:
        return self.manager.check(Subject(7, "anon-7", "anonymous", label), action, realm, uri)

    def denials(self) -> list[str]:
        return [line for line, denied in self.lines if denied]


def make_rig(
    tmp_path: Path, policy: Path, *, enforcing: bool = True, labels: list[tuple[str, str]] | None
    = None, allow_unknown: bool = False, contexts: str = CONTEXTS,
) -> Rig:
    copy = tmp_path / "policy.bin"
    shutil.copyfile(policy, copy)
    ctx = tmp_path / "wamp_contexts"
    ctx.write_text(contexts)
    lines: list[tuple[str, bool]] = []
    manager = ObjectManager(
        PolicyFileServer(str(copy), enforcing), str(ctx), unlabeled=UNLABELED,
        audit=lambda line, denied: lines.append((line, denied)),
        allow_unknown_classes=allow_unknown, labels=labels or [],
    )
    return Rig(manager, copy, ctx, lines)


@pytest.fixture
def closing() -> Iterator[list[ObjectManager]]:
    """Managers to close at the end (libsepol has one policy per process)."""
    managers: list[ObjectManager] = []
    yield managers
    for manager in managers:
        assert isinstance(manager.server, PolicyFileServer)
        manager.server.close()


@pytest.fixture
def rig(tmp_path: Path, policies: PolicyBuilder, closing: list[ObjectManager]) -> Rig:
    rig = make_rig(tmp_path, policies.standard(), labels=[("listeners[0].label", B)])
    closing.append(rig.manager)
    rig.manager.start()
    return rig


@pytest.fixture
def logged() -> Iterator[list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def texts(events: list[dict[str, Any]]) -> list[str]:
    from twisted.logger import formatEvent

    return [formatEvent(e) for e in events]


# -- decisions -------------------------------------------------------------------------------

TABLE = [  # (label, action, uri, allowed)
    (A, Action.JOIN, "realm1", True),
    (C, Action.JOIN, "realm1", False),
    (A, Action.REGISTER, "com.example.add", True),
    (B, Action.REGISTER, "com.example.add", False),
    (A, Action.CALL, "com.example.add", True),
    (B, Action.CALL, "com.example.add", False),  # b_may_call is false
    (A, Action.SUBSCRIBE, "com.example.news", True),
    (B, Action.SUBSCRIBE, "com.example.news", True),
    (A, Action.PUBLISH, "com.example.news", True),
    (B, Action.PUBLISH, "com.example.news", False),
    (A, Action.CALL, "wamp.session.count", True),
    (B, Action.CALL, "wamp.session.count", False),
    (A, Action.SUBSCRIBE, "com.secret.x", False),  # MLS: s0 does not dominate s1
    (A_HIGH, Action.SUBSCRIBE, "com.secret.x", True),
    (A, Action.CALL, "org.other", False),  # the default type: nothing allowed
    (None, Action.JOIN, "realm1", False),  # no label: unlabeled
]


@pytest.mark.parametrize(("label", "action", "uri", "expected"), TABLE)
def test_decisions_follow_the_policy(
    rig: Rig, label: str | None, action: Action, uri: str, expected: bool
) -> None:
    """Each action is allowed exactly when the policy allows its permission on the target."""
    realm = uri if action is Action.JOIN else "realm1"
    assert rig.check(label, action, uri, realm) is expected


def test_join_checks_the_realm_context(rig: Rig) -> None:
    """JOIN's target is the realm's context: realm1 may be joined by A, 'secret' may not."""
    assert rig.check(A, Action.JOIN, "secret", "secret") is False
    assert "tcontext=system_u:object_r:secret_realm_t:s0 tclass=wamp_realm" in rig.denials()[0]


# -- the AVC -----------------------------------------------------------------------------------


def test_decisions_are_cached_per_source_target_class(rig: Rig) -> None:
    """One computation serves every permission and every URI of the same context."""
    avc = rig.manager.avc
    misses = avc.misses
    for uri in ("com.example.a", "com.example.b"):
        for action in (Action.SUBSCRIBE, Action.PUBLISH, Action.REGISTER, Action.CALL):
            rig.check(A, action, uri)
    assert avc.misses == misses + 1
    rig.check(B, Action.CALL, "com.example.a")
    assert avc.misses == misses + 2


def test_reload_flushes_the_cache(rig: Rig, policies: PolicyBuilder) -> None:
    """A reload empties the AVC: the next check computes again. An unchanged policy file is
    not loaded again (libsepol would keep the old copy in memory)."""
    rig.check(A, Action.CALL, "com.example.add")
    server = rig.manager.server
    assert isinstance(server, PolicyFileServer)
    loads = server.sepol.loads
    assert rig.manager.avc.entries
    assert rig.manager.reload()
    assert not rig.manager.avc.entries
    assert server.sepol.loads == loads
    shutil.copyfile(policies.standard(b_may_call=True), rig.policy)
    assert rig.manager.reload()
    assert server.sepol.loads == loads + 1


# -- audit -------------------------------------------------------------------------------------


def test_denial_is_audited_in_the_standard_form(rig: Rig) -> None:
    """A denial is one AVC record naming the URI, realm, session and both contexts."""
    assert not rig.check(B, Action.CALL, "com.example.add")
    assert rig.lines == [(
        "avc:  denied  { call } for  uri=com.example.add realm=realm1 session=7 "
        f"scontext={B} tcontext=system_u:object_r:example_add_t:s0 tclass=wamp_uri "
        "permissive=0", True,
    )]


def test_every_enforcing_denial_is_audited(rig: Rig) -> None:
    """In enforcing mode the same denial is audited every time it happens."""
    for _ in range(3):
        rig.check(B, Action.PUBLISH, "com.example.news")
    assert len(rig.denials()) == 3


def test_auditallow_is_audited_as_granted(rig: Rig) -> None:
    """An allowed action the policy marks auditallow is audited as 'granted'."""
    assert rig.check(A, Action.CALL, "com.audited.op")
    assert rig.lines == [(
        "avc:  granted  { call } for  uri=com.audited.op realm=realm1 session=7 "
        f"scontext={A} tcontext=system_u:object_r:audited_t:s0 tclass=wamp_uri", False,
    )]
    assert rig.check(A, Action.CALL, "com.example.add") and len(rig.lines) == 1


def test_dontaudit_denial_is_silent(rig: Rig) -> None:
    """A denial the policy marks dontaudit is denied and not audited."""
    assert not rig.check(B, Action.CALL, "com.quiet.op")
    assert rig.lines == []
    assert not rig.check(A, Action.CALL, "com.quiet.op")  # no dontaudit for A
    assert len(rig.lines) == 1


def test_constraint_denial_is_explained_in_the_log(rig: Rig, logged: list[dict[str, Any]]) -> None:
    """A denial by a constraint gets a log line saying which (from libsepol's reason buffer)."""
    assert not rig.check(A, Action.SUBSCRIBE, "com.secret.x")
    why = [t for t in texts(logged) if t.startswith("denied subscribe")]
    assert why and "mlsconstrain wamp_uri" in why[0] and "l1 dom l2" in why[0], why


def test_odd_characters_in_names_are_hex_encoded(rig: Rig) -> None:
    """A URI that could break the record (quotes, spaces) is hex-encoded, as audit does."""
    rig.check(B, Action.CALL, "com.example.it's")
    encoded = b"com.example.it's".hex().upper()
    assert f" uri={encoded} realm=realm1 " in rig.denials()[0]


# -- permissive mode -----------------------------------------------------------------------------


def test_permissive_allows_and_reports_each_decision_once(
    tmp_path: Path, policies: PolicyBuilder, closing: list[ObjectManager]
) -> None:
    """enforcing = false: denials are allowed, and each (scontext, tcontext, class, perm) is
    reported once, with permissive=1, until a reload."""
    rig = make_rig(tmp_path, policies.standard(), enforcing=False)
    closing.append(rig.manager)
    rig.manager.start()
    for _ in range(3):
        assert rig.check(B, Action.CALL, "com.example.add")
        assert rig.check(B, Action.REGISTER, "com.example.add")
    assert rig.check(B, Action.CALL, "com.example.sub")  # another target context
    assert [line.split(" for ")[0] for line in rig.denials()] == [
        "avc:  denied  { call }", "avc:  denied  { register }", "avc:  denied  { call }",
    ]
    assert all(line.endswith("permissive=1") for line in rig.denials())
    assert rig.manager.reload()
    assert rig.check(B, Action.CALL, "com.example.add")
    assert len(rig.denials()) == 4


# -- fail closed -----------------------------------------------------------------------------------


def test_policy_without_the_classes_refuses_to_start(
    tmp_path: Path, policies: PolicyBuilder, closing: list[ObjectManager]
) -> None:
    """Enforcing with a policy lacking wamp_* (and handle_unknown=allow): the start is refused."""
    rig = make_rig(tmp_path, policies.without_classes(), contexts="uri * system_u:object_r:"
                   "kernel_t:s0\nrealm * system_u:object_r:kernel_t:s0\n")
    closing.append(rig.manager)
    with pytest.raises(SecurityError, match=r"lacks wamp_realm \{ join \}.*allow_unknown_classes"):
        rig.manager.start()


def test_allow_unknown_classes_defers_to_handle_unknown(
    tmp_path: Path, policies: PolicyBuilder, closing: list[ObjectManager],
    logged: list[dict[str, Any]],
) -> None:
    """allow_unknown_classes = true starts anyway, says so, and the policy's handle_unknown
    (allow, here) decides."""
    rig = make_rig(tmp_path, policies.without_classes(), allow_unknown=True,
                   contexts="uri * system_u:object_r:kernel_t:s0\n"
                   "realm * system_u:object_r:kernel_t:s0\n")
    closing.append(rig.manager)
    rig.manager.start()
    assert rig.check("system_u:system_r:kernel_t:s0", Action.CALL, "com.x")
    assert any("these actions are all allowed" in t for t in texts(logged))


def test_permissive_start_without_the_classes_denies_and_reports(
    tmp_path: Path, policies: PolicyBuilder, closing: list[ObjectManager]
) -> None:
    """Permissive without the classes (not accepted): everything is a reported denial."""
    rig = make_rig(tmp_path, policies.without_classes(), enforcing=False,
                   contexts="uri * system_u:object_r:kernel_t:s0\n"
                   "realm * system_u:object_r:kernel_t:s0\n")
    closing.append(rig.manager)
    rig.manager.start()
    assert rig.check("system_u:system_r:kernel_t:s0", Action.CALL, "com.x")
    assert rig.denials() and rig.denials()[0].endswith("permissive=1")


@pytest.mark.parametrize(
    "case",
    [
        (CONTEXTS + "uri com.bad system_u:object_r:nope_t:s0\n", [],
         r"wamp_contexts:12: context system_u:object_r:nope_t:s0 is not valid"),
        (CONTEXTS, [('access.uid_labels."1001"', "system_u:system_r:nope_t:s0")],
         r'access.uid_labels."1001": system_u:system_r:nope_t:s0 is not valid'),
        (CONTEXTS, [("listeners[2].label", "system_u:object_r:client_a_t:s9")],
         r"listeners\[2\].label: system_u:object_r:client_a_t:s9 is not valid"),
    ],
)
def test_invalid_context_refuses_the_start(
    tmp_path: Path, policies: PolicyBuilder, closing: list[ObjectManager],
    case: tuple[str, list[tuple[str, str]], str],
) -> None:
    """A context the policy rejects refuses the start, naming the file and line or the key."""
    contexts, labels, fault = case
    rig = make_rig(tmp_path, policies.standard(), contexts=contexts, labels=labels)
    closing.append(rig.manager)
    with pytest.raises(SecurityError, match=fault):
        rig.manager.start()


def test_check_before_start_fails(tmp_path: Path, policies: PolicyBuilder) -> None:
    """A manager that is not started cannot decide: the check fails (authorization_failed)."""
    rig = make_rig(tmp_path, policies.standard())
    with pytest.raises(AccessCheckFailed):
        rig.check(A, Action.CALL, "com.example.add")


# -- reloads ----------------------------------------------------------------------------------


def test_boolean_flipped_by_reload_changes_the_decision(rig: Rig, policies: PolicyBuilder) -> None:
    """A policy with b_may_call true, loaded by reload (SIGHUP), lets B call; and back."""
    assert not rig.check(B, Action.CALL, "com.example.add")
    shutil.copyfile(policies.standard(b_may_call=True), rig.policy)
    assert rig.manager.reload()
    assert rig.check(B, Action.CALL, "com.example.add")
    shutil.copyfile(policies.standard(b_may_call=False), rig.policy)
    assert rig.manager.reload()
    assert not rig.check(B, Action.CALL, "com.example.add")


@pytest.mark.parametrize("bad", ["garbage", "truncated", "no-classes", "bad-contexts",
                                 "malformed-contexts"])
def test_bad_reload_is_refused_and_the_old_policy_stays(
    rig: Rig, policies: PolicyBuilder, logged: list[dict[str, Any]], bad: str
) -> None:
    """A reload that would break anything is refused with a logged reason; decisions go on
    from the running policy and contexts."""
    data = policies.standard(b_may_call=True).read_bytes()
    if bad == "garbage":
        rig.policy.write_bytes(b"not a policy")
    elif bad == "truncated":
        rig.policy.write_bytes(data[: len(data) // 3])
    elif bad == "no-classes":
        shutil.copyfile(policies.without_classes(), rig.policy)
    elif bad == "bad-contexts":
        rig.policy.write_bytes(data)
        rig.contexts.write_text(CONTEXTS + "uri x system_u:object_r:nope_t:s0\n")
    else:
        rig.policy.write_bytes(data)
        rig.contexts.write_text(CONTEXTS + "uri x\n")
    assert rig.manager.reload() is False
    assert any(t.startswith("reload refused") for t in texts(logged))
    assert rig.check(A, Action.CALL, "com.example.add")
    assert not rig.check(B, Action.CALL, "com.example.add")  # still b_may_call false
    assert rig.check(A_HIGH, Action.SUBSCRIBE, "com.secret.x")


def test_label_made_invalid_by_a_reload_fails_the_check(
    rig: Rig, policies: PolicyBuilder, logged: list[dict[str, Any]]
) -> None:
    """A reload to a policy without client_b_t is accepted (configured labels only warn), and
    a session still labeled client_b_t gets a failing check, not a decision."""
    shutil.copyfile(policies.standard(with_client_b=False), rig.policy)
    assert rig.manager.reload()
    assert any("listeners[0].label" in t and "become unlabeled" in t for t in texts(logged))
    with pytest.raises(AccessCheckFailed, match="client_b_t:s0 is not valid"):
        rig.check(B, Action.JOIN, "realm1", "realm1")
    assert rig.check(A, Action.JOIN, "realm1", "realm1")
