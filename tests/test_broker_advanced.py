"""Advanced Profile PubSub in the broker: exclusion, black/whitelisting, disclosure,
patterns, retention and history."""

from typing import Any

from twisted.internet.task import Clock

from serouter.core.access import AllowAll
from serouter.core.realm import RealmOptions
from serouter.core.router import Router
from tests.fakes import FakePeer, connect, make_router, send


def subscribed(
    router: Any, n: int, topic: str = "t", **options: Any
) -> list[tuple[Any, FakePeer]]:
    sessions = [connect(router) for _ in range(n)]
    for s, p in sessions:
        send(s, 32, 1, options, topic)
        p.wire()
    return sessions


def receivers(sessions: list[tuple[Any, FakePeer]]) -> list[int]:
    return [i for i, (_, p) in enumerate(sessions) if p.wire()]


def test_blacklist_and_whitelist_by_session_authid_authrole() -> None:
    """exclude/eligible by session ID, authid and authrole pick who gets the event."""
    router = make_router()
    subs = subscribed(router, 4)
    pub, _ = connect(router)
    ids = [s.id for s, _ in subs]
    send(pub, 16, 1, {"exclude": [ids[0]]}, "t")
    assert receivers(subs) == [1, 2, 3]
    send(pub, 16, 2, {"eligible": [ids[1], ids[2]], "exclude": [ids[2]]}, "t")
    assert receivers(subs) == [1]
    send(pub, 16, 3, {"eligible_authid": [subs[3][0].authid]}, "t")
    assert receivers(subs) == [3]
    send(pub, 16, 4, {"exclude_authrole": ["anonymous"]}, "t")
    assert receivers(subs) == []
    send(pub, 16, 5, {"eligible_authrole": ["anonymous"], "exclude_authid": [subs[0][0].authid]},
         "t")
    assert receivers(subs) == [1, 2, 3]


def test_malformed_filter_refused_when_acknowledged() -> None:
    """A filter that is not a list of the right type is refused (silently if unacknowledged)."""
    router = make_router()
    subs = subscribed(router, 1)
    pub, ppeer = connect(router)
    send(pub, 16, 1, {"exclude": ["x"]}, "t")
    send(pub, 16, 2, {"exclude": "x", "acknowledge": True}, "t")
    send(pub, 16, 3, {"eligible_authid": [1], "acknowledge": True}, "t")
    assert [m[4] for m in ppeer.wire()] == ["wamp.error.invalid_argument"] * 2
    assert receivers(subs) == []


def test_null_filters_mean_absent() -> None:
    """Real clients send null for unset options: treated as absent."""
    router = make_router()
    subs = subscribed(router, 1)
    pub, _ = connect(router)
    send(pub, 16, 1, {"exclude": None, "eligible": None, "exclude_me": None}, "t")
    assert receivers(subs) == [0]


def with_options(**options: Any) -> Router:
    options_by_realm = {"realm1": RealmOptions(**options)}
    return Router(["realm1"], AllowAll(), Clock(), realm_options=options_by_realm)


def test_publisher_disclosure_allow_force_forbid() -> None:
    """disclose_me adds the publisher's identity; the realm may force or forbid it."""
    router = make_router()
    [(_, speer)] = subscribed(router, 1)
    pub, ppeer = connect(router)
    send(pub, 16, 1, {"disclose_me": True}, "t")
    send(pub, 16, 2, {}, "t")
    a, b = speer.wire()
    assert a[3] == {"publisher": pub.id, "publisher_authid": pub.authid,
                    "publisher_authrole": "anonymous"}
    assert b[3] == {}
    router = with_options(disclose_publisher="force")
    [(_, speer)] = subscribed(router, 1)
    pub, _ = connect(router)
    send(pub, 16, 1, {}, "t")
    assert speer.wire()[0][3]["publisher"] == pub.id
    router = with_options(disclose_publisher="forbid")
    [(_, speer)] = subscribed(router, 1)
    pub, ppeer = connect(router)
    send(pub, 16, 1, {"disclose_me": True, "acknowledge": True}, "t")
    assert ppeer.wire()[0][4] == "wamp.error.option_disallowed.disclose_me"
    assert speer.wire() == []


