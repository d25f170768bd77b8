"""PubSub through a realm: subscribe, publish, acknowledge, exclusion, unsubscribe."""

from serouter.core.access import Action, Subject
from tests.fakes import connect, make_router, send


def test_publish_reaches_subscribers_but_not_publisher() -> None:
    """Every subscriber but the publisher gets one EVENT with the payload."""
    router = make_router()
    subs = [connect(router) for _ in range(3)]
    for s, _ in subs:
        send(s, 32, 1, {}, "com.example.topic")
    sub_ids = {p.wire()[0][2] for _, p in subs}
    assert len(sub_ids) == 1
    publisher, ppeer = subs[0]
    send(publisher, 16, 5, {}, "com.example.topic", ["hi"], {"a": 1})
    assert ppeer.wire() == []
    events = [p.wire() for _, p in subs[1:]]
    assert events[0] == events[1]
    [[code, sub, pub, details, args, kwargs]] = events[0]
    assert (code, sub, details, args, kwargs) == (36, sub_ids.pop(), {}, ["hi"], {"a": 1})
    assert 1 <= pub <= 2**53


def test_one_event_object_shared_by_all_subscribers() -> None:
    """Subscribers of one subscription get the very same EVENT object (serialized once)."""
    router = make_router()
    subs = [connect(router) for _ in range(4)]
    for s, _ in subs:
        send(s, 32, 1, {}, "t")
    publisher, _ = connect(router)
    for _, p in subs:
        p.sent.clear()
    send(publisher, 16, 1, {}, "t", [1])
    assert len({id(p.sent[0]) for _, p in subs}) == 1


def test_acknowledged_publish_gets_published() -> None:
    """acknowledge=true gets PUBLISHED with the publication ID the events carry."""
    router = make_router()
    sub, speer = connect(router)
    send(sub, 32, 1, {}, "t")
    speer.wire()
    pub, ppeer = connect(router)
    send(pub, 16, 9, {"acknowledge": True}, "t")
    [[code, req, publication]] = ppeer.wire()
    assert (code, req) == (17, 9)
    assert speer.wire()[0][2] == publication


def test_exclude_me_false_delivers_to_publisher() -> None:
    """exclude_me=false lets the publisher receive its own event."""
    router = make_router()
    s, p = connect(router)
    send(s, 32, 1, {}, "t")
    p.wire()
    send(s, 16, 2, {"exclude_me": False}, "t")
    assert p.wire()[0][0] == 36


def test_unsubscribe_stops_events_and_unknown_is_refused() -> None:
    """After UNSUBSCRIBE no more events; unsubscribing again gets no_such_subscription."""
    router = make_router()
    s, p = connect(router)
    pub, _ = connect(router)
    send(s, 32, 1, {}, "t")
    sub_id = p.wire()[0][2]
    send(s, 34, 2, sub_id)
    assert p.wire() == [[35, 2]]
    send(pub, 16, 1, {}, "t")
    assert p.wire() == []
    send(s, 34, 3, sub_id)
    assert p.wire()[0][4] == "wamp.error.no_such_subscription"


def test_subscribe_twice_is_idempotent() -> None:
    """Subscribing again to the same topic returns the same subscription, one event each."""
    router = make_router()
    s, p = connect(router)
    pub, _ = connect(router)
    send(s, 32, 1, {}, "t")
    send(s, 32, 2, {}, "t")
    a, b = p.wire()
    assert a[2] == b[2]
    send(pub, 16, 1, {}, "t")
    assert len(p.wire()) == 1


def test_invalid_topic_refused() -> None:
    """Invalid topic URIs get invalid_uri; an unacknowledged bad publish gets no answer."""
    router = make_router()
    s, p = connect(router)
    send(s, 32, 1, {}, "a..b")
    send(s, 16, 2, {}, "a b")
    send(s, 16, 3, {"acknowledge": True}, "a b")
    assert [(m[2], m[4]) for m in p.wire()] == [(1, "wamp.error.invalid_uri"),
                                                (3, "wamp.error.invalid_uri")]


class DenyPublish:
    def check(self, subject: Subject, action: Action, realm: str, uri: str) -> bool:
        return action is not Action.PUBLISH


def test_denied_publish_silent_unless_acknowledged() -> None:
    """A denied PUBLISH reaches nobody; only an acknowledged one is answered."""
    router = make_router(access=DenyPublish())
    sub, speer = connect(router)
    send(sub, 32, 1, {}, "t")
    speer.wire()
    pub, ppeer = connect(router)
    send(pub, 16, 1, {}, "t")
    send(pub, 16, 2, {"acknowledge": True}, "t")
    assert ppeer.wire() == [[8, 16, 2, {}, "wamp.error.not_authorized"]]
    assert speer.wire() == []


def test_subscriber_leaving_removes_subscription() -> None:
    """When its last subscriber goes, the subscription goes."""
    router = make_router()
    s, p = connect(router)
    send(s, 32, 1, {}, "t")
    sub_id = p.wire()[0][2]
    router.close_session(s)
    assert router.realms["realm1"].broker.subscription(sub_id) is None
