"""Tests for serouter.config: every rule of the configuration file, checked at load time."""

from __future__ import annotations

import copy
import datetime
import math
import os
import socket
import tomllib
from collections.abc import Iterator
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet.endpoints import serverFromString
from twisted.internet.pollreactor import PollReactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor

from serouter.config import (
    DEFAULT_CONFIG_TOML,
    DEFAULT_SOURCE,
    Config,
    ConfigError,
    ListenerConfig,
    RealmConfig,
    RouterConfig,
    load_config,
    parse_config,
    server_endpoint_string,
)

SOURCE = "serouter.toml"

# The smallest valid file; listeners[1] is the one the parametrized cases modify.
BASE: dict[str, Any] = {
    "realms": [{"name": "realm1"}],
    "listeners": [
        {"transport": "rawsocket", "endpoint": "tcp:9001"},
        {"transport": "websocket", "endpoint": "tcp:9000"},
    ],
}


def data_with(section: str, key: str, value: object) -> dict[str, Any]:
    """BASE with ``key`` set to ``value`` in [router], realms[0] or listeners[1]."""
    data = copy.deepcopy(BASE)
    if section == "router":
        data.setdefault("router", {})[key] = value
    elif section == "realms":
        data["realms"][0][key] = value
    else:
        data["listeners"][1][key] = value
    return data


def error_of(data: dict[str, Any]) -> str:
    """The message of the ConfigError that parsing ``data`` must raise."""
    with pytest.raises(ConfigError) as caught:
        parse_config(data, SOURCE)
    return str(caught.value)


def memory_listen(*listeners: ListenerConfig) -> MemoryReactor:
    """Listen on each listener's endpoint string with a MemoryReactor that records the calls."""
    reactor = MemoryReactor()  # type: ignore[no-untyped-call]
    for listener in listeners:
        description = server_endpoint_string(listener)
        serverFromString(reactor, description).listen(Factory())  # type: ignore[no-untyped-call]
    return reactor


def unique_abstract_name() -> str:
    return f"serouter-test-{os.getpid()}-{os.urandom(4).hex()}"


# --- defaults and the embedded default ------------------------------------------------------


def test_defaults_filled_in() -> None:
    """A file with only the required keys gets every documented default."""
    config = parse_config(copy.deepcopy(BASE), SOURCE)
    assert config.router == RouterConfig(mode="router", log_level="info", shutdown_timeout=5.0)
    assert config.realms == (RealmConfig(name="realm1"),)
    assert config.listeners[1] == ListenerConfig(
        transport="websocket",
        endpoint="tcp:9000",
        path="/ws",
        serializers=("json", "msgpack", "cbor"),
        max_message_size=1048576,
        handshake_timeout=10.0,
    )
    assert config.source == SOURCE


def test_explicit_values_kept() -> None:
    """Explicit values are kept, serializer order included, and integer seconds become floats."""
    data = copy.deepcopy(BASE)
    data["router"] = {"log_level": "debug", "shutdown_timeout": 300}
    data["listeners"][1].update(
        path="/wamp",
        serializers=["cbor", "json"],
        max_message_size=16777216,
        handshake_timeout=3600,
    )
    data["listeners"][0].update(max_message_size=512, handshake_timeout=0.001)
    config = parse_config(data, SOURCE)
    assert config.router.shutdown_timeout == 300.0
    assert isinstance(config.router.shutdown_timeout, float)
    assert config.listeners[1].serializers == ("cbor", "json")
    assert config.listeners[1].path == "/wamp"
    assert config.listeners[1].max_message_size == 16777216
    assert isinstance(config.listeners[1].handshake_timeout, float)
    assert config.listeners[0].max_message_size == 512


def test_embedded_default_equals_documented_values() -> None:
    """The embedded default is realm1, a websocket and a rawsocket listener on loopback."""
    assert load_config(None) == Config(
        router=RouterConfig(),
        realms=(RealmConfig(name="realm1"),),
        listeners=(
            ListenerConfig(
                transport="websocket", endpoint="tcp:8080:interface=127.0.0.1", ping_interval=30.0
            ),
            ListenerConfig(transport="rawsocket", endpoint="tcp:8081:interface=127.0.0.1"),
        ),
        source="<embedded default>",
    )
    assert DEFAULT_SOURCE == "<embedded default>"


