"""RPC through a realm: register, call, yield, errors, unregister, callees leaving."""

from serouter.core.access import Action, Subject
from tests.fakes import connect, make_router, send


def setup_call() -> tuple:
    router = make_router()
    callee, cpeer = connect(router)
    caller, kpeer = connect(router)
    send(callee, 64, 1, {}, "com.example.add")
    [[code, req, reg]] = cpeer.wire()
    assert (code, req) == (65, 1)
    return router, callee, cpeer, caller, kpeer, reg


def test_call_reaches_callee_and_result_reaches_caller() -> None:
    """CALL becomes INVOCATION with the payload; YIELD becomes RESULT for the right request."""
    _, callee, cpeer, caller, kpeer, reg = setup_call()
    send(caller, 48, 7, {}, "com.example.add", [1, 2], {"k": "v"})
    [[code, inv, reg_id, details, args, kwargs]] = cpeer.wire()
    assert (code, reg_id, details, args, kwargs) == (68, reg, {}, [1, 2], {"k": "v"})
    send(callee, 70, inv, {}, [3])
    assert kpeer.wire() == [[50, 7, {}, [3]]]


def test_invocation_ids_are_per_callee_sequential() -> None:
    """The router's INVOCATION request IDs count up from 1 in the callee's scope."""
    _, _, cpeer, caller, _, _ = setup_call()
    for req in (1, 2, 3):
        send(caller, 48, req, {}, "com.example.add")
    assert [m[1] for m in cpeer.wire()] == [1, 2, 3]


def test_callee_error_reaches_caller_with_payload() -> None:
    """A callee's ERROR is relayed to the caller with its URI, args and kwargs."""
    _, callee, cpeer, caller, kpeer, _ = setup_call()
    send(caller, 48, 9, {}, "com.example.add")
    inv = cpeer.wire()[0][1]
    send(callee, 8, 68, inv, {}, "com.example.error.bad", ["why"], {"code": 3})
    assert kpeer.wire() == [[8, 48, 9, {}, "com.example.error.bad", ["why"], {"code": 3}]]


def test_no_such_procedure() -> None:
    """Calling an unregistered procedure gets ERROR no_such_procedure."""
    _, _, _, caller, kpeer, _ = setup_call()
    send(caller, 48, 2, {}, "com.example.missing")
    [[code, rtype, req, _, uri, _args]] = kpeer.wire()
    assert (code, rtype, req, uri) == (8, 48, 2, "wamp.error.no_such_procedure")


def test_duplicate_registration_refused() -> None:
    """Registering a procedure twice gets ERROR procedure_already_exists."""
    _, _, _, caller, kpeer, _ = setup_call()
    send(caller, 64, 5, {}, "com.example.add")
    assert kpeer.wire()[0][4] == "wamp.error.procedure_already_exists"


def test_invalid_and_reserved_uris_refused() -> None:
    """Invalid URIs in REGISTER and CALL, and 'wamp.' procedures, get invalid_uri."""
    _, _, _, caller, kpeer, _ = setup_call()
    send(caller, 64, 5, {}, "com..example")
    send(caller, 64, 6, {}, "wamp.session.count")
    send(caller, 48, 7, {}, "com.exa mple")
    assert [m[4] for m in kpeer.wire()] == ["wamp.error.invalid_uri"] * 3


def test_unknown_match_policy_refused() -> None:
    """A match policy the router does not implement is refused, not silently exact."""
    _, _, _, caller, kpeer, _ = setup_call()
    send(caller, 64, 5, {"match": "fuzzy"}, "com.example")
    assert kpeer.wire()[0][4] == "wamp.error.option_not_allowed"


def test_unregister_and_no_such_registration() -> None:
    """UNREGISTER removes the procedure; doing it again, or by another session, is refused."""
    router, callee, cpeer, caller, kpeer, reg = setup_call()
    send(caller, 66, 3, reg)
    assert kpeer.wire()[0][4] == "wamp.error.no_such_registration"
    send(callee, 66, 2, reg)
    assert cpeer.wire() == [[67, 2]]
    send(callee, 66, 3, reg)
    assert cpeer.wire()[0][4] == "wamp.error.no_such_registration"
    assert router.realms["realm1"].dealer.lookup("com.example.add") is None


def test_callee_leaving_fails_outstanding_calls_at_once() -> None:
    """When a callee goes, each of its in-flight calls gets an ERROR immediately."""
    router, callee, _, caller, kpeer, _ = setup_call()
    send(caller, 48, 1, {}, "com.example.add")
    send(caller, 48, 2, {}, "com.example.add")
    router.close_session(callee)
    replies = kpeer.wire()
    assert sorted(m[2] for m in replies) == [1, 2]
    assert {(m[0], m[1], m[4]) for m in replies} == {(8, 48, "wamp.error.canceled")}
    assert router.realms["realm1"].dealer.pending_calls == 0


