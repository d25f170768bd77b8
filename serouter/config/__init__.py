"""serouter's configuration: the TOML file, checked whole at load time, as frozen dataclasses.

Everything is checked at load time: once ``load_config`` returns, every value is valid, and a
bad file is refused as a whole by one ``ConfigError`` that names the file, the key path and
what is wrong. Nothing in this package may bind, listen or touch the global reactor: endpoint
strings are checked by letting Twisted parse them against a ``MemoryReactor``.

Adding a key is one line in its dataclass (``_model.py``, ``_auth.py``):
``field(default=..., metadata=_rule(check))``, where ``check`` takes the raw TOML value and
returns the typed one or raises ``_Fault`` (``_rules.py``). Adding a section is a dataclass, a
field of ``Config`` and one line in ``parse_config`` (``_load.py``). Checks across keys and
sections are in ``_checks.py``, endpoint strings in ``_endpoints.py``.
"""

from serouter.config._auth import (
    AUTH_METHODS,
    AnonymousAuthConfig,
    PrincipalConfig,
    PrincipalsFile,
    TlsAuthConfig,
    TransportAuthConfig,
)
from serouter.config._endpoints import split_endpoint
from serouter.config._load import DEFAULT_CONFIG_TOML, load_config, parse_config
from serouter.config._model import (
    ACCESS_BACKENDS,
    DEFAULT_SOURCE,
    LOG_LEVELS,
    SERIALIZERS,
    TRANSPORTS,
    AccessConfig,
    ArgoConfig,
    Config,
    FederationConfig,
    ListenerConfig,
    MetricsConfig,
    NameServerConfig,
    RealmConfig,
    RouterConfig,
    server_endpoint_string,
)
from serouter.config._rules import ConfigError

__all__ = [
    "ACCESS_BACKENDS",
    "AUTH_METHODS",
    "DEFAULT_CONFIG_TOML",
    "DEFAULT_SOURCE",
    "LOG_LEVELS",
    "SERIALIZERS",
    "TRANSPORTS",
    "AccessConfig",
    "AnonymousAuthConfig",
    "ArgoConfig",
    "Config",
    "ConfigError",
    "FederationConfig",
    "ListenerConfig",
    "MetricsConfig",
    "NameServerConfig",
    "PrincipalConfig",
    "PrincipalsFile",
    "RealmConfig",
    "RouterConfig",
    "TlsAuthConfig",
    "TransportAuthConfig",
    "load_config",
    "parse_config",
    "server_endpoint_string",
    "split_endpoint",
]
