"""The name service's index for one realm: who provides what, and who watches what. No I/O.

Entries belong to the session of the router that announced them:

- procedures, exact or patterns, with their invocation policy, in a ``UriMap`` (the dealer's
  own structure): a lookup is the dealer's rule (exact, longest prefix, best wildcard), skipping
  entries only the asking router holds (its own, stale, announcements);
- topics, as concrete URIs (a router announces a topic once it is published there), with a
  lazily sorted copy for prefix lookups and buckets by component count for wildcards.

Watches make change notification cheap at any scale: a lookup may leave a one-shot watch, and a
change notifies only the routers whose watches it affects, with their own watch keys (never
another router's URIs). A watch fires once and is gone; the router looks up again, which
reflects every change up to then and watches again (ZooKeeper's rule). Each operation returns
what it changed and whom to notify; the caller publishes.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from serouter.core.matching import EXACT, PREFIX, WILDCARD, UriMap, pattern_matches, wildcard_rank
from serouter.federation._protocol import PROCEDURE, TOPIC, Entry, Key

Notices = dict[int, set[Key]]
Change = tuple[str, Entry]  # ("announce" | "withdraw", entry)


@dataclass(eq=False, slots=True)
class Provider:
    """One router's session at the name server: its endpoint, entries and watches."""

    session: int
    endpoint: str | None = None
    procedures: dict[tuple[str, str], str] = field(default_factory=dict)  # -> invoke
    topics: set[str] = field(default_factory=set)
    watches: set[Key] = field(default_factory=set)

    @property
    def size(self) -> int:
        return len(self.procedures) + len(self.topics)


@dataclass(eq=False, slots=True)
class _Procedure:
    uri: str
    match: str
    providers: dict[int, tuple[Provider, str]] = field(default_factory=dict)  # announce order


@dataclass(eq=False, slots=True)
class _Watchers:
    key: Key
    sessions: set[int] = field(default_factory=set)


@dataclass(slots=True)
class Outcome:
    """What an operation did: changes for ``on_change``, and whom to notify of what."""

    changes: list[Change] = field(default_factory=list)
    notices: Notices = field(default_factory=dict)


class _Strings:
    """A set of concrete URIs with prefix and component-count queries.

    Sorted lazily: announcements come in bursts (a router re-announcing everything), prefix
    queries in between.
    """

    __slots__ = ("_by_parts", "_items", "_sorted")

    def __init__(self) -> None:
        self._items: set[str] = set()
        self._sorted: list[str] | None = []
        self._by_parts: dict[int, set[str]] = {}

    def add(self, uri: str) -> None:
        if uri not in self._items:
            self._items.add(uri)
            self._by_parts.setdefault(uri.count(".") + 1, set()).add(uri)
            self._sorted = None

    def discard(self, uri: str) -> None:
        if uri in self._items:
            self._items.discard(uri)
            parts = uri.count(".") + 1
            bucket = self._by_parts[parts]
            bucket.discard(uri)
            if not bucket:
                del self._by_parts[parts]
            self._sorted = None

    def matching(self, pattern: str, match: str) -> Iterator[str]:
        """The URIs the pattern matches (exact, prefix or wildcard)."""
        if match == EXACT:
            if pattern in self._items:
                yield pattern
        elif match == PREFIX:
            if self._sorted is None:
                self._sorted = sorted(self._items)
            items = self._sorted
            for i in range(bisect.bisect_left(items, pattern), len(items)):
                if not items[i].startswith(pattern):
                    break
                yield items[i]
        else:
            for uri in self._by_parts.get(pattern.count(".") + 1, ()):
                if pattern_matches(pattern, WILDCARD, uri):
                    yield uri


def _preference(entry: _Procedure) -> tuple[int, Any]:
    """Sort key for the dealer's rule: exact, then the longest prefix, then the best wildcard."""
    if entry.match == EXACT:
        return (0, 0)
    if entry.match == PREFIX:
        return (1, -len(entry.uri))
    return (2, tuple(-n for n in wildcard_rank(entry.uri)))


