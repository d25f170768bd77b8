"""Hostile input, beyond tests/test_bad_input.py: garbage in every state of every transport and
serializer, protocol violations while authenticating and while closing, oversize control
frames refused from their header, and a peer that pings without reading.

Every case must be answered (a handshake error, ABORT, a close frame, an HTTP error or just a
close) within a bound: at once when the bytes decide it, else by the handshake timeout or the
keepalive. Around every case a RawSocket callee and a WebSocket caller keep getting RESULTs.
"""

from __future__ import annotations

import json
import random
import selectors
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from serouter.core.access import AllowAll
from serouter.core.router import Router
from serouter.serializers import JSON, MSGPACK
from serouter.transport._flow import ListenerLimits
from serouter.transport.rawsocket import RawSocketFactory
from serouter.transport.websocket import WebSocketFactory
from tests.hardening_support import LimitedListener, LimitedRouter, joined, settle_rss
from tests.raw_clients import (
    OP_CLOSE,
    OP_PING,
    ROLES,
    RawWampClient,
    WsClient,
    frame_header,
    read_until_closed,
    upgrade_request,
)
from tests.router_process import running

QUICK = {"handshake_timeout": 1.5, "ping_interval": 0.5, "ping_timeout": 0.5,
         "auth_timeout": 0.5, "max_queued_bytes": 1 << 16}
ANSWERED_WITHIN = 3.5  # at once, or the 1.5 s handshake timeout / 0.5 + 0.5 s keepalive
PROTOCOL_VIOLATION = "wamp.error.protocol_violation"
SECURE_REALM = """
[[realms]]
name = "secure"
auth = ["ticket"]
[realms.principals.alice]
role = "user"
ticket = "alice-ticket"
"""


@pytest.fixture(scope="module")
def router() -> Iterator[LimitedRouter]:
    process = LimitedRouter(
        [LimitedListener("rawsocket", options=QUICK), LimitedListener("websocket", options=QUICK),
         # the healthy sessions idle between cases: no keepalive for them
         LimitedListener("rawsocket", name="rawsocket_plain"),
         LimitedListener("websocket", name="websocket_plain", options={"ping_interval": 0})],
        extra_toml=SECURE_REALM,
    )
    with running(process):
        yield process


class Healthy:
    """A RawSocket callee and a WebSocket caller that must outlive every case."""

    PROCEDURE = "com.example.hardening.echo"

    def __init__(self, router: LimitedRouter) -> None:
        self.callee = joined(router.listener("rawsocket_plain"), "msgpack")
        self.callee.register(self.PROCEDURE)
        self.caller = WsClient.open(router.listener("websocket_plain"), "wamp.2.cbor")

    def check(self) -> None:
        request = self.caller.next_request()
        self.caller.send([48, request, {}, self.PROCEDURE, [request]])
        invocation = self.callee.recv()
        self.callee.send([70, invocation[1], {}, invocation[4]])
        assert self.caller.recv() == [50, request, {}, [request]]


@pytest.fixture(scope="module")
def healthy(router: LimitedRouter) -> Iterator[Healthy]:
    sessions = Healthy(router)
    yield sessions
    sessions.callee.close()
    sessions.caller.close()


@pytest.fixture(autouse=True)
def keeps_serving(healthy: Healthy) -> Iterator[None]:
    healthy.check()
    yield
    healthy.check()


def answered(sock: socket.socket, within: float = ANSWERED_WITHIN) -> tuple[bytes, float]:
    """What the router sends until it closes, and after how many seconds; it must close."""
    started = time.monotonic()
    sock.settimeout(within)
    try:
        data = read_until_closed(sock)
    except TimeoutError:
        raise AssertionError(f"the router kept the connection open for {within} s") from None
    return data, time.monotonic() - started


# -- garbage in every state -----------------------------------------------------------------------

STATES = ("before-handshake", "before-hello", "established")


