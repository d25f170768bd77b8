"""The proxy's WAMP client (serouter/federation/_client.py) against the router's real RawSocket
transport, in one reactor over loopback: join, calls, subscriptions, refusals, GOODBYE."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.trial import unittest

from serouter.federation import WampClient, WampError, open_session
from serouter.serializers import BY_NAME
from serouter.transport import RawSocketFactory
from tests.fakes import connect, make_router, send


class Results:
    """A CallHandler that records what it is told."""

    def __init__(self) -> None:
        self.results: list[Any] = []
        self.errors: list[Any] = []
        self.lost = False
        self.done: defer.Deferred[None] = defer.Deferred()

    def on_result(self, details: dict[str, Any], args: Any, kwargs: Any) -> None:
        self.results.append((details, args, kwargs))
        if not details.get("progress"):
            self.done.callback(None)

    def on_error(self, details: dict[str, Any], error: str, args: Any, kwargs: Any) -> None:
        self.errors.append((error, args, kwargs))
        self.done.callback(None)

    def on_lost(self) -> None:
        self.lost = True
        self.done.callback(None)


class ClientTests(unittest.TestCase):
    timeout = 10

    async def start(self, serializers: tuple[str, ...] = ("json", "msgpack", "cbor")) -> None:
        self.router = make_router(clock=reactor)
        factory = RawSocketFactory(self.router, reactor,
                                   serializers=[BY_NAME[s] for s in serializers],
                                   max_message_size=1 << 20, handshake_timeout=5.0)
        self.port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        self.addCleanup(self.port.stopListening)
        self.endpoint = f"tcp:127.0.0.1:{self.port.getHost().port}"

    async def session(self, realm: str = "realm1") -> WampClient:
        client = await open_session(reactor, self.endpoint, realm)
        self.addCleanup(client.abort)
        return client

    async def test_calls_with_progress_and_errors(self) -> None:
        """A callee here answers with progress, a result, an error; the client relays each."""
        await self.start()
        callee, peer = connect(self.router)
        send(callee, 64, 1, {}, "com.work")
        peer.wire()
        client = await self.session()
        assert client.open and client.serializer.name == "msgpack"
        handler = Results()
        client.call("com.work", {"receive_progress": True}, [1], {"k": 2}, handler)
        await task.deferLater(reactor, 0.1, lambda: None)
        invocation = peer.wire()[0]
        assert invocation[0] == 68 and invocation[4:] == [[1], {"k": 2}]
        send(callee, 70, invocation[1], {"progress": True}, ["half"])
        send(callee, 70, invocation[1], {}, ["all"], {"n": 3})
        await handler.done
        assert handler.results == [({"progress": True}, ["half"], None), ({}, ["all"], {"n": 3})]
        failing = Results()
        client.call("com.work", {}, None, None, failing)
        await task.deferLater(reactor, 0.1, lambda: None)
        invocation = peer.wire()[0]
        send(callee, 8, 68, invocation[1], {}, "com.error.bad", ["why"], {"code": 7})
        await failing.done
        assert failing.errors == [("com.error.bad", ["why"], {"code": 7})]
        with self.assertRaises(WampError) as raised:
            await client.call_deferred("com.nothing")
        assert raised.exception.error == "wamp.error.no_such_procedure"

    async def test_subscriptions(self) -> None:
        await self.start()
        publisher, _ = connect(self.router)
        client = await self.session()
        events: list[Any] = []
        subscription = await client.subscribe("com.", {"match": "prefix"},
                                              lambda *event: events.append(event))
        send(publisher, 16, 1, {}, "com.news", ["hi"], {"x": 1})
        await task.deferLater(reactor, 0.1, lambda: None)
        assert [(e[1], e[2], e[3]) for e in events] == [({"topic": "com.news"}, ["hi"], {"x": 1})]
        await client.unsubscribe(subscription)
        send(publisher, 16, 2, {}, "com.news", ["again"])
        await task.deferLater(reactor, 0.1, lambda: None)
        assert len(events) == 1

    async def test_refusals(self) -> None:
        """An unknown realm is an ABORT; a listener without msgpack gets cbor, then json."""
        await self.start(serializers=("json",))
        with self.assertRaises(WampError) as raised:
            await self.session("nowhere")
        assert raised.exception.error == "wamp.error.no_such_realm"
        client = await self.session()
        assert client.serializer.name == "json"

    async def test_goodbye_from_the_router_ends_pending_calls(self) -> None:
        await self.start()
        callee, _peer = connect(self.router)
        send(callee, 64, 1, {}, "com.slow")
        client = await self.session()
        closed: list[WampClient] = []
        client.on_close.append(closed.append)
        handler = Results()
        client.call("com.slow", {}, None, None, handler)
        await task.deferLater(reactor, 0.1, lambda: None)
        (server_side,) = [s for s in self.router.sessions if s is not callee]
        server_side.shutdown()  # GOODBYE to the client only: the callee stays
        await handler.done
        await task.deferLater(reactor, 0, lambda: None)
        assert handler.lost and closed == [client] and not client.open

    async def test_leave(self) -> None:
        await self.start()
        client = await self.session()
        await client.leave()
        assert not client.open
        await task.deferLater(reactor, 0.05, lambda: None)
        assert len(self.router.sessions) == 0
