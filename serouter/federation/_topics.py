"""The proxy's subscriber side: remote topics made local, reference-counted.

For every topic (or pattern) some local session subscribes to, the proxy asks the name server
which routers publish matching topics (watching the answer), subscribes once on each of them
with the same pattern, and re-publishes what arrives to the local subscribers. The first local
subscriber starts this, the last one to go ends it. A notice from the name server, a lost
router, or a new name-server session makes the proxy ask again and reconcile: subscribe where
a new provider appeared, unsubscribe where one went.

A remote router is another VM: an event is re-published only on a concrete topic its remote
subscription covers, never under ``wamp.`` (each router's meta events are its own), and once
per publication even when several of our subscriptions there match it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from serouter.core import uris
from serouter.core.matching import EXACT, pattern_matches
from serouter.federation._client import WampError
from serouter.federation._link import NameServerLink, NameServerUnavailable, backoff
from serouter.federation._protocol import Key
from serouter.federation._remote import RemotePool

log = Logger(namespace="serouter.federation")

Republish = Callable[[str, list[Any] | None, dict[str, Any] | None], None]
RETRY_MOST = 30.0


@dataclass(eq=False, slots=True)
class Topic:
    """A local subscription's (topic, match) that remote routers may publish to."""

    key: Key
    refs: int = 0  # local subscribers
    remote: dict[str, int | None] = field(default_factory=dict)  # endpoint -> subscription ID
    generation: int = 0  # the latest resolution; older answers are dropped
    failures: int = 0
    retry: IDelayedCall | None = None


