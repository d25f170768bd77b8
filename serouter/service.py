"""The daemon's wiring: a Router, its listeners, and an orderly shutdown.

This is where the reactor comes in. The router core never sees it; transports get the clock
they need through their factory. systemd hears of every state change (serouter.systemd);
SIGHUP reloads (serouter._reload); metrics are served if configured (serouter.observability).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from prometheus_client.registry import CollectorRegistry
from twisted.internet import defer
from twisted.internet.endpoints import AdoptedStreamServerEndpoint, serverFromString
from twisted.internet.interfaces import IListeningPort, IReactorCore, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from serouter._reload import Reloader
from serouter.argo import ArgoServerEndpoint, DomainNaming
from serouter.auth.configure import policy_from_config
from serouter.auth.tls_listener import client_certificate_endpoint
from serouter.config import Config, ListenerConfig, RealmConfig, server_endpoint_string
from serouter.core import uris
from serouter.core.access import AccessCheck, AllowAll
from serouter.core.dealer import Limits
from serouter.core.realm import Realm, RealmOptions
from serouter.core.router import Labeler, Router, listener_label
from serouter.federation import for_config
from serouter.observability import (
    Counters,
    CountingAccess,
    metrics_registry,
    metrics_site,
    status_line,
)
from serouter.security import Security, build_security
from serouter.serializers import BY_NAME
from serouter.systemd import Notifier, PassedSocket
from serouter.transport import RawSocketFactory, WebSocketFactory
from serouter.transport._base import WampServerFactory, WriteBatcher
from serouter.transport._flow import ListenerLimits

log = Logger(namespace="serouter.service")

STATUS_INTERVAL = 10.0  # seconds between STATUS= updates to systemd


class Listening(NamedTuple):
    """One open listener: its configuration, its protocol factory and its port."""

    config: ListenerConfig
    factory: WampServerFactory
    port: IListeningPort


def keepalive_interval(listener: ListenerConfig) -> float:
    """The configured ping interval, else the transport's default (see ListenerConfig)."""
    if listener.ping_interval is not None:
        return listener.ping_interval
    return 30.0 if listener.transport == "websocket" else 0.0


def make_factory(
    router: Router,
    clock: IReactorTime,
    listener: ListenerConfig,
    batcher: WriteBatcher,
    read_peer_context: bool = False,
    *,
    counters: Counters | None = None,
) -> WampServerFactory:
    """The protocol factory for one configured listener (``read_peer_context``: SELinux is
    enabled, so SO_PEERSEC of Unix peers is an SELinux context)."""
    common: dict[str, Any] = {
        "batcher": batcher,
        "label": listener.label,
        "read_peer_context": read_peer_context,
        "serializers": [BY_NAME[name] for name in listener.serializers],
        "max_message_size": listener.max_message_size,
        "handshake_timeout": listener.handshake_timeout,
        "keepalive": (keepalive_interval(listener), listener.ping_timeout),
        "limits": ListenerLimits(
            listener.max_connections, listener.max_queued_bytes, listener.slow_consumer,
            listener.idle_timeout,
        ),
        "listener": listener.endpoint,
        "counters": counters,
    }
    if listener.transport == "websocket":
        factory: WampServerFactory = WebSocketFactory(router, clock, **common)
        factory.path = listener.path  # type: ignore[attr-defined]
        return factory
    return RawSocketFactory(router, clock, **common)


def realm_options(config: Config) -> dict[str, RealmOptions]:
    """The core's per-realm settings, from the [[realms]] tables."""
    return {r.name: options_of(r) for r in config.realms}


def options_of(r: RealmConfig) -> RealmOptions:
    """The core's settings of one realm."""
    return RealmOptions(
        r.disclose_caller, r.disclose_publisher, r.history, r.history_limit, r.max_sessions,
        Limits(r.max_calls, r.max_invocations, r.max_registrations, r.max_subscriptions,
               r.max_testaments, r.max_retained),
    )


