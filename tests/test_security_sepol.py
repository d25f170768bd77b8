"""The libsepol binding against real compiled policies: names, contexts, decisions, reloads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from serouter.security._errors import SecurityError
from serouter.security._sepol import SepolPolicy, read_header
from tests.selinux_policy import A_HIGH, A, B, C, PolicyBuilder, policies

__all__ = ["policies"]  # the session fixture

EXAMPLE_ADD = "system_u:object_r:example_add_t:s0"
SECRET = "system_u:object_r:secret_uri_t:s1"


@pytest.fixture
def sepol(policies: PolicyBuilder) -> Iterator[SepolPolicy]:
    policy = SepolPolicy()
    policy.load(policies.standard().read_bytes())
    try:
        yield policy
    finally:
        policy.close()


def perms(sepol: SepolPolicy, names: tuple[str, ...]) -> dict[str, int]:
    tclass = sepol.class_value("wamp_uri")
    return {name: sepol.perm_bit(tclass, name) for name in names}


def allowed(sepol: SepolPolicy, source: str, target: str, perm: str) -> bool:
    tclass = sepol.class_value("wamp_uri")
    ssid, tsid = sepol.sid(source), sepol.sid(target)
    assert ssid is not None and tsid is not None
    return bool(sepol.compute_av(ssid, tsid, tclass)[0] & sepol.perm_bit(tclass, perm))


def test_header_says_mls_and_handle_unknown(policies: PolicyBuilder) -> None:
    """The binary header is read without libsepol: MLS on, handle_unknown=allow (the base's)."""
    header = read_header(policies.standard().read_bytes())
    assert header.mls and header.handle_unknown == "allow" and header.version >= 30
    with pytest.raises(SecurityError, match="bad magic"):
        read_header(b"\0" * 64)
    with pytest.raises(SecurityError, match="truncated"):
        read_header(b"\x8c\xff\x7c\xf9")


def test_classes_and_permissions_of_the_shipped_module(sepol: SepolPolicy) -> None:
    """wamp_realm { join } and wamp_uri's six permissions exist, each with its own bit."""
    assert sepol.class_value("wamp_realm") and sepol.class_value("wamp_uri")
    assert sepol.perm_bit(sepol.class_value("wamp_realm"), "join")
    bits = perms(sepol, ("register", "call", "subscribe", "publish", "announce", "lookup"))
    assert all(bits.values()) and len(set(bits.values())) == 6
    assert sepol.class_value("no_such_class") == 0
    assert sepol.perm_bit(sepol.class_value("wamp_uri"), "join") == 0


def test_contexts_are_validated_by_the_policy(sepol: SepolPolicy) -> None:
    """Unknown types, roles without the type, levels outside the user's range are invalid."""
    assert sepol.valid(A) and sepol.valid(A_HIGH) and sepol.valid(EXAMPLE_ADD)
    assert not sepol.valid("system_u:system_r:nope_t:s0")
    assert not sepol.valid("system_u:system_r:example_add_t:s0")  # type not in system_r
    assert not sepol.valid("system_u:system_r:client_a_t:s7")
    assert not sepol.valid("garbage")


def test_type_enforcement_decisions(sepol: SepolPolicy) -> None:
    """Decisions follow the allow rules (and nothing else)."""
    assert allowed(sepol, A, EXAMPLE_ADD, "call") and allowed(sepol, A, EXAMPLE_ADD, "register")
    assert not allowed(sepol, B, EXAMPLE_ADD, "register")
    assert not allowed(sepol, C, EXAMPLE_ADD, "call")


def test_boolean_default_decides(policies: PolicyBuilder) -> None:
    """b_may_call false: B may not call; a policy compiled with it true: B may."""
    for flag in (False, True):
        policy = SepolPolicy()
        try:
            policy.load(policies.standard(b_may_call=flag).read_bytes())
            assert allowed(policy, B, EXAMPLE_ADD, "call") is flag
        finally:
            policy.close()


def test_mls_constraint_and_its_explanation(sepol: SepolPolicy) -> None:
    """Type enforcement allows A to subscribe to s1 topics; the MLS constraint allows only an
    s1 session, and the reason buffer names the constraint."""
    assert allowed(sepol, A_HIGH, SECRET, "subscribe")
    assert not allowed(sepol, A, SECRET, "subscribe")
    tclass = sepol.class_value("wamp_uri")
    ssid, tsid = sepol.sid(A), sepol.sid(SECRET)
    assert ssid is not None and tsid is not None
    why = sepol.explain(ssid, tsid, tclass, sepol.perm_bit(tclass, "subscribe"))
    assert why is not None and why.startswith("a constraint"), why
    assert "l1 dom l2" in why and "DENIED" in why, why
    # a plain missing allow rule needs no explanation
    assert sepol.explain(ssid, tsid, tclass, sepol.perm_bit(tclass, "publish")) is None


def test_one_owner_per_process(sepol: SepolPolicy) -> None:
    """libsepol's policy is global: a second owner is refused until the first closes."""
    with pytest.raises(SecurityError, match="one policy per process"):
        SepolPolicy()
    sepol.close()
    SepolPolicy().close()


def test_reload_resets_sids(sepol: SepolPolicy, policies: PolicyBuilder) -> None:
    """After a load the SID cache is empty and contexts map to SIDs of the new policy."""
    assert sepol.sid(C) is not None and sepol.sid(B) is not None
    sepol.load(policies.standard(with_client_b=False).read_bytes())
    assert sepol.sid(B) is None  # the new policy has no client_b_t
    assert allowed(sepol, A, EXAMPLE_ADD, "call")


def test_corrupt_policy_is_refused_and_the_old_one_stays(sepol: SepolPolicy, tmp_path: Path,
                                                         policies: PolicyBuilder) -> None:
    """A truncated policy never reaches libsepol's global load (which would leave it broken):
    the load is refused and decisions continue from the old policy."""
    data = policies.standard().read_bytes()
    for broken in (data[: len(data) // 2], data[:200] + b"\0" * 100):
        with pytest.raises(SecurityError, match="cannot read the policy"):
            sepol.load(broken)
        assert sepol.loaded and allowed(sepol, A, EXAMPLE_ADD, "call")
