"""Authentication in the session state machine: HELLO -> CHALLENGE -> AUTHENTICATE -> WELCOME."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock

from serouter.auth import AuthPolicy, ListenerAuth
from serouter.auth.anonymous import Anonymous
from serouter.auth.ticket import Ticket, TicketPrincipal
from serouter.auth.transport import PeerCredentials
from serouter.core.access import Action, AllowAll, Subject
from serouter.core.ids import IdGenerator
from serouter.core.messages import Authenticate, Challenge, ProtocolViolation, parse
from serouter.core.peer import TransportInfo
from serouter.core.router import Router
from serouter.core.session import Session, State
from tests.fakes import ROLES, FakePeer, send

TCP = TransportInfo("rawsocket", "json", "tcp4:127.0.0.1:5000", listener="tcp:8081")
UNIX = TransportInfo("rawsocket", "json", "unix", listener="unix:/s", peer_uid=1000, peer_gid=100)
TICKETS = Ticket({"alice": TicketPrincipal("alice-ticket", "user")})


def make_router(policy: AuthPolicy | None = None, access: Any = None, **kw: Any) -> Router:
    return Router(["realm1"], access or AllowAll(), Clock(), ids=IdGenerator(seed=1),
                  auth=policy, **kw)


def ticket_router(**kw: Any) -> Router:
    policy = AuthPolicy(
        {"realm1": [Anonymous(), TICKETS, PeerCredentials(uid_roles={1000: "local"})]},
        {"tcp:8081": ListenerAuth(timeout=5.0)},
    )
    return make_router(policy, **kw)


def hello(router: Router, transport: TransportInfo = TCP, **details: Any) -> tuple[Session,
                                                                                    FakePeer]:
    peer = FakePeer()
    session = router.open_session(peer, transport)
    send(session, 1, "realm1", {"roles": ROLES, **details})
    return session, peer


def test_ticket_challenge_then_welcome_with_identity() -> None:
    """HELLO asking for ticket gets CHALLENGE; the right ticket gets WELCOME naming the
    authenticated identity."""
    router = ticket_router()
    session, peer = hello(router, authmethods=["ticket"], authid="alice")
    assert peer.wire() == [[4, "ticket", {}]]
    assert session.state is State.CHALLENGING and not session.is_open
    send(session, 5, "alice-ticket", {})
    [[code, sid, details]] = peer.wire()
    assert code == 2 and sid == session.id
    assert {k: details[k] for k in ("authid", "authrole", "authmethod", "authprovider")} == {
        "authid": "alice", "authrole": "user", "authmethod": "ticket", "authprovider": "static",
    }
    assert "authextra" not in details
    assert session.is_open and session.subject == Subject(session.id, "alice", "user", None)
    assert router.realms["realm1"].sessions


def test_wrong_ticket_aborts_without_detail_and_frees_the_id() -> None:
    """A wrong ticket gets ABORT authentication_failed with a generic message, and a close."""
    router = ticket_router()
    session, peer = hello(router, authmethods=["ticket"], authid="alice")
    peer.wire()
    send(session, 5, "guess", {})
    assert peer.wire() == [[3, {"message": "authentication failed"},
                            "wamp.error.authentication_failed"]]
    assert peer.closed and session.state is State.CLOSED
    assert not router._session_ids and not router.realms["realm1"].sessions


def test_client_order_of_preference_wins() -> None:
    """The first of the client's authmethods that the realm offers is used."""
    router = ticket_router()
    _, peer = hello(router, authmethods=["wampcra", "anonymous", "ticket"], authid="alice")
    [[code, _, details]] = peer.wire()
    assert code == 2 and details["authmethod"] == "anonymous"
    assert details["authid"].startswith("anonymous-")  # never the claimed "alice"


def test_no_acceptable_method_is_aborted() -> None:
    """No method in common: ABORT no_auth_method."""
    router = make_router()  # default: anonymous only
    _, peer = hello(router, authmethods=["ticket", "wampcra"], authid="alice")
    [[code, _, reason]] = peer.wire()
    assert (code, reason) == (3, "wamp.error.no_auth_method")
    assert peer.closed and not router._session_ids


def test_default_is_anonymous_as_before() -> None:
    """Without configuration, a HELLO without authmethods (or an empty list) is anonymous."""
    router = make_router()
    for methods in (None, []):
        _, peer = hello(router, authmethods=methods)
        [[code, sid, details]] = peer.wire()
        assert code == 2 and details["authid"] == f"anonymous-{sid}"
        assert details["authrole"] == "anonymous" and details["authmethod"] == "anonymous"


def test_transport_method_on_unix_carries_authextra() -> None:
    """A method that admits at once (SO_PEERCRED) gives WELCOME with its authextra."""
    router = ticket_router()
    _, peer = hello(router, UNIX, authmethods=["transport"])
    [[code, _, details]] = peer.wire()
    assert code == 2 and details["authid"] == "uid:1000" and details["authrole"] == "local"
    assert details["authprovider"] == "kernel"
    assert details["authextra"] == {"uid": 1000, "gid": 100}


def test_only_authenticate_or_abort_while_challenging() -> None:
    """Anything but AUTHENTICATE or ABORT after CHALLENGE is a protocol violation."""
    for message in ([48, 1, {}, "a.b"], [1, "realm1", {"roles": ROLES}],
                    [6, {}, "wamp.close.close_realm"]):
        router = ticket_router()
        session, peer = hello(router, authmethods=["ticket"], authid="alice")
        peer.wire()
        send(session, *message)
        [[code, details, reason]] = peer.wire()
        assert (code, reason) == (3, "wamp.error.protocol_violation")
        assert "while authenticating" in details["message"]
        assert peer.closed and not router._session_ids


