"""Advanced Profile RPC in the dealer: patterns, shared registrations, progress, cancel,
timeouts and caller disclosure."""

from typing import Any

import pytest
from twisted.internet.task import Clock

from tests.fakes import ROLES_ADVANCED, FakePeer, connect, make_router, send


def pair(clock: Clock | None = None, disclose: str = "allow") -> tuple[Any, ...]:
    """A router with one callee and one caller, both announcing every RPC feature."""
    router = make_router(clock=clock)
    router.realms["realm1"].dealer.disclose_caller = disclose
    callee, cpeer = connect(router, roles=ROLES_ADVANCED)
    caller, kpeer = connect(router, roles=ROLES_ADVANCED)
    return router, callee, cpeer, caller, kpeer


def register(session: Any, peer: FakePeer, uri: str, **options: Any) -> int:
    send(session, 64, 100, options, uri)
    [[code, _, reg]] = peer.wire()
    assert code == 65
    return int(reg)


# -- patterns ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("pattern", "match", "uri"), [
    ("com.app", "prefix", "com.app.users.get"),
    ("com.app..get", "wildcard", "com.app.users.get"),
])
def test_pattern_registration_gets_concrete_procedure(pattern: str, match: str, uri: str) -> None:
    """A call matching a pattern reaches its callee with the called URI in details.procedure."""
    _, callee, cpeer, caller, _ = pair()
    reg = register(callee, cpeer, pattern, match=match)
    send(caller, 48, 1, {}, uri, [1])
    [[code, _, reg_id, details, args]] = cpeer.wire()
    assert (code, reg_id, details, args) == (68, reg, {"procedure": uri}, [1])


def test_exact_beats_prefix_beats_wildcard() -> None:
    """The spec's precedence picks exact, then the longest prefix, then wildcards."""
    _router, callee, cpeer, caller, _ = pair()
    w = register(callee, cpeer, "a..c", match="wildcard")
    p1 = register(callee, cpeer, "a", match="prefix")
    p2 = register(callee, cpeer, "a.b", match="prefix")
    e = register(callee, cpeer, "a.b.c")
    for uri, expected in (("a.b.c", e), ("a.b.x", p2), ("a.x.c", p1)):
        send(caller, 48, 1 + len(uri) + expected, {}, uri)
        assert cpeer.wire()[0][2] == expected, uri
    send(callee, 66, 200, p1)
    send(caller, 48, 999, {}, "a.x.c")
    assert cpeer.wire()[-1][2] == w


def test_invalid_patterns_refused() -> None:
    """Patterns are validated by their match policy; unknown policies are refused."""
    _, callee, cpeer, _, _ = pair()
    send(callee, 64, 1, {"match": "prefix"}, "a b")
    send(callee, 64, 2, {"match": "wildcard"}, "a..b c")
    send(callee, 64, 3, {"match": "regex"}, "a.*")
    assert [m[4] for m in cpeer.wire()] == [
        "wamp.error.invalid_uri", "wamp.error.invalid_uri", "wamp.error.option_not_allowed"]


# -- shared registrations ----------------------------------------------------------------------


def shared(invoke: str, n: int = 3) -> tuple[Any, list[Any], Any, FakePeer]:
    router = make_router()
    callees = [connect(router, roles=ROLES_ADVANCED) for _ in range(n)]
    for s, p in callees:
        register(s, p, "svc", invoke=invoke)
    caller, kpeer = connect(router)
    return router, callees, caller, kpeer


def who_got(callees: list[Any]) -> list[int]:
    return [i for i, (_, p) in enumerate(callees) for _ in p.wire()]


def test_roundrobin_cycles_through_callees() -> None:
    """roundrobin invokes callees in registration order, looping."""
    _, callees, caller, _ = shared("roundrobin")
    got = []
    for req in range(1, 7):
        send(caller, 48, req, {}, "svc")
        got += who_got(callees)
    assert got == [0, 1, 2, 0, 1, 2]


