"""End to end with Autobahn|Python on asyncio: real clients, real sockets, a router subprocess.

Every scenario runs over WebSocket and RawSocket with JSON, MsgPack and CBOR. Each test runs its
own event loop under ``asyncio.wait_for``, so a router that never answers fails the test instead
of hanging it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.router_process import RouterProcess, router_fixture, use_txaio

use_txaio("asyncio")

from autobahn.wamp.exception import ApplicationError  # noqa: E402
from autobahn.wamp.types import CallResult, PublishOptions  # noqa: E402

from tests import e2e_clients  # noqa: E402
from tests.e2e_clients import SERIALIZERS, TRANSPORTS, Client  # noqa: E402

router = router_fixture()

MATRIX = pytest.mark.parametrize(
    ("transport", "serializer"), list(itertools.product(TRANSPORTS, SERIALIZERS))
)
TEST_TIMEOUT = 10.0
STEP_TIMEOUT = 5.0
BINARY = bytes(range(256)) + b"\x00tail"
_unique = itertools.count(1)


def uri(name: str) -> str:
    """A URI no other test uses, so one test's leftovers cannot answer another's call."""
    return f"com.example.e2e.{name}.n{next(_unique)}"


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    """Run ``scenario`` in a fresh event loop, failing it after TEST_TIMEOUT seconds."""
    e2e_clients.run(scenario, TEST_TIMEOUT)


async def connect(router: RouterProcess, transport: str, serializer: str) -> Client:
    """A session joined to realm1 over ``transport`` with ``serializer``."""
    return await e2e_clients.connect(router, transport, serializer, step=STEP_TIMEOUT)


async def close(*sessions: Client) -> None:
    """Leave with GOODBYE and wait until each connection is gone."""
    await e2e_clients.close(*sessions, step=STEP_TIMEOUT)


async def pair(router: RouterProcess, transport: str, serializer: str) -> tuple[Client, Client]:
    return (
        await connect(router, transport, serializer),
        await connect(router, transport, serializer),
    )


@MATRIX
def test_call_carries_args_kwargs_and_binary(
    router: RouterProcess, transport: str, serializer: str
) -> None:
    """A CALL's args and kwargs, bytes included, reach the callee and come back as the RESULT."""

    async def scenario() -> None:
        callee, caller = await pair(router, transport, serializer)
        procedure = uri("echo")
        seen: list[tuple[Any, Any]] = []

        def echo(*args: Any, **kwargs: Any) -> CallResult:
            seen.append((args, kwargs))
            return CallResult(*args, **kwargs)

        await callee.register(echo, procedure)
        result = await caller.call(procedure, 1, "two", BINARY, [None, 3.5], k=BINARY, n={"a": []})
        assert seen == [((1, "two", BINARY, [None, 3.5]), {"k": BINARY, "n": {"a": []}})]
        assert list(result.results) == [1, "two", BINARY, [None, 3.5]]
        assert result.kwresults == {"k": BINARY, "n": {"a": []}}
        assert await caller.call(procedure, "single") == "single"
        await close(callee, caller)

    run(scenario)


@pytest.mark.parametrize(
    ("callee_side", "caller_side"),
    [
        (("rawsocket", "json"), ("websocket", "msgpack")),
        (("websocket", "msgpack"), ("rawsocket", "cbor")),
        (("rawsocket", "cbor"), ("websocket", "json")),
    ],
)
def test_binary_crosses_serializers(
    router: RouterProcess, callee_side: tuple[str, str], caller_side: tuple[str, str]
) -> None:
    """Bytes survive a callee and a caller that use different serializers and transports."""

    async def scenario() -> None:
        callee = await connect(router, *callee_side)
        caller = await connect(router, *caller_side)
        procedure = uri("reverse")
        await callee.register(lambda data: data[::-1], procedure)
        assert await caller.call(procedure, BINARY) == BINARY[::-1]
        await close(callee, caller)

    run(scenario)


