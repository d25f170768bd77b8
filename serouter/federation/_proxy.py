"""The proxy of one federated realm: one internal, trusted session that makes remote
procedures and topics local.

- It is the dealer's fallback callee (``_forward``) and re-publishes remote events
  (``_topics``), so clients here cannot tell a remote callee or publisher from a local one.
- It announces what this router provides: every registration (the dealer's listeners), and
  every topic once a local session has published it (the broker's publish listeners); it
  withdraws a registration when it goes, a topic when the last local session that published
  it leaves. Changes are sent once per reactor turn.
- It never announces or federates what other routers' proxies do here (their sessions carry
  the ``x_serouter_federation`` caller feature), so nothing loops: their subscriptions stay
  local to them, their calls are never forwarded again, and re-published events skip them.

Must never: block on the name server or a remote router, forward a call twice, or re-publish
an event a remote router had no business sending (see ``_topics``).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from serouter.core import uris
from serouter.core.broker import Audience, Subscription
from serouter.core.dealer import Registration
from serouter.core.matching import EXACT
from serouter.core.messages import (
    Call,
    Event,
    Interrupt,
    Invocation,
    InvocationError,
    Outgoing,
    Yield,
)
from serouter.core.realm import Realm
from serouter.core.router import Router
from serouter.core.session import Session
from serouter.federation._client import FEDERATION_FEATURE
from serouter.federation._forward import FORWARDED_CALLER, Calls
from serouter.federation._internal import (
    answer,
    join_internal,
    leave_internal,
    subscribe_internal,
)
from serouter.federation._link import NameServerLink
from serouter.federation._protocol import PROCEDURE, TOPIC, Entry, Key
from serouter.federation._remote import RemotePool
from serouter.federation._topics import Topics

log = Logger(namespace="serouter.federation")

SESSION_ON_LEAVE = "wamp.session.on_leave"
Deliveries = list[tuple[Session, Any]]


def is_peer(session: Session) -> bool:
    """A session another router's proxy opened here (it says so; claiming it only restricts
    what the session gets: nothing of it is federated)."""
    return session.supports("caller", FEDERATION_FEATURE)


class Proxy:
    """Federation for one realm of this router."""

    def __init__(self, router: Router, realm: Realm, link: NameServerLink, pool: RemotePool,
                 clock: Any) -> None:
        self.router = router
        self.realm = realm
        self.link = link
        self.pool = pool
        self.clock = clock
        self.session = join_internal(router, realm, self._receive, "serouter.proxy")
        self.calls = Calls(self._answer, link, pool, router.ids.below)
        self.topics = Topics(self._republish, link, pool, clock)
        self._registrations: dict[tuple[str, str], str] = {}  # announced: (uri, match) -> invoke
        self._publishers: dict[str, set[int]] = {}  # topic -> local sessions that published it
        self._published: dict[int, set[str]] = {}  # session -> topics it published
        self._pending: dict[Key, Entry | None] = {}  # to announce (Entry) or withdraw (None)
        self._flush_call: IDelayedCall | None = None
        self._peers: dict[int, int] = {}  # other proxies' sessions here -> their subscriptions
        self._audience = Audience(self.session.id)
        link.on_session, link.on_watched = self.resync, self.watched
        pool.on_lost = self.endpoint_lost
        self._on_leave = subscribe_internal(self.session, SESSION_ON_LEAVE)
        realm.dealer.fallback = self.session
        realm.dealer.listeners.append(self._registration_changed)
        realm.broker.listeners.append(self._subscription_changed)
        self._dealer_hooks = realm.dealer.fallback_serves, realm.dealer.identify  # to restore
        realm.dealer.fallback_serves = _not_a_peer
        realm.dealer.identify = _identify
        realm.broker.publish_listeners.append(self.published)
        for registration in realm.dealer.registrations():
            self._registration_changed("on_create", self.session, registration, own=False)
        for subscription in realm.broker.subscriptions():
            for subscriber in list(subscription.subscribers.values()):
                self._subscription_changed("on_subscribe", subscriber, subscription)

    def close(self) -> None:
        """Undo everything; pending forwarded calls end with an ERROR."""
        dealer, broker = self.realm.dealer, self.realm.broker
        _discard(dealer.listeners, self._registration_changed)
        _discard(broker.listeners, self._subscription_changed)
        _discard(broker.publish_listeners, self.published)
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self.calls.close()
        self.topics.close()
        if dealer.fallback is self.session:
            dealer.fallback = None
            dealer.fallback_serves, dealer.identify = self._dealer_hooks
        leave_internal(self.session)

    # -- the internal session ------------------------------------------------------------------

    def _receive(self, message: Outgoing) -> None:
        kind = type(message)
        if kind is Invocation:
            self.calls.invocation(message)  # type: ignore[arg-type]
        elif kind is Interrupt:
            self.calls.interrupt(message)  # type: ignore[arg-type]
        elif kind is Event and message.subscription == self._on_leave:  # type: ignore[union-attr]
            args = message.args  # type: ignore[union-attr]
            if args and type(args[0]) is int:
                self._left(args[0])

    def _answer(self, message: Yield | InvocationError) -> None:
        """An answer to the dealer, as the callee of a forwarded call."""
        answer(self.session, message)

    def _republish(self, topic: str, args: list[Any] | None, kwargs: dict[str, Any] | None
                   ) -> None:
        """An event from a remote router, to this router's subscribers (not other proxies)."""
        broker = self.realm.broker
        self.realm.deliver(broker.publish_as(self.session.id, topic, args, kwargs,
                                             self._audience))

    # -- what the name server and the remote routers tell us -----------------------------------

    def resync(self) -> None:
        """A new name-server session: announce everything, resolve everything again."""
        self._pending.clear()
        entries = [Entry(Key(PROCEDURE, uri, match), invoke)
                   for (uri, match), invoke in self._registrations.items()]
        entries += [Entry(Key(TOPIC, topic)) for topic in self._publishers]
        self.link.announce(entries).addCallback(self._refused)
        self.calls.forget_routes()
        self.topics.resync()

    def watched(self, keys: list[Key]) -> None:
        for key in keys:
            if key.kind == PROCEDURE:
                self.calls.invalidate(key.uri)
            else:
                self.topics.watched(key)

    def endpoint_lost(self, endpoint: str) -> None:
        self.calls.endpoint_lost(endpoint)
        self.topics.endpoint_lost(endpoint)

    # -- what happens here -----------------------------------------------------------------------

    def _registration_changed(self, event: str, session: Session, reg: Registration,
                              own: bool = True) -> None:
        if own and session is self.session:
            return
        key = Key(PROCEDURE, reg.procedure, reg.match)
        if event == "on_create":
            self._registrations[(reg.procedure, reg.match)] = reg.invoke
            self._queue(key, Entry(key, reg.invoke))
        elif event == "on_delete":
            self._registrations.pop((reg.procedure, reg.match), None)
            self._queue(key, None)

    def _subscription_changed(self, event: str, session: Session, sub: Subscription) -> None:
        if session is self.session or event not in ("on_subscribe", "on_unsubscribe"):
            return
        if is_peer(session):
            self._peer_subscription(session.id, 1 if event == "on_subscribe" else -1)
            return
        if sub.match == EXACT and sub.topic.startswith(uris.RESERVED_PREFIX):
            return  # meta events are each router's own
        key = Key(TOPIC, sub.topic, sub.match)
        if event == "on_subscribe":
            self.topics.subscribed(key)
        else:
            self.topics.unsubscribed(key)

    def _peer_subscription(self, sid: int, delta: int) -> None:
        count = self._peers.get(sid, 0) + delta
        if count > 0:
            self._peers[sid] = count
        else:
            self._peers.pop(sid, None)
        if (count > 0) != (sid in self._audience.exclude):
            self._audience = Audience(self.session.id, exclude=frozenset(self._peers))

    def published(self, session: Session, topic: str) -> None:
        """A local session published ``topic`` (the broker's publish, after the access check)."""
        publishers = self._publishers.get(topic)
        if publishers is not None and session.id in publishers:
            return
        if session is self.session or is_peer(session) or topic.startswith(
                uris.RESERVED_PREFIX):
            return
        if publishers is None:
            publishers = self._publishers[topic] = set()
            key = Key(TOPIC, topic)
            self._queue(key, Entry(key))
        publishers.add(session.id)
        self._published.setdefault(session.id, set()).add(topic)

    def _left(self, sid: int) -> None:
        for topic in self._published.pop(sid, ()):
            publishers = self._publishers.get(topic)
            if publishers is None:
                continue
            publishers.discard(sid)
            if not publishers:
                del self._publishers[topic]
                self._queue(Key(TOPIC, topic), None)

    # -- telling the name server -----------------------------------------------------------------

    def _queue(self, key: Key, entry: Entry | None) -> None:
        self._pending[key] = entry
        if self._flush_call is None:
            self._flush_call = self.clock.callLater(0, self._flush)

    def _flush(self) -> None:
        self._flush_call = None
        pending, self._pending = self._pending, {}
        if not self.link.connected:
            return  # the next name-server session gets everything (resync)
        withdrawn = [key for key, entry in pending.items() if entry is None]
        announced = [entry for entry in pending.values() if entry is not None]
        if withdrawn:
            self.link.withdraw(withdrawn)
        if announced:
            self.link.announce(announced).addCallback(self._refused)

    def _refused(self, refused: list[tuple[Entry, str]]) -> None:
        for entry, error in refused:
            log.warn("federation: realm {realm}: the name server refused to hold {kind} {uri}:"
                     " {error}", realm=self.realm.name, kind=entry.key.kind, uri=entry.key.uri,
                     error=error)


def _discard(listeners: list[Any], listener: Any) -> None:
    if listener in listeners:
        listeners.remove(listener)


def _not_a_peer(caller: Session) -> bool:
    """Calls from other routers' proxies are never forwarded on (they could loop)."""
    return not is_peer(caller)


def _identify(caller: Session, msg: Call) -> tuple[int, str | None, str | None]:
    """Who a disclosed INVOCATION names: for another router's proxy, the caller that router
    disclosed (information for the callee, never authority); anyone else as itself."""
    forwarded = msg.options.get(FORWARDED_CALLER)
    if type(forwarded) is not dict or not is_peer(caller):
        return caller.id, caller.authid, caller.authrole
    session, authid, authrole = (forwarded.get(k) for k in ("session", "authid", "authrole"))
    return (session if type(session) is int else caller.id,
            authid if type(authid) is str else caller.authid,
            authrole if type(authrole) is str else caller.authrole)
