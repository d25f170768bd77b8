"""End to end with Autobahn|Python on Twisted: trial TestCases against a router subprocess.

The same scenarios as the asyncio module, once per transport and serializer (one TestCase
class each). Every connection is closed and waited for in a cleanup, so trial's reactor is
clean after each test; every wait has a timeout.
"""

from __future__ import annotations

import atexit
from typing import Any, ClassVar

from tests.router_process import RouterProcess, stop_cleanly, use_txaio

use_txaio("twisted")

from autobahn.twisted.rawsocket import WampRawSocketClientFactory  # noqa: E402
from autobahn.twisted.websocket import WampWebSocketClientFactory  # noqa: E402
from autobahn.wamp.exception import ApplicationError  # noqa: E402
from autobahn.wamp.serializer import (  # noqa: E402
    CBORSerializer,
    JsonSerializer,
    MsgPackSerializer,
)
from autobahn.wamp.types import CallResult, ComponentConfig, PublishOptions  # noqa: E402
from twisted.internet import defer, reactor  # noqa: E402
from twisted.internet.endpoints import TCP4ClientEndpoint  # noqa: E402
from twisted.trial import unittest  # noqa: E402

from tests.twisted_support import Client  # noqa: E402

SERIALIZERS = {"json": JsonSerializer, "msgpack": MsgPackSerializer, "cbor": CBORSerializer}
STEP_TIMEOUT = 5.0
BINARY = bytes(range(256)) + b"\x00tail"

# One router for the module: pytest calls setUpModule/tearDownModule; under plain trial (which
# does not) the first test starts it and the interpreter's exit stops it.
_router: RouterProcess | None = None


def setUpModule() -> None:
    global _router
    if _router is None:
        _router = RouterProcess().start()


def tearDownModule() -> None:
    global _router
    router, _router = _router, None
    if router is not None:
        stop_cleanly(router)


def shared_router() -> RouterProcess:
    if _router is None:
        setUpModule()
        atexit.register(tearDownModule)
    assert _router is not None
    return _router


def within(d: defer.Deferred[Any], seconds: float = STEP_TIMEOUT) -> defer.Deferred[Any]:
    """``d``, failing with TimeoutError after ``seconds`` (the DelayedCall ends with it)."""
    return d.addTimeout(seconds, reactor)


def wait_for(d: defer.Deferred[Any], seconds: float = STEP_TIMEOUT) -> defer.Deferred[Any]:
    """Wait for ``d`` without consuming its result (others may wait for it too)."""
    mirror: defer.Deferred[Any] = defer.Deferred()

    def both(result: Any) -> Any:
        if not mirror.called:
            mirror.callback(None)
        return result

    d.addBoth(both)
    return within(mirror, seconds)