def test_embedded_default_copied_to_a_file_loads(tmp_path: Path) -> None:
    """DEFAULT_CONFIG_TOML saved as a file loads to the same configuration."""
    path = tmp_path / "serouter.toml"
    path.write_text(DEFAULT_CONFIG_TOML)
    config = load_config(str(path))
    assert config.source == str(path)
    assert (config.router, config.realms, config.listeners) == (
        load_config(None).router,
        load_config(None).realms,
        load_config(None).listeners,
    )


def test_embedded_default_is_commented() -> None:
    """The embedded default explains its keys, so it is useful as a starting file."""
    comments = [line for line in DEFAULT_CONFIG_TOML.splitlines() if "#" in line]
    assert len(comments) >= 10
    assert "unix:@serouter" in DEFAULT_CONFIG_TOML


def test_every_key_declares_a_rule() -> None:
    """Every field of a section dataclass carries a rule, so a new key cannot skip validation."""
    for cls in (RouterConfig, RealmConfig, ListenerConfig):
        for spec in fields(cls):
            assert "serouter.config.rule" in spec.metadata, (cls.__name__, spec.name)
    required = [f.name for f in fields(ListenerConfig) if f.default is MISSING]
    assert required == ["transport", "endpoint"]


def test_config_error_carries_its_parts() -> None:
    """ConfigError keeps the source, key path and reason apart for programs to use."""
    with pytest.raises(ConfigError) as caught:
        parse_config(data_with("router", "log_level", "loud"), SOURCE)
    assert caught.value.source == SOURCE
    assert caught.value.path == "router.log_level"
    assert caught.value.reason.startswith("must be one of")


def test_error_in_last_listener_refuses_the_whole_file() -> None:
    """A fault anywhere refuses the file: nothing is returned half-loaded."""
    data = copy.deepcopy(BASE)
    data["listeners"].append({"transport": "websocket", "endpoint": "tcp:9002", "path": "x"})
    assert error_of(data).startswith("serouter.toml: listeners[2].path: ")


# --- bad values: each names its exact key path ----------------------------------------------

SECONDS_300 = "must be a number of seconds in (0, 300], got "
SECONDS_3600 = "must be a number of seconds in (0, 3600], got "
SIZE = "must be an integer in 512..16777216, got "
LEVELS = 'must be one of "debug", "info", "warn", "error", "critical", got '
URI = (
    'must be a WAMP URI: dot-separated components of 0-9, a-z and _ (e.g. "com.example.app"), got '
)
URL_PATH = 'must be a URL path starting with "/" (no spaces, "?" or "#"), got '
NAMES = 'must be one of "json", "msgpack", "cbor", got '
NAME_LIST = 'must be a non-empty array of names from "json", "msgpack", "cbor", got '

