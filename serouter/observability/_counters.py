"""Plain int counters on the router's hot path, read only when metrics are scraped.

prometheus_client's own ``Counter.inc`` takes a lock; a message must not. These are dicts of
ints and a list of histogram buckets, changed only by the reactor thread; a scrape reads them
from the same thread, so no lock is needed either.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Final

from serouter.core import messages
from serouter.core.access import AccessCheck, Action, Subject
from serouter.transport._base import CALL_SAMPLE, MESSAGE_CODES

# The WAMP name of each message code (a message class's TYPE): the "type" label.
# A client's ERROR (InvocationError) and the router's (Error) share the code and the name.
_NAMES: Final = {
    getattr(messages, name): name
    for name in (
        "HELLO", "WELCOME", "ABORT", "CHALLENGE", "AUTHENTICATE", "GOODBYE", "ERROR", "PUBLISH",
        "PUBLISHED", "SUBSCRIBE", "SUBSCRIBED", "UNSUBSCRIBE", "UNSUBSCRIBED", "EVENT", "CALL",
        "CANCEL", "RESULT", "REGISTER", "REGISTERED", "UNREGISTER", "UNREGISTERED",
        "INVOCATION", "INTERRUPT", "YIELD",
    )
}

# Upper bounds (seconds) of the call latency buckets; a last one, +Inf, holds the rest.
LATENCY_BOUNDS: Final = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0,
)
# One CALL in SAMPLE_EVERY is timed (its request id a multiple of it): timing every call
# would cost the router more than all its counters together.
SAMPLE_EVERY: Final = CALL_SAMPLE


def message_name(code: int) -> str:
    """The WAMP name of a message type code ("CALL" for 48)."""
    return _NAMES.get(code, str(code))


class Counters:
    """What the router counts for its metrics; one instance per daemon."""

    __slots__ = ("denied", "failed", "latency", "latency_sum", "received", "reloads", "sent")

    def __init__(self) -> None:
        # messages by type code (index); the transports add to these directly
        self.received = [0] * MESSAGE_CODES
        self.sent = [0] * MESSAGE_CODES
        # refused actions, and checks that could not be made (AccessCheckFailed, a bug)
        self.denied: dict[Action, int] = dict.fromkeys(Action, 0)
        self.failed: dict[Action, int] = dict.fromkeys(Action, 0)
        self.latency = [0] * (len(LATENCY_BOUNDS) + 1)  # not cumulative; the last is +Inf
        self.latency_sum = 0.0
        self.reloads = {"applied": 0, "refused": 0}

    def observe_call(self, seconds: float) -> None:
        """One timed call took ``seconds`` from its CALL to its first RESULT or ERROR."""
        self.latency[bisect_left(LATENCY_BOUNDS, seconds)] += 1
        self.latency_sum += seconds


class CountingAccess:
    """The access check the router is given: the real one, with its refusals counted.

    Allowed actions pay one extra call and nothing else; refusals and failures add one.
    """

    __slots__ = ("_check", "_denied", "_failed", "inner")

    def __init__(self, inner: AccessCheck, counters: Counters) -> None:
        self.inner = inner
        self._check = inner.check
        self._denied = counters.denied
        self._failed = counters.failed

    def check(self, subject: Subject, action: Action, realm: str, uri: str) -> bool:
        try:
            allowed = self._check(subject, action, realm, uri)
        except Exception:
            self._failed[action] += 1
            raise
        if not allowed:
            self._denied[action] += 1
        return allowed