def _opened(router: LimitedRouter, transport: str, serializer: str, state: str) -> socket.socket:
    """A connection brought to ``state``, ready for garbage."""
    listener = router.listener(transport)
    if state == "before-handshake":
        return listener.connect()
    realm = "realm1" if state == "established" else None
    if transport == "rawsocket":
        return RawWampClient.connect(listener, serializer, realm).sock
    client = WsClient.open(listener, f"wamp.2.{serializer}", realm)
    assert not client.buf
    return client.sock


def all_answered(socks: list[socket.socket], within: float = ANSWERED_WITHIN) -> list[bytes]:
    """What the router sends on each socket until it closes them all; it must, in time."""
    received = dict.fromkeys(socks, b"")
    deadline = time.monotonic() + within
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        while selector.get_map():
            left = deadline - time.monotonic()
            assert left > 0, f"{len(selector.get_map())} connections still open after {within} s"
            for key, _ in selector.select(left):
                sock = key.fileobj
                try:
                    chunk = sock.recv(65536)  # type: ignore[union-attr]
                except ConnectionResetError:
                    chunk = b""
                if chunk:
                    received[sock] += chunk  # type: ignore[index]
                else:
                    selector.unregister(sock)
    for sock in socks:
        sock.close()
    return [received[sock] for sock in socks]


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("transport", ["rawsocket", "websocket"])
def test_garbage_is_answered(router: LimitedRouter, transport: str, state: str) -> None:
    """Random bytes at any stage, with any serializer, get the connection closed within the
    bound, with at most a handshake error, an ABORT, a close frame or an HTTP error first."""
    socks, garbage = [], []
    for serializer in ("json", "msgpack", "cbor"):
        for seed in range(4):
            rng = random.Random(f"{transport}{serializer}{state}{seed}")
            garbage.append(rng.randbytes(rng.choice((1, 7, 64, 700))))
            socks.append(_opened(router, transport, serializer, state))
    for sock, data in zip(socks, garbage, strict=True):
        sock.sendall(data)
    for data in all_answered(socks):
        assert_well_formed(transport, state, data)


def assert_well_formed(transport: str, state: str, data: bytes) -> None:
    """What the router sent before closing is, for the state it was in: nothing, a RawSocket
    handshake reply or an HTTP 4xx, then only whole frames of the kinds a router sends (WAMP
    messages, pings, pongs, and a WebSocket close frame last)."""
    if state == "before-handshake" and data:
        if transport == "websocket":
            assert data.startswith(b"HTTP/1.1 4"), data[:80]
            return
        assert data[0] == 0x7F, data[:8]
        data = data[4:]
    pos, kinds = 0, []
    while pos < len(data):
        if transport == "rawsocket":
            kind, size, start = data[pos], int.from_bytes(data[pos + 1 : pos + 4], "big"), pos + 4
            assert kind in (0, 1, 2), data[pos : pos + 8]
        else:
            kind, size, start = data[pos] & 0x0F, data[pos + 1] & 0x7F, pos + 2
            assert data[pos] & 0xF0 == 0x80 and kind in (1, 2, 8, 9, 10), data[pos : pos + 8]
            if size == 126:
                size, start = int.from_bytes(data[pos + 2 : pos + 4], "big"), pos + 4
        pos = start + size
        kinds.append(kind)
    assert pos == len(data), "a partial frame before the close"
    assert 8 not in kinds[:-1], kinds  # a close frame is the last thing sent


@pytest.mark.parametrize("transport", ["rawsocket", "websocket"])
def test_half_a_frame_then_silence_is_answered(router: LimitedRouter, transport: str) -> None:
    """A session that stalls in the middle of a frame is closed by the keepalive (it answers
    no ping while stalled)."""
    with _opened(router, transport, "json", "established") as sock:
        if transport == "rawsocket":
            sock.sendall(b"\x00\x00\x10\x00" + b"[" * 100)  # 100 of 4096 announced bytes
        else:
            sock.sendall(frame_header(0x1, 4096) + b"\x00" * 4 + b"[" * 100)
        _, elapsed = answered(sock)
    assert elapsed >= 0.4, elapsed