# (section, key, bad value, the whole message after "serouter.toml: ")
BAD_VALUES = [
    # [router]
    ("router", "mode", "bridge", 'router.mode: must be "router" or "nameserver", got "bridge"'),
    ("router", "mode", "", 'router.mode: must be "router" or "nameserver", got ""'),
    ("router", "log_level", "loud", f'router.log_level: {LEVELS}"loud"'),
    ("router", "log_level", "INFO", f'router.log_level: {LEVELS}"INFO"'),
    ("router", "log_level", 1, f"router.log_level: {LEVELS}1"),
    ("router", "shutdown_timeout", 0, f"router.shutdown_timeout: {SECONDS_300}0"),
    ("router", "shutdown_timeout", 300.5, f"router.shutdown_timeout: {SECONDS_300}300.5"),
    ("router", "shutdown_timeout", -1, f"router.shutdown_timeout: {SECONDS_300}-1"),
    ("router", "shutdown_timeout", "5", f'router.shutdown_timeout: {SECONDS_300}"5"'),
    ("router", "shutdown_timeout", True, f"router.shutdown_timeout: {SECONDS_300}true"),
    ("router", "shutdown_timeout", math.nan, f"router.shutdown_timeout: {SECONDS_300}nan"),
    ("router", "shutdown_timeout", math.inf, f"router.shutdown_timeout: {SECONDS_300}inf"),
    # [[realms]]
    ("realms", "name", "Realm1", f'realms[0].name: {URI}"Realm1"'),
    ("realms", "name", "a..b", f'realms[0].name: {URI}"a..b"'),
    ("realms", "name", ".a", f'realms[0].name: {URI}".a"'),
    ("realms", "name", "a.", f'realms[0].name: {URI}"a."'),
    ("realms", "name", "a-b", f'realms[0].name: {URI}"a-b"'),
    ("realms", "name", "realm1\n", f'realms[0].name: {URI}"realm1\\n"'),
    ("realms", "name", "", f'realms[0].name: {URI}""'),
    ("realms", "name", 5, f"realms[0].name: {URI}5"),
    # [[listeners]]
    (
        "listeners",
        "transport",
        "http",
        'listeners[1].transport: must be one of "websocket", "rawsocket", got "http"',
    ),
    ("listeners", "endpoint", "", 'listeners[1].endpoint: must be a non-empty string, got ""'),
    ("listeners", "endpoint", 8080, "listeners[1].endpoint: must be a non-empty string, got 8080"),
    ("listeners", "path", "ws", f'listeners[1].path: {URL_PATH}"ws"'),
    ("listeners", "path", "", 'listeners[1].path: must be a non-empty string, got ""'),
    ("listeners", "path", "/a b", f'listeners[1].path: {URL_PATH}"/a b"'),
    ("listeners", "path", "/ws?x=1", f'listeners[1].path: {URL_PATH}"/ws?x=1"'),
    ("listeners", "path", "/ws#top", f'listeners[1].path: {URL_PATH}"/ws#top"'),
    ("listeners", "serializers", [], f"listeners[1].serializers: {NAME_LIST}an empty array"),
    ("listeners", "serializers", "json", f'listeners[1].serializers: {NAME_LIST}"json"'),
    ("listeners", "serializers", ["json", "xml"], f'listeners[1].serializers[1]: {NAMES}"xml"'),
    ("listeners", "serializers", [1], f"listeners[1].serializers[0]: {NAMES}1"),
    (
        "listeners",
        "serializers",
        ["cbor", "json", "cbor"],
        'listeners[1].serializers[2]: "cbor" is listed twice',
    ),
    ("listeners", "max_message_size", "big", f'listeners[1].max_message_size: {SIZE}"big"'),
    ("listeners", "max_message_size", 511, f"listeners[1].max_message_size: {SIZE}511"),
    ("listeners", "max_message_size", 16777217, f"listeners[1].max_message_size: {SIZE}16777217"),
    ("listeners", "max_message_size", True, f"listeners[1].max_message_size: {SIZE}true"),
    ("listeners", "max_message_size", 1024.0, f"listeners[1].max_message_size: {SIZE}1024.0"),
    ("listeners", "handshake_timeout", 0, f"listeners[1].handshake_timeout: {SECONDS_3600}0"),
    ("listeners", "handshake_timeout", 3601, f"listeners[1].handshake_timeout: {SECONDS_3600}3601"),
    (
        "listeners",
        "handshake_timeout",
        False,
        f"listeners[1].handshake_timeout: {SECONDS_3600}false",
    ),
    (
        "listeners",
        "handshake_timeout",
        [1],
        f"listeners[1].handshake_timeout: {SECONDS_3600}an array",
    ),
    (
        "listeners",
        "handshake_timeout",
        {"s": 1},
        f"listeners[1].handshake_timeout: {SECONDS_3600}a table",
    ),
    (
        "listeners",
        "handshake_timeout",
        datetime.time(1, 2),
        f"listeners[1].handshake_timeout: {SECONDS_3600}a time",
    ),
]


@pytest.mark.parametrize(("section", "key", "value", "expected"), BAD_VALUES)
def test_bad_value_names_key_path(section: str, key: str, value: object, expected: str) -> None:
    """Each bad value is refused with the file, the exact key path and what is wrong."""
    assert error_of(data_with(section, key, value)) == f"{SOURCE}: {expected}"


def test_message_from_the_brief() -> None:
    """A non-integer size gives exactly the message promised in the design."""
    assert error_of(data_with("listeners", "max_message_size", "big")) == (
        "serouter.toml: listeners[1].max_message_size: must be an integer in 512..16777216, "
        'got "big"'
    )


def test_nameserver_mode_accepted() -> None:
    """The name-server mode is a mode (its own checks are in tests/test_federation_config.py)."""
    config = parse_config(data_with("router", "mode", "nameserver"), SOURCE)
    assert config.router.mode == "nameserver"