class NameIndex:
    """Entries and watches of one realm's routers."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries  # per router, entries and watches each
        self.providers: dict[int, Provider] = {}
        self._procedures: UriMap[_Procedure] = UriMap()
        self._topics: dict[str, dict[int, Provider]] = {}  # topic -> its providers
        self._topic_uris = _Strings()
        self._procedure_watches: dict[str, set[int]] = {}  # concrete URI -> watching sessions
        self._watched_uris = _Strings()
        self._topic_watches: UriMap[_Watchers] = UriMap()

    def provider(self, session: int) -> Provider:
        found = self.providers.get(session)
        if found is None:
            found = self.providers[session] = Provider(session)
        return found

    # -- announce and withdraw -----------------------------------------------------------------

    def announce(self, session: int, endpoint: str, entries: Iterable[Entry]
                 ) -> tuple[list[bool], Outcome]:
        """Hold ``entries`` for ``session``; per entry False when over the size limit."""
        provider = self.provider(session)
        provider.endpoint = endpoint
        held: list[bool] = []
        out = Outcome()
        for entry in entries:
            if provider.size >= self.max_entries and not self._holds(provider, entry):
                held.append(False)
                continue
            held.append(True)
            if self._add(provider, entry):
                out.changes.append(("announce", entry))
                self._notify(out.notices, entry, session)
        return held, out

    def withdraw(self, session: int, keys: Iterable[Key]) -> Outcome:
        provider = self.providers.get(session)
        out = Outcome()
        if provider is None:
            return out
        for key in keys:
            entry = self._remove(provider, key)
            if entry is not None:
                out.changes.append(("withdraw", entry))
                self._notify(out.notices, entry, session)
        return out

    def drop(self, session: int) -> Outcome:
        """The router's session ended: its entries and watches go."""
        provider = self.providers.pop(session, None)
        out = Outcome()
        if provider is None:
            return out
        for key in list(provider.watches):
            self.unwatch(session, key, provider)
        keys = [Key(PROCEDURE, uri, match) for uri, match in provider.procedures]
        keys += [Key(TOPIC, topic) for topic in provider.topics]
        for key in keys:
            entry = self._remove(provider, key)
            if entry is not None:
                out.changes.append(("withdraw", entry))
                self._notify(out.notices, entry, session)
        return out

    def _holds(self, provider: Provider, entry: Entry) -> bool:
        key = entry.key
        if key.kind == TOPIC:
            return key.uri in provider.topics
        return (key.uri, key.match) in provider.procedures

    def _add(self, provider: Provider, entry: Entry) -> bool:
        """True if this is new (or a new invocation policy)."""
        key, sid = entry.key, provider.session
        if key.kind == TOPIC:
            if key.uri in provider.topics:
                return False
            provider.topics.add(key.uri)
            self._topics.setdefault(key.uri, {})[sid] = provider
            self._topic_uris.add(key.uri)
            return True
        if provider.procedures.get((key.uri, key.match)) == entry.invoke:
            return False
        provider.procedures[(key.uri, key.match)] = entry.invoke
        found = self._procedures.get(key.uri, key.match)
        if found is None:
            found = _Procedure(key.uri, key.match)
            self._procedures.add(key.uri, key.match, found)
        found.providers[sid] = (provider, entry.invoke)
        return True

    def _remove(self, provider: Provider, key: Key) -> Entry | None:
        sid = provider.session
        if key.kind == TOPIC:
            if key.uri not in provider.topics:
                return None
            provider.topics.discard(key.uri)
            holders = self._topics[key.uri]
            del holders[sid]
            if not holders:
                del self._topics[key.uri]
                self._topic_uris.discard(key.uri)
            return Entry(key)
        invoke = provider.procedures.pop((key.uri, key.match), None)
        if invoke is None:
            return None
        found = self._procedures.get(key.uri, key.match)
        assert found is not None
        del found.providers[sid]
        if not found.providers:
            self._procedures.remove(key.uri, key.match)
        return Entry(key, invoke)

    # -- lookups -------------------------------------------------------------------------------

    def lookup(self, session: int, key: Key, watch: bool = False) -> list[dict[str, Any]]:
        """Who provides ``key`` (other than the asking router); optionally watch it."""
        if watch:
            self.watch(session, key)
        if key.kind == TOPIC:
            return self._topic_providers(session, key)
        return self._procedure_providers(session, key.uri)

    def _procedure_providers(self, session: int, uri: str) -> list[dict[str, Any]]:
        best = self._procedures.best(uri)
        if best is None:
            return []
        candidates = [best]
        if best.providers.keys() == {session}:  # only our own (stale) entry: the next best
            candidates = sorted(self._procedures.matching(uri), key=_preference)
        for entry in candidates:
            found = [
                {"endpoint": p.endpoint, "uri": entry.uri, "match": entry.match, "invoke": invoke}
                for sid, (p, invoke) in entry.providers.items() if sid != session
            ]
            if found:
                return found
        return []

    def _topic_providers(self, session: int, key: Key) -> list[dict[str, Any]]:
        endpoints: dict[str, None] = {}
        for topic in self._topic_uris.matching(key.uri, key.match):
            for sid, provider in self._topics[topic].items():
                if sid != session and provider.endpoint is not None:
                    endpoints[provider.endpoint] = None
        return [{"endpoint": e} for e in endpoints]

    # -- watches -------------------------------------------------------------------------------

    def watch(self, session: int, key: Key) -> bool:
        """Watch ``key`` (a concrete procedure URI, or a topic pattern); False over the limit."""
        provider = self.provider(session)
        if key in provider.watches:
            return True
        if len(provider.watches) >= self.max_entries:
            return False
        provider.watches.add(key)
        if key.kind == PROCEDURE:
            self._procedure_watches.setdefault(key.uri, set()).add(session)
            self._watched_uris.add(key.uri)
        else:
            watchers = self._topic_watches.get(key.uri, key.match)
            if watchers is None:
                watchers = _Watchers(key)
                self._topic_watches.add(key.uri, key.match, watchers)
            watchers.sessions.add(session)
        return True

    def unwatch(self, session: int, key: Key, provider: Provider | None = None) -> None:
        provider = provider or self.providers.get(session)
        if provider is None or key not in provider.watches:
            return
        provider.watches.discard(key)
        if key.kind == PROCEDURE:
            sessions = self._procedure_watches[key.uri]
            sessions.discard(session)
            if not sessions:
                del self._procedure_watches[key.uri]
                self._watched_uris.discard(key.uri)
            return
        watchers = self._topic_watches.get(key.uri, key.match)
        assert watchers is not None
        watchers.sessions.discard(session)
        if not watchers.sessions:
            self._topic_watches.remove(key.uri, key.match)

    def _notify(self, notices: Notices, entry: Entry, actor: int) -> None:
        """Fire (and end) the watches ``entry``'s change may affect, except the actor's."""
        fired: list[tuple[int, Key]] = []
        key = entry.key
        if key.kind == TOPIC:
            for watchers in self._topic_watches.matching(key.uri):
                fired += [(sid, watchers.key) for sid in watchers.sessions if sid != actor]
        else:
            for uri in list(self._watched_uris.matching(key.uri, key.match)):
                watch = Key(PROCEDURE, uri)
                fired += [(sid, watch) for sid in self._procedure_watches[uri] if sid != actor]
        for sid, watch in fired:
            notices.setdefault(sid, set()).add(watch)
            self.unwatch(sid, watch)

    # -- introspection -------------------------------------------------------------------------

    def entries(self) -> Iterator[tuple[Entry, Provider]]:
        """Every held entry with its router (for tests and the benchmark)."""
        for provider in self.providers.values():
            for (uri, match), invoke in provider.procedures.items():
                yield Entry(Key(PROCEDURE, uri, match), invoke), provider
            for topic in provider.topics:
                yield Entry(Key(TOPIC, topic)), provider
