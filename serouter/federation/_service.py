"""The daemon's side of federation: start and stop, discovery, XenStore publishing.

``RouterDaemon`` builds one of these from the configuration (``for_config``) and calls
``start()`` once its listeners are up and ``stop()`` before it says GOODBYE to its sessions.
Neither ever waits on XenStore, the name server or another router to return: connections are
made and retried in the background, and ``stop()`` bounds every wait.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from serouter.config import Config, FederationConfig, NameServerConfig
from serouter.core.router import Router
from serouter.federation._link import NameServerLink, backoff
from serouter.federation._nameserver import NameServer
from serouter.federation._proxy import Proxy
from serouter.federation._remote import RemotePool
from serouter.transport._base import WriteBatcher
from serouter.xenstore import ValueWatch, XenStoreClient, XenStoreError, XenStoreUnavailable

log = Logger(namespace="serouter.federation")

STOP_TIMEOUT = 2.0  # seconds for GOODBYEs and the XenStore removal at shutdown
XENSTORE_TIMEOUT = 5.0


def _bounded(d: defer.Deferred[Any], reactor: Any, seconds: float = STOP_TIMEOUT
             ) -> defer.Deferred[None]:
    """``d`` given at most ``seconds``; its outcome is ignored (shutdown goes on regardless)."""
    d.addTimeout(seconds, reactor)
    return d.addBoth(lambda _: None)


class _XenStoreFollower:
    """Follows one XenStore value (retrying the watch until xenstored answers)."""

    def __init__(self, reactor: Any, path: str, on_change: Any) -> None:
        self.reactor = reactor
        self.path = path
        self.on_change = on_change
        self.client = XenStoreClient(reactor, request_timeout=XENSTORE_TIMEOUT)
        self.watch: ValueWatch | None = None
        self._retry: IDelayedCall | None = None
        self._attempt = 0
        self._stopped = False

    def start(self) -> None:
        self.client.startService()
        self._follow()

    def _follow(self) -> None:
        self._retry = None
        self.client.watch_value(self.path, self.on_change).addCallbacks(
            self._watching, self._failed)

    def _watching(self, watch: ValueWatch) -> None:
        if self._stopped:
            watch.cancel()
        else:
            self.watch = watch

    def _failed(self, failure: Any) -> None:
        if self._stopped:
            return
        self._attempt += 1
        delay = backoff(self._attempt, initial=0.5, most=10.0)
        log.warn("federation: cannot watch {path} in XenStore ({error}); retrying in "
                 "{delay:.1f} s", path=self.path, error=failure.getErrorMessage(), delay=delay)
        self._retry = self.reactor.callLater(delay, self._follow)

    def stop(self) -> defer.Deferred[None]:
        self._stopped = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        watch, self.watch = self.watch, None
        cancelling = _bounded(watch.cancel(), self.reactor) if watch else defer.succeed(None)
        return cancelling.addCallback(lambda _: self.client.stopService())


class Federation:
    """Router mode: a proxy for every federated realm, and how to find the name server."""

    def __init__(self, router: Router, config: FederationConfig, reactor: Any,
                 batcher: WriteBatcher | None = None) -> None:
        self.router = router
        self.config = config
        self.reactor = reactor
        self.batcher = batcher
        self.proxies: dict[str, Proxy] = {}
        self.links: dict[str, NameServerLink] = {}
        self.pools: dict[str, RemotePool] = {}
        self._follower: _XenStoreFollower | None = None

    def start(self) -> None:
        config = self.config
        for name in config.realms or tuple(self.router.realms):
            realm = self.router.realms[name]
            link = NameServerLink(self.reactor, name, config.advertise, batcher=self.batcher,
                                  timeout=config.connect_timeout)
            pool = RemotePool(self.reactor, name, batcher=self.batcher,
                              timeout=config.connect_timeout, idle_timeout=config.idle_timeout,
                              endpoint_types=config.peer_endpoints, own=(config.advertise,))
            self.proxies[name] = Proxy(self.router, realm, link, pool, self.reactor)
            self.links[name], self.pools[name] = link, pool
            pool.start()
        log.info("federation: realms {realms}, advertised as {advertise}, name server by "
                 "{discovery}", realms=sorted(self.proxies), advertise=config.advertise,
                 discovery=config.discovery)
        if config.discovery == "static":
            self.nameserver_at(config.nameserver)
        else:
            self._follower = _XenStoreFollower(self.reactor, config.xenstore_path,
                                               self.nameserver_at)
            self._follower.start()

    def nameserver_at(self, endpoint: str | None) -> None:
        """The name server's endpoint is (now) ``endpoint`` (None: not published)."""
        for link in self.links.values():
            link.set_endpoint(endpoint)

    @defer.inlineCallbacks
    def stop(self) -> Any:
        if self._follower is not None:
            yield self._follower.stop()
        for proxy in self.proxies.values():
            proxy.close()
        goodbyes = [link.stop() for link in self.links.values()]
        goodbyes += [pool.close() for pool in self.pools.values()]
        yield _bounded(defer.DeferredList(goodbyes), self.reactor)


