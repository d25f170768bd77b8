"""Variable-sized state a client can make the router keep beyond a session's own limits:
retained events (kept for the realm, whoever published them) and testaments (kept until the
session ends). docs/reliability.md, "Limits"."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from serouter.config import ConfigError, parse_config
from serouter.core.access import AllowAll
from serouter.core.dealer import Limits
from serouter.core.realm import RealmOptions
from serouter.core.router import Router
from serouter.service import realm_options
from tests.fakes import connect, make_router, send


def test_retained_events_do_not_grow_with_the_number_of_topics() -> None:
    """A realm keeps one retained event per topic, whoever published it: past max_retained
    topics (default 10,000) the one retained longest ago goes, so 20,000 distinct topics keep
    the newest 10,000; re-retaining a topic makes it the newest again."""
    router = make_router()
    broker = router.realms["realm1"].broker
    publisher, _ = connect(router)
    send(publisher, 16, 1, {"retain": True}, "com.example.retained.t0", ["first"])
    for n in range(1, 20_000):
        send(publisher, 16, n + 1, {"retain": True}, f"com.example.retained.t{n}", ["x" * 100])
        if n == 15_000:  # t0 again: the newest, so it survives the next 4,999 new topics
            send(publisher, 16, 30_000, {"retain": True}, "com.example.retained.t0", ["again"])
    router.close_session(publisher)
    reader, peer = connect(router)
    send(reader, 32, 1, {"match": "prefix", "get_retained": True}, "com.example.retained.")
    retained = {m[3]["topic"]: m[4] for m in peer.wire() if m[0] == 36}
    assert len(retained) == Limits().retained == 10_000
    assert broker.retained_dropped == 10_001  # t0 was dropped once before it came back
    assert "com.example.retained.t19999" in retained and "com.example.retained.t10001" in retained
    assert "com.example.retained.t10000" not in retained  # evicted: retained longest ago
    assert retained["com.example.retained.t0"] == ["again"]


def test_testaments_per_session_are_bounded() -> None:
    """wamp.session.add_testament keeps its testaments until the session ends: past the
    realm's limit (both scopes together) it answers serouter.error.limit_exceeded; flushing
    makes room again."""
    router = Router(["realm1"], AllowAll(), Clock(),
                    realm_options={"realm1": RealmOptions(limits=Limits(testaments=3))})
    session, peer = connect(router)
    for n, scope in enumerate(["detached", "destroyed", "detached", "destroyed"]):
        send(session, 48, n + 1, {}, "wamp.session.add_testament",
             [f"com.example.testament.t{n}", ["x"]], {"scope": scope})
    replies = peer.wire()
    assert [m[0] for m in replies] == [50, 50, 50, 8]
    assert replies[3][4] == "serouter.error.limit_exceeded"
    send(session, 48, 5, {}, "wamp.session.flush_testaments", [], {"scope": "detached"})
    send(session, 48, 6, {}, "wamp.session.add_testament", ["com.example.testament.t9", []])
    assert [m[0] for m in peer.wire()] == [50, 50]


def test_the_realm_keys_reach_the_core() -> None:
    """max_testaments and max_retained in a [[realms]] table become the realm's limits."""
    listeners = [{"transport": "rawsocket", "endpoint": "tcp:0"}]
    config = parse_config({"realms": [{"name": "realm1", "max_testaments": 7, "max_retained": 9}],
                           "listeners": listeners}, "test")
    limits = realm_options(config)["realm1"].limits
    assert (limits.testaments, limits.retained) == (7, 9)
    with pytest.raises(ConfigError, match="max_retained"):
        parse_config({"realms": [{"name": "realm1", "max_retained": 0}], "listeners": listeners},
                     "test")
