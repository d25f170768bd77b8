"""Hand-made fakes for core tests: a peer that records, and a router with joined sessions."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock

from serouter.core.access import AllowAll
from serouter.core.ids import IdGenerator
from serouter.core.messages import Hello, Outgoing, parse
from serouter.core.peer import TransportInfo
from serouter.core.router import Router
from serouter.core.session import Session

ROLES = {"caller": {}, "callee": {}, "publisher": {}, "subscriber": {}}
ALL_FEATURES = {"features": {
    "progressive_call_results": True, "progressive_call_invocations": True,
    "call_canceling": True, "call_timeout": True, "caller_identification": True,
}}
ROLES_ADVANCED = dict.fromkeys(ROLES, ALL_FEATURES)


class FakePeer:
    """Records what the core sends; ``closed`` tells whether it asked to close."""

    def __init__(self) -> None:
        self.sent: list[Outgoing] = []
        self.closed = False

    def send(self, message: Outgoing) -> str | None:
        self.sent.append(message)
        return None

    def close(self) -> None:
        self.closed = True

    def wire(self) -> list[list[Any]]:
        """What was sent, as the lists a client would receive; clears the record."""
        out = [m.marshal() for m in self.sent]
        self.sent.clear()
        return out


def make_router(*realms: str, access: Any = None, clock: Any = None) -> Router:
    names = realms or ("realm1",)
    return Router(names, access or AllowAll(), clock or Clock(), ids=IdGenerator(seed=1))


def connect(
    router: Router, realm: str = "realm1", roles: Any = None
) -> tuple[Session, FakePeer]:
    """A session that has joined ``realm``, with its WELCOME already consumed."""
    peer = FakePeer()
    session = router.open_session(peer, TransportInfo("rawsocket", "json", "test"))
    session.receive(Hello(realm, {"roles": roles or ROLES}))
    welcome = peer.wire()
    assert welcome[0][0] == 2, welcome
    return session, peer


def send(session: Session, *msg: Any) -> None:
    """Feed a message given as its wire list, through the real parser."""
    session.receive(parse(list(msg)))