@pytest.mark.parametrize(("invoke", "expected"), [("first", 0), ("last", 2)])
def test_first_and_last_are_hot_standby(invoke: str, expected: int) -> None:
    """first/last always pick the first/last callee; when it goes, the next one takes over."""
    router, callees, caller, _ = shared(invoke)
    send(caller, 48, 1, {}, "svc")
    assert who_got(callees) == [expected]
    router.close_session(callees[expected][0])
    send(caller, 48, 2, {}, "svc")
    assert who_got(callees) == [1]


def test_random_spreads_calls() -> None:
    """random reaches every callee over many calls."""
    _, callees, caller, _ = shared("random")
    for req in range(1, 61):
        send(caller, 48, req, {}, "svc")
    assert set(who_got(callees)) == {0, 1, 2}


def test_conflicting_invocation_policies_refused() -> None:
    """A second registration must use the first one's policy; single allows no second."""
    router = make_router()
    a, ap = connect(router)
    b, bp = connect(router)
    register(a, ap, "svc1")
    register(a, ap, "svc2", invoke="roundrobin")
    send(b, 64, 1, {}, "svc1")
    send(b, 64, 2, {"invoke": "roundrobin"}, "svc1")
    send(b, 64, 3, {"invoke": "random"}, "svc2")
    send(b, 64, 4, {}, "svc2")
    send(a, 64, 5, {"invoke": "roundrobin"}, "svc2")
    assert [m[4] for m in bp.wire()] == [
        "wamp.error.procedure_already_exists",
        "wamp.error.procedure_exists_with_different_invocation_policy",
        "wamp.error.procedure_exists_with_different_invocation_policy",
        "wamp.error.procedure_exists_with_different_invocation_policy",
    ]
    assert ap.wire()[0][4] == "wamp.error.procedure_already_exists"


# -- progressive results and invocations ---------------------------------------------------------


def test_progressive_results_relayed_then_final() -> None:
    """With receive_progress, each progressive YIELD becomes a progressive RESULT."""
    _, callee, cpeer, caller, kpeer = pair()
    register(callee, cpeer, "p")
    send(caller, 48, 5, {"receive_progress": True}, "p")
    [[_, inv, _, details]] = cpeer.wire()
    assert details == {"receive_progress": True}
    send(callee, 70, inv, {"progress": True}, [1])
    send(callee, 70, inv, {"progress": True}, [2])
    send(callee, 70, inv, {}, [3])
    assert kpeer.wire() == [[50, 5, {"progress": True}, [1]], [50, 5, {"progress": True}, [2]],
                            [50, 5, {}, [3]]]


def test_progressive_results_dropped_when_not_asked() -> None:
    """A caller that did not ask for progress only gets the final result."""
    _, callee, cpeer, caller, kpeer = pair()
    register(callee, cpeer, "p")
    send(caller, 48, 5, {}, "p")
    inv = cpeer.wire()[0][1]
    send(callee, 70, inv, {"progress": True}, [1])
    send(callee, 70, inv, {}, [3])
    assert kpeer.wire() == [[50, 5, {}, [3]]]


def test_progressive_invocations_share_request_and_callee() -> None:
    """Progressive CALLs reuse the request ID; the callee sees one invocation ID throughout."""
    router = make_router()
    callees = [connect(router, roles=ROLES_ADVANCED) for _ in range(2)]
    for s, p in callees:
        register(s, p, "up", invoke="roundrobin")
    caller, kpeer = connect(router, roles=ROLES_ADVANCED)
    send(caller, 48, 7, {"progress": True}, "up", ["a"])
    send(caller, 48, 7, {"progress": True}, "up", ["b"])
    send(caller, 48, 7, {}, "up", ["c"])
    first, second = (p.wire() for _, p in callees)
    assert second == []
    assert [(m[3], m[4]) for m in first] == [({"progress": True}, ["a"]),
                                             ({"progress": True}, ["b"]), ({}, ["c"])]
    assert len({m[1] for m in first}) == 1
    send(callees[0][0], 70, first[0][1], {}, ["done"])
    assert kpeer.wire() == [[50, 7, {}, ["done"]]]