@pytest.mark.parametrize("name", ["realm1", "com.example.app", "a", "_x.0_9", "wamp"])
def test_good_realm_names(name: str) -> None:
    """Strict-form WAMP URIs are accepted as realm names."""
    config = parse_config(data_with("realms", "name", name), SOURCE)
    assert config.realms[0].name == name


@pytest.mark.parametrize("level", ["debug", "info", "warn", "error", "critical"])
def test_every_log_level(level: str) -> None:
    """Each documented log level is accepted."""
    assert parse_config(data_with("router", "log_level", level), SOURCE).router.log_level == level


@pytest.mark.parametrize(
    ("section", "key"),
    [("realms", "name"), ("listeners", "transport"), ("listeners", "endpoint")],
)
def test_missing_required_key(section: str, key: str) -> None:
    """A missing required key is named with its index."""
    data = copy.deepcopy(BASE)
    index = 0 if section == "realms" else 1
    del data[section][index][key]
    assert error_of(data) == f"{SOURCE}: {section}[{index}].{key}: missing; this key is required"


def test_rawsocket_with_path_refused() -> None:
    """A path on a rawsocket listener is an error, as RawSocket has no URL."""
    data = copy.deepcopy(BASE)
    data["listeners"][0]["path"] = "/ws"
    assert error_of(data) == (
        f"{SOURCE}: listeners[0].path: only websocket listeners have a path: remove it"
    )


# --- unknown keys, shapes, duplicates --------------------------------------------------------


def test_unknown_top_level_key() -> None:
    """An unknown top-level key is named, with a guess and the allowed keys."""
    data = copy.deepcopy(BASE)
    data["realm"] = [{"name": "x"}]
    assert error_of(data) == (
        f'{SOURCE}: realm: unknown key (did you mean "realms"?); '
        'allowed keys: "router", "realms", "listeners", "access", "nameserver", "federation", '
        '"argo", "metrics"'
    )


def test_unknown_router_key() -> None:
    """An unknown key in [router] is named with the allowed ones."""
    assert error_of(data_with("router", "mdoe", "router")) == (
        f'{SOURCE}: router.mdoe: unknown key (did you mean "mode"?); '
        'allowed keys: "mode", "log_level", "shutdown_timeout"'
    )


def test_unknown_realm_key() -> None:
    """An unknown key in a [[realms]] table is named with its index."""
    assert error_of(data_with("realms", "authentication", "x")).startswith(
        f'{SOURCE}: realms[0].authentication: unknown key; allowed keys: "name", '
    )


def test_unknown_listener_key() -> None:
    """An unknown key in a [[listeners]] table is named with its index and a guess."""
    message = error_of(data_with("listeners", "max_msg_size", 1024))
    assert message.startswith(
        f'{SOURCE}: listeners[1].max_msg_size: unknown key (did you mean "max_message_size"?); '
        'allowed keys: "transport", "endpoint", "path", "serializers", '
    )


@pytest.mark.parametrize("key", ["realms", "listeners"])
def test_empty_array_refused(key: str) -> None:
    """An empty realms or listeners array is refused."""
    data = copy.deepcopy(BASE)
    data[key] = []
    assert error_of(data) == (
        f"{SOURCE}: {key}: must be a non-empty array of tables ([[{key}]]), got an empty array"
    )


@pytest.mark.parametrize("key", ["realms", "listeners"])
def test_missing_array_refused(key: str) -> None:
    """A file without realms or without listeners is refused."""
    data = copy.deepcopy(BASE)
    del data[key]
    assert error_of(data) == (f"{SOURCE}: {key}: missing; at least one [[{key}]] table is required")


def test_single_table_instead_of_array() -> None:
    """[realms] written instead of [[realms]] is refused with a hint."""
    data = tomllib.loads('[realms]\nname = "realm1"\n')
    data["listeners"] = copy.deepcopy(BASE["listeners"])
    assert error_of(data) == (
        f"{SOURCE}: realms: must be a non-empty array of tables ([[realms]]), got a table"
    )


def test_array_entry_not_a_table() -> None:
    """An array entry that is not a table is named by its index."""
    data = copy.deepcopy(BASE)
    data["realms"] = ["realm1"]
    assert error_of(data) == f'{SOURCE}: realms[0]: must be a table, got "realm1"'


