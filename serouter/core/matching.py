"""URI matching as a pure data structure, shared by the dealer and the broker.

Exact matches live in a dict. The ``match`` policy is part of the key, so prefix and wildcard
maps slot in beside the exact one without changing callers: ``get``/``add``/``remove`` take the
policy, ``best`` and ``matching`` answer lookups by a concrete URI.
"""

from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

EXACT = "exact"
MATCH_POLICIES = frozenset({EXACT})


class UriMap(Generic[T]):
    """Values (registrations, subscriptions) stored under (uri, match policy)."""

    __slots__ = ("_exact",)

    def __init__(self) -> None:
        self._exact: dict[str, T] = {}

    def get(self, uri: str, match: str = EXACT) -> T | None:
        """The value stored under exactly this (uri, match), if any."""
        return self._exact.get(uri)

    def add(self, uri: str, match: str, value: T) -> None:
        """Store ``value``; the caller checked that nothing is stored there yet."""
        self._exact[uri] = value

    def remove(self, uri: str, match: str = EXACT) -> None:
        self._exact.pop(uri, None)

    def best(self, uri: str) -> T | None:
        """The single best match for a concrete URI (the dealer's rule)."""
        return self._exact.get(uri)

    def matching(self, uri: str) -> list[T]:
        """Every value whose pattern matches a concrete URI (the broker's rule)."""
        value = self._exact.get(uri)
        return [value] if value is not None else []

    def values(self) -> Iterator[T]:
        yield from self._exact.values()

    def __len__(self) -> int:
        return len(self._exact)