def test_progressive_call_needs_the_callers_feature() -> None:
    """progress=true from a caller that did not announce the feature is a violation."""
    router = make_router()
    callee, cpeer = connect(router, roles=ROLES_ADVANCED)
    register(callee, cpeer, "up")
    caller, kpeer = connect(router)
    send(caller, 48, 1, {"progress": True}, "up")
    assert kpeer.wire()[0][::2] == [3, "wamp.error.protocol_violation"]


def test_progressive_call_to_a_callee_without_the_feature() -> None:
    """A callee that cannot take progressive invocations gives feature_not_supported."""
    router = make_router()
    callee, cpeer = connect(router)
    register(callee, cpeer, "up")
    caller, kpeer = connect(router, roles=ROLES_ADVANCED)
    send(caller, 48, 1, {"progress": True}, "up")
    assert kpeer.wire()[0][4] == "wamp.error.feature_not_supported"


# -- cancel --------------------------------------------------------------------------------------


def started_call(mode_roles: Any = ROLES_ADVANCED) -> tuple[Any, ...]:
    router = make_router()
    callee, cpeer = connect(router, roles=mode_roles)
    register(callee, cpeer, "slow")
    caller, kpeer = connect(router, roles=ROLES_ADVANCED)
    send(caller, 48, 3, {}, "slow")
    inv = cpeer.wire()[0][1]
    return router, callee, cpeer, caller, kpeer, inv


def test_cancel_skip_answers_at_once_and_drops_the_result() -> None:
    """skip: ERROR canceled now, no INTERRUPT, the callee's late result is discarded."""
    router, callee, cpeer, caller, kpeer, inv = started_call()
    send(caller, 49, 3, {"mode": "skip"})
    assert kpeer.wire() == [[8, 48, 3, {}, "wamp.error.canceled"]]
    assert cpeer.wire() == []
    send(callee, 70, inv, {}, ["late"])
    assert kpeer.wire() == [] and router.realms["realm1"].dealer.pending_calls == 0


def test_cancel_kill_waits_for_the_callee() -> None:
    """kill: INTERRUPT to the callee; its answer is the caller's one final answer."""
    _, callee, cpeer, caller, kpeer, inv = started_call()
    send(caller, 49, 3, {"mode": "kill"})
    send(caller, 49, 3, {"mode": "kill"})
    assert cpeer.wire() == [[69, inv, {"mode": "kill"}]]
    assert kpeer.wire() == []
    send(callee, 8, 68, inv, {}, "wamp.error.canceled")
    send(callee, 70, inv, {})
    assert kpeer.wire() == [[8, 48, 3, {}, "wamp.error.canceled"]]


def test_cancel_killnowait_answers_and_interrupts() -> None:
    """killnowait (the default): ERROR now, INTERRUPT to the callee, later answers dropped."""
    _, callee, cpeer, caller, kpeer, inv = started_call()
    send(caller, 49, 3, {})
    assert kpeer.wire() == [[8, 48, 3, {}, "wamp.error.canceled"]]
    assert cpeer.wire() == [[69, inv, {"mode": "killnowait"}]]
    send(callee, 8, 68, inv, {}, "wamp.error.canceled")
    assert kpeer.wire() == []


def test_cancel_kill_without_callee_support_is_skip() -> None:
    """A callee that cannot be interrupted gets nothing; the caller is answered at once."""
    _, _, cpeer, caller, kpeer, _ = started_call(mode_roles=None)
    send(caller, 49, 3, {"mode": "kill"})
    assert cpeer.wire() == []
    assert kpeer.wire() == [[8, 48, 3, {}, "wamp.error.canceled"]]


def test_cancel_bad_mode_and_finished_call() -> None:
    """A bad mode is refused; cancelling a finished call does nothing."""
    _, callee, _, caller, kpeer, inv = started_call()
    send(caller, 49, 3, {"mode": "nuke"})
    assert kpeer.wire()[0][1::3] == [49, "wamp.error.invalid_argument"]
    send(callee, 70, inv, {})
    send(caller, 49, 3, {})
    assert kpeer.wire() == [[50, 3, {}]]


