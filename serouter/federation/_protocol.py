"""The protocol between proxies and the name server: its URIs and the shapes of its arguments.

The name server hosts the name service in each of its realms; a router's proxy for realm R
joins realm R there. All procedures take positional arguments (docs/federation.md has the
whole protocol):

- ``serouter.ns.announce(advertise, entries)``: entries are ``["procedure", uri, match,
  invoke]`` or ``["topic", uri]``; answers one item per entry: None (held) or an error URI.
- ``serouter.ns.withdraw(entries)``: ``["procedure", uri, match]`` or ``["topic", uri]``.
- ``serouter.ns.lookup(kind, uri, options)``: options ``{"match": ..., "watch": bool}``;
  answers the providers, each ``{"endpoint", "uri", "match", "invoke"}``.
- ``serouter.ns.unwatch(kind, uri, options)``.
- topic ``serouter.ns.on_watched``: ``[[kind, uri, match], ...]``, the subscriber's own
  watches to resolve again (each fires once, then is gone).
- topic ``serouter.ns.on_change``: ``[[op, kind, uri, match, invoke], ...]`` with op
  ``announce`` or ``withdraw``, filtered by what each subscriber may look up.

Both sides import this module; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from serouter.core import uris
from serouter.core.matching import EXACT, MATCH_POLICIES

ANNOUNCE: Final = "serouter.ns.announce"
WITHDRAW: Final = "serouter.ns.withdraw"
LOOKUP: Final = "serouter.ns.lookup"
UNWATCH: Final = "serouter.ns.unwatch"
ON_WATCHED: Final = "serouter.ns.on_watched"
ON_CHANGE: Final = "serouter.ns.on_change"
PROCEDURES: Final = (ANNOUNCE, WITHDRAW, LOOKUP, UNWATCH)

PROCEDURE: Final = "procedure"
TOPIC: Final = "topic"
KINDS: Final = (PROCEDURE, TOPIC)
INVOKE_POLICIES: Final = ("single", "roundrobin", "random", "first", "last")
MAX_ENDPOINT: Final = 512
BATCH: Final = 500  # entries per announce/withdraw call, well under any message size limit


class BadArgument(Exception):
    """An argument of a name-service call is malformed: answered wamp.error.invalid_argument."""


@dataclass(frozen=True, slots=True)
class Key:
    """What an entry or a watch is about: a procedure (pattern) or a topic (pattern)."""

    kind: str
    uri: str
    match: str = EXACT

    def wire(self) -> list[str]:
        return [self.kind, self.uri, self.match]


@dataclass(frozen=True, slots=True)
class Entry:
    key: Key
    invoke: str = "single"  # procedures only

    def wire(self) -> list[str]:
        if self.key.kind == TOPIC:
            return [TOPIC, self.key.uri]
        return [PROCEDURE, self.key.uri, self.key.match, self.invoke]


def _uri(value: object, match: str) -> str:
    if not isinstance(value, str) or not uris.is_valid_pattern(value, match):
        raise BadArgument(f"not a valid {match} URI: {value!r:.100}")
    return value


def key_from_wire(kind: object, uri: object, match: object = None) -> Key:
    if kind not in KINDS:
        raise BadArgument(f"kind must be one of {KINDS}, got {kind!r:.40}")
    match = match or EXACT
    if match not in MATCH_POLICIES:
        raise BadArgument(f"match must be one of {sorted(MATCH_POLICIES)}, got {match!r:.40}")
    assert isinstance(kind, str) and isinstance(match, str)
    return Key(kind, _uri(uri, match), match)


def entry_from_wire(item: object) -> Entry:
    """An announced entry; topics are concrete URIs (announced once published)."""
    if not isinstance(item, list) or not item:
        raise BadArgument("an entry must be a non-empty list")
    if item[0] == TOPIC:
        if len(item) != 2:
            raise BadArgument("a topic entry is [\"topic\", uri]")
        return Entry(key_from_wire(TOPIC, item[1]))
    if len(item) != 4:
        raise BadArgument("a procedure entry is [\"procedure\", uri, match, invoke]")
    if item[3] not in INVOKE_POLICIES:
        raise BadArgument(f"invoke must be one of {INVOKE_POLICIES}")
    return Entry(key_from_wire(item[0], item[1], item[2]), item[3])


def key_list_from_wire(item: object) -> Key:
    """A withdrawn entry or a watch: [kind, uri] or [kind, uri, match]."""
    if not isinstance(item, list) or len(item) not in (2, 3):
        raise BadArgument("expected [kind, uri] or [kind, uri, match]")
    return key_from_wire(*item)


def endpoint_from_wire(value: object) -> str:
    """An advertised endpoint: stored and handed on as text; each proxy decides whether it
    connects to such an endpoint (``[federation] peer_endpoints``)."""
    if (not isinstance(value, str) or not value or len(value) > MAX_ENDPOINT
            or not value.isprintable()):
        raise BadArgument("advertise must be a printable endpoint string")
    return value


def options_from_wire(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadArgument("options must be a dict")
    return value


def chunks(items: list[Any], size: int = BATCH) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)] or []
