"""A router's connection to the name server, for one realm: reconnect, backoff, resync.

The link knows where the name server is (``set_endpoint``: the static configuration, or each
new value XenStore reports) and keeps one session there. While it has none, lookups fail at
once (``NameServerUnavailable``): local traffic never waits for the name server. Each time a
session is established the link subscribes to its ``on_watched`` notices and then calls
``on_session``, so the proxy announces everything again and re-resolves what it watched: a
restarted name server is repopulated without anyone else noticing.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from serouter.federation import _protocol as p
from serouter.federation._client import WampClient, WampError, open_session
from serouter.transport._base import WriteBatcher

log = Logger(namespace="serouter.federation")

INITIAL_DELAY = 0.2
MAX_DELAY = 5.0


class NameServerUnavailable(Exception):
    """No session with the name server right now."""


def backoff(attempt: int, initial: float = INITIAL_DELAY, most: float = MAX_DELAY) -> float:
    """Seconds before attempt ``attempt`` (1, 2, ...): doubling, capped, with 20 % jitter."""
    delay = min(most, initial * 2.0 ** (attempt - 1))
    return delay * random.uniform(0.8, 1.0)


class NameServerLink:
    """One realm's session with the name server."""

    def __init__(
        self,
        reactor: Any,
        realm: str,
        advertise: str,
        *,
        batcher: WriteBatcher | None = None,
        timeout: float = 5.0,
        on_session: Callable[[], None] = lambda: None,
        on_watched: Callable[[list[p.Key]], None] = lambda keys: None,
    ) -> None:
        self.reactor = reactor
        self.realm = realm
        self.advertise = advertise
        self.batcher = batcher
        self.timeout = timeout
        self.on_session = on_session
        self.on_watched = on_watched
        self.endpoint: str | None = None
        self.client: WampClient | None = None
        self._attempt = 0
        self._retry: IDelayedCall | None = None
        self._generation = 0  # bumped on every endpoint change and at stop
        self._stopped = False
        self._connecting = False

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.open

    # -- where, and staying connected -------------------------------------------------------

    def set_endpoint(self, endpoint: str | None) -> None:
        """The name server is (now) at ``endpoint`` (None: unknown); reconnect if it moved."""
        if endpoint == self.endpoint or self._stopped:
            return
        log.info("federation: realm {realm}: name server at {endpoint}", realm=self.realm,
                 endpoint=endpoint or "(unknown)")
        self.endpoint = endpoint
        self._generation += 1
        self._cancel_retry()
        self._attempt = 0
        client, self.client = self.client, None
        if client is not None:
            client.leave()
        if endpoint is not None:
            self._connect()

    def stop(self) -> defer.Deferred[None]:
        self._stopped = True
        self._generation += 1
        self._cancel_retry()
        client, self.client = self.client, None
        return client.leave() if client is not None else defer.succeed(None)

    def _connect(self) -> None:
        if self._connecting or self._stopped or self.endpoint is None:
            return
        self._connecting = True
        defer.Deferred.fromCoroutine(self._open(self._generation, self.endpoint))

    async def _open(self, generation: int, endpoint: str) -> None:
        try:
            client = await open_session(self.reactor, endpoint, self.realm, batcher=self.batcher,
                                        timeout=self.timeout)
            subscribed = client.subscribe(p.ON_WATCHED, {}, self._watched)
            await subscribed.addTimeout(self.timeout, self.reactor)
        except Exception as e:
            self._connecting = False
            if generation == self._generation:
                self._attempt += 1
                delay = backoff(self._attempt)
                log.info("federation: realm {realm}: name server {endpoint} unreachable "
                         "({error}); retrying in {delay:.1f} s", realm=self.realm,
                         endpoint=endpoint, error=_describe(e), delay=delay)
                self._retry = self.reactor.callLater(delay, self._retried)
            return
        self._connecting = False
        if generation != self._generation:  # moved or stopped meanwhile
            client.leave()
            self._connect()
            return
        self.client, self._attempt = client, 0
        client.on_close.append(self._lost)
        log.info("federation: realm {realm}: joined the name server {endpoint} as session "
                 "{session}", realm=self.realm, endpoint=endpoint, session=client.session_id)
        self.on_session()

    def _retried(self) -> None:
        self._retry = None
        self._connect()

    def _lost(self, client: WampClient) -> None:
        if client is not self.client:
            return
        self.client = None
        log.warn("federation: realm {realm}: lost the name server {endpoint}; reconnecting",
                 realm=self.realm, endpoint=self.endpoint)
        self._attempt = 1
        self._retry = self.reactor.callLater(backoff(1), self._retried)

    def _cancel_retry(self) -> None:
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None

    def _watched(self, publication: int, details: dict[str, Any], args: list[Any] | None,
                 kwargs: dict[str, Any] | None) -> None:
        try:
            keys = [p.key_list_from_wire(item) for item in (args or [[]])[0]]
        except (p.BadArgument, TypeError) as e:
            log.warn("federation: a malformed on_watched event: {error}", error=str(e))
            return
        self.on_watched(keys)

    # -- the name service ------------------------------------------------------------------

    def _call(self, procedure: str, args: list[Any]) -> defer.Deferred[Any]:
        client = self.client
        if client is None or not client.open:
            return defer.fail(NameServerUnavailable())
        d = client.call_deferred(procedure, args)
        d.addTimeout(self.timeout, self.reactor)
        return d.addCallback(lambda answer: answer[0][0] if answer[0] else None)

    def announce(self, entries: list[p.Entry]) -> defer.Deferred[Any]:
        """Announce in batches; fires with the refused entries and their error URIs."""
        if not entries:
            return defer.succeed([])
        batches = p.chunks(entries)

        def refused(results: list[Any]) -> list[tuple[p.Entry, str]]:
            out: list[tuple[p.Entry, str]] = []
            for (_ok, verdicts), batch in zip(results, batches, strict=True):
                if isinstance(verdicts, list):
                    out += [(e, v) for e, v in zip(batch, verdicts, strict=False) if v]
            return out

        calls = [self._call(p.ANNOUNCE, [self.advertise, [e.wire() for e in batch]])
                 for batch in batches]
        return defer.DeferredList(calls, consumeErrors=True).addCallback(refused)

    def withdraw(self, keys: list[p.Key]) -> defer.Deferred[Any]:
        calls = [self._call(p.WITHDRAW, [[k.wire() for k in batch]]) for batch in p.chunks(keys)]
        return defer.DeferredList(calls, consumeErrors=True)

    def lookup(self, key: p.Key, watch: bool = True) -> defer.Deferred[list[dict[str, Any]]]:
        """The providers of ``key`` (without us); NameServerUnavailable, WampError."""
        options: dict[str, Any] = {"watch": watch}
        if key.match != "exact":
            options["match"] = key.match
        return self._call(p.LOOKUP, [key.kind, key.uri, options]).addCallback(_providers)

    def unwatch(self, key: p.Key) -> None:
        options = {"match": key.match} if key.match != "exact" else {}
        self._call(p.UNWATCH, [key.kind, key.uri, options]).addErrback(lambda _: None)


def _providers(value: Any) -> list[dict[str, Any]]:
    """The lookup's answer, keeping only well-formed providers."""
    if not isinstance(value, list):
        return []
    return [item for item in value
            if isinstance(item, dict) and isinstance(item.get("endpoint"), str)
            and item.get("invoke", "single") in p.INVOKE_POLICIES]


def _describe(error: Exception) -> str:
    if isinstance(error, WampError):
        return error.error
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
