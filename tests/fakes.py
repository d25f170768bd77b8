"""Hand-made fakes for core tests: a peer that records, and a router with joined sessions."""

from __future__ import annotations

from typing import Any

from serouter.core.access import AllowAll
from serouter.core.ids import IdGenerator
from serouter.core.messages import Hello, Outgoing, parse
from serouter.core.peer import TransportInfo
from serouter.core.router import Router
from serouter.core.session import Session

ROLES = {"caller": {}, "callee": {}, "publisher": {}, "subscriber": {}}


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


def make_router(*realms: str, access: Any = None) -> Router:
    return Router(realms or ("realm1",), access or AllowAll(), IdGenerator(seed=1))


def connect(router: Router, realm: str = "realm1") -> tuple[Session, FakePeer]:
    """A session that has joined ``realm``, with its WELCOME already consumed."""
    peer = FakePeer()
    session = router.open_session(peer, TransportInfo("rawsocket", "json", "test"))
    session.receive(Hello(realm, {"roles": ROLES}))
    welcome = peer.wire()
    assert welcome[0][0] == 2, welcome
    return session, peer


def send(session: Session, *msg: Any) -> None:
    """Feed a message given as its wire list, through the real parser."""
    session.receive(parse(list(msg)))
