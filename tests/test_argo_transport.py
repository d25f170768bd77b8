"""The Argo FileDescriptor transport over real fds standing in for the device (socketpairs),
under real RawSocket and WebSocket WAMP traffic with real Autobahn|Python clients (trial).

The router side is always serouter's ``ArgoPort``/``ArgoConnection`` with the real RawSocket
or WebSocket protocol; the client side is either Twisted's own transport over the other end
of the socketpair (``adoptStreamConnection``: an implementation independent of ours) or
serouter's ``ArgoClientEndpoint`` (both ends ours). Every connection is closed and waited for,
so trial finds the reactor clean; every wait is bounded.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from tests.router_process import use_txaio

use_txaio("twisted")

from autobahn.twisted.rawsocket import WampRawSocketClientFactory  # noqa: E402
from autobahn.twisted.websocket import WampWebSocketClientFactory  # noqa: E402
from autobahn.wamp.serializer import JsonSerializer, MsgPackSerializer  # noqa: E402
from autobahn.wamp.types import ComponentConfig, PublishOptions  # noqa: E402
from twisted.internet import defer, reactor, task  # noqa: E402
from twisted.trial import unittest  # noqa: E402

from serouter.argo import (  # noqa: E402
    ArgoAddress,
    ArgoClientEndpoint,
    ArgoConnection,
    ArgoServerEndpoint,
    PeerDomain,
)
from serouter.core.access import AllowAll  # noqa: E402
from serouter.core.router import Router  # noqa: E402
from serouter.security._labeler import SessionLabeler  # noqa: E402
from serouter.serializers import JSON, MSGPACK  # noqa: E402
from serouter.transport import RawSocketFactory, WebSocketFactory  # noqa: E402
from serouter.transport._base import WampProtocol  # noqa: E402
from tests.argo_support import PairDriver  # noqa: E402
from tests.twisted_support import Client  # noqa: E402

STEP = 10.0
PORT = 5555
LABEL_3 = "system_u:system_r:guest3_t:s0"
DOMAINS = {3: PeerDomain(3, "guest3", "6c4a8f5e-3b1d-4d8e-9a7b-2f1e0c9d8b7a")}


def within(d: defer.Deferred[Any], seconds: float = STEP) -> defer.Deferred[Any]:
    return d.addTimeout(seconds, reactor)


def sleep(seconds: float) -> defer.Deferred[None]:
    return task.deferLater(reactor, seconds, lambda: None)


async def eventually(check: Any, what: str, seconds: float = STEP) -> None:
    deadline = reactor.seconds() + seconds
    while not check():
        if reactor.seconds() > deadline:
            raise AssertionError(f"{what}: not within {seconds} s")
        await sleep(0.01)


class ArgoTransportTest(unittest.TestCase):
    timeout = 60

    def setUp(self) -> Any:
        use_txaio("twisted")
        self.driver = PairDriver()
        labeler = SessionLabeler(unlabeled="u:r:unlabeled_t:s0", valid=lambda c: True,
                                 trust_peer_context=False, domain_labels={"name:guest3": LABEL_3})
        self.router = Router(["realm1"], AllowAll(), reactor, labeler=labeler)
        return self.listen(RawSocketFactory, PORT)

    @defer.inlineCallbacks
    def listen(self, factory_type: Any, port: int, **options: Any) -> Any:
        factory = factory_type(
            self.router, reactor, serializers=[MSGPACK, JSON], max_message_size=8 << 20,
            handshake_timeout=5, listener=f"argo:port={port}", **options,
        )

        def resolve(domid: int) -> defer.Deferred[PeerDomain]:
            return defer.succeed(DOMAINS.get(domid, PeerDomain(domid)))

        endpoint = ArgoServerEndpoint(reactor, port, driver=self.driver, resolver=resolve)
        listening = yield endpoint.listen(factory)
        self.addCleanup(listening.stopListening)
        return listening

    # -- clients ----------------------------------------------------------------------------

    def _factory(self, session: Client, kind: str, port: int) -> Any:
        if kind == "websocket":
            return WampWebSocketClientFactory(lambda: session, url=f"ws://argo{port}/ws",
                                              serializers=[JsonSerializer()])
        return WampRawSocketClientFactory(lambda: session, serializer=MsgPackSerializer())

    @defer.inlineCallbacks
    def adopted(self, domain: int, kind: str = "rawsocket", port: int = PORT) -> Any:
        """A session over Twisted's own transport on the other end of a "device" socketpair,
        as if from ``domain``."""
        session = Client(ComponentConfig("realm1"))
        factory = self._factory(session, kind, port)
        built: list[Any] = []
        build = factory.buildProtocol
        factory.buildProtocol = lambda addr: built.append(build(addr)) or built[-1]
        client = self.driver.dial(port, domain)
        reactor.adoptStreamConnection(client.fileno(), socket.AF_UNIX, factory)
        client.close()  # adoptStreamConnection made its own copy
        self.addCleanup(self.close, session)
        yield within(session.joined)
        session.wire = built[0].transport  # Twisted's transport under the client
        return session

    @defer.inlineCallbacks
    def over_argo(self) -> Any:
        """A session over serouter's client endpoint (both ends are Argo FileDescriptors)."""
        session = Client(ComponentConfig("realm1"))
        endpoint = ArgoClientEndpoint(reactor, 0, PORT, driver=self.driver)
        protocol = yield within(endpoint.connect(self._factory(session, "rawsocket", PORT)))
        self.addCleanup(self.close, session)
        yield within(session.joined)
        session.wire = protocol.transport
        return session

    @defer.inlineCallbacks
    def close(self, session: Client) -> Any:
        if session.is_attached():
            session.leave()
        try:
            yield within(session.disconnected)
        except defer.TimeoutError:
            session.wire.abortConnection()
            yield within(session.disconnected)
            raise AssertionError("the connection stayed open after GOODBYE") from None

    def server_side(self, domid: int) -> WampProtocol:
        """The router's protocol of the (single) session from ``domid``."""
        (session,) = [s for s in self.router.sessions if s.transport.peer_domain == domid]
        peer = session.peer
        assert isinstance(peer, WampProtocol)
        return peer

    # -- tests --------------------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_sessions_know_their_domain_and_are_labeled_by_it(self) -> Any:
        """Each session's TransportInfo carries the domain id (and XenStore's name and uuid,
        here from the test resolver); the label comes from the domain map; a domain the map
        does not name is unlabeled. The router's transport is an ArgoConnection."""
        known = yield self.adopted(3)
        other = yield self.adopted(9)
        info = self.server_side(3).session.transport  # type: ignore[union-attr]
        assert (info.peer_domain, info.peer_domain_name, info.peer_domain_uuid) == (
            3, "guest3", DOMAINS[3].uuid)
        assert info.peer.startswith("argo:3:") and info.listener == f"argo:port={PORT}"
        assert self.server_side(3).session.label == LABEL_3  # type: ignore[union-attr]
        assert self.server_side(9).session.label == "u:r:unlabeled_t:s0"  # type: ignore[union-attr]
        transport = self.server_side(3).transport
        assert isinstance(transport, ArgoConnection)
        assert transport.getPeer() == ArgoAddress(3, 40000)
        assert transport.producer is self.server_side(3)  # registered for backpressure
        details = yield known.call("wamp.session.get", known._session_id)
        assert details["transport"]["peer_domain_name"] == "guest3"
        del other

    @defer.inlineCallbacks
    def test_rpc_and_pubsub(self) -> Any:
        """Calls, results, errors and events between sessions of two domains."""
        callee = yield self.adopted(3)
        caller = yield self.over_argo()
        yield callee.register(lambda a, b: a + b, "com.example.add")
        assert (yield caller.call("com.example.add", 2, 3)) == 5
        got: defer.Deferred[Any] = defer.Deferred()
        yield callee.subscribe(got.callback, "com.example.news")
        yield caller.publish("com.example.news", "hello", options=PublishOptions(acknowledge=True))
        assert (yield within(got)) == "hello"

    @defer.inlineCallbacks
    def test_large_messages_both_ways(self) -> Any:
        """A 4 MiB argument reaches the callee and a 4 MiB result comes back, in both client
        kinds (the device writes in pieces; nothing is lost or reordered)."""
        big = os.urandom(4 << 20)
        callee = yield self.adopted(3)
        caller = yield self.over_argo()
        yield callee.register(lambda data: data[::-1], "com.example.reverse")
        result = yield within(caller.call("com.example.reverse", big), 30)
        assert result == big[::-1]
        other = yield self.adopted(4)
        result = yield within(other.call("com.example.reverse", result), 30)
        assert result == big

    @defer.inlineCallbacks
    def test_slow_reader_pauses_the_router_and_resumes(self) -> Any:
        """A subscriber that stops reading: the device buffer fills, the Argo transport
        pauses the router's protocol (its registered producer); when the subscriber reads
        again it is resumed and every event arrives, in order."""
        subscriber = yield self.adopted(3)
        publisher = yield self.adopted(4)
        received: list[int] = []
        yield subscriber.subscribe(lambda n, pad: received.append(n), "com.example.flood")
        router_side = self.server_side(3)
        paused: list[bool] = []
        pause, resume = router_side.pauseProducing, router_side.resumeProducing
        router_side.pauseProducing = lambda: (paused.append(True), pause())[1]  # type: ignore[method-assign]
        router_side.resumeProducing = lambda: (paused.append(False), resume())[1]  # type: ignore[method-assign]
        subscriber.wire.pauseProducing()  # the client stops reading
        pad = b"x" * (16 << 10)
        for n in range(40):  # 640 KiB: past the socket buffer and the transport's mark
            publisher.publish("com.example.flood", n, pad)
        yield eventually(lambda: paused and paused[-1], "the router's protocol paused")
        assert router_side.outflow.paused and not received
        buffered = router_side.transport._tempDataLen  # type: ignore[union-attr]
        assert buffered > router_side.transport.bufferSize  # type: ignore[union-attr]
        subscriber.wire.resumeProducing()
        yield eventually(lambda: len(received) == 40, "all events")
        assert received == list(range(40))
        assert paused[-1] is False  # Twisted pauses at every write past the mark, resumes once
        assert not router_side.outflow.paused and router_side.outflow.dropped == 0

    @defer.inlineCallbacks
    def test_websocket_over_argo(self) -> Any:
        """WebSocket framing runs over the Argo transport unchanged."""
        yield self.listen(WebSocketFactory, PORT + 1)
        callee = yield self.adopted(3, "websocket", PORT + 1)
        caller = yield self.adopted(4)
        yield callee.register(lambda s: s.upper(), "com.example.upper")
        assert (yield caller.call("com.example.upper", "argo")) == "ARGO"
        assert self.server_side(3).session.transport.kind == "websocket"  # type: ignore[union-attr]

    @defer.inlineCallbacks
    def test_peer_gone_ends_the_session_and_closes_the_fd(self) -> Any:
        """A client that drops its end: the router's session ends and its fd is closed."""
        session = yield self.adopted(3)
        fd = self.server_side(3).transport.fileno()  # type: ignore[union-attr]
        session.wire.abortConnection()
        yield within(session.disconnected)
        yield eventually(lambda: not self.router.sessions, "the router's session ended")
        assert fd in self.driver.closed

    @defer.inlineCallbacks
    def test_abort_from_the_router_side(self) -> Any:
        """abortConnection on the Argo transport drops the connection at once."""
        session = yield self.adopted(3)
        self.server_side(3).transport.abortConnection()  # type: ignore[union-attr]
        yield within(session.disconnected)
        yield eventually(lambda: not self.router.sessions, "the router's session ended")

    @defer.inlineCallbacks
    def test_refused_peer_and_closed_port(self) -> Any:
        """A peer the device refuses is closed before any protocol; after stopListening, the
        port's fd is closed and nobody else is accepted."""
        self.driver.refuse.add(5)
        refused = self.driver.dial(PORT, 5)
        refused.settimeout(STEP)
        yield eventually(lambda: _closed(refused), "the refused peer closed")
        assert not self.router.sessions
        listening = yield self.listen(RawSocketFactory, PORT + 2)
        yield listening.stopListening()
        assert listening.fileno() == -1 and PORT + 2 not in self.driver.ports
        refused.close()


def _closed(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
