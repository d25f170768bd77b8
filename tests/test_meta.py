"""The meta API: session, registration and subscription procedures, events, testaments."""

from typing import Any

from twisted.internet.task import Clock

from serouter.core.access import AllowAll
from serouter.core.realm import RealmOptions
from serouter.core.router import Router
from tests.fakes import FakePeer, connect, make_router, send


def call(session: Any, peer: FakePeer, procedure: str, *args: Any, **kwargs: Any) -> Any:
    """Call a meta procedure; the single result value, or ('error', uri)."""
    send(session, 48, 77, {}, procedure, list(args), kwargs)
    [reply] = [m for m in peer.wire() if m[0] in (50, 8)]
    if reply[0] == 8:
        return ("error", reply[4])
    return reply[3][0]


def test_session_count_list_get() -> None:
    """count/list (with an authrole filter) and get describe the realm's sessions."""
    router = make_router()
    a, ap = connect(router)
    b, _ = connect(router)
    assert call(a, ap, "wamp.session.count") == 2
    assert sorted(call(a, ap, "wamp.session.list")) == sorted([a.id, b.id])
    assert call(a, ap, "wamp.session.count", ["admin"]) == 0
    details = call(a, ap, "wamp.session.get", b.id)
    assert details["session"] == b.id and details["authrole"] == "anonymous"
    assert details["transport"]["type"] == "rawsocket" and "label" in details
    assert call(a, ap, "wamp.session.get", 12345) == ("error", "wamp.error.no_such_session")
    assert call(a, ap, "wamp.session.get", "x") == ("error", "wamp.error.invalid_argument")


def test_kill_sends_goodbye_with_reason_and_message() -> None:
    """kill closes another session with GOODBYE; killing oneself is no_such_session."""
    router = make_router()
    a, ap = connect(router)
    b, bp = connect(router)
    assert call(a, ap, "wamp.session.kill", b.id, reason="com.x.bye", message="go") is None
    assert bp.wire() == [[6, {"message": "go"}, "com.x.bye"]]
    assert call(a, ap, "wamp.session.kill", a.id) == ("error", "wamp.error.no_such_session")
    c, _ = connect(router)
    assert call(a, ap, "wamp.session.kill", c.id, reason="not a uri") == (
        "error", "wamp.error.invalid_uri")


def test_kill_by_authid_authrole_and_all_spare_the_caller() -> None:
    """kill_by_authid/authrole/all close matching sessions but never the caller."""
    router = make_router()
    a, ap = connect(router)
    others = [connect(router) for _ in range(3)]
    assert call(a, ap, "wamp.session.kill_by_authid", others[0][0].authid) == 1
    assert others[0][1].wire() == [[6, {}, "wamp.close.normal"]]
    assert call(a, ap, "wamp.session.kill_by_authrole", "anonymous") == 2
    assert call(a, ap, "wamp.session.kill_all") == 0
    assert call(a, ap, "wamp.session.count") == 1


def test_join_and_leave_events() -> None:
    """on_join carries the session details, on_leave its id, authid and authrole."""
    router = make_router()
    watcher, wp = connect(router)
    send(watcher, 32, 1, {}, "wamp.session.on_join")
    send(watcher, 32, 2, {}, "wamp.session.on_leave")
    wp.wire()
    s, _ = connect(router)
    [[_, _, _, _, [details]]] = wp.wire()
    assert details["session"] == s.id
    router.close_session(s)
    [[_, _, _, _, args]] = wp.wire()
    assert args == [s.id, s.authid, "anonymous"]


def test_registration_meta_procedures_and_events() -> None:
    """list/lookup/match/get/list_callees/count_callees and on_create..on_delete."""
    router = make_router()
    watcher, wp = connect(router)
    for i, ev in enumerate(("on_create", "on_register", "on_unregister", "on_delete")):
        send(watcher, 32, i + 1, {}, f"wamp.registration.{ev}")
    wp.wire()
    callee, cp = connect(router)
    send(callee, 64, 1, {"match": "prefix"}, "com.app")
    reg = cp.wire()[0][2]
    created, registered = wp.wire()
    assert created[4][0] == callee.id and created[4][1]["uri"] == "com.app"
    assert registered[4] == [callee.id, reg]
    assert call(watcher, wp, "wamp.registration.list") == {"exact": [], "prefix": [reg],
                                                            "wildcard": []}
    assert call(watcher, wp, "wamp.registration.lookup", "com.app", {"match": "prefix"}) == reg
    assert call(watcher, wp, "wamp.registration.lookup", "com.app") is None
    assert call(watcher, wp, "wamp.registration.match", "com.app.x") == reg
    details = call(watcher, wp, "wamp.registration.get", reg)
    assert (details["match"], details["invoke"], details["created"][-1]) == ("prefix", "single",
                                                                            "Z")
    assert call(watcher, wp, "wamp.registration.list_callees", reg) == [callee.id]
    assert call(watcher, wp, "wamp.registration.count_callees", reg) == 1
    assert call(watcher, wp, "wamp.registration.get", 999) == (
        "error", "wamp.error.no_such_registration")
    send(callee, 66, 2, reg)
    assert [m[4] for m in wp.wire()] == [[callee.id, reg], [callee.id, reg]]


