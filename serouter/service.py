"""The daemon's wiring: a Router, its listeners, and an orderly shutdown.

This is where the reactor comes in. The router core never sees it; transports get the clock
they need through their factory.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IReactorCore, IReactorTime
from twisted.logger import Logger

from serouter.config import Config, ListenerConfig, server_endpoint_string
from serouter.core import uris
from serouter.core.access import AccessCheck, AllowAll
from serouter.core.realm import RealmOptions
from serouter.core.router import Router
from serouter.serializers import BY_NAME
from serouter.transport import RawSocketFactory, WebSocketFactory
from serouter.transport._base import WampServerFactory, WriteBatcher

log = Logger(namespace="serouter.service")


def make_factory(
    router: Router, clock: IReactorTime, listener: ListenerConfig, batcher: WriteBatcher
) -> WampServerFactory:
    """The protocol factory for one configured listener."""
    common: dict[str, Any] = {
        "batcher": batcher,
        "serializers": [BY_NAME[name] for name in listener.serializers],
        "max_message_size": listener.max_message_size,
        "handshake_timeout": listener.handshake_timeout,
        "keepalive": (listener.ping_interval, listener.ping_timeout),
        "listener": listener.endpoint,
    }
    if listener.transport == "websocket":
        factory: WampServerFactory = WebSocketFactory(router, clock, **common)
        factory.path = listener.path  # type: ignore[attr-defined]
        return factory
    return RawSocketFactory(router, clock, **common)


def realm_options(config: Config) -> dict[str, RealmOptions]:
    """The core's per-realm settings, from the [[realms]] tables."""
    return {
        r.name: RealmOptions(r.disclose_caller, r.disclose_publisher, r.history, r.history_limit)
        for r in config.realms
    }


class RouterDaemon:
    """A running router: start listening, and stop with GOODBYE to every session."""

    def __init__(self, config: Config, reactor: Any, access: AccessCheck | None = None) -> None:
        self.config = config
        self.reactor = reactor
        if access is None:
            log.warn("access control: allow-all (every action of every session is allowed)")
            access = AllowAll()
        self.router = Router(
            [r.name for r in config.realms], access, reactor, realm_options=realm_options(config)
        )
        self.ports: list[IListeningPort] = []
        self.batcher = WriteBatcher()

    @defer.inlineCallbacks
    def start(self) -> Any:
        """Listen on every configured endpoint; if one fails, close the others and fail."""
        try:
            for listener in self.config.listeners:
                endpoint = serverFromString(  # type: ignore[no-untyped-call]
                    self.reactor, server_endpoint_string(listener)
                )
                factory = make_factory(self.router, self.reactor, listener, self.batcher)
                port = yield endpoint.listen(factory)
                self.ports.append(port)
                log.info(
                    "listening: {transport} on {endpoint} ({address})",
                    transport=listener.transport, endpoint=listener.endpoint,
                    address=_address(port),
                )
        except Exception:
            yield self._stop_listening()
            raise
        log.info("serouter ready: realms {realms}", realms=[r.name for r in self.config.realms])

    @defer.inlineCallbacks
    def stop(self) -> Any:
        """GOODBYE ``wamp.close.system_shutdown`` to every session, then close everything."""
        yield self._stop_listening()
        count = len(self.router.sessions)
        self.router.shutdown(uris.SYSTEM_SHUTDOWN)
        deadline = self.reactor.seconds() + self.config.router.shutdown_timeout
        while self.router.sessions and self.reactor.seconds() < deadline:
            yield _sleep(self.reactor, 0.05)
        left = list(self.router.sessions)
        for session in left:
            session.peer.close()
        log.info("stopped: {count} sessions told goodbye, {left} closed without reply",
                 count=count, left=len(left))

    def _stop_listening(self) -> defer.Deferred[Any]:
        ports, self.ports = self.ports, []
        return defer.gatherResults(
            [defer.maybeDeferred(p.stopListening) for p in ports], consumeErrors=True
        )


def _sleep(clock: IReactorTime, seconds: float) -> defer.Deferred[None]:
    d: defer.Deferred[None] = defer.Deferred()
    clock.callLater(seconds, d.callback, None)
    return d


def _address(port: IListeningPort) -> str:
    host: Any = port.getHost()
    if hasattr(host, "port"):
        return f"{host.host}:{host.port}"
    name = getattr(host, "name", "")
    return name.decode(errors="replace") if isinstance(name, bytes) else str(name)


def install_shutdown(reactor: IReactorCore, daemon: RouterDaemon) -> None:
    """On SIGTERM/SIGINT Twisted stops the reactor; say goodbye before it does."""
    reactor.addSystemEventTrigger("before", "shutdown", daemon.stop)