# -- oversize control frames, refused from their header -------------------------------------------


def test_rawsocket_ping_over_its_limit_closes_at_once(router: LimitedRouter) -> None:
    """A RawSocket ping header announcing more than 4 KiB closes before any payload."""
    with _opened(router, "rawsocket", "json", "established") as sock:
        sock.sendall(b"\x01" + (4097).to_bytes(3, "big"))
        data, elapsed = answered(sock, 1.0)
    assert data == b"" and elapsed < 0.5


def test_websocket_control_frame_over_125_bytes_closes_1002(router: LimitedRouter) -> None:
    """A ping whose header announces 126 bytes gets close 1002 before its payload arrives."""
    client = WsClient.open(router.listener("websocket"))
    client.sock.sendall(bytes((0x80 | OP_PING, 0x80 | 126)) + (126).to_bytes(2, "big"))
    client.expect_close(1002)


# -- protocol violations in every session state ----------------------------------------------------


def _challenged(router: LimitedRouter, transport: str) -> RawWampClient | WsClient:
    """A client that asked for ticket authentication and got its CHALLENGE."""
    hello = [1, "secure", {"roles": ROLES, "authmethods": ["ticket"], "authid": "alice"}]
    client: RawWampClient | WsClient
    if transport == "rawsocket":
        client = RawWampClient.connect(router.listener("rawsocket"), "json", realm=None)
    else:
        client = WsClient.open(router.listener("websocket"), "wamp.2.json", realm=None)
    client.send(hello)
    challenge = client.recv()
    assert challenge[:2] == [4, "ticket"], challenge
    return client


@pytest.mark.parametrize("transport", ["rawsocket", "websocket"])
@pytest.mark.parametrize(
    "message",
    [[48, 1, {}, "com.example.hardening.echo"], [1, "secure", {"roles": ROLES}],
     [6, {}, "wamp.close.close_realm"], [50, 1, {}], "not a message"],
    ids=["call", "hello", "goodbye", "result", "string"],
)
def test_violation_while_authenticating_aborts(router: LimitedRouter, transport: str,
                                               message: Any) -> None:
    """In CHALLENGING only AUTHENTICATE or ABORT may come: anything else gets ABORT
    protocol_violation and a close."""
    client = _challenged(router, transport)
    client.send(message)
    reply = client.recv()
    assert reply[0] == 3 and reply[2] == PROTOCOL_VIOLATION, reply
    answered(client.sock, 1.0)


@pytest.mark.parametrize("transport", ["rawsocket", "websocket"])
def test_garbage_while_authenticating_aborts(router: LimitedRouter, transport: str) -> None:
    """An undecodable payload in CHALLENGING gets ABORT protocol_violation and a close."""
    client = _challenged(router, transport)
    if isinstance(client, RawWampClient):
        client.send_frame(b"\xff{not json")
    else:
        client.send_frame(0x1, b"{not json")
    reply = client.recv()
    assert reply[0] == 3 and reply[2] == PROTOCOL_VIOLATION, reply
    answered(client.sock, 1.0)


def test_unanswered_challenge_times_out(router: LimitedRouter) -> None:
    """A CHALLENGE left unanswered for auth_timeout gets ABORT authentication_failed (the
    handshake timeout, still running until WELCOME, would close it a little later)."""
    client = _challenged(router, "rawsocket")
    started = time.monotonic()
    client.sock.settimeout(3)
    reply = client.recv()
    assert reply[0] == 3 and reply[2] == "wamp.error.authentication_failed", reply
    assert 0.4 <= time.monotonic() - started < 1.4
    answered(client.sock, 1.0)


