"""The configuration's sections as frozen dataclasses, each field declaring its rule.

Adding a key is one line in its dataclass: ``field(default=..., metadata=_rule(check))``.
A section's keys are checked one by one here; what one key means for another (or for another
section) is checked in ``_checks.py``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from serouter.config._auth import (
    AUTH_METHODS,
    AnonymousAuthConfig,
    PrincipalConfig,
    PrincipalsFile,
    TlsAuthConfig,
    TransportAuthConfig,
    _pem_certificates,
    _principals,
    _principals_file,
)
from serouter.config._endpoints import _client_endpoint, _endpoint, _twisted_form
from serouter.config._rules import (
    _boolean,
    _choice,
    _context,
    _domain,
    _Fault,
    _integer,
    _label_map,
    _name,
    _names,
    _names_from,
    _readable_file,
    _realm_uri,
    _rule,
    _seconds,
    _seconds_or_off,
    _show,
    _table,
    _text,
    _uid,
    _url_path,
)

DEFAULT_SOURCE: Final = "<embedded default>"
LOG_LEVELS: Final = ("debug", "info", "warn", "error", "critical")
TRANSPORTS: Final = ("websocket", "rawsocket")
SERIALIZERS: Final = ("json", "msgpack", "cbor")
ACCESS_BACKENDS: Final = ("selinux", "policy-file", "allow-all")


def _router_mode(value: object) -> str:
    if value not in ("router", "nameserver"):
        raise _Fault(f'must be "router" or "nameserver", got {_show(value)}')
    return str(value)


# ---------------------------------------------------------------------------------------------
# The configuration itself.


@dataclass(frozen=True, slots=True)
class RouterConfig:
    """The [router] table: how this daemon runs."""

    mode: str = field(default="router", metadata=_rule(_router_mode))
    log_level: str = field(default="info", metadata=_rule(_choice(*LOG_LEVELS)))
    # seconds to wait for GOODBYE replies on SIGTERM
    shutdown_timeout: float = field(default=5.0, metadata=_rule(_seconds(300)))


def _topics(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(
        isinstance(t, str) and _LOOSE_TOPIC.fullmatch(t) for t in value
    ):
        raise _Fault(f"must be a list of topic URIs, got {_show(value)}")
    if len(set(value)) != len(value):
        raise _Fault(f"lists a topic twice: {_show(value)}")
    return tuple(value)


_LOOSE_TOPIC: Final = re.compile(r"([^\s.#]+\.)*[^\s.#]+")
_DISCLOSURE: Final = ("allow", "force", "forbid")


@dataclass(frozen=True, slots=True)
class RealmConfig:
    """One [[realms]] table."""

    name: str = field(metadata=_rule(_realm_uri))
    # caller / publisher identification: "allow" (when the peer asks), "force", "forbid"
    disclose_caller: str = field(default="allow", metadata=_rule(_choice(*_DISCLOSURE)))
    disclose_publisher: str = field(default="allow", metadata=_rule(_choice(*_DISCLOSURE)))
    # topics whose last events are kept (wamp.subscription.get_events), at most history_limit
    history: tuple[str, ...] = field(default=(), metadata=_rule(_topics))
    history_limit: int = field(default=100, metadata=_rule(_integer(1, 100_000)))
    # limits (docs/reliability.md): sessions in this realm, and per session
    max_sessions: int = field(default=100_000, metadata=_rule(_integer(1, 10_000_000)))
    max_calls: int = field(default=1000, metadata=_rule(_integer(1, 1_000_000)))  # as caller
    max_invocations: int = field(default=5000, metadata=_rule(_integer(1, 1_000_000)))  # callee
    max_registrations: int = field(default=1000, metadata=_rule(_integer(1, 1_000_000)))
    max_subscriptions: int = field(default=1000, metadata=_rule(_integer(1, 1_000_000)))
    max_testaments: int = field(default=100, metadata=_rule(_integer(1, 100_000)))
    max_retained: int = field(default=10_000, metadata=_rule(_integer(1, 10_000_000)))  # realm
    # authentication: the methods offered here; the client's order of preference picks one
    auth: tuple[str, ...] = field(
        default=("anonymous",), metadata=_rule(_names_from(AUTH_METHODS))
    )
    principals: Mapping[str, PrincipalConfig] = field(
        default_factory=dict, metadata=_rule(_principals)
    )
    principals_file: PrincipalsFile | None = field(default=None, metadata=_rule(_principals_file))
    anonymous: AnonymousAuthConfig = field(
        default=AnonymousAuthConfig(), metadata=_rule(_table(AnonymousAuthConfig))
    )
    tls: TlsAuthConfig = field(default=TlsAuthConfig(), metadata=_rule(_table(TlsAuthConfig)))
    transport: TransportAuthConfig = field(
        default=TransportAuthConfig(), metadata=_rule(_table(TransportAuthConfig))
    )

    def all_principals(self) -> Mapping[str, PrincipalConfig]:
        """The inline principals and those of principals_file (their authids differ)."""
        if self.principals_file is None:
            return self.principals
        return {**self.principals, **self.principals_file.principals}


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    """One [[listeners]] table: a listening socket, its transport and its limits."""

    transport: str = field(metadata=_rule(_choice(*TRANSPORTS)))
    # a Twisted server endpoint string, plus "unix:@name" for Linux abstract sockets
    endpoint: str = field(metadata=_rule(_endpoint))
    path: str = field(default="/ws", metadata=_rule(_url_path))  # websocket only
    # the order is the router's preference
    serializers: tuple[str, ...] = field(
        default=SERIALIZERS, metadata=_rule(_names_from(SERIALIZERS))
    )
    # RawSocket cannot announce more than 2**24
    max_message_size: int = field(default=1 << 20, metadata=_rule(_integer(512, 1 << 24)))
    # seconds for the transport handshake plus the WAMP HELLO
    handshake_timeout: float = field(default=10.0, metadata=_rule(_seconds(3600)))
    # router-initiated keepalive: a ping every ping_interval seconds (0: off); a peer that
    # sends nothing within ping_timeout after a ping is taken for dead and closed. Absent:
    # 30 s for WebSocket, off for RawSocket (Autobahn|Python's RawSocket clients cannot answer
    # a ping: its asyncio client raises NotImplementedError, its Twisted one misreads the frame)
    ping_interval: float | None = field(default=None, metadata=_rule(_seconds_or_off(86400)))
    ping_timeout: float = field(default=10.0, metadata=_rule(_seconds(3600)))
    # the default security label of this listener's sessions
    label: str | None = field(default=None, metadata=_rule(_context))
    # authentication methods allowed here, of those the realm offers; absent: all of them
    auth: tuple[str, ...] | None = field(
        default=None, metadata=_rule(_names_from(AUTH_METHODS))
    )
    # seconds a client has to answer a CHALLENGE
    auth_timeout: float = field(default=10.0, metadata=_rule(_seconds(3600)))
    # PEM CA certificates that verify TLS client certificates (ssl: endpoints only)
    tls_ca: str | None = field(default=None, metadata=_rule(_pem_certificates))
    tls_client_cert: str = field(
        default="required", metadata=_rule(_choice("required", "optional"))
    )
    # limits (docs/reliability.md): connections on this listener; bytes queued for a peer that
    # does not read (beyond the kernel's and Twisted's buffers); what happens to events for a
    # subscriber over that mark ("drop" them, counted and logged, or "close" its session);
    # seconds without any message before a session is closed (0: never)
    max_connections: int = field(default=10_000, metadata=_rule(_integer(1, 1_000_000)))
    max_queued_bytes: int = field(default=1 << 20, metadata=_rule(_integer(1 << 16, 1 << 30)))
    slow_consumer: str = field(default="drop", metadata=_rule(_choice("drop", "close")))
    idle_timeout: float = field(default=0.0, metadata=_rule(_seconds_or_off(86400 * 7)))


@dataclass(frozen=True, slots=True)
class AccessConfig:
    """The [access] table: who decides every action, and how sessions are labeled."""

    backend: str = field(default="allow-all", metadata=_rule(_choice(*ACCESS_BACKENDS)))
    policy: str | None = field(default=None, metadata=_rule(_readable_file))  # policy-file
    enforcing: bool = field(default=True, metadata=_rule(_boolean))  # policy-file
    contexts: str | None = field(default=None, metadata=_rule(_readable_file))
    unlabeled: str = field(default="system_u:object_r:unlabeled_t:s0", metadata=_rule(_context))
    # start even if the policy lacks the wamp_* classes (then its handle_unknown decides)
    allow_unknown_classes: bool = field(default=False, metadata=_rule(_boolean))
    uid_labels: Mapping[int, str] = field(default_factory=dict, metadata=_rule(_label_map(_uid)))
    authid_labels: Mapping[str, str] = field(
        default_factory=dict, metadata=_rule(_label_map(_name))
    )
    authrole_labels: Mapping[str, str] = field(
        default_factory=dict, metadata=_rule(_label_map(_name))
    )
    # Argo peers (docs/argo.md): "uuid:<vm uuid>" / "name:<domain name>" / "domid:<id>" = context
    domain_labels: Mapping[str, str] = field(
        default_factory=dict, metadata=_rule(_label_map(_domain))
    )


@dataclass(frozen=True, slots=True)
class ArgoConfig:
    """[argo]: how the domains of Argo peers are named (docs/argo.md)."""

    # look domain ids up in XenStore (/local/domain/<id>/name and vm) for names and VM uuids
    xenstore: bool = field(default=True, metadata=_rule(_boolean))
    # seconds an accepted connection waits for its domain's name before it goes on without
    resolve_timeout: float = field(default=5.0, metadata=_rule(_seconds(60)))


# ---------------------------------------------------------------------------------------------
# Federation (docs/federation.md): [nameserver] in mode = "nameserver", [federation] otherwise.

_XENSTORE_PATH: Final = re.compile(r"(/[A-Za-z0-9_@-]+)+")


def _xenstore_path(value: object) -> str:
    path = _text(value)
    if not _XENSTORE_PATH.fullmatch(path):
        raise _Fault(
            "must be an absolute XenStore path of [A-Za-z0-9_@-] components (a dotted name "
            f"belongs in a value, not a path), got {_show(value)}"
        )
    return path


@dataclass(frozen=True, slots=True)
class NameServerConfig:
    """[nameserver]: the name service this router hosts in every realm (mode = "nameserver")."""

    # the client endpoint string routers use to reach this name server
    advertise: str | None = field(default=None, metadata=_rule(_client_endpoint))
    # "xenstore": write advertise at xenstore_path (perms r0) at start, remove it at stop
    publish: str = field(default="none", metadata=_rule(_choice("xenstore", "none")))
    xenstore_path: str = field(default="/serouter/nameserver", metadata=_rule(_xenstore_path))
    # entries, and watches, one router may hold
    max_entries: int = field(default=100_000, metadata=_rule(_integer(1, 10_000_000)))


@dataclass(frozen=True, slots=True)
class FederationConfig:
    """[federation]: this router's proxy to the name server and the other routers."""

    # how other routers reach this one (a client endpoint string of a rawsocket listener)
    advertise: str = field(metadata=_rule(_client_endpoint))
    discovery: str = field(default="xenstore", metadata=_rule(_choice("xenstore", "static")))
    nameserver: str | None = field(default=None, metadata=_rule(_client_endpoint))  # static
    xenstore_path: str = field(default="/serouter/nameserver", metadata=_rule(_xenstore_path))
    # the realms federated (each needs its namesake on the name server); empty: every realm
    realms: tuple[str, ...] = field(default=(), metadata=_rule(_names("realm names", _realm_uri)))
    # seconds a connection to another router may carry nothing before it is closed
    idle_timeout: float = field(default=60.0, metadata=_rule(_seconds(86400)))
    # seconds to connect and join, to the name server or another router
    connect_timeout: float = field(default=5.0, metadata=_rule(_seconds(300)))
    # the endpoint types this proxy connects to when the name server names a router
    peer_endpoints: tuple[str, ...] = field(
        default=("tcp", "argo"), metadata=_rule(_names("endpoint types", _text))
    )


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """[metrics]: Prometheus metrics over HTTP (docs/operations.md); no table, no endpoint."""

    # a Twisted server endpoint string; keep it local, the page names realms and listeners
    endpoint: str = field(metadata=_rule(_endpoint))
    path: str = field(default="/metrics", metadata=_rule(_url_path))


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration; ``source`` is the file it came from, or DEFAULT_SOURCE."""

    router: RouterConfig
    realms: tuple[RealmConfig, ...]
    listeners: tuple[ListenerConfig, ...]
    source: str
    access: AccessConfig = field(default_factory=AccessConfig)
    nameserver: NameServerConfig | None = None  # mode = "nameserver" (defaults if absent)
    federation: FederationConfig | None = None  # mode = "router": federation is on
    argo: ArgoConfig = field(default_factory=ArgoConfig)
    metrics: MetricsConfig | None = None  # [metrics]: the Prometheus endpoint, if any


def server_endpoint_string(listener: ListenerConfig | MetricsConfig) -> str:
    """The string to give ``twisted.internet.endpoints.serverFromString`` for ``listener``.

    It equals ``listener.endpoint`` except for "unix:@name", which becomes Twisted's form of
    the Linux abstract socket "\\0name" (with ``lockfile=0``, which Twisted needs there).
    """
    try:
        return _twisted_form(listener.endpoint)
    except _Fault as fault:  # only for a ListenerConfig built by hand, past validation
        raise ValueError(f"endpoint {_show(listener.endpoint)}: {fault.reason}") from None