class Topics:
    """Remote subscriptions of one realm's proxy."""

    def __init__(self, republish: Republish, link: NameServerLink, pool: RemotePool,
                 clock: Any) -> None:
        self.republish = republish
        self.link = link
        self.pool = pool
        self.clock = clock
        self.topics: dict[Key, Topic] = {}
        self._last: dict[str, int] = {}  # endpoint -> the last publication re-published

    # -- local subscribers ---------------------------------------------------------------------

    def subscribed(self, key: Key) -> None:
        topic = self.topics.get(key)
        if topic is None:
            topic = self.topics[key] = Topic(key)
        topic.refs += 1
        if topic.refs == 1:
            self.resolve(topic)

    def unsubscribed(self, key: Key) -> None:
        topic = self.topics.get(key)
        if topic is None:
            return
        topic.refs -= 1
        if topic.refs > 0:
            return
        del self.topics[key]
        topic.generation += 1
        self._cancel_retry(topic)
        for endpoint in list(topic.remote):
            self._unsubscribe(topic, endpoint)
        if self.link.connected:
            self.link.unwatch(key)

    # -- resolving -----------------------------------------------------------------------------

    def resolve(self, topic: Topic) -> None:
        """Ask the name server who publishes ``topic`` now, and reconcile."""
        self._cancel_retry(topic)
        topic.generation += 1
        generation = topic.generation
        looked_up = self.link.lookup(topic.key, watch=True)
        looked_up.addCallbacks(lambda providers: self._reconcile(topic, generation, providers),
                               lambda f: self._lookup_failed(topic, generation, f))

    def _lookup_failed(self, topic: Topic, generation: int, failure: Any) -> None:
        if failure.check(NameServerUnavailable):
            return  # the next name-server session resolves every topic again
        if failure.check(WampError):
            log.info("federation: the name server refused the lookup of topic {uri}: {error}",
                     uri=topic.key.uri, error=failure.value.error)
        else:
            log.info("federation: looking up topic {uri} failed: {error}", uri=topic.key.uri,
                     error=failure.getErrorMessage())
            self._retry_later(topic)

    def _reconcile(self, topic: Topic, generation: int, providers: list[dict[str, Any]]) -> None:
        if generation != topic.generation or self.topics.get(topic.key) is not topic:
            return
        wanted = {item["endpoint"] for item in providers
                  if self.pool.acceptable(item["endpoint"])}
        for endpoint in set(topic.remote) - wanted:
            self._unsubscribe(topic, endpoint)
        for endpoint in wanted - set(topic.remote):
            topic.remote[endpoint] = None
            defer.Deferred.fromCoroutine(self._subscribe(topic, endpoint))

    async def _subscribe(self, topic: Topic, endpoint: str) -> None:
        key = topic.key
        try:
            client = await self.pool.connect(endpoint)
            options = {} if key.match == EXACT else {"match": key.match}
            subscription = await client.subscribe(key.uri, options, self._handler(key, endpoint))
        except WampError as e:  # that router's policy: not retried until the providers change
            if topic.remote.get(endpoint, 0) is None:
                del topic.remote[endpoint]
            log.info("federation: router {endpoint} refused the subscription to {uri}: "
                     "{error}", endpoint=endpoint, uri=key.uri, error=e.error)
            return
        except Exception as e:
            if topic.remote.get(endpoint, 0) is None:
                del topic.remote[endpoint]
            log.info("federation: cannot subscribe to {uri} on {endpoint}: {error}",
                     uri=key.uri, endpoint=endpoint, error=f"{type(e).__name__}: {e}")
            if self.topics.get(key) is topic:
                self._retry_later(topic)
            return
        if self.topics.get(key) is not topic or endpoint not in topic.remote:
            client.unsubscribe(subscription).addErrback(lambda _: None)  # unwanted meanwhile
            return
        topic.remote[endpoint] = subscription
        topic.failures = 0
        self.pool.hold(endpoint)

    def _unsubscribe(self, topic: Topic, endpoint: str) -> None:
        subscription = topic.remote.pop(endpoint, None)
        if subscription is None:
            return  # still subscribing: _subscribe sees it is unwanted
        self.pool.release(endpoint)
        client = self.pool.ready(endpoint)
        if client is not None:
            client.unsubscribe(subscription).addErrback(lambda _: None)

    def _retry_later(self, topic: Topic) -> None:
        if topic.retry is None:
            topic.failures += 1
            delay = backoff(topic.failures, initial=0.5, most=RETRY_MOST)
            topic.retry = self.clock.callLater(delay, self._retried, topic)

    def _retried(self, topic: Topic) -> None:
        topic.retry = None
        if self.topics.get(topic.key) is topic:
            self.resolve(topic)

    def _cancel_retry(self, topic: Topic) -> None:
        if topic.retry is not None:
            if topic.retry.active():
                topic.retry.cancel()
            topic.retry = None

    # -- what changes ----------------------------------------------------------------------------

    def watched(self, key: Key) -> None:
        topic = self.topics.get(key)
        if topic is not None:
            self.resolve(topic)

    def resync(self) -> None:
        for topic in list(self.topics.values()):
            self.resolve(topic)

    def endpoint_lost(self, endpoint: str) -> None:
        self._last.pop(endpoint, None)
        for topic in list(self.topics.values()):
            if endpoint in topic.remote:
                del topic.remote[endpoint]
                self.resolve(topic)

    def close(self) -> None:
        for topic in self.topics.values():
            topic.generation += 1
            self._cancel_retry(topic)
        self.topics.clear()

    # -- events --------------------------------------------------------------------------------

    def _handler(self, key: Key, endpoint: str) -> Callable[..., None]:
        def on_event(publication: int, details: dict[str, Any], args: list[Any] | None,
                     kwargs: dict[str, Any] | None) -> None:
            if self._last.get(endpoint) == publication:
                return  # the same publication through another of our subscriptions there
            topic = key.uri if key.match == EXACT else details.get("topic")
            if (type(topic) is not str or topic.startswith(uris.RESERVED_PREFIX)
                    or not uris.is_valid_uri(topic)
                    or not pattern_matches(key.uri, key.match, topic)):
                log.warn("federation: dropped an event from {endpoint} for topic {topic!r:.100}"
                         " outside the subscription {uri}", endpoint=endpoint, topic=topic,
                         uri=key.uri)
                return
            self._last[endpoint] = publication
            self.republish(topic, args, kwargs)

        return on_event

