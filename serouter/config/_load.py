"""Reading the configuration: a TOML file (or the embedded default) to a checked ``Config``.

``parse_config`` builds every section and runs the checks across them; the first fault refuses
the whole file as one ``ConfigError``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import fields
from typing import Final

from serouter.config._checks import (
    _check_access,
    _check_argo,
    _check_federation,
    _check_listener,
    _check_metrics,
    _check_realm,
    _check_tls_offered,
)
from serouter.config._model import (
    ACCESS_BACKENDS,
    DEFAULT_SOURCE,
    AccessConfig,
    ArgoConfig,
    Config,
    FederationConfig,
    ListenerConfig,
    MetricsConfig,
    NameServerConfig,
    RealmConfig,
    RouterConfig,
)
from serouter.config._rules import (
    ConfigError,
    _array_at,
    _Fault,
    _optional_at,
    _quoted,
    _refuse_unknown_keys,
    _table_at,
)

_TOP_LEVEL_KEYS: Final = tuple(f.name for f in fields(Config) if f.name != "source")


def parse_config(
    data: Mapping[str, object], source: str, require_access: bool = False
) -> Config:
    """Validate parsed TOML ``data`` from ``source`` into a Config, or raise ConfigError.

    ``require_access``: a configuration file must name its access backend; data without an
    [access] table (the embedded default, tests) gets allow-all.
    """
    try:
        _refuse_unknown_keys(data, _TOP_LEVEL_KEYS)
        config = Config(
            router=_table_at(data, "router", RouterConfig),
            realms=_array_at(data, "realms", RealmConfig, unique="name", check=_check_realm),
            listeners=_array_at(
                data, "listeners", ListenerConfig, unique="endpoint", check=_check_listener
            ),
            source=source,
            access=_access_at(data, require_access),
            nameserver=_optional_at(data, "nameserver", NameServerConfig),
            federation=_optional_at(data, "federation", FederationConfig),
            argo=_table_at(data, "argo", ArgoConfig),
            metrics=_optional_at(data, "metrics", MetricsConfig),
        )
        _check_tls_offered(config)
        _check_argo(config)
        _check_federation(config, data)
        _check_metrics(config)
        return config
    except _Fault as fault:
        raise ConfigError(source, fault.path.lstrip("."), fault.reason) from None


def _access_at(data: Mapping[str, object], required: bool) -> AccessConfig:
    table = data.get("access")
    if table is None and required:
        raise _Fault(
            "missing; a configuration file must name its access backend: [access] backend = "
            f"{_quoted(ACCESS_BACKENDS)} (see docs/selinux.md)",
            "access",
        )
    if table is None:
        return AccessConfig()
    return _table_at(data, "access", AccessConfig, check=_check_access)


def load_config(path: str | None) -> Config:
    """Load and validate the file at ``path``; None loads DEFAULT_CONFIG_TOML."""
    if path is None:
        return parse_config(tomllib.loads(DEFAULT_CONFIG_TOML), DEFAULT_SOURCE)
    try:
        with open(path, "rb") as file:
            text = file.read().decode("utf-8")
    except OSError as error:
        raise ConfigError(path, "", f"cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(path, "", f"not UTF-8 text: {error}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:  # its message carries the line and column
        raise ConfigError(path, "", f"TOML syntax error: {error}") from None
    return parse_config(data, path, require_access=True)


DEFAULT_CONFIG_TOML: Final = """\
# serouter configuration: the built-in default, used when no file is given.
# Copy it as a starting point. Every key is checked at start-up; unknown keys are errors.

[router]
mode = "router"               # or "nameserver" (dom0): see docs/federation.md
log_level = "info"            # debug | info | warn | error | critical
shutdown_timeout = 5.0        # seconds to wait for GOODBYE replies on SIGTERM, (0, 300]

# Who decides every join, register, call, subscribe and publish (docs/selinux.md).
# A configuration file must name its backend:
#   "selinux"      the running kernel's SELinux policy
#   "policy-file"  a compiled binary policy, evaluated offline (reloaded on SIGHUP)
#   "allow-all"    everything is allowed (a warning at every start)
[access]
backend = "allow-all"
# policy = "/etc/selinux/default/policy/policy.33"   # policy-file only
# enforcing = true                          # policy-file only; false: log denials, allow
# contexts = "/etc/serouter/wamp_contexts"  # realm and URI contexts (selinux, policy-file)
# unlabeled = "system_u:object_r:unlabeled_t:s0"   # sessions with no (valid) label
# allow_unknown_classes = false             # start even if the policy lacks wamp_* classes
# [access.uid_labels]                       # Unix peers: uid -> context
# "1001" = "system_u:system_r:svc_a_t:s0"
# [access.domain_labels]                    # Argo peers (docs/argo.md): domain -> context
# "name:guest1" = "system_u:system_r:svc_a_t:s0"   # or "uuid:<vm uuid>", "domid:<id>"

# One [[realms]] table per realm. A name is a WAMP URI: dot-separated components of
# lowercase letters, digits and _ (for example "com.example.app").
[[realms]]
name = "realm1"

# One [[listeners]] table per listening socket. "endpoint" is a Twisted server endpoint string;
# inside a value, ":" and "=" are escaped with a backslash. Some forms:
#   "tcp:8080:interface=127.0.0.1"               IPv4, loopback only
#   'tcp6:8080:interface=\\:\\:1'                   IPv6, loopback only
#   "unix:/run/serouter/wamp.sock:mode=660"      a Unix socket file
#   "unix:@serouter"                             a Linux abstract Unix socket: no file
#                                                permissions, anyone in the network namespace
#                                                may connect
#   "ssl:8443:privateKey=key.pem:certKey=cert.pem"   TLS; the files must exist
#   "argo:port=5555"                             Xen's Argo, from other VMs (docs/argo.md)
[[listeners]]
transport = "websocket"       # "websocket" or "rawsocket"
endpoint = "tcp:8080:interface=127.0.0.1"
path = "/ws"                  # websocket only
serializers = ["json", "msgpack", "cbor"]   # offered in this order of preference
max_message_size = 1048576    # bytes, 512..16777216
handshake_timeout = 10.0      # seconds for the transport handshake and HELLO, (0, 3600]
ping_interval = 30.0          # router-initiated keepalive ping every N seconds (0: off)
ping_timeout = 10.0           # no answer within N seconds after a ping: the peer is dead
# label = "system_u:system_r:wamp_client_t:s0"   # default label of this listener's sessions

[[listeners]]
transport = "rawsocket"
endpoint = "tcp:8081:interface=127.0.0.1"
serializers = ["json", "msgpack", "cbor"]
max_message_size = 1048576
handshake_timeout = 10.0
# ping_interval is off by default here: Autobahn|Python RawSocket clients cannot answer pings
"""
