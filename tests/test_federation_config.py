"""The [nameserver] and [federation] tables and their rules (serouter/config/)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from serouter.config import ConfigError, FederationConfig, NameServerConfig, parse_config

SOURCE = "serouter.toml"
BASE: dict[str, Any] = {
    "realms": [{"name": "realm1"}, {"name": "realm2"}],
    "listeners": [{"transport": "rawsocket", "endpoint": "tcp:9001"}],
}


def config(**tables: Any) -> Any:
    data = copy.deepcopy(BASE)
    data.update(tables)
    return parse_config(data, SOURCE)


def error(**tables: Any) -> str:
    with pytest.raises(ConfigError) as e:
        config(**tables)
    return str(e.value).removeprefix(f"{SOURCE}: ")


def test_federation_defaults() -> None:
    parsed = config(federation={"advertise": "tcp:127.0.0.1:9001"})
    assert parsed.federation == FederationConfig(advertise="tcp:127.0.0.1:9001")
    assert parsed.federation.discovery == "xenstore"
    assert parsed.federation.xenstore_path == "/serouter/nameserver"
    assert parsed.nameserver is None


def test_static_discovery() -> None:
    parsed = config(federation={"discovery": "static", "nameserver": "tcp:host=10.0.0.1:port=9000",
                                "advertise": "tcp:127.0.0.1:9001", "realms": ["realm2"]})
    assert parsed.federation.nameserver == "tcp:host=10.0.0.1:port=9000"
    assert parsed.federation.realms == ("realm2",)


def test_nameserver_mode() -> None:
    parsed = config(router={"mode": "nameserver"},
                    nameserver={"advertise": "tcp:127.0.0.1:9000", "publish": "xenstore"})
    assert parsed.nameserver == NameServerConfig(advertise="tcp:127.0.0.1:9000",
                                                 publish="xenstore")
    assert config(router={"mode": "nameserver"}).nameserver is None  # defaults: publish none


@pytest.mark.parametrize(("tables", "message"), [
    ({"federation": {}}, "federation.advertise: missing; this key is required"),
    ({"federation": {"advertise": "tcp:x:1", "discovery": "static"}},
     'federation.nameserver: missing; discovery = "static" needs it'),
    ({"federation": {"advertise": "tcp:x:1", "nameserver": "tcp:y:2"}},
     'federation.nameserver: only discovery = "static" reads it (add discovery = "static")'),
    ({"federation": {"advertise": "tcp:x:1", "realms": ["realm9"]}},
     'federation.realms[0]: "realm9" is not one of the [[realms]]'),
    ({"federation": {"advertise": "nonsense:x"}},
     "federation.advertise: Twisted refuses \"nonsense:x\" as a client endpoint: ValueError: "
     "Unknown endpoint type: 'nonsense'"),
    ({"federation": {"advertise": "tcp:x:1", "xenstore_path": "/serouter/name.server"}},
     "federation.xenstore_path: must be an absolute XenStore path of [A-Za-z0-9_@-] components"
     ' (a dotted name belongs in a value, not a path), got "/serouter/name.server"'),
    ({"federation": {"advertise": "tcp:x:1", "discovery": "dns"}},
     'federation.discovery: must be one of "xenstore", "static", got "dns"'),
    ({"nameserver": {}}, 'nameserver: only mode = "nameserver" has [nameserver]'),
    ({"router": {"mode": "nameserver"}, "federation": {"advertise": "tcp:x:1"}},
     'federation: only mode = "router" federates; a name server has no [federation]'),
    ({"router": {"mode": "nameserver"}, "nameserver": {"publish": "xenstore"}},
     'nameserver.advertise: missing; publish = "xenstore" writes it'),
    ({"router": {"mode": "nameserver"}, "nameserver": {"publish": "etcd"}},
     'nameserver.publish: must be one of "xenstore", "none", got "etcd"'),
])
def test_refused(tables: dict[str, Any], message: str) -> None:
    assert error(**tables) == message


def test_a_name_server_needs_caller_disclosure() -> None:
    data = copy.deepcopy(BASE)
    data["router"] = {"mode": "nameserver"}
    data["realms"][1]["disclose_caller"] = "forbid"
    with pytest.raises(ConfigError) as e:
        parse_config(data, SOURCE)
    assert "realms[1].disclose_caller" in str(e.value)


def test_federation_needs_a_rawsocket_listener() -> None:
    data = copy.deepcopy(BASE)
    data["listeners"] = [{"transport": "websocket", "endpoint": "tcp:9001"}]
    data["federation"] = {"advertise": "tcp:x:1"}
    with pytest.raises(ConfigError) as e:
        parse_config(data, SOURCE)
    assert str(e.value) == (f"{SOURCE}: listeners: federation needs a rawsocket listener "
                            "(proxies connect over RawSocket)")
