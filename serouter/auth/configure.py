"""The authenticators a configuration asks for: Config -> AuthPolicy (at start only)."""

from __future__ import annotations

from serouter.auth.anonymous import Anonymous
from serouter.auth.base import Authenticator
from serouter.auth.cryptosign import Cryptosign, CryptosignPrincipal
from serouter.auth.policy import AuthPolicy, ListenerAuth
from serouter.auth.ticket import Ticket, TicketPrincipal
from serouter.auth.tls import Tls
from serouter.auth.transport import PeerCredentials
from serouter.auth.wampcra import CraPrincipal, WampCra
from serouter.config import AUTH_METHODS, Config, ListenerConfig, RealmConfig


def policy_from_config(config: Config) -> AuthPolicy:
    """One authenticator per method each realm offers; each listener's allowed methods."""
    return AuthPolicy(
        {realm.name: [_authenticator(realm, m) for m in realm.auth] for realm in config.realms},
        {listener.endpoint: _listener(listener) for listener in config.listeners},
    )


def _listener(listener: ListenerConfig) -> ListenerAuth:
    if listener.tls_ca is not None:
        methods = None if listener.auth is None else frozenset(listener.auth)
    else:
        # only a listener that verifies client certificates may take one as proof
        methods = frozenset(listener.auth or AUTH_METHODS) - {"tls"}
    return ListenerAuth(methods, listener.auth_timeout)


def _authenticator(realm: RealmConfig, method: str) -> Authenticator:
    principals = realm.all_principals()
    if method == "anonymous":
        return Anonymous(realm.anonymous.role)
    if method == "ticket":
        return Ticket({authid: TicketPrincipal(p.ticket, p.role)
                       for authid, p in principals.items() if p.ticket is not None})
    if method == "wampcra":
        return WampCra({authid: CraPrincipal(p.secret, p.role, p.salt, p.iterations, p.keylen)
                        for authid, p in principals.items() if p.secret is not None})
    if method == "cryptosign":
        return Cryptosign({authid: CryptosignPrincipal(p.pubkeys, p.role)
                           for authid, p in principals.items() if p.pubkeys})
    if method == "tls":
        return Tls(authid_from=realm.tls.authid, allowed_dn=realm.tls.allowed_dn,
                   role=realm.tls.role, roles={a: p.role for a, p in principals.items()})
    if method == "transport":
        peer = realm.transport
        return PeerCredentials(authid_from=peer.authid, role=peer.role,
                               uid_roles=peer.uid_roles, gid_roles=peer.gid_roles,
                               domain_roles=peer.domain_roles)
    raise ValueError(f"unknown authentication method {method!r}")  # config refuses these