def _killed(router: LimitedRouter, transport: str) -> tuple[RawWampClient | WsClient, Any]:
    """A session the meta API killed: it got GOODBYE and the router waits for the reply."""
    victim: RawWampClient | WsClient
    if transport == "rawsocket":
        victim = joined(router.listener("rawsocket"))
        sid = victim.session_id
    else:
        victim = WsClient.open(router.listener("websocket"), "wamp.2.json", realm=None)
        victim.send([1, "realm1", {"roles": ROLES}])
        sid = victim.recv()[1]
    killer = joined(router.listener("rawsocket"))
    killer.send([48, 1, {}, "wamp.session.kill", [sid], {"reason": "com.example.kicked"}])
    assert killer.recv()[:2] == [50, 1]
    goodbye = victim.recv()
    assert goodbye[0] == 6 and goodbye[2] == "com.example.kicked", goodbye
    return victim, killer


@pytest.mark.parametrize("transport", ["rawsocket", "websocket"])
def test_closing_session_ignores_requests_then_closes_on_goodbye(
    router: LimitedRouter, transport: str
) -> None:
    """In CLOSING a request is ignored (the session already left: no answer), and the
    GOODBYE reply closes the connection."""
    victim, killer = _killed(router, transport)
    victim.send([48, 9, {}, "com.example.hardening.echo", ["late"]])
    victim.send([6, {}, "wamp.close.goodbye_and_out"])
    data, _ = answered(victim.sock, 1.0)
    assert b"late" not in data and b"[50," not in data
    killer.close()


@pytest.mark.parametrize("transport", ["rawsocket", "websocket"])
def test_garbage_while_closing_aborts(router: LimitedRouter, transport: str) -> None:
    """An undecodable payload in CLOSING gets ABORT protocol_violation and a close."""
    victim, killer = _killed(router, transport)
    if isinstance(victim, RawWampClient):
        victim.send_frame(b"\xff not json")
    else:
        victim.send_frame(0x1, b"} not json")
    reply = victim.recv()
    assert reply[0] == 3 and reply[2] == PROTOCOL_VIOLATION, reply
    answered(victim.sock, 1.0)
    killer.close()


# -- a peer that pings without reading ------------------------------------------------------------


def _rig(kind: type[RawSocketFactory] | type[WebSocketFactory]) -> Any:
    clock = Clock()
    router = Router(["realm1"], AllowAll(), clock)
    return kind(router, clock, serializers=[JSON, MSGPACK], max_message_size=1 << 16,
                handshake_timeout=5, limits=ListenerLimits(max_queued_bytes=1 << 16))


def _connected(factory: Any, opening: bytes) -> tuple[Any, StringTransport]:
    protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 9))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5))
    protocol.makeConnection(transport)
    protocol.dataReceived(opening)
    transport.clear()
    return protocol, transport


def test_rawsocket_pongs_for_a_peer_that_does_not_read_are_bounded() -> None:
    """Pings from a peer whose transport paused us are answered up to max_queued_bytes of
    pongs, then the peer is closed (before, every pong was buffered: 200 MB of pings grew the
    router by 196 MiB)."""
    protocol, transport = _connected(_rig(RawSocketFactory), b"\x7f\xf1\x00\x00")
    protocol.pauseProducing()
    ping = b"\x01" + (4096).to_bytes(3, "big") + b"p" * 4096
    for _ in range(100):
        protocol.dataReceived(ping)
    assert transport.disconnected  # aborted
    assert len(transport.value()) <= (1 << 16)


def test_websocket_pongs_for_a_peer_that_does_not_read_are_bounded() -> None:
    """The same for WebSocket pings (125 bytes each)."""
    protocol, transport = _connected(
        _rig(WebSocketFactory), upgrade_request(80, protocols="wamp.2.json"))
    protocol.pauseProducing()
    ping = frame_header(OP_PING, 125) + b"\x00" * 4 + b"p" * 125
    for _ in range(1000):
        protocol.dataReceived(ping * 4)
    assert transport.disconnected
    assert len(transport.value()) <= (1 << 16)


