"""The access vector cache: one decision per (source, target, class), flushed on every reload.

A decision covers every permission of the class at once, as the kernel's AVC does, so one
computation serves join/register/call/subscribe/publish alike. Entries are plain tuples
``(allowed, auditallow, auditdeny, permissive)`` of bit masks and a flag: a hit is one dict
lookup. The cache never asks the policy itself; its owner passes the function that does.
"""

from __future__ import annotations

from collections.abc import Callable

# (allowed, auditallow, auditdeny, permissive): the masks are over the class's permission bits
Decision = tuple[int, int, int, bool]
Key = tuple[str, str, int]
ALL = 0xFFFFFFFF
_LIMIT = 8192  # labels x contexts x classes is small; SO_PEERSEC labels (MCS) may not be


class AccessVectorCache:
    """Decisions by (scontext, tcontext, tclass), computed on a miss by ``compute``."""

    __slots__ = ("_compute", "entries", "flushes", "misses")

    def __init__(self, compute: Callable[[str, str, int], Decision]) -> None:
        self._compute = compute
        self.entries: dict[Key, Decision] = {}
        self.misses = 0
        self.flushes = 0

    def lookup(self, scontext: str, tcontext: str, tclass: int) -> Decision:
        """The decision, from the cache or computed (and then cached)."""
        key = (scontext, tcontext, tclass)
        decision = self.entries.get(key)
        if decision is None:
            decision = self._compute(scontext, tcontext, tclass)
            self.misses += 1
            if len(self.entries) >= _LIMIT:
                self.entries.clear()
            self.entries[key] = decision
        return decision

    def grant(self, key: Key, perm: int) -> None:
        """Add ``perm`` to a cached decision: a permissive denial is then not reported again
        until the next flush (the kernel's AVC does the same)."""
        decision = self.entries.get(key)
        if decision is not None:
            allowed, auditallow, auditdeny, permissive = decision
            self.entries[key] = (allowed | perm, auditallow, auditdeny, permissive)

    def flush(self) -> None:
        """Forget every decision: the policy, the enforcing mode or the contexts changed."""
        self.entries.clear()
        self.flushes += 1