# -- timeouts ------------------------------------------------------------------------------------


def test_timeout_errors_the_caller_and_interrupts_the_callee() -> None:
    """After timeout ms the caller gets wamp.error.timeout and the callee an INTERRUPT."""
    clock = Clock()
    router, callee, cpeer, caller, kpeer = pair(clock)
    register(callee, cpeer, "slow")
    send(caller, 48, 4, {"timeout": 250}, "slow")
    inv = cpeer.wire()[0][1]
    clock.advance(0.2)
    assert kpeer.wire() == []
    clock.advance(0.1)
    assert kpeer.wire() == [[8, 48, 4, {}, "wamp.error.timeout", ["the call timed out"]]]
    assert cpeer.wire() == [[69, inv, {"mode": "killnowait", "reason": "wamp.error.timeout"}]]
    send(callee, 70, inv, {})
    assert kpeer.wire() == [] and router.realms["realm1"].dealer.pending_calls == 0


def test_answered_call_cancels_its_timer() -> None:
    """A call answered in time leaves no timer behind."""
    clock = Clock()
    _, callee, cpeer, caller, kpeer = pair(clock)
    register(callee, cpeer, "fast")
    send(caller, 48, 4, {"timeout": 1000}, "fast")
    send(callee, 70, cpeer.wire()[0][1], {})
    assert kpeer.wire() == [[50, 4, {}]] and clock.getDelayedCalls() == []


def test_bad_timeout_refused() -> None:
    """timeout must be a non-negative integer of milliseconds."""
    _, callee, cpeer, caller, kpeer = pair()
    register(callee, cpeer, "p")
    send(caller, 48, 1, {"timeout": -1}, "p")
    send(caller, 48, 2, {"timeout": 1.5}, "p")
    assert [m[4] for m in kpeer.wire()] == ["wamp.error.invalid_argument"] * 2


# -- caller disclosure -----------------------------------------------------------------------------


def test_disclose_me_adds_caller_identity() -> None:
    """disclose_me puts caller, caller_authid and caller_authrole in the INVOCATION."""
    _, callee, cpeer, caller, _ = pair()
    register(callee, cpeer, "who")
    send(caller, 48, 1, {"disclose_me": True}, "who")
    send(caller, 48, 2, {}, "who")
    with_id, without = cpeer.wire()
    assert with_id[3] == {"caller": caller.id, "caller_authid": caller.authid,
                          "caller_authrole": "anonymous"}
    assert without[3] == {}


def test_registration_may_ask_for_disclosure() -> None:
    """A callee registering with disclose_caller learns every caller."""
    _, callee, cpeer, caller, _ = pair()
    register(callee, cpeer, "who", disclose_caller=True)
    send(caller, 48, 1, {}, "who")
    assert cpeer.wire()[0][3]["caller"] == caller.id


def test_realm_may_force_or_forbid_disclosure() -> None:
    """force discloses every caller; forbid refuses disclose_me and discloses nobody."""
    _, callee, cpeer, caller, _ = pair(disclose="force")
    register(callee, cpeer, "who")
    send(caller, 48, 1, {}, "who")
    assert cpeer.wire()[0][3]["caller"] == caller.id
    _, callee, cpeer, caller, kpeer = pair(disclose="forbid")
    register(callee, cpeer, "who", disclose_caller=True)
    send(caller, 48, 1, {"disclose_me": True}, "who")
    send(caller, 48, 2, {}, "who")
    assert kpeer.wire()[0][4] == "wamp.error.option_disallowed.disclose_me"
    assert cpeer.wire()[0][3] == {}


# -- sessions leaving ------------------------------------------------------------------------------


def test_caller_leaving_interrupts_the_callee() -> None:
    """When a caller goes, callees that support it get INTERRUPT killnowait."""
    router, _callee, cpeer, caller, _, inv = started_call()
    router.close_session(caller)
    assert cpeer.wire() == [[69, inv, {"mode": "killnowait"}]]
    assert router.realms["realm1"].dealer.pending_calls == 0


