"""Authentication in the configuration: the methods a realm offers, its principals, and each
method's settings ([realms.anonymous], [realms.tls], [realms.transport]).

Secrets (tickets, wampcra secrets) must never appear in a message: "got ..." would print them.
"""

from __future__ import annotations

import grp
import json
import pwd
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from cryptography import x509

from serouter.config._rules import (
    Rule,
    _build,
    _choice,
    _domain,
    _Fault,
    _has_control,
    _integer,
    _pairs,
    _rule,
    _show,
    _text,
)

AUTH_METHODS: Final = ("anonymous", "ticket", "wampcra", "cryptosign", "tls", "transport")
_PUBKEY: Final = re.compile(r"[0-9a-fA-F]{64}")


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


# {"uuid:<uuid>" | "name:<name>" | "domid:<id>" = role}: Argo peer domains' roles
_domain_roles: Final = _pairs("domain = role", _domain, _text)


def _numeric_id(kind: str, key: str) -> int:
    if key.isdigit():
        return int(key)
    try:
        if kind == "user":
            return pwd.getpwnam(key).pw_uid
        return grp.getgrnam(key).gr_gid
    except KeyError:
        raise _Fault(f"no {kind} named {_show(key)} (use a number or a known name)") from None


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as error:
        raise _Fault(f"cannot read {_show(path)}: {error.strerror or error}") from None


def _pem_certificates(value: object) -> str:
    path = _text(value)
    pem = _read(path)
    try:
        x509.load_pem_x509_certificates(pem)
    except ValueError as error:
        raise _Fault(f"{_show(path)} holds no PEM certificates: {error}") from None
    return path


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
    if _has_control(authid):
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
    raw = _read(path)
    try:
        text = raw.decode("utf-8")
        # neither parser quotes the offending text in its message, which may hold a secret
        data = json.loads(text) if path.endswith(".json") else tomllib.loads(text)
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