def test_router_not_a_table() -> None:
    """A [router] that is not a table is refused."""
    data = copy.deepcopy(BASE)
    data["router"] = 3
    assert error_of(data) == f"{SOURCE}: router: must be a table, got 3"


def test_duplicate_realm_names() -> None:
    """Two realms with one name are refused, naming both."""
    data = copy.deepcopy(BASE)
    data["realms"] = [{"name": "a"}, {"name": "b"}, {"name": "a"}]
    assert error_of(data) == f'{SOURCE}: realms[2].name: "a" is already used by realms[0]'


def test_duplicate_endpoints() -> None:
    """Two listeners on one endpoint string are refused, naming both."""
    data = copy.deepcopy(BASE)
    data["listeners"][1]["endpoint"] = "tcp:9001"
    assert error_of(data) == (
        f'{SOURCE}: listeners[1].endpoint: "tcp:9001" is already used by listeners[0]'
    )


# --- files ---------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    """A missing file is refused naming the file."""
    path = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: cannot read: No such file or directory"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    """A directory given as the file is refused naming it."""
    with pytest.raises(ConfigError) as caught:
        load_config(str(tmp_path))
    assert str(caught.value) == f"{tmp_path}: cannot read: Is a directory"


def test_not_utf8(tmp_path: Path) -> None:
    """A file that is not UTF-8 is refused naming it."""
    path = tmp_path / "serouter.toml"
    path.write_bytes(b'[router]\nmode = "\xff"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert str(caught.value).startswith(f"{path}: not UTF-8 text: ")


def test_toml_syntax_error_names_line(tmp_path: Path) -> None:
    """A TOML syntax error is refused naming the file and the line."""
    path = tmp_path / "serouter.toml"
    path.write_text('[router]\nmode = "router"\nlog_level = info\n')
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: TOML syntax error: ")
    assert "line 3" in message


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    """Validation errors from a file start with that file's path."""
    path = tmp_path / "serouter.toml"
    path.write_text(DEFAULT_CONFIG_TOML.replace('log_level = "info"', 'log_level = "loud"'))
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert str(caught.value).startswith(f"{path}: router.log_level: must be one of ")


# --- endpoints -----------------------------------------------------------------------------


def endpoint_error(endpoint: str) -> str:
    return error_of(data_with("listeners", "endpoint", endpoint))


@pytest.mark.parametrize(
    "endpoint",
    [
        "tcp:8080",
        "tcp:8080:interface=127.0.0.1",
        "tcp:port=0:backlog=10",
        r"tcp6:8080:interface=\:\:1",
        "unix:/run/serouter/wamp.sock:mode=660",
        "unix:/tmp/serouter.sock",
        "unix:@serouter",
        "unix:@serouter:backlog=10",
    ],
)
def test_good_endpoints(endpoint: str) -> None:
    """Endpoint strings of each kind Twisted knows are accepted and kept as written."""
    config = parse_config(data_with("listeners", "endpoint", endpoint), SOURCE)
    assert config.listeners[1].endpoint == endpoint


def test_tcp6_from_toml_text() -> None:
    """The tcp6 form with escaped colons, written in TOML, reaches Twisted as IPv6 ::1."""
    text = """
        [[realms]]
        name = "realm1"
        [[listeners]]
        transport = "websocket"
        endpoint = "tcp6:8080:interface=\\\\:\\\\:1"
        [[listeners]]
        transport = "rawsocket"
        endpoint = 'tcp6:8081:interface=\\:\\:1'
    """
    config = parse_config(tomllib.loads(text), SOURCE)
    reactor = memory_listen(*config.listeners)
    assert [(port, interface) for port, _, _, interface in reactor.tcpServers] == [
        (8080, "::1"),
        (8081, "::1"),
    ]


