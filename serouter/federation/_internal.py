"""In-process sessions: how the name service and the proxy sit in a realm like any client.

An :class:`InternalPeer` is the core's ``Peer`` for a session that lives in the router process:
``send`` hands each message to a Python callable at once (nexus calls this a local peer). The
session is joined directly, not through HELLO: an internal component is trusted by construction,
so it neither authenticates (the realm may offer no method it could use) nor asks the access
check to join (its label would be nobody's). What it does afterwards is not checked either,
because it never goes through ``Realm.dispatch`` except to answer invocations (YIELD, ERROR),
which are not access-checked for anyone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from serouter.core.messages import Goodbye, InvocationError, Outgoing, Subscribe, Yield
from serouter.core.peer import TransportInfo
from serouter.core.realm import Realm
from serouter.core.router import Router
from serouter.core.session import Session

log = Logger(namespace="serouter.federation")

Handler = Callable[[Outgoing], None]
CALLEE_ROLES: dict[str, Any] = {
    "callee": {"features": {
        "progressive_call_results": True, "progressive_call_invocations": True,
        "call_canceling": True, "caller_identification": True,
        "pattern_based_registration": True, "shared_registration": True,
    }},
    "subscriber": {"features": {"pattern_based_subscription": True}},
    "publisher": {},
}


class InternalPeer:
    """The Peer of an in-process session: every message goes to ``handler`` synchronously.

    Like any Peer it never raises: a handler's exception is logged and the message dropped.
    """

    def __init__(self, handler: Handler, name: str) -> None:
        self.handler = handler
        self.name = name
        self.session: Session | None = None
        self.closed = False

    def send(self, message: Outgoing) -> str | None:
        if type(message) is Goodbye:  # the router is shutting down: leave at once
            self._leave()
            return None
        try:
            self.handler(message)
        except Exception:
            log.failure("{name}: handling {type} failed", name=self.name,
                        type=type(message).__name__)
        return None

    def close(self) -> None:
        self._leave()

    def _leave(self) -> None:
        if not self.closed and self.session is not None:
            self.closed = True
            self.session.router.close_session(self.session)


def join_internal(
    router: Router, realm: Realm, handler: Handler, name: str, roles: dict[str, Any] | None = None
) -> Session:
    """A session of the component ``name`` in ``realm``, joined and established."""
    peer = InternalPeer(handler, name)
    session = router.open_session(peer, TransportInfo(kind="internal", serializer="none",
                                                      peer=f"internal:{name}"))
    peer.session = session
    session.join_trusted(realm, name, "serouter.internal", roles or CALLEE_ROLES)
    return session


def leave_internal(session: Session) -> None:
    """End an internal session: the realm frees what it held, as for a lost connection."""
    peer = session.peer
    if isinstance(peer, InternalPeer):
        peer.close()
    else:
        session.router.close_session(session)


def subscribe_internal(session: Session, topic: str) -> int:
    """Subscribe without an access check (a trusted component's own subscription)."""
    assert session.realm is not None
    broker = session.realm.broker
    broker.subscribe(session, Subscribe(session.next_request_id(), {}, topic))
    subscription = broker.lookup(topic)
    assert subscription is not None
    return subscription.id


def answer(session: Session, message: Yield | InvocationError) -> None:
    """An internal callee's answer to an INVOCATION, without a nested ``Realm.dispatch``.

    Answers are often given while the realm is still dispatching the CALL that caused them;
    ``deliver_after`` keeps the caller's messages in order, as for the meta API's events.
    """
    realm = session.realm
    if realm is None:
        return
    dealer = realm.dealer
    if type(message) is Yield:
        realm.deliver_after(dealer.yield_(session, message))
    else:
        realm.deliver_after(dealer.invocation_error(session, message))  # type: ignore[arg-type]
