"""End to end: the Advanced Profile's PubSub features, Autobahn|Python (asyncio) against the router.

Every feature runs over WebSocket and over RawSocket; serializers vary from test to test.
Autobahn|Python's PublishOptions has no ``disclose_me``: that publisher is the hand-rolled
``Peer``. To show that an event did *not* arrive, a test publishes a sentinel afterwards: the
router writes each connection's events in order, so once the sentinel is in, anything before it
would be too.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, SubscribeOptions

from tests.e2e_clients import (
    BY_TRANSPORT,
    ERROR,
    HISTORY_LIMIT,
    OTHER,
    PUBLISH,
    PUBLISHED,
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


class Inbox:
    """Events one handler received, as (args, kwargs, details), awaitable one by one."""

    def __init__(self) -> None:
        self.events: list[tuple[tuple[Any, ...], dict[str, Any], Any]] = []
        self._queue: asyncio.Queue[tuple[tuple[Any, ...], dict[str, Any], Any]] = asyncio.Queue()

    def __call__(self, *args: Any, details: Any = None, **kwargs: Any) -> None:
        event = (args, kwargs, details)
        self.events.append(event)
        self._queue.put_nowait(event)

    async def next(self) -> tuple[tuple[Any, ...], dict[str, Any], Any]:
        return await within(self._queue.get())

    async def until(self, sentinel: Any) -> list[Any]:
        """The first args of every event up to and including the one whose first arg is
        ``sentinel``."""
        seen = []
        while True:
            args, _, _ = await self.next()
            seen.append(args[0] if args else None)
            if seen[-1] == sentinel:
                return seen

    def args(self) -> list[Any]:
        return [args for args, _, _ in self.events]


async def subscribe(
    session: Client, topic: str, **options: Any
) -> tuple[Inbox, Any]:
    inbox = Inbox()
    subscription = await within(
        session.subscribe(inbox, topic, options=SubscribeOptions(details=True, **options))
    )
    return inbox, subscription


# -- publisher exclusion ---------------------------------------------------------------------------


@BY_TRANSPORT
def test_publisher_receives_its_own_event_only_with_exclude_me_false(
    router: RouterProcess, transport: str
) -> None:
    """A subscribed publisher is excluded from its own events by default, and included with
    exclude_me=False."""

    async def scenario() -> None:
        publisher = await connect(router, transport, "msgpack")
        subscriber = await connect(router, OTHER[transport], "json")
        topic = uri("mirror")
        own, _ = await subscribe(publisher, topic)
        others, _ = await subscribe(subscriber, topic)
        await publisher.publish(topic, "default", options=ACK)
        await publisher.publish(
            topic, "included", options=PublishOptions(acknowledge=True, exclude_me=False)
        )
        assert await others.until("included") == ["default", "included"]
        assert await own.until("included") == ["included"]
        await close(publisher, subscriber)

    run(scenario)


# -- publisher identification ----------------------------------------------------------------------


def publisher_of(details: Any) -> list[Any]:
    return [details.publisher, details.publisher_authid, details.publisher_authrole]


@BY_TRANSPORT
def test_disclose_me_reveals_the_publisher(router: RouterProcess, transport: str) -> None:
    """With disclose_me the EVENT carries publisher, publisher_authid and publisher_authrole;
    without, none of them."""

    async def scenario() -> None:
        subscriber = await connect(router, transport, "cbor")
        publisher = await Peer.open(router, OTHER[transport], "msgpack")
        topic = uri("signed")
        inbox, _ = await subscribe(subscriber, topic)
        publisher.send([PUBLISH, publisher.next_request(), {"disclose_me": True}, topic, [1]])
        publisher.send([PUBLISH, publisher.next_request(), {}, topic, [2]])
        await inbox.until(2)
        (_, _, signed), (_, _, plain) = inbox.events
        assert publisher_of(signed) == [publisher.id, f"anonymous-{publisher.id}", "anonymous"]
        assert publisher_of(plain) == [None, None, None]
        await close(subscriber)

    run(scenario)


@BY_TRANSPORT
def test_realm_forcing_disclosure_reveals_every_publisher(
    router: RouterProcess, transport: str
) -> None:
    """In a realm with disclose_publisher = "force" every EVENT names its publisher."""

    async def scenario() -> None:
        subscriber = await connect(router, transport, "json", realm="forced")
        publisher = await connect(router, OTHER[transport], "cbor", realm="forced")
        topic = uri("forced")
        inbox, _ = await subscribe(subscriber, topic)
        await publisher.publish(topic, "hi", options=ACK)
        _, _, details = await inbox.next()
        assert publisher_of(details) == [publisher.id, f"anonymous-{publisher.id}", "anonymous"]
        await close(subscriber, publisher)

    run(scenario)


@BY_TRANSPORT
def test_realm_forbidding_disclosure_refuses_disclose_me(
    router: RouterProcess, transport: str
) -> None:
    """In a realm with disclose_publisher = "forbid" a disclose_me publication is refused with
    option_disallowed.disclose_me (if acknowledged, else silently) and not delivered."""

    async def scenario() -> None:
        subscriber = await connect(router, transport, "msgpack", realm="forbidden")
        publisher = await Peer.open(router, transport, "json", realm="forbidden")
        topic = uri("forbidden")
        inbox, _ = await subscribe(subscriber, topic)
        request = publisher.next_request()
        publisher.send([PUBLISH, request, {"disclose_me": True, "acknowledge": True}, topic,
                        ["acknowledged"]])
        reply = await publisher.recv()
        assert reply[:3] == [ERROR, PUBLISH, request], reply
        assert reply[4] == "wamp.error.option_disallowed.disclose_me", reply
        publisher.send([PUBLISH, publisher.next_request(), {"disclose_me": True}, topic,
                        ["unacknowledged"]])
        publisher.send([PUBLISH, publisher.next_request(), {}, topic, ["plain"]])
        await publisher.barrier()  # no refusal for the unacknowledged one
        assert await inbox.until("plain") == ["plain"]
        assert publisher_of(inbox.events[0][2]) == [None, None, None]
        await close(subscriber)

    run(scenario)


# -- subscriber black- and whitelisting ------------------------------------------------------------


@BY_TRANSPORT
def test_black_and_whitelists_pick_the_receivers(router: RouterProcess, transport: str) -> None:
    """exclude/eligible by session ID, authid and authrole decide who gets each event."""

    async def scenario() -> None:
        names = ("anonymous", "alice", "bob", "carol")  # alice, bob: user; carol: admin
        sessions: dict[str, Client] = {}
        for index, name in enumerate(names):
            sessions[name] = await connect(
                router, transport if index % 2 else OTHER[transport],
                ("json", "msgpack", "cbor")[index % 3],
                authid=None if name == "anonymous" else name,
            )
        publisher = await connect(router, transport, "cbor")
        topic = uri("filtered")
        inboxes = {name: (await subscribe(s, topic))[0] for name, s in sessions.items()}
        ids = {name: s.id for name, s in sessions.items()}
        cases: dict[str, tuple[dict[str, Any], set[str]]] = {
            "exclude": ({"exclude": [ids["alice"]]}, {"anonymous", "bob", "carol"}),
            "exclude_authid": ({"exclude_authid": ["bob"]}, {"anonymous", "alice", "carol"}),
            "exclude_authrole": ({"exclude_authrole": ["user"]}, {"anonymous", "carol"}),
            "eligible": ({"eligible": [ids["anonymous"], ids["bob"]]}, {"anonymous", "bob"}),
            "eligible_authid": ({"eligible_authid": ["alice", "carol"]}, {"alice", "carol"}),
            "eligible_authrole": ({"eligible_authrole": ["admin"]}, {"carol"}),
            "combined": ({"eligible_authrole": ["user"], "exclude": [ids["alice"]]}, {"bob"}),
        }
        for case, (options, _) in cases.items():
            await publisher.publish(topic, case, options=PublishOptions(acknowledge=True,
                                                                        **options))
        await publisher.publish(topic, "end", options=ACK)
        received = {name: await inbox.until("end") for name, inbox in inboxes.items()}
        for case, (_, receivers) in cases.items():
            got = {name for name, seen in received.items() if case in seen}
            assert got == receivers, case
        await close(*sessions.values(), publisher)

    run(scenario)


@BY_TRANSPORT
def test_malformed_list_is_refused_if_acknowledged_else_dropped(
    router: RouterProcess, transport: str
) -> None:
    """A black/whitelist of the wrong type gets invalid_argument when acknowledged, and the
    publication reaches nobody either way."""

    async def scenario() -> None:
        subscriber = await connect(router, transport, "json")
        publisher = await Peer.open(router, OTHER[transport], "cbor")
        topic = uri("malformed")
        inbox, _ = await subscribe(subscriber, topic)
        request = publisher.next_request()
        publisher.send([PUBLISH, request, {"acknowledge": True, "exclude": ["not-an-id"]}, topic,
                        ["bad"]])
        reply = await publisher.recv()
        assert reply[:3] == [ERROR, PUBLISH, request] and reply[4] == "wamp.error.invalid_argument"
        publisher.send([PUBLISH, publisher.next_request(), {"eligible_authid": [7]}, topic,
                        ["bad too"]])
        publisher.send([PUBLISH, publisher.next_request(), {}, topic, ["good"]])
        await publisher.barrier()
        assert await inbox.until("good") == ["good"]
        await close(subscriber)

    run(scenario)


# -- pattern-based subscriptions -------------------------------------------------------------------


@BY_TRANSPORT
def test_pattern_subscriptions_get_the_concrete_topic(
    router: RouterProcess, transport: str
) -> None:
    """Prefix and wildcard subscribers receive matching events with the published topic in
    details.topic; each matching subscription gets its own EVENT."""

    async def scenario() -> None:
        subscriber = await connect(router, transport, "msgpack")
        publisher = await connect(router, OTHER[transport], "json")
        base = uri("home")
        exact, _ = await subscribe(subscriber, f"{base}.kitchen.temp")
        prefix, _ = await subscribe(subscriber, f"{base}.kitchen", match="prefix")
        wildcard, _ = await subscribe(subscriber, f"{base}..temp", match="wildcard")
        for room in ("kitchen", "cellar", "kitchenette"):
            await publisher.publish(f"{base}.{room}.temp", room, options=ACK)
        await publisher.publish(f"{base}.kitchen.temp", "end", options=ACK)
        assert await exact.until("end") == ["kitchen", "end"]
        assert await prefix.until("end") == ["kitchen", "kitchenette", "end"]
        assert await wildcard.until("end") == ["kitchen", "cellar", "kitchenette", "end"]
        assert [d.topic for _, _, d in prefix.events] == [
            f"{base}.kitchen.temp", f"{base}.kitchenette.temp", f"{base}.kitchen.temp"]
        assert [d.topic for _, _, d in wildcard.events] == [
            f"{base}.{room}.temp" for room in ("kitchen", "cellar", "kitchenette", "kitchen")]
        await close(subscriber, publisher)

    run(scenario)


# -- event retention -------------------------------------------------------------------------------


@BY_TRANSPORT
def test_get_retained_delivers_the_last_retained_event(
    router: RouterProcess, transport: str
) -> None:
    """A subscription with get_retained gets the topic's last retained event, marked retained;
    a subscription without it gets nothing until the next publication."""

    async def scenario() -> None:
        publisher = await connect(router, transport, "cbor")
        topic = uri("sensor")
        for value in (20.5, 21.5):
            await publisher.publish(topic, value, unit="C",
                                    options=PublishOptions(acknowledge=True, retain=True))
        await publisher.publish(topic, 99.0, options=ACK)  # not retained: changes nothing
        late = await connect(router, OTHER[transport], "msgpack")
        retained, _ = await subscribe(late, topic, get_retained=True)
        fresh, _ = await subscribe(late, uri("other_topic"), get_retained=True)
        (args, kwargs, details) = await retained.next()
        assert (args, kwargs, details.retained) == ((21.5,), {"unit": "C"}, True)
        plain_session = await connect(router, transport, "json")
        plain, _ = await subscribe(plain_session, topic)
        await publisher.publish(topic, "live", options=ACK)
        assert await plain.until("live") == ["live"]
        assert await retained.until("live") == ["live"]
        assert not retained.events[-1][2].retained
        assert fresh.events == []
        await close(publisher, late, plain_session)

    run(scenario)


@BY_TRANSPORT
def test_pattern_subscription_gets_retained_events_of_every_matching_topic(
    router: RouterProcess, transport: str
) -> None:
    """A prefix subscription with get_retained receives each matching topic's retained event,
    with its topic."""

    async def scenario() -> None:
        publisher = await connect(router, transport, "json")
        base = uri("fleet")
        retain = PublishOptions(acknowledge=True, retain=True)
        for truck in ("t1", "t2"):
            await publisher.publish(f"{base}.{truck}.position", truck, options=retain)
        await publisher.publish(f"{base}x.t3.position", "elsewhere", options=retain)
        subscriber = await connect(router, OTHER[transport], "cbor")
        inbox, _ = await subscribe(subscriber, f"{base}.", match="prefix", get_retained=True)
        await within(subscriber.call("wamp.session.count"))  # retained events came before this
        got = sorted((args[0], details.topic, details.retained)
                     for args, _, details in inbox.events)
        assert got == [("t1", f"{base}.t1.position", True), ("t2", f"{base}.t2.position", True)]
        await close(publisher, subscriber)

    run(scenario)


@BY_TRANSPORT
def test_retained_event_goes_only_to_whom_it_was_eligible_for(
    router: RouterProcess, transport: str
) -> None:
    """A retained event published for eligible_authid alice is delivered on get_retained to
    alice only."""

    async def scenario() -> None:
        publisher = await connect(router, transport, "msgpack")
        topic = uri("private")
        await publisher.publish(topic, "for alice", options=PublishOptions(
            acknowledge=True, retain=True, eligible_authid=["alice"]))
        alice = await connect(router, OTHER[transport], "json", authid="alice")
        bob = await connect(router, transport, "cbor", authid="bob")
        alice_inbox, _ = await subscribe(alice, topic, get_retained=True)
        bob_inbox, _ = await subscribe(bob, topic, get_retained=True)
        args, _, details = await alice_inbox.next()
        assert args == ("for alice",) and details.retained
        await within(bob.call("wamp.session.count"))
        assert bob_inbox.events == []
        await close(publisher, alice, bob)

    run(scenario)


# -- event history ---------------------------------------------------------------------------------


def history_topic(transport: str, name: str) -> str:
    return f"com.example.history.{transport}.{name}"


@BY_TRANSPORT
def test_topic_history_keeps_the_last_events(router: RouterProcess, transport: str) -> None:
    """A history topic keeps its last history_limit events, oldest first;
    wamp.topic.history.last/after/since read them."""

    async def scenario() -> None:
        publisher = await connect(router, transport, "json", authid="alice")
        reader = await connect(router, OTHER[transport], "msgpack", authid="bob")
        topic = history_topic(transport, "log")
        publications = []
        for n in range(HISTORY_LIMIT + 2):
            published = await publisher.publish(topic, n, options=ACK, level="info")
            publications.append(published.id)
        events = await within(reader.call("wamp.topic.history.last", topic, 100))
        assert [e["publication"] for e in events] == publications[-HISTORY_LIMIT:]
        assert [e["args"] for e in events] == [[n] for n in range(2, HISTORY_LIMIT + 2)]
        for event in events:
            assert set(event) == {"timestamp", "publication", "topic", "args", "kwargs"}
            assert event["topic"] == topic and event["kwargs"] == {"level": "info"}
            assert event["timestamp"].endswith("Z")
        last_two = await within(reader.call("wamp.topic.history.last", topic, 2))
        assert last_two == events[-2:]
        after = await within(reader.call("wamp.topic.history.after", topic, publications[-3]))
        assert after == events[-2:]
        for index, event in enumerate(events):  # "since" an event's own timestamp includes it
            since = await within(reader.call("wamp.topic.history.since", topic,
                                             event["timestamp"]))
            assert since == events[index:], (index, event["timestamp"])
        await close(publisher, reader)

    run(scenario)


@BY_TRANSPORT
def test_subscription_get_events_reads_the_history_it_covers(
    router: RouterProcess, transport: str
) -> None:
    """wamp.subscription.get_events returns the last events of every history topic the
    subscription matches, and only those the reader was eligible for."""

    async def scenario() -> None:
        publisher = await connect(router, transport, "cbor", authid="alice")
        bob = await connect(router, OTHER[transport], "json", authid="bob")
        carol = await connect(router, transport, "msgpack", authid="carol")
        prefix = f"com.example.history.{transport}."
        audit = history_topic(transport, "audit")
        await publisher.publish(audit, "for everyone", options=ACK)
        await publisher.publish(audit, "not for bob",
                                options=PublishOptions(acknowledge=True, exclude_authid=["bob"]))
        await publisher.publish(history_topic(transport, "log"), "log line", options=ACK)
        _, bob_sub = await subscribe(bob, prefix, match="prefix")
        _, carol_sub = await subscribe(carol, prefix, match="prefix")
        assert bob_sub.id == carol_sub.id  # one subscription, two subscribers
        carol_events = await within(carol.call("wamp.subscription.get_events", carol_sub.id, 3))
        assert [(e["topic"], e["args"]) for e in carol_events] == [
            (audit, ["for everyone"]), (audit, ["not for bob"]),
            (history_topic(transport, "log"), ["log line"])]
        bob_events = await within(bob.call("wamp.subscription.get_events", bob_sub.id, 2))
        assert [e["args"] for e in bob_events] == [["for everyone"], ["log line"]]
        bob_audit = await within(bob.call("wamp.topic.history.last", audit, 10))
        assert ["not for bob"] not in [e["args"] for e in bob_audit]
        await close(publisher, bob, carol)

    run(scenario)


@BY_TRANSPORT
def test_get_events_of_an_unknown_subscription_fails(
    router: RouterProcess, transport: str
) -> None:
    """wamp.subscription.get_events for a subscription that does not exist gets
    no_such_subscription."""

    async def scenario() -> None:
        session = await connect(router, transport, "json")
        with pytest.raises(ApplicationError) as raised:
            await within(session.call("wamp.subscription.get_events", 1234567, 5))
        assert raised.value.error == "wamp.error.no_such_subscription"
        await close(session)

    run(scenario)


# -- acknowledgement, for the record ---------------------------------------------------------------


@BY_TRANSPORT
def test_acknowledged_publication_gets_its_id(router: RouterProcess, transport: str) -> None:
    """PUBLISHED carries the same publication ID the subscribers' EVENT carries."""

    async def scenario() -> None:
        subscriber = await connect(router, transport, "cbor")
        publisher = await Peer.open(router, OTHER[transport], "msgpack")
        topic = uri("ids")
        inbox, _ = await subscribe(subscriber, topic)
        request = publisher.next_request()
        reply = await publisher.request_reply([PUBLISH, request, {"acknowledge": True}, topic,
                                               ["x"]])
        assert reply[0] == PUBLISHED
        _, _, details = await inbox.next()
        assert details.publication == reply[2]
        await close(subscriber)

    run(scenario)