class NameServerService:
    """Name-server mode: the name service, and its endpoint published in XenStore."""

    def __init__(self, router: Router, config: NameServerConfig, reactor: Any) -> None:
        self.router = router
        self.config = config
        self.reactor = reactor
        self.nameserver: NameServer | None = None
        self._xenstore: XenStoreClient | None = None
        self._watch: ValueWatch | None = None
        self._retry: IDelayedCall | None = None
        self._attempt = 0
        self._stopped = False

    def start(self) -> None:
        self.nameserver = NameServer(self.router, self.config.max_entries)
        if self.config.publish == "xenstore":
            self._xenstore = XenStoreClient(self.reactor, request_timeout=XENSTORE_TIMEOUT)
            self._xenstore.startService()
            self._publish()

    def _publish(self) -> None:
        self._retry = None
        assert self._xenstore is not None and self.config.advertise is not None
        path, endpoint = self.config.xenstore_path, self.config.advertise
        self._xenstore.publish_nameserver(path, endpoint).addCallbacks(
            lambda _: self._published(path, endpoint), self._publish_failed)

    def _published(self, path: str, endpoint: str) -> None:
        log.info("name server: published {endpoint} at {path} in XenStore", endpoint=endpoint,
                 path=path)
        self._attempt = 0
        if self._watch is None and not self._stopped:
            assert self._xenstore is not None
            self._xenstore.watch_value(path, self._value_changed).addCallbacks(
                self._watching, lambda f: log.warn("name server: cannot watch {path}: {error}",
                                                   path=path, error=f.getErrorMessage()))

    def _watching(self, watch: ValueWatch) -> None:
        if self._stopped:
            watch.cancel()
        else:
            self._watch = watch

    def _value_changed(self, value: str | None) -> None:
        """Publish again if the value went (a restarted xenstored); never fight a writer."""
        if self._stopped or value == self.config.advertise or self._retry is not None:
            return
        if value is None:
            log.warn("name server: {path} vanished from XenStore; publishing again",
                     path=self.config.xenstore_path)
            self._publish()
        else:
            log.warn("name server: {path} now says {value}, not {endpoint}",
                     path=self.config.xenstore_path, value=value, endpoint=self.config.advertise)

    def _publish_failed(self, failure: Any) -> None:
        if self._stopped:
            return
        if failure.check(XenStoreError, XenStoreUnavailable) is None:
            log.failure("name server: publishing in XenStore failed", failure)
        self._attempt += 1
        delay = backoff(self._attempt, initial=0.5, most=10.0)
        log.warn("name server: cannot publish at {path} in XenStore ({error}); retrying in "
                 "{delay:.1f} s", path=self.config.xenstore_path,
                 error=failure.getErrorMessage(), delay=delay)
        self._retry = self.reactor.callLater(delay, self._publish)

    @defer.inlineCallbacks
    def stop(self) -> Any:
        self._stopped = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        if self._xenstore is not None:
            if self._watch is not None:
                yield _bounded(self._watch.cancel(), self.reactor)
            yield _bounded(self._xenstore.remove(self.config.xenstore_path), self.reactor)
            yield self._xenstore.stopService()
        if self.nameserver is not None:
            self.nameserver.close()


def for_config(config: Config, router: Router, reactor: Any, batcher: WriteBatcher | None = None
               ) -> Federation | NameServerService | None:
    """What the configuration asks for: a name server, a federated router, or nothing."""
    if config.router.mode == "nameserver":
        return NameServerService(router, config.nameserver or NameServerConfig(), reactor)
    if config.federation is not None:
        return Federation(router, config.federation, reactor, batcher)
    return None
