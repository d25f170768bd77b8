"""WAMP IDs: random global-scope IDs and sequential router-scope IDs, owned by a Router."""

import os
import random

from serouter.core.messages import MAX_ID


class IdGenerator:
    """Draws IDs for one router (no global state: each Router owns one).

    Global-scope IDs (sessions, publications) are drawn uniformly from [1, 2^53] as the spec
    requires, from a PRNG seeded by the OS so they cannot be predicted across restarts;
    router-scope IDs (registrations, subscriptions) are sequential, which the spec allows.
    """

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed if seed is not None else os.urandom(16))
        self._next_router_id = 0

    def random_id(self) -> int:
        """A global-scope ID in [1, 2^53]."""
        return self._rng.getrandbits(53) + 1

    def below(self, n: int) -> int:
        """A uniform random integer in [0, n) (for the random invocation policy)."""
        return self._rng.randrange(n)

    def router_id(self) -> int:
        """A router-scope ID: 1, 2, 3, ... wrapping before 2^53."""
        self._next_router_id = self._next_router_id % MAX_ID + 1
        return self._next_router_id
