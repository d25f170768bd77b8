"""Plumbing shared by the Advanced Profile end-to-end modules (RPC, PubSub, meta API).

One router configuration for all three: ``realm1`` (defaults, ticket principals, event history
for a few topics), ``forced`` and ``forbidden`` (caller and publisher disclosure forced or
forbidden), ``census`` (a realm only the session-counting and kill tests join, so their counts
are exact), plain WebSocket and RawSocket listeners and, for keepalive, one of each that pings
every 0.5 s.

Two kinds of client, both on asyncio:

- ``Client``: an Autobahn|Python ``ApplicationSession`` whose join, leave and disconnect can be
  awaited; ``connect`` joins it anonymously or with a ticket.
- ``Peer``: a hand-rolled WAMP client over asyncio streams, for what Autobahn|Python cannot
  send (``disclose_me``, CANCEL modes, progressive CALLs, ``disclose_caller`` on REGISTER) and
  for a peer that goes silent. It writes the frames itself, answers the router's pings unless
  told not to, and announces every feature the router offers.

``run`` gives each scenario a fresh event loop and a time limit, and aborts every connection the
scenario left open, so a failing test cannot leave sessions on the shared router.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.raw_clients import (
    CODECS,
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RAWSOCKET_IDS,
    frame_header,
    mask,
    upgrade_request,
)
from tests.router_process import Listener, RouterProcess, running, use_txaio

use_txaio("asyncio")

from autobahn.asyncio.rawsocket import WampRawSocketClientFactory  # noqa: E402
from autobahn.asyncio.wamp import ApplicationSession  # noqa: E402
from autobahn.asyncio.websocket import WampWebSocketClientFactory  # noqa: E402
from autobahn.wamp.serializer import (  # noqa: E402
    CBORSerializer,
    JsonSerializer,
    MsgPackSerializer,
)
from autobahn.wamp.types import ComponentConfig  # noqa: E402

TRANSPORTS = ("websocket", "rawsocket")
BY_TRANSPORT = pytest.mark.parametrize("transport", TRANSPORTS)
OTHER = {"websocket": "rawsocket", "rawsocket": "websocket"}  # for a mixed pair of clients
SERIALIZERS = {"json": JsonSerializer, "msgpack": MsgPackSerializer, "cbor": CBORSerializer}
TEST_TIMEOUT = 8.0
STEP_TIMEOUT = 3.0
KEEPALIVE = 0.5  # ping_interval and ping_timeout of the "ping" listeners, seconds
HISTORY_LIMIT = 20
# topics with event history in realm1 (history needs the topics in the configuration)
HISTORY_TOPICS = tuple(
    f"com.example.history.{transport}.{name}"
    for transport in TRANSPORTS
    for name in ("log", "audit", "testament")
)
TICKETS = {"alice": ("user", "alice-ticket"), "bob": ("user", "bob-ticket"),
           "carol": ("admin", "carol-ticket")}

_unique = itertools.count(1)


def uri(name: str) -> str:
    """A URI no other test uses, so one test's leftovers cannot answer another's call."""
    return f"com.example.adv.{name}.n{next(_unique)}"


# -- the router ------------------------------------------------------------------------------------


@dataclass
class ExtraListener(Listener):
    """A listener with extra TOML lines (keepalive settings)."""

    extra: str = ""

    def toml(self) -> str:
        return super().toml() + self.extra


def _principals() -> str:
    return "".join(
        f'[realms.principals.{authid}]\nrole = "{role}"\nticket = "{ticket}"\n'
        for authid, (role, ticket) in TICKETS.items()
    )


def _realms_toml() -> str:
    history = ", ".join(f'"{t}"' for t in HISTORY_TOPICS)
    return (
        '[[realms]]\nname = "realm1"\nauth = ["anonymous", "ticket"]\n'
        f"history = [{history}]\nhistory_limit = {HISTORY_LIMIT}\n"
        + _principals()
        + '[[realms]]\nname = "forced"\n'
        'disclose_caller = "force"\ndisclose_publisher = "force"\n'
        '[[realms]]\nname = "forbidden"\n'
        'disclose_caller = "forbid"\ndisclose_publisher = "forbid"\n'
        '[[realms]]\nname = "census"\nauth = ["anonymous", "ticket"]\n'
        + _principals()
    )


class AdvancedRouter(RouterProcess):
    """RouterProcess with the realm tables above."""

    def __init__(self) -> None:
        keepalive = f"ping_interval = {KEEPALIVE}\nping_timeout = {KEEPALIVE}\n"
        super().__init__(
            [
                Listener("websocket"),
                Listener("rawsocket"),
                ExtraListener("websocket", name="websocket_ping", extra=keepalive),
                ExtraListener("rawsocket", name="rawsocket_ping", extra=keepalive),
            ],
            realms=(),
        )

    def config_text(self) -> str:
        return super().config_text() + _realms_toml()


@pytest.fixture(scope="module")
def router() -> Iterator[RouterProcess]:
    """One router per module; at teardown it must exit 0 without internal errors."""
    with running(AdvancedRouter()) as process:
        yield process


# -- running a scenario ----------------------------------------------------------------------------

_open: list[Client | Peer] = []


def run(scenario: Callable[[], Awaitable[None]], timeout: float = TEST_TIMEOUT) -> None:
    """Run ``scenario`` in a fresh event loop, failing it after ``timeout`` seconds."""

    async def bounded() -> None:
        use_txaio("asyncio")  # the Twisted tests may have run in this process meanwhile
        try:
            await asyncio.wait_for(scenario(), timeout)
        finally:
            for connection in _open:
                connection.abort()
            _open.clear()

    asyncio.run(bounded())


async def within(awaitable: Awaitable[Any], seconds: float = STEP_TIMEOUT) -> Any:
    """``awaitable``'s result; a future others may await too is shielded."""
    if isinstance(awaitable, asyncio.Future):
        awaitable = asyncio.shield(awaitable)
    return await asyncio.wait_for(awaitable, seconds)


