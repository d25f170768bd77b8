"""The rule machinery: rules for single values, and tables checked against dataclass fields.

A rule takes one raw TOML value and returns the typed value or raises ``_Fault``, whose path is
relative to that value; ``_build`` checks a TOML table against the rules declared on a
dataclass's fields (``_rule``) and constructs it, and ``parse_config`` turns the first fault
into the ``ConfigError`` the user sees. Rules only look at values (and at the file system, for
paths): they must never bind, listen or touch the reactor.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, fields
from difflib import get_close_matches
from typing import TYPE_CHECKING, Any, Final, TypeVar

from serouter.argo import domain_key

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


# A WAMP URI in the spec's strict form. fullmatch, because "$" would also accept a trailing "\n".
_STRICT_URI: Final = re.compile(r"([0-9a-z_]+\.)*[0-9a-z_]+")
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


def _pairs(what: str, key_rule: Callable[[str], object], value_rule: Rule) -> Rule:
    """A table of ``what`` (key = value), each key and value checked by its rule.

    The value is checked before its key: that decides which fault a pair wrong in both reports.
    """

    def check(value: object) -> dict[object, object]:
        if not isinstance(value, Mapping):
            raise _Fault(f"must be a table of {what}, got {_show(value)}")
        pairs: dict[object, object] = {}
        for key, item in value.items():
            try:
                pairs[key_rule(key)] = value_rule(item)
            except _Fault as fault:
                raise fault.under(f".{json.dumps(key)}") from None
        return pairs

    return check


def _label_map(key_rule: Callable[[str], object]) -> Rule:
    """A table of name -> context ([access.uid_labels] and the like)."""
    return _pairs("name = context", key_rule, _context)


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


def _names(kind: str, check: Rule) -> Rule:
    """An array of ``kind``, each item passing ``check``, none listed twice."""

    def names(value: object) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise _Fault(f"must be an array of {kind}, got {_show(value)}")
        return _each_once(value, check)

    return names


def _names_from(options: tuple[str, ...]) -> Rule:
    """A non-empty array of names from ``options``, none listed twice, in the user's order."""
    check = _choice(*options)

    def names(value: object) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            raise _Fault(
                f"must be a non-empty array of names from {_quoted(options)}, got {_show(value)}"
            )
        return _each_once(value, check)

    return names


def _each_once(items: list[Any], check: Rule) -> tuple[Any, ...]:
    """``items`` as a tuple, once each passes ``check`` and none repeats an earlier one."""
    for index, item in enumerate(items):
        try:
            check(item)
        except _Fault as fault:
            raise fault.under(f"[{index}]") from None
        if item in items[:index]:
            raise _Fault(f"{_show(item)} is listed twice", f"[{index}]")
    return tuple(items)


def _has_control(text: str) -> bool:
    """Whether ``text`` holds a C0 control character or DEL."""
    return any(ord(char) < 32 or ord(char) == 127 for char in text)


# ---------------------------------------------------------------------------------------------
# Tables: a TOML table checked against the rules on a dataclass's fields, then constructed.

_D = TypeVar("_D", bound="DataclassInstance")


def _table(cls: type[_D]) -> Rule:
    return lambda value: _build(cls, value)


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


def _table_at(
    data: Mapping[str, object],
    key: str,
    cls: type[_D],
    check: Callable[[_D, Mapping[str, object]], None] | None = None,
) -> _D:
    """An optional single [key] table; absent means every default."""
    table = data.get(key, {})
    try:
        item = _build(cls, table)
        if check is not None:
            assert isinstance(table, Mapping)  # _build refused anything else
            check(item, table)
    except _Fault as fault:
        raise fault.under(key) from None
    return item


def _optional_at(data: Mapping[str, object], key: str, cls: type[_D]) -> _D | None:
    """An optional single [key] table; absent means None."""
    return _table_at(data, key, cls) if key in data else None


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
