"""Connections from a proxy straight to the routers that provide what it forwards.

One session per remote router (and realm), opened on first use, shared by every forwarded
call and remote subscription, and closed once it has carried no call and held no subscription
for ``idle_timeout`` seconds. Concurrent first uses share one connection attempt. Which
endpoints a proxy may connect to at all is its own decision: an endpoint string comes from
the name server, which took it from another router.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from serouter.federation._client import WampClient, open_session
from serouter.transport._base import WriteBatcher

log = Logger(namespace="serouter.federation")

DEFAULT_TYPES = ("tcp", "tcp6", "unix", "argo")


@dataclass(eq=False, slots=True)
class _Remote:
    client: WampClient
    holds: int = 0  # remote subscriptions kept on it
    used: bool = True  # carried a call since the last idle sweep


class RemotePool:
    """The proxy's sessions with other routers of one realm, by endpoint string."""

    def __init__(
        self,
        reactor: Any,
        realm: str,
        *,
        batcher: WriteBatcher | None = None,
        timeout: float = 5.0,
        idle_timeout: float = 60.0,
        endpoint_types: Collection[str] = DEFAULT_TYPES,
        own: Collection[str] = (),
        on_lost: Callable[[str], None] = lambda endpoint: None,
    ) -> None:
        self.reactor = reactor
        self.realm = realm
        self.batcher = batcher
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.endpoint_types = frozenset(t.lower() for t in endpoint_types)
        self.own = frozenset(own)  # our own advertised endpoint(s): never a remote
        self.on_lost = on_lost
        self._remotes: dict[str, _Remote] = {}
        self._connecting: dict[str, list[defer.Deferred[WampClient]]] = {}
        self._sweeper = LoopingCall(self._sweep)
        self._sweeper.clock = reactor
        self._closed = False

    def start(self) -> None:
        self._sweeper.start(max(self.idle_timeout / 2, 0.05), now=False)

    def acceptable(self, endpoint: str) -> bool:
        """Whether this proxy connects to ``endpoint`` (its type is allowed, it is not us)."""
        kind = endpoint.split(":", 1)[0].lower()
        return kind in self.endpoint_types and endpoint not in self.own

    def ready(self, endpoint: str) -> WampClient | None:
        """The open session with ``endpoint``, if there is one (the hot path: no Deferred)."""
        remote = self._remotes.get(endpoint)
        if remote is None or not remote.client.open:
            return None
        remote.used = True
        return remote.client

    def connect(self, endpoint: str) -> defer.Deferred[WampClient]:
        """The session with ``endpoint``, opened if needed (one attempt shared by all)."""
        client = self.ready(endpoint)
        if client is not None:
            return defer.succeed(client)
        if self._closed:
            return defer.fail(ConnectionError("the federation is stopping"))
        d: defer.Deferred[WampClient] = defer.Deferred()
        waiting = self._connecting.get(endpoint)
        if waiting is not None:
            waiting.append(d)
            return d
        self._connecting[endpoint] = [d]
        defer.Deferred.fromCoroutine(self._open(endpoint))
        return d

    async def _open(self, endpoint: str) -> None:
        try:
            client = await open_session(self.reactor, endpoint, self.realm, batcher=self.batcher,
                                        timeout=self.timeout)
        except Exception as e:
            log.info("federation: cannot reach router {endpoint}: {error}", endpoint=endpoint,
                     error=f"{type(e).__name__}: {e}")
            for d in self._connecting.pop(endpoint, []):
                d.errback(e)
            return
        if self._closed:
            client.leave()
            for d in self._connecting.pop(endpoint, []):
                d.errback(ConnectionError("the federation is stopping"))
            return
        self._remotes[endpoint] = _Remote(client)
        client.on_close.append(lambda c: self._lost(endpoint, c))
        log.info("federation: connected to router {endpoint} (session {session})",
                 endpoint=endpoint, session=client.session_id)
        for d in self._connecting.pop(endpoint, []):
            d.callback(client)

    def _lost(self, endpoint: str, client: WampClient) -> None:
        remote = self._remotes.get(endpoint)
        if remote is None or remote.client is not client:
            return
        del self._remotes[endpoint]
        if not self._closed:
            self.on_lost(endpoint)

    def hold(self, endpoint: str) -> None:
        remote = self._remotes.get(endpoint)
        if remote is not None:
            remote.holds += 1

    def release(self, endpoint: str) -> None:
        remote = self._remotes.get(endpoint)
        if remote is not None and remote.holds > 0:
            remote.holds -= 1

    def _sweep(self) -> None:
        """Close sessions that carried nothing since the previous sweep."""
        for endpoint, remote in list(self._remotes.items()):
            busy = remote.holds or remote.client.pending_calls
            if busy or remote.used:
                remote.used = bool(busy)
                continue
            log.info("federation: closing the idle connection to {endpoint}", endpoint=endpoint)
            del self._remotes[endpoint]
            remote.client.leave()

    @property
    def endpoints(self) -> list[str]:
        return list(self._remotes)

    def close(self) -> defer.Deferred[Any]:
        """GOODBYE to every remote router; fires when all are closed."""
        self._closed = True
        if self._sweeper.running:
            self._sweeper.stop()
        remotes, self._remotes = self._remotes, {}
        return defer.DeferredList([r.client.leave() for r in remotes.values()])