def test_subscription_meta_procedures_and_events() -> None:
    """Subscription meta procedures answer, and subscribe/unsubscribe publish events."""
    router = make_router()
    watcher, wp = connect(router)
    send(watcher, 32, 1, {}, "wamp.subscription.on_subscribe")
    wp.wire()
    s, sp = connect(router)
    send(s, 32, 1, {"match": "wildcard"}, "a..c")
    sub = sp.wire()[0][2]
    assert wp.wire()[0][4] == [s.id, sub]
    assert call(watcher, wp, "wamp.subscription.match", "a.b.c") == [sub]
    assert call(watcher, wp, "wamp.subscription.match", "zz") is None
    assert call(watcher, wp, "wamp.subscription.lookup", "a..c", {"match": "wildcard"}) == sub
    assert call(watcher, wp, "wamp.subscription.get", sub)["uri"] == "a..c"
    assert call(watcher, wp, "wamp.subscription.list_subscribers", sub) == [s.id]
    assert call(watcher, wp, "wamp.subscription.count_subscribers", sub) == 1
    listing = call(watcher, wp, "wamp.subscription.list")
    assert sub in listing["wildcard"]


def test_get_events_and_topic_history() -> None:
    """History topics answer get_events and wamp.topic.history.last/after/since."""
    clock = Clock()
    options = {"realm1": RealmOptions(history=("log",), history_limit=10)}
    router = Router(["realm1"], AllowAll(), clock, realm_options=options)
    pub, _ = connect(router)
    reader, rp = connect(router)
    send(reader, 32, 1, {}, "log")
    sub = rp.wire()[0][2]
    for i in range(4):
        clock.advance(10)
        send(pub, 16, i + 1, {}, "log", [i])
    rp.wire()
    events = call(reader, rp, "wamp.subscription.get_events", sub, 2)
    assert [e["args"] for e in events] == [[2], [3]]
    assert [e["args"] for e in call(reader, rp, "wamp.topic.history.last", "log", 1)] == [[3]]
    first = call(reader, rp, "wamp.topic.history.last", "log", 4)[0]
    after = call(reader, rp, "wamp.topic.history.after", "log", first["publication"])
    assert [e["args"] for e in after] == [[1], [2], [3]]
    since = call(reader, rp, "wamp.topic.history.since", "log", "1970-01-01T00:00:25Z")
    assert [e["args"] for e in since] == [[2], [3]]


def test_testament_published_when_session_is_lost() -> None:
    """A testament is published when its session goes; flushed ones are not."""
    router = make_router()
    watcher, wp = connect(router)
    send(watcher, 32, 1, {}, "com.app.gone")
    wp.wire()
    s, sp = connect(router)
    assert call(s, sp, "wamp.session.add_testament", "com.app.gone", [1], {"k": 2}) is None
    router.close_session(s)
    [[code, _, _, _, args, kwargs]] = wp.wire()
    assert (code, args, kwargs) == (36, [1], {"k": 2})
    t, tp = connect(router)
    call(t, tp, "wamp.session.add_testament", "com.app.gone", [2])
    call(t, tp, "wamp.session.add_testament", "com.app.gone", [3], scope="detached")
    assert call(t, tp, "wamp.session.flush_testaments") == 1  # the destroyed bucket
    router.close_session(t)
    assert [m[4] for m in wp.wire()] == [[3]]


def test_kill_all_publishes_no_meta_events_or_testaments() -> None:
    """kill_all closes everyone else without on_leave events or testaments (the spec)."""
    router = make_router()
    watcher, wp = connect(router)
    send(watcher, 32, 1, {}, "wamp.session.on_leave")
    send(watcher, 32, 2, {}, "com.app.gone")
    wp.wire()
    s, sp = connect(router)
    call(s, sp, "wamp.session.add_testament", "com.app.gone", [1])
    assert call(watcher, wp, "wamp.session.kill_all") == 1
    assert wp.wire() == []


def test_meta_event_follows_the_reply_that_caused_it() -> None:
    """Subscribing to on_subscribe gets SUBSCRIBED before the on_subscribe event it causes."""
    router = make_router()
    s, sp = connect(router)
    send(s, 32, 1, {}, "wamp.subscription.on_subscribe")
    assert [m[0] for m in sp.wire()] == [33, 36]


def test_unknown_meta_procedure() -> None:
    """A wamp.* procedure the router does not have is no_such_procedure."""
    router = make_router()
    a, ap = connect(router)
    assert call(a, ap, "wamp.session.frobnicate") == ("error", "wamp.error.no_such_procedure")