def test_pattern_subscriptions_get_topic_in_details() -> None:
    """Prefix and wildcard subscribers get the concrete topic; exact ones do not need it."""
    router = make_router()
    [(_, exact)] = subscribed(router, 1, "a.b.c")
    [(_, prefix)] = subscribed(router, 1, "a", match="prefix")
    [(_, wild)] = subscribed(router, 1, "a..c", match="wildcard")
    pub, _ = connect(router)
    send(pub, 16, 1, {}, "a.b.c", [1])
    assert exact.wire()[0][3] == {}
    assert prefix.wire()[0][3] == {"topic": "a.b.c"}
    assert wild.wire()[0][3] == {"topic": "a.b.c"}
    send(pub, 16, 2, {}, "a.x.y")
    assert (len(exact.wire()), len(prefix.wire()), len(wild.wire())) == (0, 1, 0)


def test_retained_event_delivered_on_get_retained() -> None:
    """The last retained event reaches a new subscriber that asks, marked retained."""
    router = make_router()
    pub, _ = connect(router)
    send(pub, 16, 1, {"retain": True}, "sensor", [20])
    send(pub, 16, 2, {"retain": True, "acknowledge": True}, "sensor", [21])
    send(pub, 16, 3, {}, "sensor", [22])  # not retained
    s, p = connect(router)
    send(s, 32, 1, {"get_retained": True}, "sensor")
    [subscribed_msg, event] = p.wire()
    assert subscribed_msg[0] == 33
    assert (event[0], event[3], event[4]) == (36, {"retained": True}, [21])
    s2, p2 = connect(router)
    send(s2, 32, 1, {}, "sensor")
    assert len(p2.wire()) == 1


def test_retained_event_respects_eligibility_and_patterns() -> None:
    """A retained event goes only to subscribers it was eligible for, patterns included."""
    router = make_router()
    pub, _ = connect(router)
    allowed, ap = connect(router)
    other, op = connect(router)
    send(pub, 16, 1, {"retain": True, "eligible": [allowed.id]}, "room.1.temp", [5])
    send(allowed, 32, 1, {"get_retained": True, "match": "wildcard"}, "room..temp")
    send(other, 32, 1, {"get_retained": True, "match": "prefix"}, "room")
    assert ap.wire()[1][3] == {"retained": True, "topic": "room.1.temp"}
    assert len(op.wire()) == 1


def test_history_is_bounded_and_filtered() -> None:
    """Configured topics keep their last N events; readers only see what they were allowed."""
    clock = Clock()
    router = Router(["realm1"], AllowAll(), clock,
                    realm_options={"realm1": RealmOptions(history=("log",), history_limit=3)})
    broker = router.realms["realm1"].broker
    pub, _ = connect(router)
    reader, rp = connect(router)
    for i in range(5):
        clock.advance(1)
        send(pub, 16, i + 1, {}, "log", [i])
    clock.advance(1)
    send(pub, 16, 9, {"exclude": [reader.id]}, "log", ["secret"])
    send(pub, 16, 10, {}, "other", ["x"])
    send(reader, 32, 1, {}, "log")
    sub = broker.subscription(rp.wire()[0][2])
    assert sub is not None
    assert [e.args for e in broker.events(sub, reader, 10)] == [[3], [4]]
    third, _ = connect(router)
    assert [e.args for e in broker.events(sub, third, 2)] == [[4], ["secret"]]
    assert broker.events(sub, pub, 10) == []  # exclude_me: not its own events either


def test_meta_publication_reaches_everyone() -> None:
    """Router-originated events exclude nobody."""
    router = make_router()
    subs = subscribed(router, 2, "wamp.session.on_join")
    broker = router.realms["realm1"].broker
    out = broker.publish_meta("wamp.session.on_join", [{"session": 1}])
    assert {s.id for s, _ in out} == {s.id for s, _ in subs}


def test_publish_listeners_hear_accepted_publications_only() -> None:
    """Every accepted PUBLISH (with or without options) is told to the publish listeners, as
    (publisher, topic); a refused one is not; the router's own meta events are not."""
    router = make_router()
    heard: list[tuple[int, str]] = []
    router.realms["realm1"].broker.publish_listeners.append(
        lambda session, topic: heard.append((session.id, topic)))
    publisher, ppeer = connect(router)
    send(publisher, 16, 1, {}, "plain")
    send(publisher, 16, 2, {"acknowledge": True, "exclude": [1, 2]}, "with.options")
    send(publisher, 16, 3, {"acknowledge": True, "exclude": "bad"}, "refused")
    connect(router)  # its join is published to wamp.session.on_join (a meta event)
    assert heard == [(publisher.id, "plain"), (publisher.id, "with.options")]
    assert ppeer.wire()[1][4] == "wamp.error.invalid_argument"
