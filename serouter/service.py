"""The daemon's wiring: a Router, its listeners, and an orderly shutdown.

This is where the reactor comes in. The router core never sees it; transports get the clock
they need through their factory.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IReactorCore, IReactorTime
from twisted.logger import Logger

from serouter.auth.configure import policy_from_config
from serouter.auth.tls_listener import client_certificate_endpoint
from serouter.config import Config, ListenerConfig, server_endpoint_string
from serouter.core import uris
from serouter.core.access import AccessCheck
from serouter.core.dealer import Limits
from serouter.core.realm import RealmOptions
from serouter.core.router import Labeler, Router, listener_label
from serouter.security import Security, build_security
from serouter.serializers import BY_NAME
from serouter.transport import RawSocketFactory, WebSocketFactory
from serouter.transport._base import WampServerFactory, WriteBatcher
from serouter.transport._flow import ListenerLimits

log = Logger(namespace="serouter.service")


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
    }
    if listener.transport == "websocket":
        factory: WampServerFactory = WebSocketFactory(router, clock, **common)
        factory.path = listener.path  # type: ignore[attr-defined]
        return factory
    return RawSocketFactory(router, clock, **common)


def realm_options(config: Config) -> dict[str, RealmOptions]:
    """The core's per-realm settings, from the [[realms]] tables."""
    return {
        r.name: RealmOptions(
            r.disclose_caller, r.disclose_publisher, r.history, r.history_limit, r.max_sessions,
            Limits(r.max_calls, r.max_invocations, r.max_registrations, r.max_subscriptions),
        )
        for r in config.realms
    }


class RouterDaemon:
    """A running router: start listening, and stop with GOODBYE to every session."""

    def __init__(self, config: Config, reactor: Any, access: AccessCheck | None = None) -> None:
        self.config = config
        self.reactor = reactor
        # the access control the configuration asks for, unless the caller brings its own
        self.security: Security | None = None
        labeler: Labeler = listener_label
        self.read_peer_context = False
        if access is None:
            self.security = build_security(config.access, config.listeners)
            access, labeler = self.security.access, self.security.labeler
            self.read_peer_context = self.security.read_peer_context
        self._previous_sighup: Any = None
        self.router = Router(
            [r.name for r in config.realms], access, reactor, labeler=labeler,
            realm_options=realm_options(config), auth=policy_from_config(config),
        )
        self.ports: list[IListeningPort] = []
        self.batcher = WriteBatcher()

    @defer.inlineCallbacks
    def start(self) -> Any:
        """Load the policy, then listen on every configured endpoint; if one fails, close the
        others and fail."""
        if self.security is not None:
            self.security.start()  # SecurityError: the policy refuses the start
            self._install_reload()
        try:
            for listener in self.config.listeners:
                endpoint = (
                    client_certificate_endpoint(self.reactor, listener)
                    if listener.tls_ca is not None
                    else serverFromString(  # type: ignore[no-untyped-call]
                        self.reactor, server_endpoint_string(listener)
                    )
                )
                factory = make_factory(
                    self.router, self.reactor, listener, self.batcher, self.read_peer_context
                )
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
        self._remove_reload()
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

    def reload(self) -> bool:
        """SIGHUP: reload the policy (policy-file) and the contexts; a bad one is refused and
        logged, and the running one stays."""
        return self.security.reload() if self.security is not None else True

    def _install_reload(self) -> None:
        # installed even for allow-all: SIGHUP's default action would end the daemon
        if self.security is None:
            return
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