def test_callee_leaving_with_timer_cancels_it() -> None:
    """A callee leaving fails its calls and their timers stop."""
    clock = Clock()
    router, callee, cpeer, caller, kpeer = pair(clock)
    register(callee, cpeer, "slow")
    send(caller, 48, 4, {"timeout": 1000}, "slow")
    router.close_session(callee)
    assert kpeer.wire()[0][4] == "wamp.error.canceled"
    assert clock.getDelayedCalls() == []


# -- the fallback callee (federation) -------------------------------------------------------------


def test_fallback_callee_gets_calls_nobody_else_matches() -> None:
    """With a fallback callee, an unmatched call reaches it with details.procedure; a local
    registration still wins; when the fallback leaves, calls fail with no_such_procedure."""
    router, callee, cpeer, caller, kpeer = pair()
    proxy, ppeer = connect(router, roles=ROLES_ADVANCED)
    dealer = router.realms["realm1"].dealer
    dealer.fallback = proxy
    register(callee, cpeer, "local.proc")
    send(caller, 48, 1, {}, "remote.proc", [1])
    [[code, inv, reg_id, details, args]] = ppeer.wire()
    assert (code, reg_id, details, args) == (68, 0, {"procedure": "remote.proc"}, [1])
    send(proxy, 70, inv, {}, ["from afar"])
    assert kpeer.wire() == [[50, 1, {}, ["from afar"]]]
    send(caller, 48, 2, {}, "local.proc")
    assert cpeer.wire()[0][0] == 68 and ppeer.wire() == []
    router.close_session(proxy)
    send(caller, 48, 3, {}, "remote.proc")
    assert kpeer.wire()[0][4] == "wamp.error.no_such_procedure"


def test_fallback_serves_only_the_callers_it_accepts() -> None:
    """``fallback_serves`` keeps a caller from the fallback callee: its call is answered
    no_such_procedure at once (the proxy refuses other routers' proxies: no forwarding loops)."""
    router, _, _, caller, kpeer = pair()
    other, opeer = connect(router, roles=ROLES_ADVANCED)
    proxy, ppeer = connect(router, roles=ROLES_ADVANCED)
    dealer = router.realms["realm1"].dealer
    dealer.fallback = proxy
    dealer.fallback_serves = lambda session: session is not other
    send(other, 48, 1, {}, "remote.proc")
    assert opeer.wire()[0][:5] == [8, 48, 1, {}, "wamp.error.no_such_procedure"]
    assert ppeer.wire() == []
    send(caller, 48, 1, {}, "remote.proc")
    assert ppeer.wire()[0][0] == 68 and kpeer.wire() == []


def test_identify_names_the_disclosed_caller() -> None:
    """A disclosed INVOCATION names whom ``identify`` says (the proxy: the caller another
    router disclosed); undisclosed calls never ask it."""
    router, callee, cpeer, caller, _ = pair()
    dealer = router.realms["realm1"].dealer
    asked: list[dict[str, Any]] = []

    def identify(session: Any, call: Any) -> tuple[int, str | None, str | None]:
        asked.append(call.options)
        return 77, "far-away", "remote-role"

    dealer.identify = identify
    register(callee, cpeer, "p")
    send(caller, 48, 1, {"disclose_me": True, "x_hint": 1}, "p")
    details = cpeer.wire()[0][3]
    assert (details["caller"], details["caller_authid"], details["caller_authrole"]) == (
        77, "far-away", "remote-role")
    send(caller, 48, 2, {}, "p")
    assert "caller" not in cpeer.wire()[0][3]
    assert asked == [{"disclose_me": True, "x_hint": 1}]


def test_listeners_hear_registration_changes() -> None:
    """Every listener (meta API, proxy) hears on_create/on_register/on_unregister/on_delete."""
    router, callee, cpeer, _, _ = pair()
    heard: list[str] = []
    router.realms["realm1"].dealer.listeners.append(lambda ev, s, r: heard.append(ev))
    reg = register(callee, cpeer, "x")
    send(callee, 66, 5, reg)
    assert heard == ["on_create", "on_register", "on_unregister", "on_delete"]