class _Scenarios:
    """Every scenario; a subclass picks the transport and serializer."""

    transport: ClassVar[str]
    serializer: ClassVar[str]
    timeout = 30

    # -- plumbing -------------------------------------------------------------------------

    def setUp(self) -> None:
        use_txaio("twisted")  # the asyncio tests may have run in this process meanwhile
        self.router = shared_router()
        self.names = 0

    def uri(self, name: str) -> str:
        self.names += 1
        return f"com.example.tx.{self.transport}.{self.serializer}.{name}.n{self.names}"

    @defer.inlineCallbacks
    def connect(self) -> Any:
        """A session joined to realm1; a cleanup leaves and waits for the disconnect."""
        session = Client(ComponentConfig("realm1"))
        factory: Any
        if self.transport == "websocket":
            factory = WampWebSocketClientFactory(
                lambda: session,
                url=self.router.url("websocket"),
                serializers=[SERIALIZERS[self.serializer]()],
            )
        else:
            factory = WampRawSocketClientFactory(
                lambda: session, serializer=SERIALIZERS[self.serializer]()
            )
        endpoint = TCP4ClientEndpoint(
            reactor, "127.0.0.1", self.router.port(self.transport), timeout=STEP_TIMEOUT
        )
        yield within(endpoint.connect(factory))
        self.addCleanup(self.close, session)  # type: ignore[attr-defined]
        yield wait_for(session.joined)
        return session

    @defer.inlineCallbacks
    def close(self, session: Client) -> Any:
        if session.is_attached():
            session.leave()
        try:
            yield wait_for(session.disconnected)
        except defer.TimeoutError:
            session.abort_transport()
            yield wait_for(session.disconnected)
            raise AssertionError("the connection stayed open after GOODBYE") from None

    @defer.inlineCallbacks
    def pair(self) -> Any:
        first = yield self.connect()
        second = yield self.connect()
        return (first, second)

    # -- scenarios ------------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_call_carries_args_kwargs_and_binary(self) -> Any:
        """A CALL's args and kwargs, bytes included, reach the callee and come back."""
        callee, caller = yield self.pair()
        procedure = self.uri("echo")

        def echo(*args: Any, **kwargs: Any) -> CallResult:
            return CallResult(*args, **kwargs)

        yield callee.register(echo, procedure)
        result = yield caller.call(procedure, 1, "two", BINARY, [None], k=BINARY, n={"a": []})
        assert list(result.results) == [1, "two", BINARY, [None]]
        assert result.kwresults == {"k": BINARY, "n": {"a": []}}

    @defer.inlineCallbacks
    def test_callee_error_reaches_caller(self) -> Any:
        """An ApplicationError raised in the callee reaches the caller with URI, args, kwargs."""
        callee, caller = yield self.pair()
        procedure = self.uri("fails")

        def fails() -> None:
            raise ApplicationError("com.example.error.bad_thing", "why", 42, code=3)

        yield callee.register(fails, procedure)
        try:
            yield caller.call(procedure)
        except ApplicationError as e:
            assert (e.error, e.args, e.kwargs) == ("com.example.error.bad_thing", ("why", 42),
                                                   {"code": 3})
        else:
            raise AssertionError("the call succeeded")

    @defer.inlineCallbacks
    def test_publish_acknowledged_and_delivered(self) -> Any:
        """An acknowledged PUBLISH gets PUBLISHED, and its EVENT reaches the subscriber."""
        subscriber, publisher = yield self.pair()
        topic = self.uri("news")
        received: defer.Deferred[Any] = defer.Deferred()
        yield subscriber.subscribe(lambda *a, **kw: received.callback((a, kw)), topic)
        publication = yield publisher.publish(
            topic, "hello", BINARY, options=PublishOptions(acknowledge=True), n=7
        )
        assert isinstance(publication.id, int) and publication.id > 0
        event = yield within(received)
        assert event == (("hello", BINARY), {"n": 7})

    @defer.inlineCallbacks
    def test_unsubscribe_stops_events(self) -> Any:
        """After UNSUBSCRIBE no more events of that topic arrive."""
        subscriber, publisher = yield self.pair()
        topic, sentinel_topic = self.uri("gone"), self.uri("sentinel")
        events: list[Any] = []
        first: defer.Deferred[None] = defer.Deferred()
        sentinel: defer.Deferred[None] = defer.Deferred()

        def on_event(*args: Any) -> None:
            events.append(args)
            if not first.called:
                first.callback(None)

        subscription = yield subscriber.subscribe(on_event, topic)
        yield subscriber.subscribe(lambda: sentinel.callback(None), sentinel_topic)
        acknowledge = PublishOptions(acknowledge=True)
        yield publisher.publish(topic, 1, options=acknowledge)
        yield within(first)  # autobahn drops events of a subscription being unsubscribed
        yield subscription.unsubscribe()
        yield publisher.publish(topic, 2, options=acknowledge)
        yield publisher.publish(sentinel_topic, options=acknowledge)
        yield within(sentinel)  # written after any event 2 on the same connection
        assert events == [(1,)]

    @defer.inlineCallbacks
    def test_unregister_then_call_fails(self) -> Any:
        """After UNREGISTER a call of the procedure fails with wamp.error.no_such_procedure."""
        callee, caller = yield self.pair()
        procedure = self.uri("brief")
        registration = yield callee.register(lambda: "here", procedure)
        assert (yield caller.call(procedure)) == "here"
        yield registration.unregister()
        try:
            yield caller.call(procedure)
        except ApplicationError as e:
            assert e.error == "wamp.error.no_such_procedure", e
        else:
            raise AssertionError("the call succeeded")

    @defer.inlineCallbacks
    def test_lost_callee_fails_outstanding_calls(self) -> Any:
        """A callee whose connection drops mid-call makes each outstanding call fail: canceled."""
        callee, caller = yield self.pair()
        procedure = self.uri("never_answers")
        invoked: list[int] = []
        both_invoked: defer.Deferred[None] = defer.Deferred()
        hanging: list[defer.Deferred[None]] = []

        def never_answers(n: int) -> defer.Deferred[None]:
            invoked.append(n)
            if len(invoked) == 2:
                both_invoked.callback(None)
            hanging.append(defer.Deferred())
            return hanging[-1]

        yield callee.register(never_answers, procedure)
        calls = [caller.call(procedure, n) for n in (1, 2)]
        yield within(both_invoked)
        callee.abort_transport()
        outcomes = yield within(defer.DeferredList(calls, consumeErrors=True))
        for ok, outcome in outcomes:
            assert not ok, outcome
            assert outcome.check(ApplicationError), outcome
            assert outcome.value.error == "wamp.error.canceled", outcome.value
        # the caller's session is still good, and the procedure went with its callee
        try:
            yield caller.call(procedure, 3)
        except ApplicationError as e:
            assert e.error == "wamp.error.no_such_procedure", e
        else:
            raise AssertionError("the call succeeded")
        yield wait_for(callee.disconnected)


class WebSocketJsonTests(_Scenarios, unittest.TestCase):
    transport, serializer = "websocket", "json"


class WebSocketMsgPackTests(_Scenarios, unittest.TestCase):
    transport, serializer = "websocket", "msgpack"


class WebSocketCborTests(_Scenarios, unittest.TestCase):
    transport, serializer = "websocket", "cbor"


class RawSocketJsonTests(_Scenarios, unittest.TestCase):
    transport, serializer = "rawsocket", "json"


class RawSocketMsgPackTests(_Scenarios, unittest.TestCase):
    transport, serializer = "rawsocket", "msgpack"


class RawSocketCborTests(_Scenarios, unittest.TestCase):
    transport, serializer = "rawsocket", "cbor"
