"""A WAMP session's state machine, one per connection, free of I/O.

States and their rules:

- ``NEW``: only HELLO (or ABORT) is allowed. HELLO picks an authentication method: the first
  of the client's ``authmethods`` (default ``["anonymous"]``) that the realm offers and the
  listener allows; none -> ABORT ``wamp.error.no_auth_method``. The method admits at once
  (WELCOME, ``ESTABLISHED``), refuses (ABORT) or sends CHALLENGE (``CHALLENGING``). Unknown
  realm, bad URI, failed authentication or a denied join -> ABORT, then the connection closes.
- ``CHALLENGING``: only AUTHENTICATE (or ABORT) is allowed, within the listener's
  ``auth_timeout``; the method's verdict gives WELCOME or ABORT as above.
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

from serouter import auth
from serouter.core import uris
from serouter.core.access import Action, Subject
from serouter.core.clock import Timer
from serouter.core.messages import (
    Abort,
    Authenticate,
    Challenge,
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
    CHALLENGING = "challenging"
    ESTABLISHED = "established"
    CLOSING = "closing"
    CLOSED = "closed"


# Python 3.11 finds an enum member through ``EnumType.__getattr__`` (~140 ns, measured); the
# per-message checks compare with this module-level name instead (~20 ns).
_ESTABLISHED = State.ESTABLISHED


class _Pending:
    """An authentication between HELLO and its verdict."""

    __slots__ = ("attempt", "claimed", "method", "realm", "timer")

    def __init__(self, realm: Realm, method: str, attempt: auth.Attempt, claimed: str | None):
        self.realm = realm
        self.method = method
        self.attempt = attempt
        self.claimed = claimed  # the authid HELLO asked for: for the log, never for decisions
        self.timer: Timer | None = None

    def cancel_timer(self) -> None:
        if self.timer is not None:
            if self.timer.active():
                self.timer.cancel()
            self.timer = None


class Session:
    """One connection's WAMP session. The router owns it; the transport feeds it messages."""

    __slots__ = (
        "_next_request",
        "_pending",
        "authextra",
        "authid",
        "authmethod",
        "authprovider",
        "authrole",
        "calls",
        "id",
        "invocations",
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
        self.authprovider = ""
        self.authextra: dict[str, Any] = {}
        self._pending: _Pending | None = None
        self.label: str | None = None
        self.roles: dict[str, Any] = {}
        self.subject = Subject(0, "", "")
        self._next_request = 0
        self.calls = 0  # calls in flight as caller (the dealer counts, for the limits)
        self.invocations = 0  # invocations in flight as callee

    def __repr__(self) -> str:
        return f"<Session {self.id} {self.state.value} {self.transport.peer}>"

    # -- called by the transport ---------------------------------------------------------

    def receive(self, msg: Incoming) -> None:
        """Handle one parsed message from the peer."""
        if self.state is _ESTABLISHED:
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
        elif self.state is State.NEW or self.state is State.CHALLENGING:
            self._opening(msg)
        elif self.state is State.CLOSING and isinstance(msg, ClientGoodbye):
            self._drop()

    def _opening(self, msg: Incoming) -> None:
        """Before WELCOME: HELLO when NEW, AUTHENTICATE when CHALLENGING, ABORT in both."""
        if isinstance(msg, ClientAbort):
            self._drop()
        elif self.state is State.NEW and isinstance(msg, Hello):
            self._hello(msg)
        elif self.state is State.CHALLENGING and isinstance(msg, Authenticate):
            self._authenticate(msg)
        elif self.state is State.NEW:
            self.protocol_violation(f"{type(msg).__name__.upper()} received before HELLO")
        else:
            self.protocol_violation(f"{type(msg).__name__.upper()} while authenticating")

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
        elif self.state in (State.NEW, State.CHALLENGING):
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
        return self.state is _ESTABLISHED

    # -- internals -----------------------------------------------------------------------

    def _hello(self, msg: Hello) -> None:
        roles = msg.details.get("roles")
        if type(roles) is not dict or not roles:
            self.protocol_violation("HELLO.Details.roles must be a non-empty dict")
            return
        methods = _authmethods(msg.details)
        if isinstance(methods, str):
            self.protocol_violation(methods)
            return
        if not uris.is_valid_uri(msg.realm):
            self._abort(uris.INVALID_URI, f"invalid realm URI {msg.realm!r}")
            return
        realm = self.router.realms.get(msg.realm)
        if realm is None:
            self._abort(uris.NO_SUCH_REALM, f"no realm {msg.realm!r} on this router")
            return
        if len(realm.sessions) >= realm.max_sessions:
            self._abort(uris.LIMIT_EXCEEDED, f"realm {realm.name} has its maximum of sessions")
            return
        authenticator = self.router.auth.choose(realm.name, self.transport, methods)
        if authenticator is None:
            self._abort(auth.NO_AUTH_METHOD, f"cannot authenticate with any of {methods}")
            return
        self.id = self.router.new_session_id()
        self.roles = roles
        request = auth.Request(realm.name, self.id, msg.details, self.transport)
        attempt = authenticator.start(request)
        self._pending = _Pending(realm, authenticator.method, attempt, request.authid)
        first = attempt.first
        if isinstance(first, auth.Challenge):
            self._challenge(first)
        else:
            self._verdict(first)

    def _challenge(self, challenge: auth.Challenge) -> None:
        assert self._pending is not None
        self.state = State.CHALLENGING
        timeout = self.router.auth.timeout(self.transport.listener)
        self._pending.timer = self.router.clock.callLater(timeout, self._auth_timed_out)
        self.send(Challenge(challenge.method, challenge.extra))

    def _authenticate(self, msg: Authenticate) -> None:
        pending = self._pending
        assert pending is not None
        pending.cancel_timer()
        self._verdict(pending.attempt.answer(msg.signature, msg.extra))

    def _auth_timed_out(self) -> None:
        if self._pending is not None:
            self._pending.timer = None
            self._verdict(auth.Deny(message="authentication timed out", detail="timeout"))

    def _verdict(self, verdict: auth.Accept | auth.Deny) -> None:
        """Join as the proven identity, or refuse."""
        pending = self._pending
        assert pending is not None
        if isinstance(verdict, auth.Deny):
            log.info(
                "authentication failed: {method} from {peer} (authid {authid!r}): {detail}",
                method=pending.method, peer=self.transport.peer,
                authid=pending.claimed, detail=verdict.detail or verdict.reason,
            )
            self.send(Abort({"message": verdict.message}, verdict.reason))
            self._drop()
            return
        self._pending = None  # the reserved ID now goes with the join, or is released below
        self.state = State.NEW
        self.authid, self.authrole = verdict.authid, verdict.authrole
        self.authmethod, self.authprovider = verdict.authmethod, verdict.authprovider
        self.authextra = verdict.extra
        self._join(pending.realm)

    def _join(self, realm: Realm) -> None:
        self.label = self.router.labeler(
            self.transport, self.authid, self.authrole, self.authmethod
        )
        self.subject = Subject(self.id, self.authid, self.authrole, self.label)
        error = realm.authorize(self, Action.JOIN, realm.name)
        if error is not None:
            self.router.release_session_id(self.id)
            self._abort(error, None)
            return
        # WELCOME first: a peer whose limit it exceeds is refused rather than left waiting
        refused = self.peer.send(Welcome(self.id, self._welcome_details(realm)))
        if refused is not None:
            self.router.release_session_id(self.id)
            self._abort(refused, "the WELCOME message does not fit this connection")
            return
        self.realm = realm
        self.state = State.ESTABLISHED
        realm.join(self)
        log.info(
            "session {session} joined {realm} as {authid!r} ({authrole!r}, {authmethod}) "
            "from {peer}", session=self.id, realm=realm.name, authid=self.authid,
            authrole=self.authrole, authmethod=self.authmethod, peer=self.transport.peer,
        )

    def join_trusted(
        self, realm: Realm, authid: str, authrole: str, roles: dict[str, Any]
    ) -> None:
        """Join ``realm`` at once, without HELLO: for the router's own in-process components.

        Trusted by construction, such a session neither authenticates (the realm may offer no
        method it could use) nor asks the access check to join (it has no label: what it does
        never passes ``Realm.dispatch`` but to answer invocations, which nobody is checked for).
        """
        self.id = self.router.new_session_id()
        self.roles = roles
        self.authid, self.authrole = authid, authrole
        self.authmethod, self.authprovider = "internal", "serouter"
        self.subject = Subject(self.id, authid, authrole, None)
        self.realm = realm
        self.state = State.ESTABLISHED
        realm.join(self)

    def _welcome_details(self, realm: Realm) -> dict[str, Any]:
        details = {
            "realm": realm.name,
            "authid": self.authid,
            "authrole": self.authrole,
            "authmethod": self.authmethod,
            "authprovider": self.authprovider,
            "roles": realm.roles,
        }
        if self.authextra:
            details["authextra"] = self.authextra
        return details

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
        if self._pending is not None:  # authenticating: the ID was reserved, nothing joined
            pending, self._pending = self._pending, None
            pending.cancel_timer()
            self.router.release_session_id(self.id)
        if self.realm is not None:
            realm, self.realm = self.realm, None
            realm.leave(self)
            self.router.release_session_id(self.id)


def _authmethods(details: dict[str, Any]) -> list[str] | str:
    """The methods HELLO asks for, in its order (default anonymous), or what is wrong."""
    for key, kind in (("authid", str), ("authextra", dict)):
        value = details.get(key)
        if value is not None and type(value) is not kind:
            return f"HELLO.Details.{key} must be a {kind.__name__}"
    methods = details.get("authmethods")
    if methods is None or methods == []:
        return ["anonymous"]
    if type(methods) is not list or not all(type(m) is str for m in methods):
        return "HELLO.Details.authmethods must be a list of strings"
    return methods