def test_a_pause_repeated_at_every_write_does_not_reset_the_count() -> None:
    """Twisted calls pauseProducing at every write while its buffer is full; the bytes queued
    since the first pause still count (before, each call reset the count, so a subscriber that
    stopped reading had every event buffered as long as one read's worth stayed under the
    mark)."""
    factory = _rig(RawSocketFactory)
    hello = b'[1,"realm1",{"roles":{"subscriber":{},"publisher":{}}}]'
    opening = b"\x7f\xf1\x00\x00" + len(hello).to_bytes(4, "big") + hello
    subscribe = b'[32,1,{},"t"]'
    slow, slow_t = _connected(factory, opening + len(subscribe).to_bytes(4, "big") + subscribe)
    publisher, _ = _connected(factory, opening)
    slow_t.clear()
    slow.pauseProducing()
    event = b'[16,1,{},"t",["' + b"x" * 1000 + b'"]]'
    for _ in range(200):  # 200 reads of 10 events, a pause after each write, as Twisted does
        publisher.dataReceived((len(event).to_bytes(4, "big") + event) * 10)
        slow.pauseProducing()
    assert len(slow_t.value()) <= 1 << 16
    assert slow.outflow.dropped > 1500


def test_pongs_flow_while_the_peer_reads() -> None:
    """A peer that reads gets every pong, however many it asks for."""
    protocol, transport = _connected(_rig(RawSocketFactory), b"\x7f\xf1\x00\x00")
    ping = b"\x01\x00\x00\x04ping"
    for _ in range(20_000):
        protocol.dataReceived(ping)
    assert transport.value() == b"\x02\x00\x00\x04ping" * 20_000
    assert not transport.disconnecting


@pytest.mark.parametrize("transport", ["rawsocket", "websocket"])
def test_ping_flood_without_reading_is_closed(router: LimitedRouter, transport: str) -> None:
    """End to end: 32 MiB of pings from a client that never reads; the router closes it after
    max_queued_bytes of pongs and its memory does not follow the flood."""
    before = settle_rss(router, 0.2)
    listener = router.listener(transport)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", listener.port))
    if transport == "rawsocket":
        sock.sendall(b"\x7f\xf1\x00\x00")
        ping = b"\x01" + (4096).to_bytes(3, "big") + b"p" * 4096
    else:
        sock.sendall(upgrade_request(listener.port))
        ping = frame_header(OP_PING, 125) + b"\x00" * 4 + b"p" * 125
    burst = ping * max(1, 65536 // len(ping))
    sent, closed = 0, False
    try:
        while sent < 32 << 20:
            sock.sendall(burst)
            sent += len(burst)
    except OSError:  # reset by the router, or the send timed out on a closed window
        closed = True
    sock.close()
    grown = settle_rss(router, 0.3) - before
    print(f"\n{transport}: closed after {sent >> 20} MiB of pings; router RSS {grown:+d} KiB")
    assert closed, f"sent {sent >> 20} MiB of pings and the router still reads them"
    assert grown < 16 * 1024, f"router RSS grew {grown} KiB"
    assert router.count("it does not read (pong") >= 1


def test_json_messages_stay_parsable_text(router: LimitedRouter) -> None:
    """A JSON text frame with a lone surrogate escape is answered in valid UTF-8 (or closed),
    never with bytes a client cannot decode."""
    client = WsClient.open(router.listener("websocket"), "wamp.2.json")
    client.send_frame(0x1, b'[48, 1, {}, "\\ud800"]')
    opcode, payload = client.recv_frame()
    if opcode == OP_CLOSE:
        return
    reply = json.loads(payload.decode("utf-8"))
    assert reply[0] in (3, 8), reply
    client.close()
