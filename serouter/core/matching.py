"""URI matching as a pure data structure, shared by the dealer and the broker.

Three maps side by side, keyed by the pattern as written:

- ``exact``: a dict.
- ``prefix``: plain string prefixes (the spec's example: ``com.myapp.myobject1`` matches
  ``com.myapp.myobject1-mysubobject1``), looked up by the lengths of the prefixes present, so
  a lookup costs one slice and dict probe per distinct prefix length, longest first.
- ``wildcard``: patterns with empty components (``com.myapp..create``), bucketed by component
  count; among several matches the spec prefers the one whose runs of concrete components
  before each wildcard are longest, compared run by run.

``best`` answers the dealer's question (exact, else longest prefix, else best wildcard);
``matching`` answers the broker's (every match).
"""

from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

EXACT = "exact"
PREFIX = "prefix"
WILDCARD = "wildcard"
MATCH_POLICIES = frozenset({EXACT, PREFIX, WILDCARD})


def wildcard_rank(pattern: str) -> tuple[int, ...]:
    """The lengths of the runs of concrete components, e.g. ``a1.b2..d4.e5`` -> (2, 2)."""
    runs: list[int] = []
    run = 0
    for part in pattern.split("."):
        if part:
            run += 1
        else:
            runs.append(run)
            run = 0
    runs.append(run)
    return tuple(runs)


def pattern_matches(pattern: str, match: str, uri: str) -> bool:
    """Whether one pattern, under its match policy, matches a concrete URI."""
    if match == EXACT:
        return pattern == uri
    if match == PREFIX:
        return uri.startswith(pattern)
    components = uri.split(".")
    parts = pattern.split(".")
    return len(parts) == len(components) and all(
        not p or p == c for p, c in zip(parts, components, strict=True)
    )


class _Wildcard(Generic[T]):
    __slots__ = ("parts", "rank", "value")

    def __init__(self, pattern: str, value: T) -> None:
        self.parts = [(i, p) for i, p in enumerate(pattern.split(".")) if p]
        self.rank = wildcard_rank(pattern)
        self.value = value

    def matches(self, components: list[str]) -> bool:
        return all(components[i] == p for i, p in self.parts)


class UriMap(Generic[T]):
    """Values (registrations, subscriptions) stored under (pattern, match policy)."""

    __slots__ = ("_prefix", "_prefix_lengths", "_wildcard", "exact")

    def __init__(self) -> None:
        # exact entries, by URI; read directly by the dealer's and broker's per-message paths
        self.exact: dict[str, T] = {}
        self._prefix: dict[str, T] = {}
        self._prefix_lengths: list[int] = []  # distinct, longest first
        self._wildcard: dict[int, dict[str, _Wildcard[T]]] = {}

    def get(self, uri: str, match: str = EXACT) -> T | None:
        """The value stored under exactly this (pattern, match), if any."""
        if match == EXACT:
            return self.exact.get(uri)
        if match == PREFIX:
            return self._prefix.get(uri)
        entry = self._wildcard.get(uri.count(".") + 1, {}).get(uri)
        return entry.value if entry is not None else None

    def add(self, uri: str, match: str, value: T) -> None:
        """Store ``value``; the caller checked that nothing is stored there yet."""
        if match == EXACT:
            self.exact[uri] = value
        elif match == PREFIX:
            self._prefix[uri] = value
            self._refresh_lengths()
        else:
            self._wildcard.setdefault(uri.count(".") + 1, {})[uri] = _Wildcard(uri, value)

    def remove(self, uri: str, match: str = EXACT) -> None:
        if match == EXACT:
            self.exact.pop(uri, None)
        elif match == PREFIX:
            if self._prefix.pop(uri, None) is not None:
                self._refresh_lengths()
        else:
            bucket = self._wildcard.get(uri.count(".") + 1)
            if bucket is not None:
                bucket.pop(uri, None)
                if not bucket:
                    del self._wildcard[uri.count(".") + 1]

    def best(self, uri: str) -> T | None:
        """The single best match for a concrete URI (the dealer's rule)."""
        value = self.exact.get(uri)
        if value is not None:
            return value
        for length in self._prefix_lengths:
            if length <= len(uri):
                value = self._prefix.get(uri[:length])
                if value is not None:
                    return value
        if self._wildcard:
            matches = self._wildcard_matches(uri)
            if matches:
                return max(matches, key=lambda w: w.rank).value
        return None

    def matching(self, uri: str) -> list[T]:
        """Every value whose pattern matches a concrete URI (the broker's rule)."""
        value = self.exact.get(uri)
        found = [value] if value is not None else []
        for length in self._prefix_lengths:
            if length <= len(uri):
                value = self._prefix.get(uri[:length])
                if value is not None:
                    found.append(value)
        if self._wildcard:
            found.extend(w.value for w in self._wildcard_matches(uri))
        return found

    def values(self, match: str | None = None) -> Iterator[T]:
        """Every stored value, or those of one match policy."""
        if match in (None, EXACT):
            yield from self.exact.values()
        if match in (None, PREFIX):
            yield from self._prefix.values()
        if match in (None, WILDCARD):
            for bucket in self._wildcard.values():
                yield from (w.value for w in bucket.values())

    def __len__(self) -> int:
        return len(self.exact) + len(self._prefix) + sum(map(len, self._wildcard.values()))

    def _wildcard_matches(self, uri: str) -> list[_Wildcard[T]]:
        components = uri.split(".")
        bucket = self._wildcard.get(len(components))
        if not bucket:
            return []
        return [w for w in bucket.values() if w.matches(components)]

    def _refresh_lengths(self) -> None:
        self._prefix_lengths = sorted({len(p) for p in self._prefix}, reverse=True)