def test_abort_while_challenging_closes_quietly() -> None:
    router = ticket_router()
    session, peer = hello(router, authmethods=["ticket"], authid="alice")
    peer.wire()
    send(session, 3, {}, "wamp.close.goodbye_and_out")
    assert peer.wire() == [] and peer.closed and not router._session_ids


def test_authenticate_out_of_place_is_a_violation() -> None:
    """AUTHENTICATE before HELLO or on an established session breaks the protocol."""
    router = ticket_router()
    peer = FakePeer()
    session = router.open_session(peer, TCP)
    send(session, 5, "x", {})
    assert peer.wire()[0][::2] == [3, "wamp.error.protocol_violation"]
    session, peer = hello(router)
    peer.wire()
    send(session, 5, "x", {})
    assert peer.wire()[0][::2] == [3, "wamp.error.protocol_violation"]


def test_malformed_auth_details_are_violations() -> None:
    """authmethods must be a list of strings, authid a string, authextra a dict."""
    for details in ({"authmethods": "ticket"}, {"authmethods": ["ticket", 3]},
                    {"authid": 5}, {"authextra": []}):
        router = ticket_router()
        _, peer = hello(router, **details)
        assert peer.wire()[0][::2] == [3, "wamp.error.protocol_violation"], details


def test_unanswered_challenge_times_out() -> None:
    """No AUTHENTICATE within the listener's auth_timeout: ABORT and close."""
    router = ticket_router()
    clock = router.clock
    assert isinstance(clock, Clock)
    _, peer = hello(router, authmethods=["ticket"], authid="alice")
    peer.wire()
    clock.advance(4.9)
    assert not peer.closed
    clock.advance(0.2)
    assert peer.wire() == [[3, {"message": "authentication timed out"},
                            "wamp.error.authentication_failed"]]
    assert peer.closed and not router._session_ids and not clock.getDelayedCalls()


def test_answer_or_loss_cancels_the_timeout() -> None:
    """The timer goes with the challenge: answered, or the connection lost."""
    router = ticket_router()
    clock = router.clock
    assert isinstance(clock, Clock)
    session, _ = hello(router, authmethods=["ticket"], authid="alice")
    send(session, 5, "alice-ticket", {})
    assert not clock.getDelayedCalls() and session.is_open
    session, _ = hello(router, authmethods=["ticket"], authid="alice")
    router.close_session(session)
    assert not clock.getDelayedCalls()
    assert router._session_ids == {next(iter(router.realms["realm1"].sessions))}


def test_shutdown_while_challenging_closes() -> None:
    router = ticket_router()
    session, peer = hello(router, authmethods=["ticket"], authid="alice")
    router.shutdown()
    assert peer.closed and session.state is State.CLOSED and not router._session_ids


def test_labeler_and_access_see_the_authenticated_identity() -> None:
    """The label and the join check use what the router proved, never the claim."""
    seen: list[tuple[str, str, str]] = []

    def labeler(transport: TransportInfo, authid: str, authrole: str, authmethod: str) -> str:
        seen.append((authid, authrole, authmethod))
        return f"label:{authrole}"

    class DenyUsers:
        def check(self, subject: Subject, action: Action, realm: str, uri: str) -> bool:
            return not (action is Action.JOIN and subject.authrole == "user")

    router = ticket_router(labeler=labeler, access=DenyUsers())
    _, peer = hello(router, authmethods=["anonymous"], authid="alice")
    assert peer.wire()[0][0] == 2
    session, peer = hello(router, authmethods=["ticket"], authid="alice")
    peer.wire()
    send(session, 5, "alice-ticket", {})
    assert peer.wire() == [[3, {}, "wamp.error.not_authorized"]]
    assert seen[0][0].startswith("anonymous-") and seen[0][2] == "anonymous"
    assert seen[1] == ("alice", "user", "ticket")
    assert len(router._session_ids) == 1


def test_goodbye_then_hello_authenticates_again() -> None:
    """A reused connection authenticates afresh."""
    router = ticket_router()
    session, peer = hello(router, authmethods=["ticket"], authid="alice")
    send(session, 5, "alice-ticket", {})
    send(session, 6, {}, "wamp.close.close_realm")
    peer.wire()
    send(session, 1, "realm1", {"roles": ROLES, "authmethods": ["ticket"], "authid": "alice"})
    assert peer.wire() == [[4, "ticket", {}]]
    send(session, 5, "wrong", {})
    assert peer.wire()[0][::2] == [3, "wamp.error.authentication_failed"]


def test_welcome_too_big_for_the_peer_is_refused() -> None:
    """A WELCOME the peer's transport cannot carry becomes an ABORT, not silence."""
    router = make_router()

    class SmallPeer(FakePeer):
        def send(self, message: Any) -> str | None:
            if message.TYPE == 2:
                return "wamp.error.payload_size_exceeded"
            return super().send(message)

    peer = SmallPeer()
    session = router.open_session(peer, TCP)
    send(session, 1, "realm1", {"roles": ROLES})
    assert peer.wire()[0][::2] == [3, "wamp.error.payload_size_exceeded"]
    assert peer.closed and not router._session_ids and not router.realms["realm1"].sessions


def test_challenge_and_authenticate_messages() -> None:
    """CHALLENGE marshals as [4, method, extra]; AUTHENTICATE parses strictly."""
    assert Challenge("ticket", {}).marshal() == [4, "ticket", {}]
    assert parse([5, "sig", {"a": 1}]) == Authenticate("sig", {"a": 1})
    for bad in ([5, "sig"], [5, 3, {}], [5, "sig", []], [5, "sig", {}, 1]):
        with pytest.raises(ProtocolViolation):
            parse(bad)
