"""Load serouter's TOML configuration into frozen, validated dataclasses.

Everything is checked here, at load time: once ``load_config`` returns, every value is valid, and
a bad file is refused as a whole by one ``ConfigError`` that names the file, the key path and
what is wrong. This module must never bind, listen or touch the global reactor: endpoint strings
are checked by letting Twisted parse them against a ``MemoryReactor``.

Adding a key is one line in its dataclass: ``field(default=..., metadata=_rule(check))``, where
``check`` takes the raw TOML value and returns the typed one or raises ``_Fault``. Adding a
section is a dataclass, a field of ``Config`` and one line in ``parse_config``.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from difflib import get_close_matches
from typing import TYPE_CHECKING, Final, TypeVar

from cryptography import x509
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.testing import MemoryReactor

from serouter.argo import domain_key, register_endpoint_plugins

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

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

DEFAULT_SOURCE: Final = "<embedded default>"
LOG_LEVELS: Final = ("debug", "info", "warn", "error", "critical")
TRANSPORTS: Final = ("websocket", "rawsocket")
SERIALIZERS: Final = ("json", "msgpack", "cbor")
ACCESS_BACKENDS: Final = ("selinux", "policy-file", "allow-all")

# A WAMP URI in the spec's strict form. fullmatch, because "$" would also accept a trailing "\n".
_STRICT_URI: Final = re.compile(r"([0-9a-z_]+\.)*[0-9a-z_]+")
# sockaddr_un.sun_path is 108 bytes: a path needs its terminating NUL, an abstract name its
# leading one, so both get 107 bytes of their own (checked against the kernel in the tests).
_UNIX_ADDRESS_MAX: Final = 107
_PORT_TYPES: Final = ("tcp", "ssl")
_RULE: Final = "serouter.config.rule"


class ConfigError(Exception):
    """The configuration is refused; the message says where (file, key path) and why."""

    def __init__(self, source: str, path: str, reason: str) -> None:
        where = f"{source}: {path}" if path else source
        super().__init__(f"{where}: {reason}")
        self.source = source
        self.path = path
        self.reason = reason


class _Fault(Exception):
    """One wrong value; ``path`` grows as the fault travels up through the tables holding it."""

    def __init__(self, reason: str, path: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = path

    def under(self, prefix: str) -> _Fault:
        return _Fault(self.reason, prefix + self.path)


Rule = Callable[[object], object]


def _rule(check: Rule) -> dict[str, Rule]:
    """Field metadata declaring how the TOML value of that field is checked and converted."""
    return {_RULE: check}


# ---------------------------------------------------------------------------------------------
# Rules for single values: each returns the typed value or raises _Fault (path relative to it).


def _show(value: object) -> str:
    """Render a TOML value the way the user wrote it, for "got ..." in messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "an array" if value else "an empty array"
    return f"a {type(value).__name__}"  # TOML dates and times


def _quoted(options: tuple[str, ...]) -> str:
    return ", ".join(json.dumps(option) for option in options)


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise _Fault(f"must be a non-empty string, got {_show(value)}")
    return value


def _choice(*options: str) -> Rule:
    def check(value: object) -> str:
        if value not in options:
            raise _Fault(f"must be one of {_quoted(options)}, got {_show(value)}")
        return _text(value)

    return check


def _router_mode(value: object) -> str:
    if value not in ("router", "nameserver"):
        raise _Fault(f'must be "router" or "nameserver", got {_show(value)}')
    return str(value)


def _integer(low: int, high: int) -> Rule:
    def check(value: object) -> int:
        # bool is an int subclass, but `true` is never meant as a size
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _Fault(f"must be an integer in {low}..{high}, got {_show(value)}")
        return value

    return check


def _seconds(most: float) -> Rule:
    def check(value: object) -> float:
        # the range test also refuses TOML's nan and inf
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= most:
            raise _Fault(f"must be a number of seconds in (0, {most:g}], got {_show(value)}")
        return float(value)

    return check


