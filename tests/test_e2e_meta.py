"""End to end: the meta API (sessions, registrations, subscriptions, testaments) and the
features WELCOME announces, Autobahn|Python (asyncio) against the router.

Every scenario runs over WebSocket and over RawSocket. Counting and killing happen in the
``census`` realm, which no other test joins, so counts are exact. Meta events of other tests'
sessions may still arrive late on ``realm1``, so observers filter by the session or ID they
wait for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, RegisterOptions, SubscribeOptions

from tests.e2e_clients import (
    BY_TRANSPORT,
    EVENT,
    OTHER,
    SUBSCRIBE,
    SUBSCRIBED,
    Client,
    Peer,
    close,
    connect,
    router,
    run,
    uri,
    within,
)
from tests.router_process import RouterProcess

__all__ = ["router"]  # the module's router fixture

ACK = PublishOptions(acknowledge=True)


class Watch:
    """Events of some topics, as (topic, args, kwargs), awaitable by a condition."""

    def __init__(self) -> None:
        self.events: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self._changed = asyncio.Event()

    async def on(self, session: Client, *topics: str) -> Watch:
        for topic in topics:
            def handler(*args: Any, topic: str = topic, **kwargs: Any) -> None:
                self.events.append((topic, args, kwargs))
                self._changed.set()

            await within(session.subscribe(handler, topic))
        return self

    async def wait(
        self, predicate: Callable[[str, tuple[Any, ...], dict[str, Any]], bool]
    ) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
        """The first event (received so far or next) that ``predicate`` accepts; it is removed,
        so waiting again finds the next one."""

        async def find() -> tuple[str, tuple[Any, ...], dict[str, Any]]:
            while True:
                for index, event in enumerate(self.events):
                    if predicate(*event):
                        return self.events.pop(index)
                self._changed.clear()
                await self._changed.wait()

        return await within(find())

    def matching(
        self, predicate: Callable[[str, tuple[Any, ...], dict[str, Any]], bool]
    ) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
        return [event for event in self.events if predicate(*event)]


async def refused(error: str, call: Any) -> None:
    """``call`` fails with ``error``."""
    with pytest.raises(ApplicationError) as raised:
        await within(call)
    assert raised.value.error == error


# -- WELCOME ---------------------------------------------------------------------------------------

DEALER_FEATURES = {
    "pattern_based_registration", "shared_registration", "progressive_call_results",
    "progressive_call_invocations", "call_canceling", "call_timeout", "caller_identification",
    "registration_meta_api",
    # the spec has the dealer announce these too (session meta API: "both Dealers and
    # Brokers"; testament meta API: "Dealers")
    "session_meta_api", "testament_meta_api",
}
BROKER_FEATURES = {
    "publisher_exclusion", "publisher_identification", "subscriber_blackwhite_listing",
    "pattern_based_subscription", "event_retention", "event_history", "session_meta_api",
    "subscription_meta_api",
}


@BY_TRANSPORT
def test_welcome_announces_exactly_the_implemented_features(
    router: RouterProcess, transport: str
) -> None:
    """WELCOME.Details.roles lists exactly the features of docs/features.md, all true, and
    Autobahn sees those it knows of."""

    async def scenario() -> None:
        peer = await Peer.open(router, transport, "msgpack")
        roles = peer.welcome["roles"]
        assert set(roles) == {"dealer", "broker"}
        for role, expected in (("dealer", DEALER_FEATURES), ("broker", BROKER_FEATURES)):
            features = roles[role]["features"]
            assert set(features) == expected, role
            assert all(value is True for value in features.values()), features
        session = await connect(router, transport, "cbor")
        for role, expected in (("dealer", DEALER_FEATURES), ("broker", BROKER_FEATURES)):
            seen = session._router_roles[role]  # Autobahn's only record of the WELCOME roles
            known = {name for name in vars(seen) if not name.startswith("_")}
            assert {name for name in known if getattr(seen, name)} == expected & known, role
        await close(session)

    run(scenario)


# -- wamp.session.* --------------------------------------------------------------------------------


async def census(router: RouterProcess, transport: str, *who: str | None) -> list[Client]:
    """Sessions in the census realm, alternating transports; None joins anonymously."""
    return [
        await connect(router, transport if i % 2 == 0 else OTHER[transport],
                      ("json", "msgpack", "cbor")[i % 3], realm="census", authid=authid)
        for i, authid in enumerate(who)
    ]


@BY_TRANSPORT
def test_session_count_list_and_get(router: RouterProcess, transport: str) -> None:
    """wamp.session.count and list report the realm's sessions (optionally by authrole);
    get describes one session, or fails with no_such_session."""

    async def scenario() -> None:
        anonymous, alice, carol = await census(router, transport, None, "alice", "carol")
        ids = {s.id for s in (anonymous, alice, carol)}
        assert await within(anonymous.call("wamp.session.count")) == 3
        assert await within(anonymous.call("wamp.session.count", ["user"])) == 1
        assert await within(anonymous.call("wamp.session.count", ["user", "admin"])) == 2
        assert set(await within(anonymous.call("wamp.session.list"))) == ids
        assert await within(anonymous.call("wamp.session.list", ["admin"])) == [carol.id]
        details = await within(anonymous.call("wamp.session.get", alice.id))
        assert {k: details[k] for k in ("session", "authid", "authrole", "authmethod")} == {
            "session": alice.id, "authid": "alice", "authrole": "user", "authmethod": "ticket"}
        assert details["transport"]["type"] == OTHER[transport]
        assert details["transport"]["serializer"] == "msgpack"
        await refused("wamp.error.no_such_session",
                      anonymous.call("wamp.session.get", max(ids) + 1))
        await close(anonymous, alice, carol)

    run(scenario)


@BY_TRANSPORT
def test_session_kill_sends_goodbye_with_reason_and_message(
    router: RouterProcess, transport: str
) -> None:
    """wamp.session.kill closes another session with GOODBYE carrying the given reason and
    message (default wamp.close.normal); oneself or an unknown ID is no_such_session."""

    async def scenario() -> None:
        killer, target, plain_target = await census(router, transport, None, "bob", None)
        result = await within(killer.call("wamp.session.kill", target.id,
                                          reason="com.example.kicked", message="bye"))
        assert result is None
        details = await within(target.left)
        assert (details.reason, details.message) == ("com.example.kicked", "bye")
        await refused("wamp.error.invalid_uri",
                      killer.call("wamp.session.kill", plain_target.id, reason="not a uri"))
        assert plain_target.is_attached()
        await within(killer.call("wamp.session.kill", plain_target.id))
        assert (await within(plain_target.left)).reason == "wamp.close.normal"
        await refused("wamp.error.no_such_session", killer.call("wamp.session.kill", killer.id))
        await refused("wamp.error.no_such_session",
                      killer.call("wamp.session.kill", target.id))  # gone already
        await within(asyncio.gather(target.disconnected, plain_target.disconnected))
        assert await within(killer.call("wamp.session.count")) == 1
        await close(killer)

    run(scenario)


@BY_TRANSPORT
def test_kill_by_authid_closes_the_others_with_that_authid(
    router: RouterProcess, transport: str
) -> None:
    """wamp.session.kill_by_authid closes every session with the authid except the caller's,
    and returns how many."""

    async def scenario() -> None:
        caller, alice1, alice2, bob = await census(router, transport, "alice", "alice", "alice",
                                                   "bob")
        assert await within(caller.call("wamp.session.kill_by_authid", "alice")) == 2
        for session in (alice1, alice2):
            assert (await within(session.left)).reason == "wamp.close.normal"
        assert bob.is_attached() and caller.is_attached()
        assert await within(caller.call("wamp.session.kill_by_authid", "nobody")) == 0
        await close(caller, bob)

    run(scenario)


@BY_TRANSPORT
def test_kill_by_authrole_closes_the_sessions_with_that_role(
    router: RouterProcess, transport: str
) -> None:
    """wamp.session.kill_by_authrole closes every session with the authrole and returns how many."""

    async def scenario() -> None:
        caller, alice, bob, carol = await census(router, transport, None, "alice", "bob", "carol")
        count = await within(caller.call("wamp.session.kill_by_authrole", "user",
                                         reason="com.example.reorg"))
        assert count == 2
        for session in (alice, bob):
            assert (await within(session.left)).reason == "com.example.reorg"
        assert carol.is_attached()
        await close(caller, carol)

    run(scenario)


@BY_TRANSPORT
def test_kill_all_closes_everyone_but_the_caller(router: RouterProcess, transport: str) -> None:
    """wamp.session.kill_all closes every other session of the realm and returns how many."""

    async def scenario() -> None:
        caller, *others = await census(router, transport, "carol", None, "alice", "bob")
        assert await within(caller.call("wamp.session.kill_all", message="maintenance")) == 3
        for session in others:
            details = await within(session.left)
            assert (details.reason, details.message) == ("wamp.close.normal", "maintenance")
        await within(asyncio.gather(*(s.disconnected for s in others)))
        assert await within(caller.call("wamp.session.list")) == [caller.id]
        await close(caller)

    run(scenario)


@BY_TRANSPORT
def test_join_and_leave_events(router: RouterProcess, transport: str) -> None:
    """wamp.session.on_join carries the session's details; on_leave its ID, authid and authrole,
    whether it said GOODBYE or its connection was dropped."""

    async def scenario() -> None:
        observer = await connect(router, OTHER[transport], "json")
        watch = await Watch().on(observer, "wamp.session.on_join", "wamp.session.on_leave")
        alice = await connect(router, transport, "cbor", authid="alice")
        _, (details,), _ = await watch.wait(
            lambda t, a, k: t.endswith("on_join") and a[0]["session"] == alice.id)
        assert {k: details[k] for k in ("authid", "authrole", "authmethod", "authprovider")} == {
            "authid": "alice", "authrole": "user", "authmethod": "ticket",
            "authprovider": "static"}
        assert details["transport"]["type"] == transport
        await close(alice)
        _, args, _ = await watch.wait(lambda t, a, k: t.endswith("on_leave") and a[0] == alice.id)
        assert args == (alice.id, "alice", "user")
        dropped = await connect(router, transport, "msgpack")
        dropped.abort()
        _, args, _ = await watch.wait(
            lambda t, a, k: t.endswith("on_leave") and a[0] == dropped.id)
        assert args == (dropped.id, f"anonymous-{dropped.id}", "anonymous")
        await close(observer)

    run(scenario)


# -- wamp.registration.* ---------------------------------------------------------------------------

REGISTRATION_EVENTS = tuple(
    f"wamp.registration.{e}" for e in ("on_create", "on_register", "on_unregister", "on_delete")
)


@BY_TRANSPORT
def test_registration_meta_procedures_and_events(router: RouterProcess, transport: str) -> None:
    """The registration meta procedures describe a shared registration as callees come and go,
    and on_create/on_register/on_unregister/on_delete report each change."""

    async def scenario() -> None:
        observer = await connect(router, transport, "msgpack")
        watch = await Watch().on(observer, *REGISTRATION_EVENTS)
        first = await connect(router, transport, "json")
        second = await connect(router, OTHER[transport], "cbor")
        procedure = uri("shared")
        shared = RegisterOptions(invoke="roundrobin")
        registration = await within(first.register(lambda: 1, procedure, shared))
        await within(second.register(lambda: 2, procedure, shared))
        rid = registration.id

        def about(name: str) -> Callable[[str, tuple[Any, ...], dict[str, Any]], bool]:
            def check(topic: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
                subject = args[1]["id"] if isinstance(args[1], dict) else args[1]
                return topic == f"wamp.registration.{name}" and subject == rid
            return check

        _, (session, created), _ = await watch.wait(about("on_create"))
        assert session == first.id
        assert {k: created[k] for k in ("id", "uri", "match", "invoke")} == {
            "id": rid, "uri": procedure, "match": "exact", "invoke": "roundrobin"}
        assert (await watch.wait(about("on_register")))[1] == (first.id, rid)
        assert (await watch.wait(about("on_register")))[1] == (second.id, rid)

        def meta(name: str, *args: Any) -> Any:
            return within(observer.call(f"wamp.registration.{name}", *args))

        assert rid in (await meta("list"))["exact"]
        assert await meta("lookup", procedure) == rid
        assert await meta("lookup", procedure, {"match": "prefix"}) is None
        assert await meta("match", procedure) == rid
        got = await meta("get", rid)
        assert {k: got[k] for k in ("id", "uri", "match", "invoke")} == {
            "id": rid, "uri": procedure, "match": "exact", "invoke": "roundrobin"}
        assert got["created"] == created["created"] and got["created"].endswith("Z")
        assert await meta("list_callees", rid) == [first.id, second.id]
        assert await meta("count_callees", rid) == 2

        await within(registration.unregister())
        assert (await watch.wait(about("on_unregister")))[1] == (first.id, rid)
        assert await meta("list_callees", rid) == [second.id]
        second.abort()
        assert (await watch.wait(about("on_unregister")))[1] == (second.id, rid)
        assert (await watch.wait(about("on_delete")))[1] == (second.id, rid)
        assert await meta("lookup", procedure) is None
        assert rid not in (await meta("list"))["exact"]
        for name in ("get", "list_callees", "count_callees"):
            await refused("wamp.error.no_such_registration", meta(name, rid))
        await close(observer, first)

    run(scenario)


@BY_TRANSPORT
def test_registration_lookup_and_match_for_patterns(router: RouterProcess, transport: str) -> None:
    """lookup finds a pattern registration by pattern and policy; match returns the one a call
    would use."""

    async def scenario() -> None:
        callee = await connect(router, transport, "cbor")
        observer = await connect(router, OTHER[transport], "json")
        base = uri("patterns")
        prefix = await within(callee.register(lambda: 1, base, RegisterOptions(match="prefix")))
        wildcard = await within(callee.register(lambda: 2, f"{base}..get",
                                                RegisterOptions(match="wildcard")))

        def meta(name: str, *args: Any) -> Any:
            return within(observer.call(f"wamp.registration.{name}", *args))

        assert await meta("lookup", base, {"match": "prefix"}) == prefix.id
        assert await meta("lookup", base) is None  # no exact registration of the pattern
        assert await meta("lookup", f"{base}..get", {"match": "wildcard"}) == wildcard.id
        assert await meta("match", f"{base}.users.get") == prefix.id  # prefix beats wildcard
        assert await meta("match", f"{base}") == prefix.id
        assert await meta("match", uri("unregistered")) is None
        listed = await meta("list")
        assert prefix.id in listed["prefix"] and wildcard.id in listed["wildcard"]
        await close(callee, observer)

    run(scenario)


# -- wamp.subscription.* ---------------------------------------------------------------------------

SUBSCRIPTION_EVENTS = tuple(
    f"wamp.subscription.{e}" for e in ("on_create", "on_subscribe", "on_unsubscribe", "on_delete")
)


@BY_TRANSPORT
def test_subscribed_comes_before_the_on_subscribe_event_it_causes(
    router: RouterProcess, transport: str
) -> None:
    """Subscribing to wamp.subscription.on_subscribe is answered with SUBSCRIBED before the
    on_subscribe EVENT that this very subscription causes (a client cannot take an EVENT for a
    subscription ID it has not been given yet: Autobahn drops the connection)."""

    async def scenario() -> None:
        peer = await Peer.open(router, transport, "json")
        request = peer.next_request()
        peer.send([SUBSCRIBE, request, {}, "wamp.subscription.on_subscribe"])
        first, second = await peer.recv(), await peer.recv()
        assert first[:2] == [SUBSCRIBED, request], [first, second]
        assert second[0] == EVENT and second[1] == first[2], second
        assert second[4] == [peer.id, first[2]], second

    run(scenario)


@BY_TRANSPORT
def test_subscription_meta_procedures_and_events(router: RouterProcess, transport: str) -> None:
    """The subscription meta procedures describe a subscription as subscribers come and go,
    and on_create/on_subscribe/on_unsubscribe/on_delete report each change."""

    async def scenario() -> None:
        observer = await connect(router, transport, "cbor")
        watch = await Watch().on(observer, *SUBSCRIPTION_EVENTS)
        first = await connect(router, OTHER[transport], "json")
        second = await connect(router, transport, "msgpack")
        base = uri("news")
        pattern = SubscribeOptions(match="prefix")
        subscription = await within(first.subscribe(lambda *a: None, base, options=pattern))
        await within(second.subscribe(lambda *a: None, base, options=pattern))
        sid = subscription.id

        def about(name: str) -> Callable[[str, tuple[Any, ...], dict[str, Any]], bool]:
            def check(topic: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
                subject = args[1]["id"] if isinstance(args[1], dict) else args[1]
                return topic == f"wamp.subscription.{name}" and subject == sid
            return check

        _, (session, created), _ = await watch.wait(about("on_create"))
        assert session == first.id
        assert {k: created[k] for k in ("id", "uri", "match")} == {
            "id": sid, "uri": base, "match": "prefix"}
        assert (await watch.wait(about("on_subscribe")))[1] == (first.id, sid)
        assert (await watch.wait(about("on_subscribe")))[1] == (second.id, sid)

        def meta(name: str, *args: Any) -> Any:
            return within(observer.call(f"wamp.subscription.{name}", *args))

        assert sid in (await meta("list"))["prefix"]
        assert await meta("lookup", base, {"match": "prefix"}) == sid
        assert await meta("lookup", base) is None
        assert await meta("match", f"{base}.sports") == [sid]
        assert await meta("match", uri("quiet")) is None
        got = await meta("get", sid)
        assert {k: got[k] for k in ("id", "uri", "match", "created")} == {
            "id": sid, "uri": base, "match": "prefix", "created": created["created"]}
        assert sorted(await meta("list_subscribers", sid)) == sorted([first.id, second.id])
        assert await meta("count_subscribers", sid) == 2

        await within(subscription.unsubscribe())
        assert (await watch.wait(about("on_unsubscribe")))[1] == (first.id, sid)
        assert await meta("list_subscribers", sid) == [second.id]
        second.abort()
        assert (await watch.wait(about("on_unsubscribe")))[1] == (second.id, sid)
        assert (await watch.wait(about("on_delete")))[1] == (second.id, sid)
        assert await meta("lookup", base, {"match": "prefix"}) is None
        for name in ("get", "list_subscribers", "count_subscribers"):
            await refused("wamp.error.no_such_subscription", meta(name, sid))
        await close(observer, first)

    run(scenario)


# -- testaments ------------------------------------------------------------------------------------


async def watched_topic(router: RouterProcess, transport: str) -> tuple[Client, Watch, str]:
    observer = await connect(router, OTHER[transport], "msgpack", authid="carol")
    topic = uri("testament")
    return observer, await Watch().on(observer, topic), topic


async def ends(session: Client, how: str, killer: Client) -> None:
    """End ``session``: GOODBYE, a dropped connection, or wamp.session.kill by ``killer``."""
    if how == "goodbye":
        await close(session)
    elif how == "abort":
        session.abort()
    else:
        await within(killer.call("wamp.session.kill", session.id))


@pytest.mark.parametrize("transport", ["websocket", "rawsocket"])
@pytest.mark.parametrize("how", ["abort", "goodbye", "kill"])
def test_testaments_are_published_when_the_session_ends(
    router: RouterProcess, transport: str, how: str
) -> None:
    """A session's testaments are published, in the order added, when it ends (connection
    dropped, GOODBYE, or killed)."""

    async def scenario() -> None:
        observer, watch, topic = await watched_topic(router, transport)
        mortal = await connect(router, transport, "json", authid="alice")
        added = await within(mortal.call("wamp.session.add_testament", topic, ["gone"],
                                         {"who": "alice"}))
        assert added is None
        await within(mortal.call("wamp.session.add_testament", topic, ["second"]))
        await within(observer.call("wamp.session.count"))
        assert watch.events == []  # nothing before the session ends
        await ends(mortal, how, observer)
        first = await watch.wait(lambda t, a, k: True)
        second = await watch.wait(lambda t, a, k: True)
        assert first == (topic, ("gone",), {"who": "alice"})
        assert second == (topic, ("second",), {})
        await close(observer)

    run(scenario)


@BY_TRANSPORT
def test_flushed_testaments_are_not_published(router: RouterProcess, transport: str) -> None:
    """wamp.session.flush_testaments removes the session's testaments: none is published when
    it goes."""

    async def scenario() -> None:
        observer, watch, topic = await watched_topic(router, transport)
        await watch.on(observer, "wamp.session.on_leave")
        mortal = await connect(router, transport, "cbor")
        for n in range(2):
            await within(mortal.call("wamp.session.add_testament", topic, [n]))
        assert await within(mortal.call("wamp.session.flush_testaments")) == 2
        mortal.abort()
        # testaments go out before on_leave, on the same connection
        await watch.wait(lambda t, a, k: t == "wamp.session.on_leave" and a[0] == mortal.id)
        assert watch.matching(lambda t, a, k: t == topic) == []
        await close(observer)

    run(scenario)


@BY_TRANSPORT
def test_flushing_the_detached_scope_keeps_destroyed_testaments(
    router: RouterProcess, transport: str
) -> None:
    """flush_testaments(scope="detached") leaves the testaments of scope "destroyed" (the
    default) in place: they are still published when the session goes.

    Spec (Testament): "it MUST still use these two separate buckets to allow
    wamp.session.flush_testaments to work" and flush "removes testaments for the given scope".
    """

    async def scenario() -> None:
        observer, watch, topic = await watched_topic(router, transport)
        await watch.on(observer, "wamp.session.on_leave")
        mortal = await connect(router, transport, "msgpack")
        await within(mortal.call("wamp.session.add_testament", topic, ["kept"]))
        await within(mortal.call("wamp.session.flush_testaments", scope="detached"))
        mortal.abort()
        # testaments go out before on_leave, on the same connection
        await watch.wait(lambda t, a, k: t == "wamp.session.on_leave" and a[0] == mortal.id)
        assert [a for t, a, k in watch.matching(lambda t, a, k: t == topic)] == [("kept",)]
        await close(observer)

    run(scenario)


@BY_TRANSPORT
def test_testament_honours_its_publish_options_and_history(
    router: RouterProcess, transport: str
) -> None:
    """A testament's publish_options (here exclude_authid) decide who gets it, and a history
    topic keeps it."""

    async def scenario() -> None:
        topic = f"com.example.history.{transport}.testament"
        carol = await connect(router, OTHER[transport], "json", authid="carol")
        bob = await connect(router, transport, "cbor", authid="bob")
        carol_watch = await Watch().on(carol, topic)
        bob_watch = await Watch().on(bob, topic, "wamp.session.on_leave")
        mortal = await connect(router, transport, "msgpack")
        await within(mortal.call("wamp.session.add_testament", topic, [mortal.id],
                                 publish_options={"exclude_authid": ["bob"]}))
        mortal.abort()
        assert (await carol_watch.wait(lambda t, a, k: True))[1] == (mortal.id,)
        await bob_watch.wait(lambda t, a, k: t == "wamp.session.on_leave" and a[0] == mortal.id)
        assert bob_watch.matching(lambda t, a, k: t == topic) == []
        history = await within(carol.call("wamp.topic.history.last", topic, 1))
        assert [e["args"] for e in history] == [[mortal.id]]
        await close(carol, bob)

    run(scenario)


@BY_TRANSPORT
def test_add_testament_refuses_bad_arguments(router: RouterProcess, transport: str) -> None:
    """add_testament with an unknown scope, malformed publish_options or an invalid topic is
    refused."""

    async def scenario() -> None:
        session = await connect(router, transport, "json")
        topic = uri("testament")
        await refused("wamp.error.invalid_argument",
                      session.call("wamp.session.add_testament", topic, scope="forever"))
        await refused("wamp.error.invalid_argument",
                      session.call("wamp.session.add_testament", topic,
                                   publish_options={"exclude": ["x"]}))
        await refused("wamp.error.invalid_uri",
                      session.call("wamp.session.add_testament", "not a topic"))
        assert await within(session.call("wamp.session.flush_testaments")) == 0
        await close(session)

    run(scenario)