# -- Autobahn|Python clients -----------------------------------------------------------------------


class Client(ApplicationSession):
    """A session whose join, leave and disconnect can be awaited."""

    def __init__(self, config: ComponentConfig, authid: str | None = None) -> None:
        super().__init__(config)
        self.login = authid
        self.id = 0  # the session ID, kept after the session ends
        loop = asyncio.get_running_loop()
        self.joined: asyncio.Future[Any] = loop.create_future()
        self.left: asyncio.Future[Any] = loop.create_future()  # CloseDetails
        self.disconnected: asyncio.Future[None] = loop.create_future()

    def onConnect(self) -> None:
        if self.login is None:
            self.join(self.config.realm)
        else:
            self.join(self.config.realm, authmethods=["ticket"], authid=self.login)

    def onChallenge(self, challenge: Any) -> str:
        assert self.login is not None and challenge.method == "ticket", challenge
        return TICKETS[self.login][1]

    def onJoin(self, details: Any) -> None:
        self.id = details.session
        self.joined.set_result(details)

    def onLeave(self, details: Any) -> Any:
        if not self.joined.done():
            self.joined.set_exception(AssertionError(f"join refused: {details}"))
        if not self.left.done():
            self.left.set_result(details)
        return super().onLeave(details)

    def onDisconnect(self) -> None:
        if not self.joined.done():
            self.joined.set_exception(AssertionError("disconnected before joining"))
        if not self.disconnected.done():
            self.disconnected.set_result(None)
        super().onDisconnect()

    def abort(self) -> None:
        """Drop the TCP connection at once: no GOODBYE, no WebSocket close, no FIN wait."""
        if self._transport is not None and self._transport.transport is not None:
            self._transport.transport.abort()


async def connect(
    router: RouterProcess,
    transport: str = "websocket",
    serializer: str = "json",
    *,
    realm: str = "realm1",
    authid: str | None = None,
    listener: str | None = None,
    step: float = STEP_TIMEOUT,
) -> Client:
    """An Autobahn session joined to ``realm`` (anonymous, or ``authid`` with its ticket).

    Connecting and joining may take ``step`` seconds each.
    """
    loop = asyncio.get_running_loop()
    session = Client(ComponentConfig(realm), authid)
    _open.append(session)
    name = listener or transport
    factory: Any
    if transport == "websocket":
        factory = WampWebSocketClientFactory(
            lambda: session, url=router.url(name), serializers=[SERIALIZERS[serializer]()]
        )
    else:
        factory = WampRawSocketClientFactory(lambda: session, serializer=SERIALIZERS[serializer]())
    await within(loop.create_connection(factory, "127.0.0.1", router.port(name)), step)
    await within(session.joined, step)
    return session


