"""Checks across keys and tables, made once every section is built from its own rules.

Each raises ``_Fault`` with the path of the key to change; they only read the configuration.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final

from serouter.config._endpoints import _split_endpoint
from serouter.config._model import (
    ACCESS_BACKENDS,
    AccessConfig,
    Config,
    ListenerConfig,
    NameServerConfig,
    RealmConfig,
)
from serouter.config._rules import _Fault, _quoted, _show


def _check_listener(listener: ListenerConfig, table: Mapping[str, object]) -> None:
    if listener.transport == "rawsocket" and "path" in table:
        raise _Fault("only websocket listeners have a path: remove it", ".path")
    _check_listener_tls(listener, table)


def _check_listener_tls(listener: ListenerConfig, table: Mapping[str, object]) -> None:
    if listener.tls_ca is None:
        if "tls_client_cert" in table:
            raise _Fault("only a listener with tls_ca asks for certificates", ".tls_client_cert")
        if listener.auth is not None and "tls" in listener.auth:
            raise _Fault('"tls" needs tls_ca, the CA that verifies client certificates', ".auth")
        return
    args, kw = _split_endpoint(listener.endpoint)
    if args[0] != "ssl":
        raise _Fault(f"needs an ssl: endpoint, not {_show(args[0] + ':')}", ".tls_ca")
    if "sslmethod" in kw:
        raise _Fault("sslmethod cannot be combined with tls_ca: remove it", ".endpoint")


_CREDENTIALS: Final = {"ticket": "ticket", "wampcra": "secret", "cryptosign": "pubkeys"}


def _check_realm(realm: RealmConfig, table: Mapping[str, object]) -> None:
    if realm.principals_file is not None:
        for authid in realm.principals_file.principals:
            if authid in realm.principals:
                raise _Fault(f"{_show(authid)} is also in principals", ".principals_file")
    principals = realm.all_principals()
    for method, key in _CREDENTIALS.items():
        if method in realm.auth and not any(getattr(p, key) for p in principals.values()):
            raise _Fault(f"offers {method}, but no principal has a {key}", ".auth")
    owners: dict[str, str] = {}
    for authid, principal in principals.items():
        for key in principal.pubkeys:
            if key in owners:
                raise _Fault(f"{_show(authid)} and {_show(owners[key])} share a public key")
            owners[key] = authid
    _check_realm_methods(realm, table)


def _check_realm_methods(realm: RealmConfig, table: Mapping[str, object]) -> None:
    for method in ("anonymous", "tls", "transport"):
        if method in table and method not in realm.auth:
            raise _Fault(f"configures {method}, but auth does not offer it", f".{method}")
    if "tls" in realm.auth and realm.tls.role is None and not realm.all_principals():
        raise _Fault("admits no certificate: set role or add principals", ".tls")
    peer = realm.transport
    if "transport" in realm.auth and not (
        peer.role or peer.uid_roles or peer.gid_roles or peer.domain_roles
    ):
        raise _Fault("admits no peer: set role, uid_roles, gid_roles or domain_roles",
                     ".transport")


def _check_argo(config: Config) -> None:
    """Keys by name or uuid need XenStore: without it they would silently never match."""
    if config.argo.xenstore:
        return
    keyed = [("access.domain_labels", config.access.domain_labels)]
    keyed += [(f"realms[{i}].transport.domain_roles", r.transport.domain_roles)
              for i, r in enumerate(config.realms)]
    for path, table in keyed:
        for key in table:
            if not key.startswith("domid:"):
                raise _Fault(f"{_show(key)} needs domain names from XenStore, and [argo] "
                             "xenstore = false: use domid: keys or turn xenstore on",
                             f"{path}.{json.dumps(key)}")


def _check_tls_offered(config: Config) -> None:
    if any(listener.tls_ca for listener in config.listeners):
        return
    for index, realm in enumerate(config.realms):
        if "tls" in realm.auth:
            raise _Fault('offers "tls", but no listener has tls_ca', f"realms[{index}].auth")


def _check_access(access: AccessConfig, table: Mapping[str, object]) -> None:
    if "backend" not in table:
        raise _Fault(f"missing; name the backend, one of {_quoted(ACCESS_BACKENDS)}", ".backend")
    if access.backend != "policy-file":
        for key in ("policy", "enforcing"):
            if key in table:
                raise _Fault(f'only the "policy-file" backend has {key}: remove it', f".{key}")
    elif access.policy is None:
        raise _Fault('missing; the "policy-file" backend needs a compiled policy', ".policy")
    if access.backend != "allow-all" and access.contexts is None:
        raise _Fault(
            f"missing; the {_show(access.backend)} backend needs a contexts file", ".contexts"
        )


def _check_federation(config: Config, data: Mapping[str, object]) -> None:
    mode = config.router.mode
    federated = mode == "nameserver" or config.federation is not None
    if federated and not any(x.transport == "rawsocket" for x in config.listeners):
        # proxies speak RawSocket to the name server and to each other
        raise _Fault("federation needs a rawsocket listener (proxies connect over RawSocket)",
                     "listeners")
    if mode == "nameserver":
        if config.federation is not None:
            raise _Fault('only mode = "router" federates; a name server has no [federation]',
                         "federation")
        nameserver = config.nameserver or NameServerConfig()
        if nameserver.publish == "xenstore" and nameserver.advertise is None:
            raise _Fault('missing; publish = "xenstore" writes it', "nameserver.advertise")
        for index, realm in enumerate(config.realms):
            if realm.disclose_caller == "forbid":
                raise _Fault('the name service learns who calls it by disclosure: not "forbid"'
                             ' in a name server', f"realms[{index}].disclose_caller")
        return
    if config.nameserver is not None:
        raise _Fault('only mode = "nameserver" has [nameserver]', "nameserver")
    federation = config.federation
    if federation is None:
        return
    table = data["federation"]
    assert isinstance(table, Mapping)
    if federation.discovery == "static" and federation.nameserver is None:
        raise _Fault('missing; discovery = "static" needs it', "federation.nameserver")
    if federation.discovery == "xenstore" and "nameserver" in table:
        raise _Fault('only discovery = "static" reads it (add discovery = "static")',
                     "federation.nameserver")
    names = [realm.name for realm in config.realms]
    for index, name in enumerate(federation.realms):
        if name not in names:
            raise _Fault(f"{_show(name)} is not one of the [[realms]]",
                         f"federation.realms[{index}]")


def _check_metrics(config: Config) -> None:
    if config.metrics is None:
        return
    for index, listener in enumerate(config.listeners):
        if listener.endpoint == config.metrics.endpoint:
            raise _Fault(f"is also listeners[{index}].endpoint", "metrics.endpoint")
