"""Flow control for one connection: what to do with output for a peer that does not read.

Each protocol registers itself as a streaming producer on its own transport, so Twisted tells
it (``pauseProducing``) when the peer stopped reading and Twisted's buffer passed its mark, and
(``resumeProducing``) when it drained. While paused, bytes handed to the transport are counted;
past ``max_queued_bytes`` the listener's policy applies instead of buffering without bound:

- an EVENT is dropped for that subscriber (``slow_consumer = "drop"``: counted, logged once
  per episode) or the subscriber's session is closed (``"close"``);
- an INVOCATION is refused, so its caller gets ``wamp.error.no_available_callee`` at once;
- anything else (a RESULT, an ERROR...) means the peer ignores its own answers: close it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from serouter.core import uris
from serouter.core.messages import Event, Invocation, Outgoing


@dataclass(frozen=True, slots=True)
class ListenerLimits:
    """A listener's limits (docs/reliability.md)."""

    max_connections: int = 10_000
    max_queued_bytes: int = 1 << 20
    slow_consumer: str = "drop"  # "drop" | "close"
    idle_timeout: float = 0.0  # seconds without a WAMP message; 0: never


class Verdict(Enum):
    SEND = "send"
    DROP = "drop"  # quietly: the subscriber is too slow
    REFUSE = "refuse"  # the sender answers whoever waits (NO_AVAILABLE_CALLEE)
    CLOSE = "close"  # the peer does not read: close it


# Python 3.11 finds an enum member through ``EnumType.__getattr__`` (~140 ns); ``judge`` runs
# for every message sent while a peer is not reading, so it returns this name.
SEND = Verdict.SEND
REFUSED_URI = uris.NO_AVAILABLE_CALLEE


class Outflow:
    """Counts what is queued while the peer does not read, and judges each message."""

    __slots__ = ("dropped", "limits", "paused", "queued")

    def __init__(self, limits: ListenerLimits) -> None:
        self.limits = limits
        self.paused = False
        self.queued = 0  # bytes handed to the transport since it paused us
        self.dropped = 0  # events dropped in this episode

    def pause(self) -> None:
        # Twisted calls pauseProducing at every write while its buffer is over the mark, not
        # once: counting from zero again each time would let the queue grow without bound.
        if not self.paused:
            self.paused = True
            self.queued = 0

    def resume(self) -> int:
        """The peer caught up; returns how many events were dropped meanwhile."""
        dropped, self.dropped = self.dropped, 0
        self.paused = False
        self.queued = 0
        return dropped

    def judge(self, message: Outgoing, size: int) -> Verdict:
        """Only called while paused."""
        if self.queued + size <= self.limits.max_queued_bytes:
            self.queued += size
            return SEND
        kind = type(message)
        if kind is Event:
            if self.limits.slow_consumer == "drop":
                self.dropped += 1
                return Verdict.DROP
            return Verdict.CLOSE
        if kind is Invocation:
            return Verdict.REFUSE
        return Verdict.CLOSE
