"""The session state machine: joining, leaving, and violations in every state."""

from typing import Any

from serouter.core.access import Action, Subject
from serouter.core.messages import Hello
from serouter.core.peer import TransportInfo
from serouter.core.session import State
from tests.fakes import ROLES, FakePeer, connect, make_router, send


def new_session(router: Any) -> tuple[Any, FakePeer]:
    peer = FakePeer()
    return router.open_session(peer, TransportInfo("websocket", "json", "test")), peer


def test_hello_gets_welcome_with_roles_and_identity() -> None:
    """HELLO to a known realm is answered with WELCOME naming the session's identity."""
    router = make_router()
    session, peer = new_session(router)
    session.receive(Hello("realm1", {"roles": ROLES}))
    [[code, sid, details]] = peer.wire()
    assert code == 2 and 1 <= sid <= 2**53 and sid == session.id
    assert details["authrole"] == "anonymous" and details["authmethod"] == "anonymous"
    assert set(details["roles"]) == {"broker", "dealer"}
    assert details["roles"]["dealer"]["features"]["call_canceling"] is True
    assert session.state is State.ESTABLISHED


def test_session_ids_are_distinct() -> None:
    """Every live session gets its own random ID."""
    router = make_router()
    ids = {connect(router)[0].id for _ in range(200)}
    assert len(ids) == 200


def test_unknown_realm_is_aborted() -> None:
    """HELLO to a realm the router does not have gets ABORT no_such_realm and a close."""
    router = make_router()
    session, peer = new_session(router)
    session.receive(Hello("nope", {"roles": ROLES}))
    assert peer.wire()[0][::2] == [3, "wamp.error.no_such_realm"]
    assert peer.closed


def test_invalid_realm_uri_is_aborted() -> None:
    """A realm that is not a URI gets ABORT invalid_uri."""
    router = make_router()
    session, peer = new_session(router)
    session.receive(Hello("bad realm", {"roles": ROLES}))
    assert peer.wire()[0][::2] == [3, "wamp.error.invalid_uri"]


def test_hello_without_roles_is_a_violation() -> None:
    """HELLO.Details.roles is required."""
    router = make_router()
    session, peer = new_session(router)
    session.receive(Hello("realm1", {}))
    assert peer.wire()[0][::2] == [3, "wamp.error.protocol_violation"]
    assert peer.closed


def test_message_before_hello_is_a_violation() -> None:
    """Anything but HELLO/ABORT before the session is established aborts the connection."""
    router = make_router()
    session, peer = new_session(router)
    send(session, 48, 1, {}, "a.b")
    [[code, details, reason]] = peer.wire()
    assert (code, reason) == (3, "wamp.error.protocol_violation")
    assert "before HELLO" in details["message"]
    assert peer.closed


def test_second_hello_is_a_violation() -> None:
    """HELLO on an established session aborts it and frees what it held."""
    router = make_router()
    session, peer = connect(router)
    send(session, 64, 1, {}, "a.b")
    peer.wire()
    send(session, 1, "realm1", {"roles": ROLES})
    assert peer.wire()[0][::2] == [3, "wamp.error.protocol_violation"]
    assert router.realms["realm1"].dealer.lookup("a.b") is None
    assert not router.realms["realm1"].sessions


def test_goodbye_is_answered_and_transport_can_be_reused() -> None:
    """GOODBYE gets GOODBYE goodbye_and_out; a new HELLO then starts a new session."""
    router = make_router()
    session, peer = connect(router)
    first = session.id
    send(session, 6, {}, "wamp.close.close_realm")
    assert peer.wire() == [[6, {}, "wamp.close.goodbye_and_out"]]
    assert not peer.closed and session.state is State.NEW
    send(session, 1, "realm1", {"roles": ROLES})
    [[code, sid, _]] = peer.wire()
    assert code == 2 and sid != first


def test_router_goodbye_then_reply_closes() -> None:
    """Router-initiated GOODBYE waits for the reply, ignoring other messages, then closes."""
    router = make_router()
    session, peer = connect(router)
    router.shutdown()
    assert peer.wire() == [[6, {}, "wamp.close.system_shutdown"]]
    send(session, 48, 1, {}, "a.b")
    assert peer.wire() == [] and not peer.closed
    send(session, 6, {}, "wamp.close.goodbye_and_out")
    assert peer.closed


def test_abort_from_client_closes_and_cleans_up() -> None:
    """ABORT from the client ends the session and frees its subscriptions."""
    router = make_router()
    session, peer = connect(router)
    send(session, 32, 1, {}, "t.x")
    send(session, 3, {}, "wamp.close.whatever")
    assert peer.closed
    assert router.realms["realm1"].broker.subscription(1) is None


def test_connection_lost_frees_everything() -> None:
    """A lost connection removes the session from its realm and its registrations."""
    router = make_router()
    session, _ = connect(router)
    send(session, 64, 1, {}, "a.b")
    router.close_session(session)
    assert router.realms["realm1"].dealer.lookup("a.b") is None
    assert session not in router.sessions and not router.realms["realm1"].sessions


class DenyJoin:
    def check(self, subject: Subject, action: Action, realm: str, uri: str) -> bool:
        return action is not Action.JOIN


def test_denied_join_is_aborted_without_detail() -> None:
    """A join the access check denies gets ABORT not_authorized with no details."""
    router = make_router(access=DenyJoin())
    session, peer = new_session(router)
    session.receive(Hello("realm1", {"roles": ROLES}))
    assert peer.wire() == [[3, {}, "wamp.error.not_authorized"]]
    assert peer.closed and not router.realms["realm1"].sessions


def test_a_trusted_session_joins_without_hello_or_join_check() -> None:
    """``join_trusted`` (the router's own components): established at once, no WELCOME sent,
    the access check never asked, the realm knows it (meta API) and frees it on close."""
    asked: list[Any] = []

    class Refuse:
        def check(self, *args: Any) -> bool:
            asked.append(args)
            return False

    router = make_router(access=Refuse())
    realm = router.realms["realm1"]
    peer = FakePeer()
    session = router.open_session(peer, TransportInfo("internal", "none", "internal:x"))
    session.join_trusted(realm, "serouter.x", "serouter.internal", {"callee": {}})
    assert session.state is State.ESTABLISHED and session.realm is realm
    assert (session.authid, session.authrole, session.authmethod) == (
        "serouter.x", "serouter.internal", "internal")
    assert session.subject == Subject(session.id, "serouter.x", "serouter.internal", None)
    assert peer.sent == [] and asked == []
    assert session.id in realm.sessions
    router.close_session(session)
    assert session.id not in realm.sessions
