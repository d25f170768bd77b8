"""Session labels: only from the kernel's word (uid, SO_PEERSEC), the listener, or an identity
the router itself authenticated; never from what a client claims in HELLO."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher

from serouter.config import AccessConfig
from serouter.core.access import Action, AllowAll, Subject
from serouter.core.messages import Hello
from serouter.core.peer import TransportInfo
from serouter.core.router import Router
from serouter.security import Security, build_security
from serouter.security._labeler import SessionLabeler
from tests.fakes import ROLES, FakePeer

A = "system_u:system_r:client_a_t:s0"
B = "system_u:system_r:client_b_t:s0"
ADMIN = "system_u:system_r:admin_t:s0"
OPERATOR = "system_u:system_r:operator_t:s0"
LISTENER = "system_u:system_r:listener_t:s0"
KERNEL = "system_u:system_r:peer_t:s0"
UNLABELED = "system_u:object_r:unlabeled_t:s0"
INVALID = "system_u:system_r:gone_t:s0"


def labeler(trust: bool = True, valid: Any = None) -> SessionLabeler:
    return SessionLabeler(
        unlabeled=UNLABELED,
        valid=valid or (lambda context: context != INVALID),
        trust_peer_context=trust,
        uid_labels={1001: A, 1002: B, 1003: INVALID},
        authid_labels={"admin": ADMIN},
        authrole_labels={"operator": OPERATOR},
    )


def info(uid: int | None = None, context: str | None = None,
         label: str | None = LISTENER) -> TransportInfo:
    return TransportInfo("rawsocket", "json", "unix", listener="unix:/run/s.sock",
                         peer_uid=uid, peer_context=context, listener_label=label)


def test_uid_map() -> None:
    """A Unix peer's uid (SO_PEERCRED) picks its label from [access.uid_labels]."""
    assert labeler()(info(uid=1001), "anonymous-1", "anonymous") == A
    assert labeler()(info(uid=1002), "anonymous-1", "anonymous") == B


def test_listener_label_for_everyone_else() -> None:
    """A peer no map names gets its listener's label; without one, unlabeled."""
    assert labeler()(info(uid=4242), "x", "anonymous") == LISTENER
    assert labeler()(info(label=None), "x", "anonymous") == UNLABELED


def test_peer_context_only_when_selinux_is_enabled() -> None:
    """SO_PEERSEC is used only when SELinux is enabled (elsewhere it may be AppArmor's)."""
    assert labeler(trust=True)(info(context=KERNEL), "x", "anonymous") == KERNEL
    assert labeler(trust=False)(info(context=KERNEL), "x", "anonymous") == LISTENER


def test_uid_map_beats_the_peer_context() -> None:
    """A uid the map names is labeled by the map, even when SO_PEERSEC gives a context
    (the map is "in addition": it tells apart peers that share a domain)."""
    assert labeler()(info(uid=1001, context=KERNEL), "x", "anonymous") == A


def test_invalid_label_is_unlabeled_and_does_not_fall_through() -> None:
    """A label the policy does not know makes the session unlabeled, not listener-labeled."""
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        assert labeler()(info(uid=1003), "x", "anonymous") == UNLABELED
        assert labeler()(info(context=INVALID), "x", "anonymous") == UNLABELED
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert any("uid 1003" in formatEvent(e) and "not valid" in formatEvent(e) for e in events)


def test_authid_and_authrole_maps_need_authentication() -> None:
    """The authid/authrole maps apply only to sessions the router authenticated: an anonymous
    session named "admin" is not labeled admin."""
    label = labeler()
    assert label(info(), "admin", "operator") == LISTENER  # anonymous by default
    assert label(info(), "admin", "operator", authmethod="anonymous") == LISTENER
    assert label(info(), "admin", "operator", authmethod="ticket") == ADMIN
    assert label(info(), "someone", "operator", authmethod="wampcra") == OPERATOR
    assert label(info(uid=1001), "someone", "operator", authmethod="cryptosign") == OPERATOR
    assert label(info(uid=1001), "someone", "user", authmethod="ticket") == A


def test_hello_claims_are_never_an_input() -> None:
    """Whatever HELLO.Details claim (authid, authrole, a label), the session is labeled from
    the transport: the router calls the labeler with the identity it established itself."""
    seen: list[tuple[str, str]] = []

    def recording(
        transport: TransportInfo, authid: str, authrole: str, authmethod: str
    ) -> str | None:
        seen.append((authid, authrole))
        return labeler()(transport, authid, authrole, authmethod)

    router = Router(["realm1"], AllowAll(), Clock(), labeler=recording)
    peer = FakePeer()
    session = router.open_session(peer, info(uid=1002))
    details = {"roles": ROLES, "authid": "admin", "authrole": "operator", "label": ADMIN,
               "authextra": {"label": ADMIN}}
    session.receive(Hello("realm1", details))
    assert peer.wire()[0][0] == 2
    assert session.label == B and session.subject.label == B
    assert seen and seen[0] != ("admin", "operator")


def test_session_label_is_what_the_access_check_sees() -> None:
    """The label reaches the access check as Subject.label, at join and afterwards."""
    subjects: list[tuple[Subject, Action]] = []

    class Recording:
        def check(self, subject: Subject, action: Action, realm: str, uri: str) -> bool:
            subjects.append((subject, action))
            return True

    router = Router(["realm1"], Recording(), Clock(), labeler=labeler())
    peer = FakePeer()
    session = router.open_session(peer, info(uid=1001))
    session.receive(Hello("realm1", {"roles": ROLES}))
    assert [(s.label, a) for s, a in subjects] == [(A, Action.JOIN)]


def test_allow_all_is_named_and_warned_at_every_start() -> None:
    """The allow-all backend allows everything and warns each time it starts."""
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        security = build_security(AccessConfig(backend="allow-all"))
        assert isinstance(security, Security) and not security.reloadable
        security.start()
        security.start()
    finally:
        globalLogPublisher.removeObserver(events.append)
    warnings = [formatEvent(e) for e in events if "allow-all" in formatEvent(e)]
    assert len(warnings) == 2 and all(e["log_level"].name == "warn" for e in events
                                      if "allow-all" in formatEvent(e))
    assert security.access.check(Subject(1, "a", "b"), Action.CALL, "r", "u")


@pytest.mark.parametrize("uid", [0, 1001])
def test_allow_all_still_labels_sessions(uid: int) -> None:
    """Labels are computed with allow-all too (logs and the meta API show them)."""
    config = AccessConfig(uid_labels={1001: A})
    security = build_security(config)
    expected = A if uid == 1001 else LISTENER
    assert security.labeler(info(uid=uid), "x", "anonymous") == expected
