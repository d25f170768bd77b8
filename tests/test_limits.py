"""Per-session and per-realm limits in the core: each refused with a clear ERROR or ABORT."""

from typing import Any

from twisted.internet.task import Clock

from serouter.core.access import AllowAll
from serouter.core.dealer import Limits
from serouter.core.messages import Hello
from serouter.core.peer import TransportInfo
from serouter.core.realm import RealmOptions
from serouter.core.router import Router
from tests.fakes import ROLES, FakePeer, connect, send

LIMIT = "serouter.error.limit_exceeded"


def limited(**limits: Any) -> Router:
    max_sessions = limits.pop("max_sessions", 100)
    options = RealmOptions(max_sessions=max_sessions, limits=Limits(**limits))
    return Router(["realm1"], AllowAll(), Clock(), realm_options={"realm1": options})


def test_calls_in_flight_per_caller() -> None:
    """A caller with max_calls calls in flight gets limit_exceeded; answered calls free slots."""
    router = limited(calls=2)
    callee, cpeer = connect(router)
    caller, kpeer = connect(router)
    send(callee, 64, 1, {}, "p")
    cpeer.wire()
    for req in (1, 2, 3):
        send(caller, 48, req, {}, "p")
    [refused] = kpeer.wire()
    assert (refused[2], refused[4]) == (3, LIMIT)
    send(callee, 70, cpeer.wire()[0][1], {})
    send(caller, 48, 4, {"timeout": 0}, "p")  # through the option path too
    assert [m[0] for m in kpeer.wire()] == [50]
    assert len(cpeer.wire()) == 1
    assert (caller.calls, callee.invocations) == (2, 2)


def test_invocations_per_callee_spill_over_then_fail() -> None:
    """A shared registration skips a callee at its limit; when all are, no_available_callee."""
    router = limited(invocations=1)
    a, ap = connect(router)
    b, bp = connect(router)
    for s, p in ((a, ap), (b, bp)):
        send(s, 64, 1, {"invoke": "first"}, "p")
        p.wire()
    caller, kpeer = connect(router)
    for req in (1, 2, 3):
        send(caller, 48, req, {}, "p")
    assert (len(ap.wire()), len(bp.wire())) == (1, 1)
    assert kpeer.wire()[0][4] == "wamp.error.no_available_callee"


def test_registrations_and_subscriptions_per_session() -> None:
    """Registering or subscribing past the limit is refused; resubscribing is not a new one."""
    router = limited(registrations=1, subscriptions=1)
    s, p = connect(router)
    send(s, 64, 1, {}, "a")
    send(s, 64, 2, {}, "b")
    send(s, 32, 3, {}, "t")
    send(s, 32, 4, {}, "t")
    send(s, 32, 5, {}, "u")
    replies = p.wire()
    assert [m[0] for m in replies] == [65, 8, 33, 33, 8]
    assert replies[1][4] == replies[4][4] == LIMIT


def test_sessions_per_realm() -> None:
    """A HELLO beyond max_sessions is aborted with limit_exceeded; a leave frees the place."""
    router = limited(max_sessions=1)
    first, _ = connect(router)
    peer = FakePeer()
    s = router.open_session(peer, TransportInfo("rawsocket", "json", "test"))
    s.receive(Hello("realm1", {"roles": ROLES}))
    assert peer.wire()[0][::2] == [3, LIMIT]
    router.close_session(first)
    connect(router)


def test_counters_return_to_zero() -> None:
    """Whatever ends a call (result, error, cancel, caller or callee gone) frees its slots."""
    router = limited()
    callee, cpeer = connect(router)
    caller, _ = connect(router)
    send(callee, 64, 1, {}, "p")
    cpeer.wire()
    for req in range(1, 5):
        send(caller, 48, req, {}, "p")
    inv = [m[1] for m in cpeer.wire()]
    send(callee, 70, inv[0], {})
    send(callee, 8, 68, inv[1], {}, "x.y")
    send(caller, 49, 3, {"mode": "skip"})
    assert (caller.calls, callee.invocations) == (1, 1)
    router.close_session(callee)
    assert (caller.calls, callee.invocations) == (0, 0)