async def close(*sessions: Client, step: float = STEP_TIMEOUT) -> None:
    """Leave with GOODBYE and wait (``step`` seconds each) until each connection is gone."""
    for session in sessions:
        if session.is_attached():
            session.leave()
    for session in sessions:
        try:
            await within(session.disconnected, step)
        except TimeoutError:
            session.abort()
            raise AssertionError("the connection stayed open after GOODBYE") from None


# -- a hand-rolled client --------------------------------------------------------------------------

_EVERYTHING = {
    "caller": ["caller_identification", "progressive_call_results",
               "progressive_call_invocations", "call_canceling", "call_timeout"],
    "callee": ["caller_identification", "progressive_call_results",
               "progressive_call_invocations", "call_canceling", "call_timeout",
               "pattern_based_registration", "shared_registration"],
    "publisher": ["publisher_identification", "publisher_exclusion",
                  "subscriber_blackwhite_listing"],
    "subscriber": ["publisher_identification", "pattern_based_subscription"],
}
FULL_ROLES: dict[str, Any] = {
    role: {"features": dict.fromkeys(features, True)} for role, features in _EVERYTHING.items()
}

# WAMP message codes the tests read
HELLO, WELCOME, ABORT, GOODBYE, ERROR = 1, 2, 3, 6, 8
PUBLISH, PUBLISHED, SUBSCRIBE, SUBSCRIBED, EVENT = 16, 17, 32, 33, 36
CALL, CANCEL, RESULT, REGISTER, REGISTERED = 48, 49, 50, 64, 65
INVOCATION, INTERRUPT, YIELD = 68, 69, 70


