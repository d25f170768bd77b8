"""The broker: subscriptions and publications. Pure state; no I/O, no policy.

Like the dealer, every method returns ``(session, message)`` pairs to deliver. One EVENT object
is built per matching subscription and shared by all its subscribers, so the transport layer
serializes it once per serializer, not once per subscriber.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from serouter.core import uris
from serouter.core.ids import IdGenerator
from serouter.core.matching import EXACT, MATCH_POLICIES, UriMap
from serouter.core.messages import (
    SUBSCRIBE,
    UNSUBSCRIBE,
    Error,
    Event,
    Publish,
    Published,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
)

if TYPE_CHECKING:
    from serouter.core.session import Session

Deliveries = list[tuple["Session", Any]]


@dataclass(slots=True, eq=False)
class Subscription:
    id: int
    topic: str
    match: str
    # Insertion-ordered: events go out in subscription order.
    subscribers: dict[int, Session] = field(default_factory=dict)


class Broker:
    """Routes events of one realm."""

    def __init__(self, ids: IdGenerator) -> None:
        self._ids = ids
        self._subscriptions: UriMap[Subscription] = UriMap()
        self._by_id: dict[int, Subscription] = {}
        self._held: dict[int, set[int]] = {}

    def subscribe(self, session: Session, msg: Subscribe) -> Deliveries:
        match = msg.options.get("match") or EXACT
        if match not in MATCH_POLICIES:
            return [(session, Error(SUBSCRIBE, msg.request, {}, uris.OPTION_NOT_ALLOWED,
                                    [f"match policy {match!r} is not supported"]))]
        sub = self._subscriptions.get(msg.topic, match)
        if sub is None:
            sub = Subscription(self._ids.router_id(), msg.topic, match)
            self._subscriptions.add(msg.topic, match, sub)
            self._by_id[sub.id] = sub
        # Subscribing twice is idempotent: the same subscription ID comes back.
        sub.subscribers[session.id] = session
        self._held.setdefault(session.id, set()).add(sub.id)
        return [(session, Subscribed(msg.request, sub.id))]

    def unsubscribe(self, session: Session, msg: Unsubscribe) -> Deliveries:
        sub = self._by_id.get(msg.subscription)
        if sub is None or session.id not in sub.subscribers:
            return [(session, Error(UNSUBSCRIBE, msg.request, {}, uris.NO_SUCH_SUBSCRIPTION))]
        self._held[session.id].discard(sub.id)
        self._remove_subscriber(sub, session)
        return [(session, Unsubscribed(msg.request))]

    def publish(self, session: Session, msg: Publish) -> Deliveries:
        publication = self._ids.random_id()
        out: Deliveries = []
        exclude_me = msg.options.get("exclude_me") is not False
        for sub in self._subscriptions.matching(msg.topic):
            event = Event(sub.id, publication, {}, msg.args, msg.kwargs)
            for sid, subscriber in sub.subscribers.items():
                if not (exclude_me and sid == session.id):
                    out.append((subscriber, event))
        if msg.options.get("acknowledge") is True:
            out.append((session, Published(msg.request, publication)))
        return out

    def remove_session(self, session: Session) -> None:
        for sub_id in self._held.pop(session.id, ()):
            sub = self._by_id.get(sub_id)
            if sub is not None:
                self._remove_subscriber(sub, session)

    def _remove_subscriber(self, sub: Subscription, session: Session) -> None:
        del sub.subscribers[session.id]
        if not sub.subscribers:
            self._subscriptions.remove(sub.topic, sub.match)
            del self._by_id[sub.id]

    def subscription(self, subscription_id: int) -> Subscription | None:
        return self._by_id.get(subscription_id)
