"""The name service in a realm (serouter/federation/_nameserver.py), over the real core with
in-memory sessions: the protocol, entries bound to sessions, access checks, notices."""

from __future__ import annotations

from typing import Any

from serouter.core.access import Action, Subject
from serouter.core.router import Router
from serouter.federation import NameServer
from tests.fakes import connect, make_router, send

ERROR, SUBSCRIBED, EVENT, RESULT = 8, 33, 36, 50
EB, EC = "tcp:127.0.0.1:2", "tcp:127.0.0.1:3"


class Policy:
    """Allows everything but what ``denied`` lists as (session, action, uri prefix)."""

    def __init__(self) -> None:
        self.denied: list[tuple[int, Action, str]] = []

    def check(self, subject: Subject, action: Action, realm: str, uri: str) -> bool:
        return not any(subject.session == s and action is a and uri.startswith(prefix)
                       for s, a, prefix in self.denied)


class Router_:
    """One router's session at the name server."""

    def __init__(self, router: Router) -> None:
        self.session, self.peer = connect(router)
        self.request = 0

    def call(self, procedure: str, *args: Any) -> list[Any]:
        self.request += 1
        send(self.session, 48, self.request, {}, procedure, list(args))
        replies = [m for m in self.peer.wire() if m[0] in (RESULT, ERROR)]
        assert len(replies) == 1, replies
        return replies[0]

    def value(self, procedure: str, *args: Any) -> Any:
        reply = self.call(procedure, *args)
        assert reply[0] == RESULT, reply
        return reply[3][0]

    def subscribe(self, topic: str) -> int:
        self.request += 1
        send(self.session, 32, self.request, {}, topic)
        reply = self.peer.wire()[-1]
        assert reply[0] == SUBSCRIBED
        return int(reply[2])


def setup(policy: Any = None) -> tuple[Router, NameServer]:
    router = make_router(access=policy)
    return router, NameServer(router)


def lookup(r: Router_, kind: str, uri: str, **options: Any) -> list[Any]:
    return [p["endpoint"] for p in r.value("serouter.ns.lookup", kind, uri, options)]


def test_announce_then_lookup() -> None:
    """One router announces; another finds it, with the entry's match and policy."""
    router, _ns = setup()
    a, b = Router_(router), Router_(router)
    assert b.value("serouter.ns.announce", EB, [
        ["procedure", "com.example.add", "exact", "single"], ["topic", "com.example.t"]]) == [
        None, None]
    assert a.value("serouter.ns.lookup", "procedure", "com.example.add", {}) == [
        {"endpoint": EB, "uri": "com.example.add", "match": "exact", "invoke": "single"}]
    assert lookup(a, "topic", "com.example.", match="prefix") == [EB]
    assert lookup(b, "procedure", "com.example.add") == []  # never itself


def test_entries_vanish_when_the_router_session_ends() -> None:
    """A router's entries belong to its session: gone with it, and watchers are told."""
    router, _ns = setup()
    a, b = Router_(router), Router_(router)
    a.subscribe("serouter.ns.on_watched")
    b.value("serouter.ns.announce", EB, [["procedure", "x.y", "exact", "single"]])
    assert lookup(a, "procedure", "x.y", watch=True) == [EB]
    router.close_session(b.session)
    events = [m for m in a.peer.wire() if m[0] == EVENT]
    assert [e[4] for e in events] == [[[["procedure", "x.y", "exact"]]]]
    assert lookup(a, "procedure", "x.y") == []


def test_withdraw() -> None:
    router, _ns = setup()
    a, b = Router_(router), Router_(router)
    b.value("serouter.ns.announce", EB, [["procedure", "x.y", "exact", "single"],
                                         ["topic", "t.u"]])
    assert b.value("serouter.ns.withdraw", [["procedure", "x.y"], ["topic", "t.u"],
                                            ["topic", "never"]]) == 2
    assert lookup(a, "procedure", "x.y") == [] and lookup(a, "topic", "t.u") == []


def test_announce_is_checked_per_uri() -> None:
    """A denied URI is refused (and not held); the others of the same call are held."""
    policy = Policy()
    router, _ns = setup(policy)
    a, b = Router_(router), Router_(router)
    policy.denied.append((b.session.id, Action.ANNOUNCE, "com.secret"))
    verdicts = b.value("serouter.ns.announce", EB, [
        ["procedure", "com.secret.x", "exact", "single"],
        ["procedure", "com.public.x", "exact", "single"]])
    assert verdicts == ["wamp.error.not_authorized", None]
    assert lookup(a, "procedure", "com.secret.x") == []
    assert lookup(a, "procedure", "com.public.x") == [EB]


def test_lookup_is_checked() -> None:
    """A denied lookup is ERROR not_authorized, nothing more."""
    policy = Policy()
    router, _ns = setup(policy)
    a, b = Router_(router), Router_(router)
    b.value("serouter.ns.announce", EB, [["procedure", "com.x.y", "exact", "single"]])
    policy.denied.append((a.session.id, Action.LOOKUP, "com.x"))
    reply = a.call("serouter.ns.lookup", "procedure", "com.x.y", {})
    assert reply[:5] == [ERROR, 48, a.request, {}, "wamp.error.not_authorized"]


def test_the_change_feed_shows_only_what_a_subscriber_may_look_up() -> None:
    policy = Policy()
    router, _ns = setup(policy)
    a, b = Router_(router), Router_(router)
    a.subscribe("serouter.ns.on_change")
    policy.denied.append((a.session.id, Action.LOOKUP, "com.hidden"))
    b.value("serouter.ns.announce", EB, [["procedure", "com.hidden.x", "exact", "single"],
                                         ["topic", "com.shown.t"]])
    events = [m for m in a.peer.wire() if m[0] == EVENT]
    assert [e[4] for e in events] == [[[["announce", "topic", "com.shown.t", "exact", None]]]]


def test_bad_arguments_are_invalid_argument() -> None:
    router, _ns = setup()
    a = Router_(router)
    for args in ([], ["tcp:x", "not a list"], ["tcp:x", [["procedure", "bad uri"]]],
                 ["tcp:x", [["procedure", "a.b", "regex", "single"]]], ["\n", []]):
        reply = a.call("serouter.ns.announce", *args)
        assert reply[0] == ERROR and reply[4] == "wamp.error.invalid_argument", (args, reply)
    reply = a.call("serouter.ns.lookup", "procedure", "a.", {"match": "prefix"})
    assert reply[4] == "wamp.error.invalid_argument"


def test_the_procedures_are_the_routers_own() -> None:
    """A client cannot register a name-service procedure: it is taken."""
    router, _ns = setup()
    a = Router_(router)
    send(a.session, 64, 1, {}, "serouter.ns.lookup")
    assert a.peer.wire()[-1][4] == "wamp.error.procedure_already_exists"


def test_closing_the_name_server_ends_its_sessions() -> None:
    router, ns = setup()
    a = Router_(router)
    ns.close()
    reply = a.call("serouter.ns.lookup", "procedure", "x", {})
    assert reply[4] == "wamp.error.no_such_procedure"
    assert len(router.sessions) == 1


def test_router_shutdown_lets_the_internal_session_go() -> None:
    """On shutdown the internal session leaves at once, so the daemon does not wait for it."""
    router, _ns = setup()
    router.shutdown()
    assert not router.sessions
