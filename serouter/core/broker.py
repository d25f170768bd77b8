"""The broker: subscriptions and publications. Pure state; no I/O, no policy.

Like the dealer, every method returns ``(session, message)`` pairs to deliver. One EVENT object
is built per matching subscription and shared by all its subscribers, so the transport layer
serializes it once per serializer, not once per subscriber.

Publications, as the Advanced Profile defines them: publisher exclusion (``exclude_me``,
default true), subscriber black- and whitelisting (``exclude``/``eligible`` by session, authid
or authrole), publisher disclosure (``disclose_me``, which the realm may force or forbid),
pattern subscriptions (``topic`` in EVENT details), retention (``retain``/``get_retained``: the
last retained event per topic, delivered only to whom it was eligible for) and a bounded event
history for configured topics.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from serouter.core import uris
from serouter.core.clock import Clock
from serouter.core.ids import IdGenerator
from serouter.core.matching import EXACT, MATCH_POLICIES, UriMap, pattern_matches
from serouter.core.messages import (
    PUBLISH,
    SUBSCRIBE,
    UNSUBSCRIBE,
    Event,
    Publish,
    Published,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    error_reply,
)

if TYPE_CHECKING:
    from serouter.core.session import Session

log = Logger(namespace="serouter.broker")

Deliveries = list[tuple["Session", Any]]
SubscriptionListener = Callable[[str, "Session", "Subscription"], None]
_ID_FILTERS = ("exclude", "eligible")
_NAME_FILTERS = ("exclude_authid", "exclude_authrole", "eligible_authid", "eligible_authrole")


@dataclass(slots=True, eq=False)
class Subscription:
    id: int
    topic: str
    match: str
    created: float
    # Insertion-ordered: events go out in subscription order.
    subscribers: dict[int, Session] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class Audience:
    """Who may receive a publication: the publisher's exclusion and black/whitelists."""

    publisher: int
    exclude_me: bool = True
    exclude: frozenset[int] = frozenset()
    exclude_authid: frozenset[str] = frozenset()
    exclude_authrole: frozenset[str] = frozenset()
    eligible: frozenset[int] | None = None
    eligible_authid: frozenset[str] | None = None
    eligible_authrole: frozenset[str] | None = None

    def admits(self, s: Session) -> bool:
        return not (
            (self.exclude_me and s.id == self.publisher)
            or s.id in self.exclude
            or s.authid in self.exclude_authid
            or s.authrole in self.exclude_authrole
            or (self.eligible is not None and s.id not in self.eligible)
            or (self.eligible_authid is not None and s.authid not in self.eligible_authid)
            or (self.eligible_authrole is not None and s.authrole not in self.eligible_authrole)
        )


@dataclass(slots=True, frozen=True)
class Stored:
    """A publication kept for retention or history."""

    topic: str
    publication: int
    timestamp: float
    details: dict[str, Any]
    args: list[Any] | None
    kwargs: dict[str, Any] | None
    audience: Audience


def audience_of(publisher: Session, options: dict[str, Any]) -> Audience | str:
    """The audience PUBLISH.Options describe, or a message saying which option is malformed."""
    kwargs: dict[str, Any] = {"publisher": publisher.id}
    if options.get("exclude_me") is False:
        kwargs["exclude_me"] = False
    for key in (*_ID_FILTERS, *_NAME_FILTERS):
        value = options.get(key)
        if value is None:
            continue  # null/undefined from real clients means absent
        kind = int if key in _ID_FILTERS else str
        if type(value) is not list or any(type(v) is not kind for v in value):
            return f"{key} must be a list of {'session IDs' if kind is int else 'strings'}"
        kwargs[key] = frozenset(value)
    return Audience(**kwargs)