def _seconds_or_off(most: float) -> Rule:
    positive = _seconds(most)

    def check(value: object) -> float:
        if value == 0 and not isinstance(value, bool):
            return 0.0
        try:
            return float(positive(value))  # type: ignore[arg-type]  # a float by _seconds
        except _Fault:
            raise _Fault(
                f"must be 0 (off) or a number of seconds in (0, {most:g}], got {_show(value)}"
            ) from None

    return check


def _realm_uri(value: object) -> str:
    if not isinstance(value, str) or not _STRICT_URI.fullmatch(value):
        raise _Fault(
            "must be a WAMP URI: dot-separated components of 0-9, a-z and _ "
            f'(e.g. "com.example.app"), got {_show(value)}'
        )
    return value


def _url_path(value: object) -> str:
    text = _text(value)
    # the path is compared with the request target, which can never hold these
    if not text.startswith("/") or any(c.isspace() or c in "?#" for c in text):
        raise _Fault(
            f'must be a URL path starting with "/" (no spaces, "?" or "#"), got {_show(value)}'
        )
    return text


def _serializers(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise _Fault(
            f"must be a non-empty array of names from {_quoted(SERIALIZERS)}, got {_show(value)}"
        )
    check = _choice(*SERIALIZERS)
    for index, name in enumerate(value):
        try:
            check(name)
        except _Fault as fault:
            raise fault.under(f"[{index}]") from None
        if name in value[:index]:
            raise _Fault(f"{_show(name)} is listed twice", f"[{index}]")
    return tuple(value)


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise _Fault(f"must be true or false, got {_show(value)}")
    return value


def _readable_file(value: object) -> str:
    """A path that names a readable file now (the daemon reads it at start)."""
    path = _text(value)
    if not os.path.isfile(path):
        raise _Fault(f"{_show(path)} does not exist or is not a file")
    if not os.access(path, os.R_OK):
        raise _Fault(f"{_show(path)} is not readable")
    return path


def _context(value: object) -> str:
    """An SELinux context's shape, user:role:type[:range]; the loaded policy checks the rest."""
    text = _text(value)
    parts = text.split(":", 3)
    if len(parts) < 3 or not all(parts) or not text.isprintable() or " " in text:
        raise _Fault(f"must be an SELinux context user:role:type[:range], got {_show(value)}")
    return text


def _label_map(key_rule: Callable[[str], object]) -> Rule:
    """A table of name -> context ([access.uid_labels] and the like)."""

    def check(value: object) -> dict[object, str]:
        if not isinstance(value, Mapping):
            raise _Fault(f"must be a table of name = context, got {_show(value)}")
        labels: dict[object, str] = {}
        for key, context in value.items():
            try:
                labels[key_rule(key)] = _context(context)
            except _Fault as fault:
                raise fault.under(f".{json.dumps(key)}") from None
        return labels

    return check


def _uid(key: str) -> int:
    if not key.isdigit() or int(key) >= 2**32 - 1:  # (uid_t)-1 is "no uid"
        raise _Fault(f"must be a uid, a decimal number below 4294967295, got {_show(key)}")
    return int(key)


def _name(key: str) -> str:
    return _text(key)


def _domain(key: str) -> str:
    """A key naming Argo peer domains: "uuid:<uuid>", "name:<name>" or "domid:<id>"."""
    try:
        return domain_key(key)
    except ValueError as error:
        raise _Fault(str(error)) from None


# ---------------------------------------------------------------------------------------------
# Endpoint strings. Twisted parses them; we only add what its parser cannot know: Linux abstract
# Unix sockets written as "unix:@name", and limits that would otherwise fail only at bind time.


def _split_endpoint(endpoint: str) -> tuple[list[str], dict[str, str]]:
    """Split as Twisted's ``endpoints._parse`` does: ``:`` ends a field, its first ``=`` names
    it, and a backslash makes the next character literal."""
    args: list[str] = []
    kw: dict[str, str] = {}
    parts = [""]
    chars = iter(endpoint)
    for char in chars:
        if char == "\\":
            escaped = next(chars, None)
            if escaped is None:
                raise _Fault(f"ends in a lone backslash: {_show(endpoint)}")
            parts[-1] += escaped
        elif char == ":":
            _add_part(parts, args, kw)
            parts = [""]
        elif char == "=" and len(parts) == 1:
            parts.append("")
        else:
            parts[-1] += char
    _add_part(parts, args, kw)
    return args, kw


def _add_part(parts: list[str], args: list[str], kw: dict[str, str]) -> None:
    if len(parts) == 1:
        args.append(parts[0])
    else:
        kw[parts[0]] = parts[1]


def _escape(text: str) -> str:
    return re.sub(r"([\\:=])", r"\\\1", text)


def _check_port(args: list[str], kw: dict[str, str]) -> None:
    # Twisted takes any int here and only the bind fails; a non-int it reports itself
    port = args[1] if len(args) > 1 else kw.get("port", "")
    try:
        number = int(port)
    except ValueError:
        return
    if not 0 <= number <= 65535:
        raise _Fault(f"port {number} is out of range 0..65535")


def _check_unix_path(path: str) -> None:
    if not path:
        raise _Fault("the Unix socket path is empty")
    if len(os.fsencode(path)) > _UNIX_ADDRESS_MAX:
        raise _Fault(f"the Unix socket path is longer than {_UNIX_ADDRESS_MAX} bytes")


def _abstract_form(name: str, args: list[str], kw: dict[str, str]) -> str:
    """Twisted's form of ``unix:@name...``: the address "\\0name", and no lock file.

    Twisted binds a NUL-prefixed address in the abstract namespace and skips the chmod, but
    with its default ``lockfile=1`` the listen fails (a symlink named "\\0name.lock").
    """
    if not name:
        raise _Fault("the abstract Unix socket name after @ is empty")
    if len(os.fsencode(name)) > _UNIX_ADDRESS_MAX:
        raise _Fault(f"the abstract Unix socket name is longer than {_UNIX_ADDRESS_MAX} bytes")
    if len(args) > 2 or "address" in kw:
        raise _Fault("write an abstract socket as unix:@name, options as key=value")
    if "mode" in kw:
        # a silent no-op here would let an admin believe access is restricted
        raise _Fault(
            "an abstract Unix socket has no file permissions (any process in the network "
            "namespace may connect): remove mode"
        )
    if kw.get("lockfile", "0") != "0":
        raise _Fault("an abstract Unix socket cannot have a lock file: remove lockfile")
    options = "".join(f":{_escape(k)}={_escape(v)}" for k, v in kw.items() if k != "lockfile")
    return f"unix:{_escape(chr(0) + name)}{options}:lockfile=0"


_SYSTEMD_DOMAINS: Final = ("UNIX", "INET", "INET6")


def _check_systemd(args: list[str], kw: dict[str, str]) -> None:
    """``systemd:domain=UNIX:index=0`` or ``:name=N``: a socket systemd passes (LISTEN_FDS).

    The socket exists only in the daemon systemd started, so here only the form is checked;
    a socket systemd did not pass refuses the start (serouter.service).
    """
    if len(args) > 1 or set(kw) - {"domain", "index", "name"}:
        raise _Fault("a systemd socket is systemd:domain=UNIX|INET|INET6 with index=N (its "
                     "place in LISTEN_FDS) or name=NAME (FileDescriptorName=), nothing else")
    if kw.get("domain") not in _SYSTEMD_DOMAINS:
        raise _Fault(f"systemd: needs domain= one of {_quoted(_SYSTEMD_DOMAINS)}")
    if ("index" in kw) == ("name" in kw):
        raise _Fault("systemd: names its socket by index= or by name=, exactly one of them")
    if "index" in kw and not kw["index"].isdigit():
        raise _Fault(f"systemd: index= must be a number, got {_show(kw['index'])}")
    if "name" in kw and not kw["name"]:
        raise _Fault("systemd: name= is empty")


def _twisted_form(endpoint: str) -> str:
    """The endpoint string to hand Twisted, after the checks its parser does not make."""
    args, kw = _split_endpoint(endpoint)
    # as in Twisted: plugin types (tcp6) match in any case, the built-in ones only in lower case
    if args[0] in _PORT_TYPES or args[0].lower() == "tcp6":
        _check_port(args, kw)
    if args[0] == "systemd":
        _check_systemd(args, kw)
    if args[0] != "unix":
        return endpoint
    address = args[1] if len(args) > 1 else kw.get("address", "")
    if address.startswith("@"):
        return _abstract_form(address[1:], args, kw)
    _check_unix_path(address)
    return endpoint


def _endpoint(value: object) -> str:
    endpoint = _text(value)
    if any(ord(char) < 32 or ord(char) == 127 for char in endpoint):
        raise _Fault(
            "must not contain control characters (write an abstract Unix socket as "
            f"unix:@name), got {_show(value)}"
        )
    description = _twisted_form(endpoint)
    if description.startswith("systemd:"):
        return endpoint  # Twisted's parser would look for the socket, passed only at run time
    register_endpoint_plugins()  # argo: (serouter.argo), also from an editable install
    try:
        # a MemoryReactor: parse (and, for ssl, load the key and certificate) without listening
        serverFromString(MemoryReactor(), description)  # type: ignore[no-untyped-call]
    except Exception as error:  # parsers raise ValueError, TypeError, OSError, IndexError, ...
        raise _Fault(
            f"Twisted refuses {_show(endpoint)}: {type(error).__name__}: {error}"
        ) from None
    return endpoint


# ---------------------------------------------------------------------------------------------
# Authentication: the methods a realm offers, its principals, and each method's settings.
# Secrets (tickets, wampcra secrets) are never shown in a message: "got ..." would print them.

AUTH_METHODS: Final = ("anonymous", "ticket", "wampcra", "cryptosign", "tls", "transport")
_PUBKEY: Final = re.compile(r"[0-9a-fA-F]{64}")


def _auth_methods(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise _Fault(
            f"must be a non-empty array of names from {_quoted(AUTH_METHODS)}, got {_show(value)}"
        )
    check = _choice(*AUTH_METHODS)
    for index, name in enumerate(value):
        try:
            check(name)
        except _Fault as fault:
            raise fault.under(f"[{index}]") from None
        if name in value[:index]:
            raise _Fault(f"{_show(name)} is listed twice", f"[{index}]")
    return tuple(value)


def _secret(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise _Fault("must be a non-empty string (the value is a secret: not shown)")
    return value


def _pubkeys(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _Fault(f"must be an array of Ed25519 public keys, got {_show(value)}")
    for index, key in enumerate(value):
        if not isinstance(key, str) or not _PUBKEY.fullmatch(key):
            raise _Fault(f"must be 64 hex digits (32 bytes), got {_show(key)}", f"[{index}]")
    keys = tuple(key.lower() for key in value)
    if len(set(keys)) != len(keys):
        raise _Fault("lists a key twice")
    return keys


def _dn_patterns(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(dn, str) and dn for dn in value):
        raise _Fault(f"must be an array of distinguished names, got {_show(value)}")
    return tuple(value)


def _id_roles(kind: str) -> Rule:
    """{uid or user name = role} (or gid / group name): names are resolved once, here."""

    def check(value: object) -> dict[int, str]:
        if not isinstance(value, Mapping):
            raise _Fault(f"must be a table of {kind} = role, got {_show(value)}")
        roles: dict[int, str] = {}
        for key, role in value.items():
            try:
                number = _numeric_id(kind, key)
                roles[number] = _text(role)
            except _Fault as fault:
                raise fault.under(f".{key}") from None
        return roles

    return check


def _domain_roles(value: object) -> dict[str, str]:
    """{"uuid:<uuid>" | "name:<name>" | "domid:<id>" = role}: Argo peer domains' roles."""
    if not isinstance(value, Mapping):
        raise _Fault(f"must be a table of domain = role, got {_show(value)}")
    roles: dict[str, str] = {}
    for key, role in value.items():
        try:
            roles[_domain(key)] = _text(role)
        except _Fault as fault:
            raise fault.under(f".{json.dumps(key)}") from None
    return roles


def _numeric_id(kind: str, key: str) -> int:
    if key.isdigit():
        return int(key)
    try:
        if kind == "user":
            return pwd.getpwnam(key).pw_uid
        return grp.getgrnam(key).gr_gid
    except KeyError:
        raise _Fault(f"no {kind} named {_show(key)} (use a number or a known name)") from None


def _pem_certificates(value: object) -> str:
    path = _text(value)
    try:
        with open(path, "rb") as file:
            x509.load_pem_x509_certificates(file.read())
    except OSError as error:
        raise _Fault(f"cannot read {_show(path)}: {error.strerror or error}") from None
    except ValueError as error:
        raise _Fault(f"{_show(path)} holds no PEM certificates: {error}") from None
    return path


def _table(cls: type[_D]) -> Rule:
    return lambda value: _build(cls, value)


@dataclass(frozen=True, slots=True)
class PrincipalConfig:
    """One [realms.principals.<authid>] table: a principal's role and credentials."""

    role: str = field(metadata=_rule(_text))
    ticket: str | None = field(default=None, repr=False, metadata=_rule(_secret))
    # wampcra: the shared secret; with a salt, the key derived from the password (derive_key)
    secret: str | None = field(default=None, repr=False, metadata=_rule(_secret))
    salt: str | None = field(default=None, metadata=_rule(_text))
    iterations: int = field(default=1000, metadata=_rule(_integer(1, 10_000_000)))
    keylen: int = field(default=32, metadata=_rule(_integer(1, 1024)))
    pubkeys: tuple[str, ...] = field(default=(), metadata=_rule(_pubkeys))  # cryptosign


def _principals(value: object) -> dict[str, PrincipalConfig]:
    if not isinstance(value, Mapping):
        raise _Fault(f"must be a table of [principals.<authid>] tables, got {_show(value)}")
    principals: dict[str, PrincipalConfig] = {}
    for authid, table in value.items():
        try:
            principals[authid] = _principal(authid, table)
        except _Fault as fault:
            raise fault.under(f".{authid}") from None
    return principals


def _principal(authid: str, table: object) -> PrincipalConfig:
    if any(ord(char) < 32 or ord(char) == 127 for char in authid):
        raise _Fault("an authid must not contain control characters")
    principal = _build(PrincipalConfig, table)
    assert isinstance(table, Mapping)  # _build checked it
    if "salt" in table and principal.secret is None:
        raise _Fault("a salt needs the derived key in secret", ".secret")
    for key in ("iterations", "keylen"):
        if key in table and principal.salt is None:
            raise _Fault(f"only a salted secret has {key}: add salt or remove it", f".{key}")
    return principal


@dataclass(frozen=True, slots=True)
class PrincipalsFile:
    """principals_file: the path and the principals it holds (read and checked at start)."""

    path: str
    principals: Mapping[str, PrincipalConfig]


def _principals_file(value: object) -> PrincipalsFile:
    path = _text(value)
    try:
        with open(path, "rb") as file:
            text = file.read().decode("utf-8")
        # neither parser quotes the offending text in its message, which may hold a secret
        data = json.loads(text) if path.endswith(".json") else tomllib.loads(text)
    except OSError as error:
        raise _Fault(f"cannot read {_show(path)}: {error.strerror or error}") from None
    except ValueError as error:  # UnicodeDecodeError, JSONDecodeError, TOMLDecodeError
        raise _Fault(f"{_show(path)}: not JSON or TOML: {error}") from None
    if not isinstance(data, dict) or list(data) != ["principals"]:
        raise _Fault(f"{_show(path)}: must hold exactly one table, principals")
    try:
        return PrincipalsFile(path, _principals(data["principals"]))
    except _Fault as fault:
        raise _Fault(f"in {_show(path)}: principals{fault.path}: {fault.reason}") from None


@dataclass(frozen=True, slots=True)
class AnonymousAuthConfig:
    """[realms.anonymous]: sessions that prove nothing."""

    role: str = field(default="anonymous", metadata=_rule(_text))


@dataclass(frozen=True, slots=True)
class TlsAuthConfig:
    """[realms.tls]: sessions proven by a TLS client certificate the listener verified."""

    authid: str = field(default="cn", metadata=_rule(_choice("cn", "dn")))
    # RFC 4514 names with shell globs per attribute; empty admits every verified certificate
    allowed_dn: tuple[str, ...] = field(default=(), metadata=_rule(_dn_patterns))
    # the role of an authid that is no principal; None admits principals only
    role: str | None = field(default=None, metadata=_rule(_text))


@dataclass(frozen=True, slots=True)
class TransportAuthConfig:
    """[realms.transport]: sessions identified by what the kernel vouches for (SO_PEERCRED)."""

    authid: str = field(default="uid", metadata=_rule(_choice("uid", "name")))
    role: str | None = field(default=None, metadata=_rule(_text))  # for any other peer
    uid_roles: Mapping[int, str] = field(default_factory=dict, metadata=_rule(_id_roles("user")))
    gid_roles: Mapping[int, str] = field(default_factory=dict, metadata=_rule(_id_roles("group")))
    # Argo peers: "uuid:<vm uuid>" / "name:<domain name>" / "domid:<id>" = role
    domain_roles: Mapping[str, str] = field(default_factory=dict, metadata=_rule(_domain_roles))


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
    auth: tuple[str, ...] = field(default=("anonymous",), metadata=_rule(_auth_methods))
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
    serializers: tuple[str, ...] = field(default=SERIALIZERS, metadata=_rule(_serializers))
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
    auth: tuple[str, ...] | None = field(default=None, metadata=_rule(_auth_methods))
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


def _client_endpoint(value: object) -> str:
    """A Twisted client endpoint string: how to reach the name server or a router."""
    endpoint = _text(value)
    if any(ord(char) < 32 or ord(char) == 127 for char in endpoint):
        raise _Fault(f"must not contain control characters, got {_show(value)}")
    register_endpoint_plugins()
    try:
        clientFromString(MemoryReactor(), endpoint)  # type: ignore[no-untyped-call]
    except Exception as error:  # parsers raise ValueError, TypeError, KeyError, ...
        raise _Fault(
            f"Twisted refuses {_show(endpoint)} as a client endpoint: {type(error).__name__}: "
            f"{error}"
        ) from None
    return endpoint


def _xenstore_path(value: object) -> str:
    path = _text(value)
    if not _XENSTORE_PATH.fullmatch(path):
        raise _Fault(
            "must be an absolute XenStore path of [A-Za-z0-9_@-] components (a dotted name "
            f"belongs in a value, not a path), got {_show(value)}"
        )
    return path


def _names(kind: str, check: Rule) -> Rule:
    def names(value: object) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise _Fault(f"must be an array of {kind}, got {_show(value)}")
        for index, item in enumerate(value):
            try:
                check(item)
            except _Fault as fault:
                raise fault.under(f"[{index}]") from None
            if item in value[:index]:
                raise _Fault(f"{_show(item)} is listed twice", f"[{index}]")
        return tuple(value)

    return names


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


def _optional_at(data: Mapping[str, object], key: str, cls: type[_D]) -> _D | None:
    """An optional single [key] table; absent means None."""
    if key not in data:
        return None
    try:
        return _build(cls, data[key])
    except _Fault as fault:
        raise fault.under(key) from None


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


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """[metrics]: Prometheus metrics over HTTP (docs/operations.md); no table, no endpoint."""

    # a Twisted server endpoint string; keep it local, the page names realms and listeners
    endpoint: str = field(metadata=_rule(_endpoint))
    path: str = field(default="/metrics", metadata=_rule(_url_path))


def _check_metrics(config: Config) -> None:
    if config.metrics is None:
        return
    for index, listener in enumerate(config.listeners):
        if listener.endpoint == config.metrics.endpoint:
            raise _Fault(f"is also listeners[{index}].endpoint", "metrics.endpoint")


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


_TOP_LEVEL_KEYS: Final = tuple(f.name for f in fields(Config) if f.name != "source")

_D = TypeVar("_D", bound="DataclassInstance")


def _refuse_unknown_keys(table: Mapping[str, object], allowed: tuple[str, ...]) -> None:
    for key in table:
        if key not in allowed:
            hint = get_close_matches(key, allowed, n=1)
            guess = f" (did you mean {_show(hint[0])}?)" if hint else ""
            raise _Fault(f"unknown key{guess}; allowed keys: {_quoted(allowed)}", f".{key}")


def _build(cls: type[_D], table: object) -> _D:
    """Check one TOML table against the rules on ``cls``'s fields, then construct ``cls``."""
    if not isinstance(table, Mapping):
        raise _Fault(f"must be a table, got {_show(table)}")
    rules = {f.name: f for f in fields(cls) if _RULE in f.metadata}
    _refuse_unknown_keys(table, tuple(rules))
    values: dict[str, object] = {}
    for name, spec in rules.items():
        if name in table:
            try:
                values[name] = spec.metadata[_RULE](table[name])
            except _Fault as fault:
                raise fault.under(f".{name}") from None
        elif spec.default is MISSING and spec.default_factory is MISSING:
            raise _Fault("missing; this key is required", f".{name}")
    return cls(**values)


def _table_at(data: Mapping[str, object], key: str, cls: type[_D]) -> _D:
    """An optional single [key] table; absent means every default."""
    try:
        return _build(cls, data.get(key, {}))
    except _Fault as fault:
        raise fault.under(key) from None


def _array_at(
    data: Mapping[str, object],
    key: str,
    cls: type[_D],
    unique: str,
    check: Callable[[_D, Mapping[str, object]], None] | None = None,
) -> tuple[_D, ...]:
    """A required, non-empty [[key]] array whose ``unique`` field differs between entries."""
    tables = data.get(key)
    if tables is None:
        raise _Fault(f"missing; at least one [[{key}]] table is required", key)
    if not isinstance(tables, list) or not tables:
        raise _Fault(f"must be a non-empty array of tables ([[{key}]]), got {_show(tables)}", key)
    items: list[_D] = []
    for index, table in enumerate(tables):
        try:
            item = _build(cls, table)
            if check is not None:
                check(item, table)
        except _Fault as fault:
            raise fault.under(f"{key}[{index}]") from None
        taken = [getattr(other, unique) for other in items]
        value = getattr(item, unique)
        if value in taken:
            where = f"{key}[{taken.index(value)}]"
            raise _Fault(f"{_show(value)} is already used by {where}", f"{key}[{index}].{unique}")
        items.append(item)
    return tuple(items)


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
    try:
        access = _build(AccessConfig, table)
        assert isinstance(table, Mapping)  # _build refused anything else
        _check_access(access, table)
    except _Fault as fault:
        raise fault.under("access") from None
    return access


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


def split_endpoint(endpoint: str) -> tuple[list[str], dict[str, str]]:
    """An endpoint string's positional and keyword fields, unescaped as Twisted does."""
    try:
        return _split_endpoint(endpoint)
    except _Fault as fault:
        raise ValueError(fault.reason) from None


def server_endpoint_string(listener: ListenerConfig | MetricsConfig) -> str:
    """The string to give ``twisted.internet.endpoints.serverFromString`` for ``listener``.

    It equals ``listener.endpoint`` except for "unix:@name", which becomes Twisted's form of
    the Linux abstract socket "\\0name" (with ``lockfile=0``, which Twisted needs there).
    """
    try:
        return _twisted_form(listener.endpoint)
    except _Fault as fault:  # only for a ListenerConfig built by hand, past validation
        raise ValueError(f"endpoint {_show(listener.endpoint)}: {fault.reason}") from None


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