class Peer:
    """A WAMP client over RawSocket or WebSocket that sends exactly the messages it is given."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, transport: str,
        serializer: str,
    ) -> None:
        self.reader, self.writer = reader, writer
        self.transport = transport
        self.dumps, self.loads = CODECS[serializer]
        self.binary = serializer != "json"
        self.answer_pings = True
        self.pings = 0
        self.request = 0
        self.id = 0
        self.welcome: dict[str, Any] = {}

    @classmethod
    async def open(
        cls, router: RouterProcess, transport: str = "rawsocket", serializer: str = "json", *,
        realm: str | None = "realm1", roles: dict[str, Any] | None = None,
        listener: str | None = None,
    ) -> Peer:
        """Connect, do the transport handshake and, unless ``realm`` is None, join it."""
        spec = router.listener(listener or transport)
        reader, writer = await within(asyncio.open_connection("127.0.0.1", spec.port))
        peer = cls(reader, writer, transport, serializer)
        _open.append(peer)
        if transport == "rawsocket":
            writer.write(bytes((0x7F, 0xF0 | RAWSOCKET_IDS[serializer], 0, 0)))
            reply = await within(reader.readexactly(4))
            assert reply[0] == 0x7F and reply[1] & 0x0F == RAWSOCKET_IDS[serializer], reply
        else:
            writer.write(upgrade_request(spec.port, spec.path, f"wamp.2.{serializer}"))
            head = await within(reader.readuntil(b"\r\n\r\n"))
            assert head.startswith(b"HTTP/1.1 101 "), head
        if realm is not None:
            welcome = await peer.hello(realm, roles if roles is not None else FULL_ROLES)
            assert welcome[0] == WELCOME, welcome
        return peer

    async def hello(self, realm: str, roles: dict[str, Any]) -> list[Any]:
        """Send HELLO; the router's answer (WELCOME or ABORT)."""
        self.send([HELLO, realm, {"roles": roles}])
        answer = await self.recv()
        if answer[0] == WELCOME:
            self.id, self.welcome = answer[1], answer[2]
        return answer

    def next_request(self) -> int:
        self.request += 1
        return self.request

    # -- frames ----------------------------------------------------------------------------

    def send(self, message: list[Any]) -> None:
        payload = self.dumps(message)
        if self.transport == "rawsocket":
            self._raw_frame(0, payload)
        else:
            self._ws_frame(OP_BINARY if self.binary else OP_TEXT, payload)

    def _raw_frame(self, frame_type: int, payload: bytes) -> None:
        self.writer.write(bytes((frame_type,)) + len(payload).to_bytes(3, "big") + payload)

    def _ws_frame(self, opcode: int, payload: bytes) -> None:
        key = os.urandom(4)
        self.writer.write(frame_header(opcode, len(payload)) + key + mask(payload, key))

    async def recv(self, timeout: float = STEP_TIMEOUT) -> list[Any]:
        """The next WAMP message; EOFError once the router closed the connection."""
        return await asyncio.wait_for(self._next_message(), timeout)

    async def _next_message(self) -> list[Any]:
        while True:
            try:
                kind, payload = await (
                    self._raw_read() if self.transport == "rawsocket" else self._ws_read()
                )
            except (asyncio.IncompleteReadError, ConnectionError):
                raise EOFError("the router closed the connection") from None
            if kind == "message":
                return self.loads(payload)  # type: ignore[no-any-return]
            if kind == "ping":
                self.pings += 1
                if self.answer_pings:
                    if self.transport == "rawsocket":
                        self._raw_frame(2, payload)
                    else:
                        self._ws_frame(OP_PONG, payload)
            elif kind == "close":
                raise EOFError("the router closed the WebSocket")

    async def _raw_read(self) -> tuple[str, bytes]:
        header = await self.reader.readexactly(4)
        payload = await self.reader.readexactly(int.from_bytes(header[1:], "big"))
        return {0: "message", 1: "ping", 2: "pong"}[header[0] & 0x07], payload

    async def _ws_read(self) -> tuple[str, bytes]:
        b0, b1 = await self.reader.readexactly(2)
        assert b0 & 0x80, "the router fragments nothing"
        length = b1 & 0x7F
        if length == 126:
            length = int.from_bytes(await self.reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await self.reader.readexactly(8), "big")
        payload = await self.reader.readexactly(length)
        opcode = b0 & 0x0F
        kinds = {OP_TEXT: "message", OP_BINARY: "message", OP_PING: "ping", OP_PONG: "pong",
                 OP_CLOSE: "close"}
        return kinds[opcode], payload

    # -- conversations ---------------------------------------------------------------------

    async def request_reply(self, message: list[Any]) -> list[Any]:
        """Send a request (its ID at index 1) and return the next message, which must answer it."""
        self.send(message)
        reply = await self.recv()
        request_index = 2 if reply[0] == ERROR else 1
        assert reply[request_index] == message[1], (message, reply)
        return reply

    async def call(
        self, procedure: str, args: list[Any] | None = None, options: dict[str, Any] | None = None,
    ) -> list[Any]:
        """CALL and return the next message (RESULT or ERROR for it)."""
        return await self.request_reply(
            [CALL, self.next_request(), options or {}, procedure, args or []]
        )

    async def register(self, procedure: str, options: dict[str, Any] | None = None) -> int:
        reply = await self.request_reply([REGISTER, self.next_request(), options or {}, procedure])
        assert reply[0] == REGISTERED, reply
        return int(reply[2])

    async def barrier(self) -> None:
        """A round trip: whatever the router sent before it has arrived, and nothing else did."""
        reply = await self.call("wamp.session.count")
        assert reply[0] == RESULT, f"expected only the barrier's RESULT, got {reply}"

    async def drain(self, timeout: float = STEP_TIMEOUT) -> list[list[Any]]:
        """The WAMP messages that arrive until the router closes the connection; fails if it
        is still open after ``timeout`` seconds."""
        received: list[list[Any]] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            try:
                received.append(await self.recv(max(left, 0.0)))
            except EOFError:
                return received
            except TimeoutError:
                raise AssertionError(
                    f"the router kept the connection open for {timeout} s; got {received}"
                ) from None

    def abort(self) -> None:
        transport = self.writer.transport
        if not transport.is_closing():
            transport.abort()