class Broker:
    """Routes events of one realm."""

    def __init__(
        self,
        ids: IdGenerator,
        clock: Clock,
        disclose_publisher: str = "allow",
        *,
        history: Iterable[str] = (),
        history_limit: int = 100,
        max_subscriptions: int = 1000,
        max_retained: int = 10_000,
    ) -> None:
        self.max_subscriptions = max_subscriptions
        self.max_retained = max_retained
        self.retained_dropped = 0  # retained events dropped for newer topics (logged once)
        self._ids = ids
        self._clock = clock
        self.disclose_publisher = disclose_publisher
        # Told of every subscription change (the meta API, the federation proxy).
        self.listeners: list[SubscriptionListener] = []
        # Told of every publication a session made here, once accepted: (publisher, topic)
        # (the federation proxy announces the topics this router publishes).
        self.publish_listeners: list[Callable[[Session, str], None]] = []
        self._subscriptions: UriMap[Subscription] = UriMap()
        self._by_id: dict[int, Subscription] = {}
        self._held: dict[int, set[int]] = {}
        self._retained: dict[str, Stored] = {}
        self._history: dict[str, deque[Stored]] = {t: deque(maxlen=history_limit) for t in history}

    # -- subscriptions -------------------------------------------------------------------

    def subscribe(self, session: Session, msg: Subscribe) -> Deliveries:
        match = msg.options.get("match") or EXACT
        if type(match) is not str or match not in MATCH_POLICIES:  # a list is unhashable
            return [(session, error_reply(SUBSCRIBE, msg.request, uris.OPTION_NOT_ALLOWED,
                                          f"match policy {match!r} is not supported"))]
        sub = self._subscriptions.get(msg.topic, match)
        held = self._held.get(session.id, ())
        if len(held) >= self.max_subscriptions and (sub is None or sub.id not in held):
            return [(session, error_reply(SUBSCRIBE, msg.request, uris.LIMIT_EXCEEDED,
                                          f"at most {self.max_subscriptions} subscriptions"))]
        if sub is None:
            sub = Subscription(self._ids.router_id(), msg.topic, match, self._clock.seconds())
            self._subscriptions.add(msg.topic, match, sub)
            self._by_id[sub.id] = sub
            self._notify("on_create", session, sub)
        # Subscribing twice is idempotent: the same subscription ID comes back.
        if session.id not in sub.subscribers:
            sub.subscribers[session.id] = session
            self._held.setdefault(session.id, set()).add(sub.id)
            self._notify("on_subscribe", session, sub)
        out: Deliveries = [(session, Subscribed(msg.request, sub.id))]
        if msg.options.get("get_retained") is True:
            out.extend((session, e) for e in self._retained_events(session, sub))
        return out

    def _retained_events(self, session: Session, sub: Subscription) -> Iterable[Event]:
        if sub.match == EXACT:
            stored = self._retained.get(sub.topic)
            candidates = [stored] if stored is not None else []
        else:
            candidates = [
                r for t, r in self._retained.items() if pattern_matches(sub.topic, sub.match, t)
            ]
        for r in candidates:
            if r.audience.admits(session):
                details = {**r.details, "retained": True}
                if sub.match != EXACT:
                    details["topic"] = r.topic
                yield Event(sub.id, r.publication, details, r.args, r.kwargs)

    def unsubscribe(self, session: Session, msg: Unsubscribe) -> Deliveries:
        sub = self._by_id.get(msg.subscription)
        if sub is None or session.id not in sub.subscribers:
            return [(session, error_reply(UNSUBSCRIBE, msg.request, uris.NO_SUCH_SUBSCRIPTION))]
        self._held[session.id].discard(sub.id)
        self._remove_subscriber(sub, session)
        return [(session, Unsubscribed(msg.request))]

    def remove_session(self, session: Session) -> None:
        for sub_id in self._held.pop(session.id, ()):
            sub = self._by_id.get(sub_id)
            if sub is not None:
                self._remove_subscriber(sub, session)

    def _remove_subscriber(self, sub: Subscription, session: Session) -> None:
        del sub.subscribers[session.id]
        self._notify("on_unsubscribe", session, sub)
        if not sub.subscribers:
            self._subscriptions.remove(sub.topic, sub.match)
            del self._by_id[sub.id]
            self._notify("on_delete", session, sub)

    def _notify(self, event: str, session: Session, sub: Subscription) -> None:
        for listener in self.listeners:
            listener(event, session, sub)

    # -- publications ----------------------------------------------------------------------

    def publish(self, session: Session, msg: Publish) -> Deliveries:
        opts = msg.options
        publication = self._ids.random_id()
        if not opts:  # the common case: nothing to filter, nothing to disclose or keep
            details: dict[str, Any] = {}
            if self.disclose_publisher == "force":
                details = self._publisher(session)
            out = self._events(msg.topic, publication, details, msg.args, msg.kwargs,
                               audience=None, publisher=session)
            if msg.topic in self._history:
                self._keep(msg.topic, publication, details, msg, Audience(session.id))
            for listener in self.publish_listeners:
                listener(session, msg.topic)
            return out
        acknowledge = opts.get("acknowledge") is True
        audience = audience_of(session, opts)
        if isinstance(audience, str):
            refused = error_reply(PUBLISH, msg.request, uris.INVALID_ARGUMENT, audience)
            return [(session, refused)] if acknowledge else []
        if opts.get("disclose_me") is True and self.disclose_publisher == "forbid":
            refused = error_reply(PUBLISH, msg.request, uris.DISCLOSE_ME_DISALLOWED)
            return [(session, refused)] if acknowledge else []
        details = self._publisher(session) if self._discloses(opts) else {}
        out = self._events(msg.topic, publication, details, msg.args, msg.kwargs,
                           audience=audience)
        if msg.topic in self._history or opts.get("retain") is True:
            stored = self._keep(msg.topic, publication, details, msg, audience)
            if opts.get("retain") is True:
                self._retain(msg.topic, stored)
        if acknowledge:
            out.append((session, Published(msg.request, publication)))
        for listener in self.publish_listeners:
            listener(session, msg.topic)
        return out

    def _retain(self, topic: str, stored: Stored) -> None:
        """Keep ``stored`` as the topic's retained event; past ``max_retained`` topics the one
        retained longest ago goes (clients choose topics: what is kept must stay bounded)."""
        self._retained.pop(topic, None)  # re-inserted: the newest again
        self._retained[topic] = stored
        if len(self._retained) <= self.max_retained:
            return
        del self._retained[next(iter(self._retained))]
        if not self.retained_dropped:
            log.warn("more than {limit} topics with a retained event: the oldest are dropped"
                     " (max_retained)", limit=self.max_retained)
        self.retained_dropped += 1

    def _discloses(self, opts: dict[str, Any]) -> bool:
        policy = self.disclose_publisher
        return policy == "force" or (policy == "allow" and opts.get("disclose_me") is True)

    @staticmethod
    def _publisher(session: Session) -> dict[str, Any]:
        return {"publisher": session.id, "publisher_authid": session.authid,
                "publisher_authrole": session.authrole}

    def _events(
        self,
        topic: str,
        publication: int,
        details: dict[str, Any],
        args: list[Any] | None,
        kwargs: dict[str, Any] | None,
        *,
        audience: Audience | None,
        publisher: Session | None = None,
    ) -> Deliveries:
        """One EVENT per matching subscription, to each subscriber the audience admits; no
        audience (a PUBLISH without options, the hot path): everyone but the publisher."""
        out: Deliveries = []
        for sub in self._subscriptions.matching(topic):
            d = details if sub.match == EXACT else {**details, "topic": topic}
            event = Event(sub.id, publication, d, args, kwargs)
            if audience is None:  # (a plain loop: a comprehension is a call on Python 3.11)
                for s in sub.subscribers.values():
                    if s is not publisher:
                        out.append((s, event))
            else:
                for s in sub.subscribers.values():
                    if audience.admits(s):
                        out.append((s, event))
        return out

    def _keep(
        self, topic: str, publication: int, details: dict[str, Any], msg: Publish,
        audience: Audience,
    ) -> Stored:
        stored = Stored(topic, publication, self._clock.seconds(), details, msg.args, msg.kwargs,
                        audience)
        history = self._history.get(topic)
        if history is not None:
            history.append(stored)
        return stored

    def publish_meta(
        self, topic: str, args: list[Any] | None, kwargs: dict[str, Any] | None = None
    ) -> Deliveries:
        """An event the router itself publishes (meta API): nobody is excluded."""
        audience = Audience(0, exclude_me=False)
        return self._events(topic, self._ids.random_id(), {}, args, kwargs, audience=audience)

    def publish_as(
        self,
        publisher: int,
        topic: str,
        args: list[Any] | None,
        kwargs: dict[str, Any] | None,
        audience: Audience,
    ) -> Deliveries:
        """An event published on a session's behalf after it left (a testament)."""
        publication = self._ids.random_id()
        if topic in self._history:
            stored = Stored(topic, publication, self._clock.seconds(), {}, args, kwargs, audience)
            self._history[topic].append(stored)
        return self._events(topic, publication, {}, args, kwargs, audience=audience)

    # -- introspection (meta API, tests) ---------------------------------------------------

    def subscription(self, subscription_id: int) -> Subscription | None:
        return self._by_id.get(subscription_id)

    def lookup(self, topic: str, match: str = EXACT) -> Subscription | None:
        return self._subscriptions.get(topic, match)

    def match(self, topic: str) -> list[Subscription]:
        return self._subscriptions.matching(topic)

    def subscriptions(self, match: str | None = None) -> list[Subscription]:
        return list(self._subscriptions.values(match))

    def topic_events(self, topic: str, reader: Session) -> list[Stored]:
        """The kept events of one topic that ``reader`` may see, oldest first."""
        return [e for e in self._history.get(topic, ()) if e.audience.admits(reader)]

    def events(self, sub: Subscription, reader: Session, limit: int) -> list[Stored]:
        """The last ``limit`` kept events the subscription covers that ``reader`` may see."""
        found = [
            e for topic, kept in self._history.items()
            if pattern_matches(sub.topic, sub.match, topic)
            for e in kept if e.audience.admits(reader)
        ]
        found.sort(key=lambda e: e.timestamp)
        return found[-limit:] if limit > 0 else []