def test_unix_mode_reaches_twisted() -> None:
    """A Unix socket file endpoint keeps its path and octal mode."""
    listener = ListenerConfig(transport="rawsocket", endpoint="unix:/run/serouter/w.sock:mode=660")
    assert server_endpoint_string(listener) == listener.endpoint
    reactor = memory_listen(listener)
    address, _, _, mode, _ = reactor.unixServers[0]
    assert (address, mode) == ("/run/serouter/w.sock", 0o660)


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("tcp:nope", 'Twisted refuses "tcp:nope": ValueError: invalid literal for int()'),
        ("tcp:8080:bogus=1", 'Twisted refuses "tcp:8080:bogus=1": TypeError: '),
        ("tcp6:8080:interface=::1", 'Twisted refuses "tcp6:8080:interface=::1": TypeError: '),
        ("quic:8080", "Twisted refuses \"quic:8080\": ValueError: Unknown endpoint type: 'quic'"),
        ("unix:/x.sock:mode=999", 'Twisted refuses "unix:/x.sock:mode=999": ValueError: '),
        ("tcp:70000", "port 70000 is out of range 0..65535"),
        ("TCP6:70000", "port 70000 is out of range 0..65535"),
        ("tcp:port=-1", "port -1 is out of range 0..65535"),
        ("tcp:8080\\", "ends in a lone backslash"),
        ("unix:", "the Unix socket path is empty"),
        ("unix:/" + "x" * 107, "the Unix socket path is longer than 107 bytes"),
        ("unix:@", "the abstract Unix socket name after @ is empty"),
        ("unix:@" + "x" * 108, "the abstract Unix socket name is longer than 107 bytes"),
        ("unix:@x:mode=600", "an abstract Unix socket has no file permissions"),
        ("unix:@x:lockfile=1", "an abstract Unix socket cannot have a lock file"),
        ("unix:@x:600", "write an abstract socket as unix:@name, options as key=value"),
        ("unix:\0x", "must not contain control characters"),
        (
            "ssl:8443:privateKey=/nonexistent/key.pem:certKey=/nonexistent/cert.pem",
            'Twisted refuses "ssl:8443:privateKey=/nonexistent/key.pem:certKey=/nonexistent/'
            'cert.pem": FileNotFoundError: [Errno 2] No such file or directory',
        ),
    ],
)
def test_bad_endpoints(endpoint: str, expected: str) -> None:
    """A bad endpoint is refused naming listeners[i].endpoint and the cause."""
    assert endpoint_error(endpoint).startswith(f"{SOURCE}: listeners[1].endpoint: {expected}")


def test_endpoints_are_not_bound_while_loading() -> None:
    """Validation only parses: a port that is in use still loads."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        endpoint = f"tcp:{port}:interface=127.0.0.1"
        config = parse_config(data_with("listeners", "endpoint", endpoint), SOURCE)
    assert config.listeners[1].endpoint == endpoint


def write_self_signed(directory: Path) -> tuple[Path, Path]:
    """A fresh self-signed certificate for localhost and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / "key.pem", directory / "cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def test_ssl_endpoint_with_generated_certificate(tmp_path: Path) -> None:
    """An ssl endpoint with an existing key and certificate is accepted and reaches Twisted."""
    key_path, cert_path = write_self_signed(tmp_path)
    endpoint = f"ssl:8443:privateKey={key_path}:certKey={cert_path}"
    config = parse_config(data_with("listeners", "endpoint", endpoint), SOURCE)
    reactor = memory_listen(config.listeners[1])
    port, _, _, _, interface = reactor.sslServers[0]
    assert (port, interface) == (8443, "")


def test_ssl_endpoint_with_mismatched_key(tmp_path: Path) -> None:
    """An ssl endpoint whose key does not belong to its certificate is refused."""
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    key_path, _ = write_self_signed(tmp_path / "one")
    _, other_cert = write_self_signed(tmp_path / "two")
    message = endpoint_error(f"ssl:8443:privateKey={key_path}:certKey={other_cert}")
    assert message.endswith("VerifyError: Certificate public and private keys do not match.")


def test_ssl_endpoint_with_garbage_certificate(tmp_path: Path) -> None:
    """An ssl endpoint whose certificate file is not a certificate is refused."""
    key_path, cert_path = write_self_signed(tmp_path)
    cert_path.write_text("not a certificate\n")
    message = endpoint_error(f"ssl:8443:privateKey={key_path}:certKey={cert_path}")
    assert message.startswith(f'{SOURCE}: listeners[1].endpoint: Twisted refuses "ssl:8443:')


# --- Linux abstract Unix sockets -----------------------------------------------------------


def abstract_listener(name: str, options: str = "") -> ListenerConfig:
    return parse_config(
        data_with("listeners", "endpoint", f"unix:@{name}{options}"), SOURCE
    ).listeners[1]