def test_caller_leaving_drops_its_calls() -> None:
    """A late YIELD for a caller that left is dropped quietly."""
    router, callee, cpeer, caller, kpeer, _ = setup_call()
    send(caller, 48, 1, {}, "com.example.add")
    inv = cpeer.wire()[0][1]
    router.close_session(caller)
    send(callee, 70, inv, {}, [1])
    assert kpeer.wire() == [] and router.realms["realm1"].dealer.pending_calls == 0


def test_yield_for_unknown_invocation_is_ignored() -> None:
    """A YIELD nobody waits for is ignored (a race with a caller leaving, not a violation)."""
    _, callee, cpeer, *_ = setup_call()
    send(callee, 70, 999, {})
    assert cpeer.wire() == [] and not cpeer.closed


def test_reused_call_request_id_is_a_violation() -> None:
    """A caller reusing an outstanding request ID is aborted (its results would be ambiguous)."""
    _, _, _, caller, kpeer, _ = setup_call()
    send(caller, 48, 1, {}, "com.example.add")
    send(caller, 48, 1, {}, "com.example.add")
    assert kpeer.wire()[0][::2] == [3, "wamp.error.protocol_violation"]


def test_unregistered_callee_may_still_answer() -> None:
    """Unregistering keeps in-flight invocations: the callee's YIELD still reaches the caller."""
    _, callee, cpeer, caller, kpeer, reg = setup_call()
    send(caller, 48, 4, {}, "com.example.add")
    inv = cpeer.wire()[0][1]
    send(callee, 66, 2, reg)
    send(callee, 70, inv, {}, ["late"])
    assert kpeer.wire() == [[50, 4, {}, ["late"]]]


class Deny:
    def __init__(self, action: Action, error: Exception | None = None) -> None:
        self.action, self.error = action, error

    def check(self, subject: Subject, action: Action, realm: str, uri: str) -> bool:
        if action is self.action and self.error:
            raise self.error
        return action is not self.action


def test_denied_actions_get_not_authorized() -> None:
    """The realm's access check refuses before the dealer sees the message."""
    router = make_router(access=Deny(Action.REGISTER))
    s, peer = connect(router)
    send(s, 64, 1, {}, "a.b")
    assert peer.wire() == [[8, 64, 1, {}, "wamp.error.not_authorized"]]
    assert router.realms["realm1"].dealer.lookup("a.b") is None


def test_failing_check_gets_authorization_failed() -> None:
    """A check that raises is answered with authorization_failed and no detail."""
    router = make_router(access=Deny(Action.CALL, RuntimeError("backend down")))
    s, peer = connect(router)
    send(s, 48, 1, {}, "a.b")
    assert peer.wire() == [[8, 48, 1, {}, "wamp.error.authorization_failed"]]


class RefusingPeer:
    """A peer whose transport refuses the first ``refuse`` messages with ``error``."""

    def __init__(self, inner: object, error: str, refuse: int = 10**9) -> None:
        self.inner, self.error, self.refuse = inner, error, refuse

    def send(self, message: object) -> str | None:
        if self.refuse > 0:
            self.refuse -= 1
            return self.error
        return self.inner.send(message)  # type: ignore[attr-defined,no-any-return]

    def close(self) -> None:
        self.inner.close()  # type: ignore[attr-defined]


def test_invocation_the_callee_cannot_take_fails_the_call() -> None:
    """An INVOCATION the callee's transport refuses gives the caller that error at once."""
    router, callee, cpeer, caller, kpeer, _ = setup_call()
    callee.peer = RefusingPeer(cpeer, "wamp.error.payload_size_exceeded")
    send(caller, 48, 3, {}, "com.example.add", ["big"])
    [[code, rtype, req, _, uri, _args]] = kpeer.wire()
    assert (code, rtype, req, uri) == (8, 48, 3, "wamp.error.payload_size_exceeded")
    assert router.realms["realm1"].dealer.pending_calls == 0


def test_result_the_caller_cannot_take_becomes_an_error() -> None:
    """A RESULT the caller's transport refuses is replaced by an ERROR with that URI."""
    _, callee, cpeer, caller, kpeer, _ = setup_call()
    send(caller, 48, 4, {}, "com.example.add")
    inv = cpeer.wire()[0][1]
    caller.peer = RefusingPeer(kpeer, "wamp.error.invalid_argument", refuse=1)
    send(callee, 70, inv, {}, [float("nan")])
    assert kpeer.wire() == [[8, 48, 4, {}, "wamp.error.invalid_argument",
                             ["the callee's answer cannot be carried by the caller's transport"]]]