def server_endpoint(reactor: Any, listener: ListenerConfig) -> Any:
    """The Twisted server endpoint of a configured listener."""
    if listener.tls_ca is not None:
        return client_certificate_endpoint(reactor, listener)
    description = server_endpoint_string(listener)
    try:
        endpoint = serverFromString(reactor, description)  # type: ignore[no-untyped-call]
    except (IndexError, KeyError):  # Twisted's systemd: parser, for a socket not passed
        if not description.startswith("systemd:"):
            raise
        raise ValueError(
            f"{listener.endpoint}: systemd passed no such socket (LISTEN_FDS, LISTEN_FDNAMES): "
            "is the .socket unit active, with the ListenStream= and FileDescriptorName= the "
            "configuration names?"
        ) from None
    if isinstance(endpoint, AdoptedStreamServerEndpoint):  # systemd: Twisted found the socket
        return PassedSocket(reactor, endpoint.fileno, endpoint.addressFamily, listener.endpoint)
    return endpoint


class RouterDaemon:
    """A running router: start listening, and stop with GOODBYE to every session."""

    def __init__(
        self,
        config: Config,
        reactor: Any,
        access: AccessCheck | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.reactor = reactor
        self.notifier = notifier or Notifier()
        self.counters = Counters()  # the metrics' plain ints (serouter.observability)
        # "run --log-level" fixes the level; otherwise a reload applies [router] log_level
        self.set_log_level: Callable[[str], None] | None = None
        # the access control the configuration asks for, unless the caller brings its own
        self.security: Security | None = None
        labeler: Labeler = listener_label
        self.read_peer_context = False
        if access is None:
            self.security = build_security(config.access, config.listeners)
            access, labeler = self.security.access, self.security.labeler
            self.read_peer_context = self.security.read_peer_context
        self._previous_sighup: Any = None
        if not isinstance(access, AllowAll):  # allow-all never refuses: nothing to count
            access = CountingAccess(access, self.counters)
        self.router = Router(
            [r.name for r in config.realms], access, reactor, labeler=labeler,
            realm_options=realm_options(config), auth=policy_from_config(config),
        )
        self.ports: dict[str, Listening] = {}  # by endpoint string
        self.metrics_port: IListeningPort | None = None
        self.running = False
        self._status: LoopingCall | None = None
        self._registry: CollectorRegistry | None = None
        self.batcher = WriteBatcher()
        # Argo listeners: peer domain ids -> names and VM uuids (XenStore), for labels
        self.domains = DomainNaming(
            reactor, xenstore=config.argo.xenstore, timeout=config.argo.resolve_timeout
        )
        # name-server mode, or this router's federation proxy (docs/federation.md)
        self.federation = for_config(config, self.router, reactor, self.batcher)
        self.reloader = Reloader(self)

    @defer.inlineCallbacks
    def start(self) -> Any:
        """Load the policy, then listen on every configured endpoint; if one fails, close the
        others and fail."""
        if self.security is not None:
            self.security.start()  # SecurityError: the policy refuses the start
        self._install_reload()
        try:
            for listener in self.config.listeners:
                self.ports[listener.endpoint] = yield self.listen(listener)
            self.metrics_port = yield self.listen_metrics(self.config)
        except Exception:
            yield self._stop_listening()
            yield self.domains.stop()
            raise
        if self.federation is not None:
            self.federation.start()  # never waits: connections are made in the background
        self.running = True
        log.info("serouter ready: realms {realms}", realms=[r.name for r in self.config.realms])
        self.notifier.ready(status_line(self))
        self.notifier.start_watchdog(self.reactor)
        if self.notifier.enabled:
            self._status = LoopingCall(self.report_status)
            self._status.clock = self.reactor
            self._status.start(STATUS_INTERVAL, now=False)

    @defer.inlineCallbacks
    def listen(self, listener: ListenerConfig) -> Any:
        """Open one configured listener (at start, and when a reload adds one)."""
        endpoint = server_endpoint(self.reactor, listener)
        if isinstance(endpoint, ArgoServerEndpoint):
            endpoint.resolver = self.domains.resolver()
        factory = make_factory(
            self.router, self.reactor, listener, self.batcher, self.read_peer_context,
            counters=self.counters,
        )
        port = yield endpoint.listen(factory)
        log.info(
            "listening: {transport} on {endpoint} ({address})",
            transport=listener.transport, endpoint=listener.endpoint, address=_address(port),
        )
        return Listening(listener, factory, port)

    @defer.inlineCallbacks
    def listen_metrics(self, config: Config) -> Any:
        """Serve the Prometheus metrics where ``config`` says, if it says; the port or None."""
        if config.metrics is None:
            return None
        endpoint = serverFromString(  # type: ignore[no-untyped-call]
            self.reactor, server_endpoint_string(config.metrics))
        if self._registry is None:
            self._registry = metrics_registry(self)
        port = yield endpoint.listen(metrics_site(self._registry, config.metrics.path))
        log.info("metrics: http on {endpoint} ({address}), path {path}",
                 endpoint=config.metrics.endpoint, address=_address(port),
                 path=config.metrics.path)
        return port

    def add_realm(self, realm: RealmConfig) -> None:
        """A realm a reload added: sessions may join it from the next HELLO."""
        router = self.router
        router.realms[realm.name] = Realm(
            realm.name, router.access, router.ids, router.clock, options_of(realm))

    def listener_connections(self) -> dict[str, int]:
        """Open connections per listening endpoint (metrics, status)."""
        return {endpoint: x.factory.connections for endpoint, x in self.ports.items()}

    def report_status(self) -> None:
        """Tell systemd how things are (``systemctl status`` shows it)."""
        self.notifier.status(status_line(self))

    @defer.inlineCallbacks
    def stop(self) -> Any:
        """GOODBYE ``wamp.close.system_shutdown`` to every session, then close everything."""
        self.running = False
        self.notifier.stopping()
        if self._status is not None and self._status.running:
            self._status.stop()
        self._remove_reload()
        yield self._stop_listening()
        if self.federation is not None:
            yield self.federation.stop()  # bounded: GOODBYEs out, XenStore entry removed
        count = len(self.router.sessions)
        self.router.shutdown(uris.SYSTEM_SHUTDOWN)
        deadline = self.reactor.seconds() + self.config.router.shutdown_timeout
        while self.router.sessions and self.reactor.seconds() < deadline:
            yield _sleep(self.reactor, 0.05)
        left = list(self.router.sessions)
        for session in left:
            session.peer.close()
        yield self.domains.stop()
        log.info("stopped: {count} sessions told goodbye, {left} closed without reply",
                 count=count, left=len(left))

    def reload(self) -> defer.Deferred[bool]:
        """SIGHUP: the configuration, the contexts file and the policy, read again and applied
        without dropping a session; a bad one is refused and logged, and the running one stays
        (serouter._reload). Fires with True if applied."""
        return self.reloader.reload()

    def _install_reload(self) -> None:
        # installed even for allow-all: SIGHUP's default action would end the daemon
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach the main thread only (an embedding program's choice)

        def on_sighup(signum: int, frame: object) -> None:
            self.reactor.callFromThread(self.reload)

        self._previous_sighup = signal.signal(signal.SIGHUP, on_sighup)

    def _remove_reload(self) -> None:
        if self._previous_sighup is not None:
            signal.signal(signal.SIGHUP, self._previous_sighup)
            self._previous_sighup = None

    def _stop_listening(self) -> defer.Deferred[Any]:
        ports = [x.port for x in self.ports.values()]
        self.ports = {}
        if self.metrics_port is not None:
            ports.append(self.metrics_port)
            self.metrics_port = None
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