def test_abstract_endpoint_string() -> None:
    """unix:@name becomes Twisted's NUL-prefixed address without a lock file."""
    assert server_endpoint_string(abstract_listener("serouter")) == "unix:\0serouter:lockfile=0"
    assert server_endpoint_string(abstract_listener("a\\:b", ":backlog=7")) == (
        "unix:\0a\\:b:backlog=7:lockfile=0"
    )


def test_non_abstract_endpoint_string_unchanged() -> None:
    """Every other endpoint string is handed to Twisted exactly as written."""
    for endpoint in ("tcp:8080:interface=127.0.0.1", r"tcp6:1:interface=\:\:1", "unix:/a@b"):
        listener = ListenerConfig(transport="rawsocket", endpoint=endpoint)
        assert server_endpoint_string(listener) == endpoint


def test_server_endpoint_string_refuses_unchecked_listener() -> None:
    """A ListenerConfig built by hand with a bad abstract name raises ValueError."""
    with pytest.raises(ValueError, match="abstract Unix socket name after @ is empty"):
        server_endpoint_string(ListenerConfig(transport="rawsocket", endpoint="unix:@"))


def test_uppercase_unix_is_left_to_twisted() -> None:
    """Only the lower-case unix type is translated, as Twisted only knows that spelling."""
    message = endpoint_error("UNIX:@serouter")
    assert message.startswith(f'{SOURCE}: listeners[1].endpoint: Twisted refuses "UNIX:@serouter"')


def test_abstract_address_reaches_twisted_and_kernel() -> None:
    """Twisted gets "\\0name" with no pid file, and the kernel binds exactly that address."""
    name = unique_abstract_name()
    reactor = memory_listen(abstract_listener(name))
    address, _, backlog, _, want_pid = reactor.unixServers[0]
    assert (address, backlog, want_pid) == ("\0" + name, 50, False)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(address)
        # Python reports abstract addresses as bytes
        assert sock.getsockname() == b"\0" + name.encode()
        assert not os.path.exists(name)  # nothing was created in the filesystem


def test_longest_names_accepted_bind() -> None:
    """The longest abstract name and path the config accepts are ones the kernel binds."""
    name = unique_abstract_name()
    name += "x" * (107 - len(name))
    listener = abstract_listener(name)
    reactor = memory_listen(listener)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(reactor.unixServers[0][0])


@pytest.fixture
def private_reactor() -> Iterator[PollReactor]:
    """A real reactor that is never run nor installed; its waker is closed afterwards."""
    reactor = PollReactor()  # type: ignore[no-untyped-call]
    yield reactor
    reactor.removeAll()  # type: ignore[no-untyped-call]
    reactor.waker.connectionLost(None)


def test_twisted_really_listens_on_abstract_socket(private_reactor: PollReactor) -> None:
    """A real Twisted listen on the produced string binds the abstract socket and accepts."""
    name = unique_abstract_name()
    description = server_endpoint_string(abstract_listener(name))
    endpoint = serverFromString(private_reactor, description)  # type: ignore[no-untyped-call]
    results: list[Any] = []
    endpoint.listen(Factory.forProtocol(Protocol)).addBoth(results.append)
    port = results[0]
    try:
        assert port.getHost().name == b"\0" + name.encode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect("\0" + name)  # the listen backlog takes it; no reactor run needed
    finally:
        stopped: list[Any] = []
        port.stopListening().addBoth(stopped.append)
        private_reactor.runUntilCurrent()  # the close is a callLater(0); nothing else runs it
        assert stopped == [None]


def test_realm_routing_options() -> None:
    """Disclosure policies and history topics are read and checked per realm."""
    realm = parse_config(
        {"realms": [{"name": "r", "disclose_caller": "force", "history": ["a.b", "c"],
                     "history_limit": 5}],
         "listeners": [{"transport": "rawsocket", "endpoint": "tcp:0"}]},
        SOURCE,
    ).realms[0]
    assert (realm.disclose_caller, realm.disclose_publisher) == ("force", "allow")
    assert (realm.history, realm.history_limit) == (("a.b", "c"), 5)
    assert "realms[0].history: must be a list of topic URIs" in error_of(
        data_with("realms", "history", ["a b"]))
    assert "realms[0].disclose_publisher: must be one of" in error_of(
        data_with("realms", "disclose_publisher", "sometimes"))
