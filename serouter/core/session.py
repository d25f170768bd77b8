"""A WAMP session's state machine, one per connection, free of I/O.

States and their rules:

- ``NEW``: only HELLO (or ABORT) is allowed. HELLO joins a realm -> WELCOME, ``ESTABLISHED``;
  unknown realm, bad URI or a denied join -> ABORT, then the connection closes.
- ``ESTABLISHED``: everything but HELLO goes to the realm. GOODBYE from the peer is answered
  with GOODBYE ``wamp.close.goodbye_and_out`` and the session leaves; the transport may start a
  new session with another HELLO (the spec allows reuse), so the state returns to ``NEW``.
- ``CLOSING``: the router sent GOODBYE and waits for the reply; other messages are ignored, the
  reply closes the connection.
- ``CLOSED``: the connection is gone or going; everything is ignored.

Any message the state does not allow is a protocol violation: ABORT
``wamp.error.protocol_violation`` with the reason, leave the realm, close.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from serouter.core import uris
from serouter.core.access import Action, Subject
from serouter.core.messages import (
    Abort,
    ClientAbort,
    ClientGoodbye,
    Goodbye,
    Hello,
    Incoming,
    Outgoing,
    Welcome,
)
from serouter.core.peer import Peer, TransportInfo

if TYPE_CHECKING:
    from serouter.core.realm import Realm
    from serouter.core.router import Router

log = Logger(namespace="serouter.session")


class State(Enum):
    NEW = "new"
    ESTABLISHED = "established"
    CLOSING = "closing"
    CLOSED = "closed"


class Session:
    """One connection's WAMP session. The router owns it; the transport feeds it messages."""

    __slots__ = (
        "_next_request",
        "authid",
        "authmethod",
        "authrole",
        "id",
        "label",
        "peer",
        "realm",
        "roles",
        "router",
        "state",
        "subject",
        "transport",
    )

    def __init__(self, router: Router, peer: Peer, transport: TransportInfo) -> None:
        self.router = router
        self.peer = peer
        self.transport = transport
        self.state = State.NEW
        self.id = 0
        self.realm: Realm | None = None
        self.authid = ""
        self.authrole = ""
        self.authmethod = ""
        self.label: str | None = None
        self.roles: dict[str, Any] = {}
        self.subject = Subject(0, "", "")
        self._next_request = 0

    def __repr__(self) -> str:
        return f"<Session {self.id} {self.state.value} {self.transport.peer}>"

    # -- called by the transport ---------------------------------------------------------

    def receive(self, msg: Incoming) -> None:
        """Handle one parsed message from the peer."""
        if self.state is State.ESTABLISHED:
            realm = self.realm
            assert realm is not None
            if realm.dispatch(self, msg):
                return
            if isinstance(msg, ClientGoodbye):
                self._peer_goodbye()
            elif isinstance(msg, ClientAbort):
                self._drop()
            else:
                self.protocol_violation(f"{type(msg).__name__.upper()} on an established session")
        elif self.state is State.NEW:
            if isinstance(msg, Hello):
                self._hello(msg)
            elif isinstance(msg, ClientAbort):
                self._drop()
            else:
                self.protocol_violation(f"{type(msg).__name__.upper()} received before HELLO")
        elif self.state is State.CLOSING and isinstance(msg, ClientGoodbye):
            self._drop()

    def protocol_violation(self, reason: str) -> None:
        """The peer broke the protocol (also called by the transport for unparsable input)."""
        if self.state is State.CLOSED:
            return
        log.info("protocol violation by {peer}: {reason}", peer=self.transport.peer, reason=reason)
        self.send(Abort({"message": reason}, uris.PROTOCOL_VIOLATION))
        self._drop()

    def connection_lost(self) -> None:
        """The transport is gone: leave the realm and free every resource, silently."""
        if self.state is not State.CLOSED:
            self._leave()
            self.state = State.CLOSED

    # -- called by the router -------------------------------------------------------------

    def shutdown(self, reason: str = uris.SYSTEM_SHUTDOWN, message: str | None = None) -> None:
        """Router-initiated close: GOODBYE to an established session, a plain close otherwise."""
        if self.state is State.ESTABLISHED:
            self.send(Goodbye({"message": message} if message else {}, reason))
            self._leave()
            self.state = State.CLOSING
        elif self.state is State.NEW:
            self._drop()

    def send(self, msg: Outgoing) -> None:
        self.peer.send(msg)

    def next_request_id(self) -> int:
        """The router's own request IDs in this session's scope (INVOCATION, INTERRUPT)."""
        self._next_request = self._next_request % 2**53 + 1
        return self._next_request

    def supports(self, role: str, feature: str) -> bool:
        """Whether the peer announced ``feature`` for ``role`` in its HELLO."""
        details = self.roles.get(role)
        features = details.get("features") if type(details) is dict else None
        return type(features) is dict and features.get(feature) is True

    @property
    def is_open(self) -> bool:
        return self.state is State.ESTABLISHED

    # -- internals -----------------------------------------------------------------------

    def _hello(self, msg: Hello) -> None:
        roles = msg.details.get("roles")
        if type(roles) is not dict or not roles:
            self.protocol_violation("HELLO.Details.roles must be a non-empty dict")
            return
        if not uris.is_valid_uri(msg.realm):
            self._abort(uris.INVALID_URI, f"invalid realm URI {msg.realm!r}")
            return
        realm = self.router.realms.get(msg.realm)
        if realm is None:
            self._abort(uris.NO_SUCH_REALM, f"no realm {msg.realm!r} on this router")
            return
        self.id = self.router.new_session_id()
        self.roles = roles
        self.authid = f"anonymous-{self.id}"
        self.authrole = "anonymous"
        self.authmethod = "anonymous"
        self.label = self.router.labeler(self.transport, self.authid, self.authrole)
        self.subject = Subject(self.id, self.authid, self.authrole, self.label)
        error = realm.authorize(self, Action.JOIN, realm.name)
        if error is not None:
            self.router.release_session_id(self.id)
            self._abort(error, None)
            return
        self.realm = realm
        self.state = State.ESTABLISHED
        realm.join(self)
        self.send(Welcome(self.id, self._welcome_details(realm)))

    def _welcome_details(self, realm: Realm) -> dict[str, Any]:
        return {
            "realm": realm.name,
            "authid": self.authid,
            "authrole": self.authrole,
            "authmethod": self.authmethod,
            "authprovider": "static",
            "roles": realm.roles,
        }

    def _abort(self, reason: str, message: str | None) -> None:
        log.info("session refused from {peer}: {reason}", peer=self.transport.peer, reason=reason)
        self.send(Abort({"message": message} if message else {}, reason))
        self._drop()

    def _peer_goodbye(self) -> None:
        self.send(Goodbye({}, uris.GOODBYE_AND_OUT))
        self._leave()
        self.state = State.NEW
        self.id = 0

    def _drop(self) -> None:
        self._leave()
        self.state = State.CLOSED
        self.peer.close()

    def _leave(self) -> None:
        if self.realm is not None:
            realm, self.realm = self.realm, None
            realm.leave(self)
            self.router.release_session_id(self.id)