@MATRIX
def test_callee_error_reaches_caller(
    router: RouterProcess, transport: str, serializer: str
) -> None:
    """An ApplicationError raised in the callee reaches the caller with its URI, args, kwargs."""

    async def scenario() -> None:
        callee, caller = await pair(router, transport, serializer)
        procedure = uri("fails")

        def fails() -> None:
            raise ApplicationError("com.example.error.bad_thing", "why", 42, code=3, blob=b"\x01")

        await callee.register(fails, procedure)
        with pytest.raises(ApplicationError) as raised:
            await caller.call(procedure)
        assert raised.value.error == "com.example.error.bad_thing"
        assert raised.value.args == ("why", 42)
        assert raised.value.kwargs == {"code": 3, "blob": b"\x01"}
        await close(callee, caller)

    run(scenario)


@MATRIX
def test_publish_acknowledged_and_delivered(
    router: RouterProcess, transport: str, serializer: str
) -> None:
    """An acknowledged PUBLISH gets PUBLISHED and its EVENT reaches the other subscriber only."""

    async def scenario() -> None:
        subscriber, publisher = await pair(router, transport, serializer)
        topic = uri("news")
        loop = asyncio.get_running_loop()
        received: asyncio.Future[tuple[Any, Any]] = loop.create_future()
        own_events: list[Any] = []

        def on_event(*args: Any, **kwargs: Any) -> None:
            received.set_result((args, kwargs))

        await subscriber.subscribe(on_event, topic)
        await publisher.subscribe(lambda *a, **kw: own_events.append(a), topic)
        publication = await publisher.publish(
            topic, "hello", BINARY, options=PublishOptions(acknowledge=True), n=7
        )
        assert isinstance(publication.id, int) and publication.id > 0
        args, kwargs = await asyncio.wait_for(received, STEP_TIMEOUT)
        assert (args, kwargs) == (("hello", BINARY), {"n": 7})
        # exclude_me defaults to true: a round trip later, still nothing came back to us
        await publisher.publish(uri("barrier"), options=PublishOptions(acknowledge=True))
        assert own_events == []
        await close(subscriber, publisher)

    run(scenario)


@MATRIX
def test_unsubscribe_stops_events(router: RouterProcess, transport: str, serializer: str) -> None:
    """After UNSUBSCRIBE no more events of that topic arrive."""

    async def scenario() -> None:
        subscriber, publisher = await pair(router, transport, serializer)
        topic, sentinel_topic = uri("gone"), uri("sentinel")
        loop = asyncio.get_running_loop()
        events: list[Any] = []
        first: asyncio.Future[None] = loop.create_future()
        sentinel: asyncio.Future[None] = loop.create_future()

        def on_event(*args: Any) -> None:
            events.append(args)
            if not first.done():
                first.set_result(None)

        subscription = await subscriber.subscribe(on_event, topic)
        await subscriber.subscribe(lambda: sentinel.set_result(None), sentinel_topic)
        acknowledge = PublishOptions(acknowledge=True)
        await publisher.publish(topic, 1, options=acknowledge)
        # autobahn drops events for a subscription it is unsubscribing: wait for this one first
        await asyncio.wait_for(first, STEP_TIMEOUT)
        await subscription.unsubscribe()
        await publisher.publish(topic, 2, options=acknowledge)
        await publisher.publish(sentinel_topic, options=acknowledge)
        # the router writes the subscriber's events in order: the sentinel comes after any 2
        await asyncio.wait_for(sentinel, STEP_TIMEOUT)
        assert events == [(1,)]
        await close(subscriber, publisher)

    run(scenario)


@MATRIX
def test_unregister_then_call_fails(
    router: RouterProcess, transport: str, serializer: str
) -> None:
    """After UNREGISTER a call of the procedure fails with wamp.error.no_such_procedure."""

    async def scenario() -> None:
        callee, caller = await pair(router, transport, serializer)
        procedure = uri("brief")
        registration = await callee.register(lambda: "here", procedure)
        assert await caller.call(procedure) == "here"
        await registration.unregister()
        with pytest.raises(ApplicationError) as raised:
            await caller.call(procedure)
        assert raised.value.error == "wamp.error.no_such_procedure"
        await close(callee, caller)

    run(scenario)


@MATRIX
def test_lost_callee_fails_outstanding_calls(
    router: RouterProcess, transport: str, serializer: str
) -> None:
    """A callee whose connection drops mid-call makes each outstanding call fail with canceled."""

    async def scenario() -> None:
        callee, caller = await pair(router, transport, serializer)
        procedure = uri("never_answers")
        loop = asyncio.get_running_loop()
        invoked: list[int] = []
        both_invoked: asyncio.Future[None] = loop.create_future()

        def never_answers(n: int) -> asyncio.Future[None]:
            invoked.append(n)
            if len(invoked) == 2:
                both_invoked.set_result(None)
            return loop.create_future()

        await callee.register(never_answers, procedure)
        calls = [asyncio.ensure_future(caller.call(procedure, n)) for n in (1, 2)]
        await asyncio.wait_for(both_invoked, STEP_TIMEOUT)
        callee.abort()
        done = await asyncio.wait_for(
            asyncio.gather(*calls, return_exceptions=True), STEP_TIMEOUT
        )
        for outcome in done:
            assert isinstance(outcome, ApplicationError), outcome
            assert outcome.error == "wamp.error.canceled"
        # the caller's session is still good, and the procedure is gone with its callee
        with pytest.raises(ApplicationError) as raised:
            await caller.call(procedure, 3)
        assert raised.value.error == "wamp.error.no_such_procedure"
        await asyncio.wait_for(asyncio.shield(callee.disconnected), STEP_TIMEOUT)
        await close(caller)

    run(scenario)


@MATRIX
def test_concurrent_calls_answered_out_of_order(
    router: RouterProcess, transport: str, serializer: str
) -> None:
    """Many calls in flight, answered in reverse order, each get their own RESULT."""

    async def scenario() -> None:
        callee, caller = await pair(router, transport, serializer)
        procedure = uri("slow_echo")
        loop = asyncio.get_running_loop()
        waiting: list[tuple[asyncio.Future[int], int]] = []
        all_invoked: asyncio.Future[None] = loop.create_future()

        def slow_echo(n: int) -> asyncio.Future[int]:
            answer: asyncio.Future[int] = loop.create_future()
            waiting.append((answer, n))
            if len(waiting) == 20:
                all_invoked.set_result(None)
            return answer

        await callee.register(slow_echo, procedure)
        calls = [asyncio.ensure_future(caller.call(procedure, n)) for n in range(20)]
        await asyncio.wait_for(all_invoked, STEP_TIMEOUT)
        for answer, n in reversed(waiting):
            answer.set_result(n * 10)
        assert await asyncio.wait_for(asyncio.gather(*calls), STEP_TIMEOUT) == [
            n * 10 for n in range(20)
        ]
        await close(callee, caller)

    run(scenario)


@MATRIX
def test_large_payloads_round_trip(router: RouterProcess, transport: str, serializer: str) -> None:
    """Payloads from a few bytes to half a megabyte cross the router both ways unchanged."""

    async def scenario() -> None:
        callee, caller = await pair(router, transport, serializer)
        procedure = uri("big_echo")

        def big_echo(text: str, data: bytes) -> CallResult:
            return CallResult(text, data)

        await callee.register(big_echo, procedure)
        for size in (125, 126, 65535, 65536, 300_000):
            text, data = "é" * (size // 2), bytes(range(256)) * (size // 256 + 1)
            result = await caller.call(procedure, text, data[:size])
            assert list(result.results) == [text, data[:size]], size
        await close(callee, caller)

    run(scenario)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_caller_cancelling_a_call_keeps_its_session(router: RouterProcess, transport: str) -> None:
    """A call given up by the caller (Autobahn then sends CANCEL) leaves the session usable."""

    async def scenario() -> None:
        callee, caller = await pair(router, transport, "json")
        hanging, working = uri("hangs"), uri("works")
        loop = asyncio.get_running_loop()
        await callee.register(loop.create_future, hanging)
        await callee.register(lambda: "fine", working)
        # the router may answer the CANCEL with ERROR canceled, or not at all
        with contextlib.suppress(TimeoutError, ApplicationError):
            await asyncio.wait_for(caller.call(hanging), 0.3)
        try:
            answer = await caller.call(working)
        except Exception as e:
            raise AssertionError(f"the session did not survive the CANCEL: {e!r}") from None
        assert answer == "fine" and caller.is_attached()
        await close(callee, caller)

    run(scenario)
