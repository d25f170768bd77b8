"""Hostile and broken peers, byte by byte, against a router subprocess.

Each case shows what the spec asks of the router (a handshake error, ABORT, ERROR, a close
code, or just a closed connection), and that the router keeps serving everyone else: a healthy
RawSocket callee and a healthy WebSocket caller stay connected across every case and still get
their RESULTs, and a new session can still join.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.raw_clients import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    ROLES,
    RawWampClient,
    WsClient,
    frame_header,
    mask,
    read_until_closed,
    recv_exactly,
    upgrade_request,
)
from tests.router_process import Listener, RouterProcess, router_fixture

MAX = 4096  # every listener's max_message_size
QUICK = 1.0  # handshake_timeout of the *_quick listeners
CLOSE_AT_ONCE = 2.0  # "closed at once" means well before the 5 s handshake timeout

router = router_fixture(
    listeners=[
        Listener("rawsocket", serializers=("json", "msgpack"), max_message_size=MAX,
                 handshake_timeout=5.0),
        Listener("websocket", serializers=("json", "msgpack"), max_message_size=MAX,
                 handshake_timeout=5.0),
        Listener("rawsocket", name="rawsocket_quick", handshake_timeout=QUICK),
        Listener("websocket", name="websocket_quick", handshake_timeout=QUICK),
    ]
)

PROTOCOL_VIOLATION = "wamp.error.protocol_violation"


def closed_at_once(sock: socket.socket, within: float = CLOSE_AT_ONCE) -> bytes:
    """What the router sends before closing; it must close within ``within`` seconds."""
    sock.settimeout(within)
    try:
        return read_until_closed(sock)
    except TimeoutError:
        raise AssertionError(f"the router kept the connection open for {within} s") from None


def raw_handshaken(router: RouterProcess, serializer: str = "json") -> RawWampClient:
    """A RawSocket connection past the transport handshake, no HELLO yet."""
    return RawWampClient.connect(router.listener("rawsocket"), serializer, realm=None)


def raw_joined(router: RouterProcess, serializer: str = "json") -> RawWampClient:
    return RawWampClient.connect(router.listener("rawsocket"), serializer)


def assert_aborted(client: RawWampClient | WsClient, reason: str = PROTOCOL_VIOLATION) -> None:
    """The router answered with ABORT ``reason`` and then closed the connection."""
    message = client.recv()
    assert message[0] == 3 and message[2] == reason, message
    assert isinstance(message[1], dict), message
    client.expect_closed(within=CLOSE_AT_ONCE)


def http_exchange(listener: Listener, request: bytes) -> tuple[int, str, str]:
    """Send a request, read the reply until the router closes: (status, head, body)."""
    with listener.connect() as sock:
        sock.sendall(request)
        reply = closed_at_once(sock)
    head, _, body = reply.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, head.decode("latin-1"), body.decode("utf-8", "replace")


# -- the healthy sessions that must survive every case ------------------------------------------


class Healthy:
    """A RawSocket callee and a WebSocket caller that joined before any bad case."""

    PROCEDURE = "com.example.healthy.echo"

    def __init__(self, router: RouterProcess) -> None:
        self.router = router
        self.callee = raw_joined(router, "msgpack")
        self.callee.register(self.PROCEDURE)
        self.caller = WsClient.open(router.listener("websocket"), "wamp.2.json")

    def check(self) -> None:
        """A call still goes round, and a new session can still join and leave."""
        request = self.caller.next_request()
        self.caller.send([48, request, {}, self.PROCEDURE, [request, "ok"]])
        invocation = self.callee.recv()
        assert invocation[0] == 68 and invocation[4] == [request, "ok"], invocation
        self.callee.send([70, invocation[1], {}, invocation[4]])
        assert self.caller.recv() == [50, request, {}, [request, "ok"]]
        newcomer = raw_joined(self.router, "json")
        newcomer.send([6, {}, "wamp.close.close_realm"])
        assert newcomer.recv() == [6, {}, "wamp.close.goodbye_and_out"]
        newcomer.close()


@pytest.fixture(scope="module")
def healthy(router: RouterProcess) -> Iterator[Healthy]:
    sessions = Healthy(router)
    yield sessions
    sessions.callee.close()
    sessions.caller.close()


@pytest.fixture(autouse=True)
def router_keeps_serving(healthy: Healthy) -> Iterator[None]:
    """After every case the healthy sessions must still get their RESULTs."""
    healthy.check()
    yield
    healthy.check()


# -- RawSocket: the transport handshake ---------------------------------------------------------


@pytest.mark.parametrize("opening", [b"\x00\x21\x00\x00", b"GET / HTTP/1.1\r\n\r\n", b"\x7e\xf1"
                                     b"\x00\x00"])
def test_rawsocket_wrong_magic_closes(router: RouterProcess, opening: bytes) -> None:
    """A first octet other than 0x7F fails the connection at once, with nothing sent back."""
    with router.listener("rawsocket").connect() as sock:
        sock.sendall(opening)
        assert closed_at_once(sock) == b""


@pytest.mark.parametrize("serializer_id", [0, 3, 4, 15])
def test_rawsocket_unsupported_serializer(router: RouterProcess, serializer_id: int) -> None:
    """A serializer the listener does not offer gets error 1 (0x7F 0x10 0 0), then a close."""
    with router.listener("rawsocket").connect() as sock:
        sock.sendall(bytes((0x7F, 0xF0 | serializer_id, 0, 0)))
        assert closed_at_once(sock) == b"\x7f\x10\x00\x00"


@pytest.mark.parametrize("reserved", [b"\x01\x00", b"\x00\x01", b"\xff\xff"])
def test_rawsocket_reserved_bytes(router: RouterProcess, reserved: bytes) -> None:
    """Reserved handshake octets that are not zero get error 3 (0x7F 0x30 0 0), then a close."""
    with router.listener("rawsocket").connect() as sock:
        sock.sendall(b"\x7f\xf1" + reserved)
        assert closed_at_once(sock) == b"\x7f\x30\x00\x00"


def test_rawsocket_handshake_announces_the_limit(router: RouterProcess) -> None:
    """The handshake reply announces max_message_size; a message of exactly that size is
    served."""
    client = RawWampClient(router.listener("rawsocket").connect(), "json")
    reply = client.handshake(max_exp=15)
    assert reply == bytes((0x7F, 3 << 4 | 1, 0, 0))  # 2**(9+3) == 4096 == MAX
    client.join()
    prefix, suffix = '[64, 1, {}, "com.example.padded.', '"]'
    padded = (prefix + "x" * (MAX - len(prefix) - len(suffix)) + suffix).encode()
    assert len(padded) == MAX
    client.send_frame(padded)
    assert client.recv()[:2] == [65, 1]
    client.close()


# -- RawSocket: framing -------------------------------------------------------------------------


@pytest.mark.parametrize("announced", [MAX + 1, 2**24 - 1])
def test_rawsocket_oversized_frame_closes_before_payload(
    router: RouterProcess, announced: int
) -> None:
    """A frame header announcing more than max_message_size closes the connection at once."""
    client = raw_joined(router)
    client.sock.sendall(b"\x00" + announced.to_bytes(3, "big"))
    assert closed_at_once(client.sock) == b""


@pytest.mark.parametrize("frame_type", [3, 7, 0x08, 0x80, 0xFF])
def test_rawsocket_invalid_frame_type_closes(router: RouterProcess, frame_type: int) -> None:
    """A frame type other than message, ping or pong (or reserved bits set) closes at once."""
    client = raw_joined(router)
    client.send_frame(json.dumps([48, 1, {}, "com.example.x"]).encode(), frame_type)
    assert closed_at_once(client.sock) == b""


def test_rawsocket_ping_gets_pong(router: RouterProcess) -> None:
    """A RawSocket ping is answered with a pong carrying the same payload."""
    client = raw_joined(router)
    client.send_frame(b"token", frame_type=1)
    assert recv_exactly(client.sock, 9) == b"\x02\x00\x00\x05token"
    client.close()


# -- WAMP messages that are not ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("serializer", "payload"),
    [
        ("json", b"\xff\xfe not json"),
        ("json", b"[1, \"realm1\", {"),
        ("json", b""),
        ("msgpack", b"\xc1"),
        ("msgpack", b"\x93\x01"),
        ("msgpack", b""),
    ],
)
@pytest.mark.parametrize("joined", [False, True], ids=["before_hello", "established"])
def test_garbage_payload_aborts(
    router: RouterProcess, serializer: str, payload: bytes, joined: bool
) -> None:
    """A payload that does not deserialize gets ABORT protocol_violation, then a close."""
    client = RawWampClient.connect(
        router.listener("rawsocket"), serializer, realm="realm1" if joined else None
    )
    client.send_frame(payload)
    assert_aborted(client)


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1},
        [],
        ["x"],
        [99999],
        "HELLO",
        [1],
        [1, "realm1", {"roles": ROLES}, "extra"],
        [48, "one", {}, "com.example.x"],
        [48, 0, {}, "com.example.x"],
        [48, 2**53 + 1, {}, "com.example.x"],
        [48, 1, [], "com.example.x"],
        [48, 1, {}, "com.example.x", {"not": "a list"}],
        [48, 1, {}, "com.example.x", [], [], []],
        [50, 1, {}],  # RESULT: a message only a router sends
        [8, 48, 1, {}, "com.example.error"],  # ERROR that does not answer an INVOCATION
    ],
    ids=repr,
)
def test_not_a_wamp_message_aborts(router: RouterProcess, value: Any) -> None:
    """Valid JSON that is not a valid WAMP message gets ABORT protocol_violation, then a close."""
    client = raw_joined(router)
    client.send(value)
    assert_aborted(client)


def test_call_before_hello_aborts(router: RouterProcess) -> None:
    """CALL on a session that has not joined gets ABORT protocol_violation, then a close."""
    client = raw_handshaken(router)
    client.send([48, 1, {}, "com.example.healthy.echo", ["sneaky"]])
    assert_aborted(client)


def test_hello_twice_aborts(router: RouterProcess, healthy: Healthy) -> None:
    """A second HELLO on an established session is a protocol violation; its registrations
    are gone with it."""
    client = raw_joined(router)
    client.register("com.example.twice")
    client.send([1, "realm1", {"roles": ROLES}])
    assert_aborted(client)
    healthy.caller.send([48, healthy.caller.next_request(), {}, "com.example.twice"])
    assert healthy.caller.recv()[4] == "wamp.error.no_such_procedure"


def test_goodbye_before_hello_aborts(router: RouterProcess) -> None:
    """GOODBYE before the session is established is a protocol violation (spec's list)."""
    client = raw_handshaken(router)
    client.send([6, {}, "wamp.close.close_realm"])
    assert_aborted(client)


@pytest.mark.parametrize(
    ("realm", "reason"),
    [("com.example.nowhere", "wamp.error.no_such_realm"),
     ("realm 1", "wamp.error.invalid_uri"),
     ("", "wamp.error.invalid_uri")],
)
def test_hello_to_unknown_or_invalid_realm_aborts(
    router: RouterProcess, realm: str, reason: str
) -> None:
    """HELLO to a realm the router does not have gets ABORT no_such_realm, then a close."""
    client = raw_handshaken(router)
    client.send([1, realm, {"roles": ROLES}])
    assert_aborted(client, reason)


def test_hello_without_roles_aborts(router: RouterProcess) -> None:
    """HELLO without any role is refused with ABORT protocol_violation."""
    client = raw_handshaken(router)
    client.send([1, "realm1", {}])
    assert_aborted(client)


# -- invalid URIs: an ERROR, and the session stays --------------------------------------------

BAD_URIS = ["com..example", "com.exa mple", ".com.example", "com.example.", "com.#.x", " "]


@pytest.mark.parametrize("bad_uri", BAD_URIS)
def test_invalid_uri_gets_error_and_session_stays(router: RouterProcess, bad_uri: str) -> None:
    """REGISTER, SUBSCRIBE, CALL and acknowledged PUBLISH with an invalid URI each get ERROR
    invalid_uri; an unacknowledged one gets nothing; the session goes on."""
    client = raw_joined(router)
    for code in (64, 32, 48):
        request = client.next_request()
        client.send([code, request, {}, bad_uri])
        reply = client.recv()
        assert reply[:3] == [8, code, request] and reply[4] == "wamp.error.invalid_uri", reply
    client.send([16, client.next_request(), {}, bad_uri])  # no acknowledge: no answer at all
    request = client.next_request()
    client.send([16, request, {"acknowledge": True}, bad_uri])
    reply = client.recv()
    assert reply[:3] == [8, 16, request] and reply[4] == "wamp.error.invalid_uri", reply
    # still established: a valid request is served
    client.register(f"com.example.after_bad_uri.n{request}")
    client.close()


# -- handshake timeouts -------------------------------------------------------------------------


def test_stalled_clients_are_closed_after_handshake_timeout(router: RouterProcess) -> None:
    """Clients that stall anywhere before HELLO are closed after handshake_timeout; a session
    that joined in time is not."""
    raw, ws = router.listener("rawsocket_quick"), router.listener("websocket_quick")
    stalled: dict[str, socket.socket] = {
        "rawsocket, silent": raw.connect(),
        "rawsocket, half a handshake": raw.connect(),
        "rawsocket, no HELLO": RawWampClient.connect(raw, realm=None).sock,
        "websocket, silent": ws.connect(),
        "websocket, half a request": ws.connect(),
        "websocket, no HELLO": WsClient.open(ws, realm=None).sock,
    }
    stalled["rawsocket, half a handshake"].sendall(b"\x7f\xf1")
    stalled["websocket, half a request"].sendall(upgrade_request(ws.port)[:20])
    joined = RawWampClient.connect(raw)
    started = time.monotonic()
    for name, sock in stalled.items():
        sock.settimeout(max(0.1, started + QUICK + 3.0 - time.monotonic()))
        try:
            rest = read_until_closed(sock)
        except TimeoutError:
            raise AssertionError(f"{name}: still open {QUICK + 3.0} s later") from None
        elapsed = time.monotonic() - started
        assert elapsed >= QUICK * 0.8, f"{name}: closed after {elapsed:.2f} s"
        # nothing but the RawSocket handshake reply or a WebSocket close frame may come first
        assert rest in (b"",) or rest[0] == 0x88, (name, rest)
        sock.close()
    assert time.monotonic() - started <= QUICK + 2.0
    joined.register("com.example.outlived")
    joined.close()


# -- WebSocket: the opening handshake -----------------------------------------------------------


def test_plain_http_get_gets_status_page(router: RouterProcess) -> None:
    """A plain GET without Upgrade gets a 200 status page naming the subprotocols, then a
    close."""
    listener = router.listener("websocket")
    status, head, body = http_exchange(
        listener, upgrade_request(listener.port, upgrade=False, protocols=None)
    )
    assert status == 200 and "wamp.2.json" in body, (head, body)


def test_wrong_path_gets_404(router: RouterProcess) -> None:
    """An upgrade to a path the listener does not serve gets 404, then a close."""
    listener = router.listener("websocket")
    status, head, _ = http_exchange(listener, upgrade_request(listener.port, path="/nope"))
    assert status == 404, head


@pytest.mark.parametrize("protocols", ["wamp.2.cbor", "mqtt, wamp.2.ubjson", "", None])
def test_no_common_subprotocol_gets_400(router: RouterProcess, protocols: str | None) -> None:
    """An upgrade offering no subprotocol the listener speaks gets 400, then a close."""
    listener = router.listener("websocket")
    status, head, body = http_exchange(listener, upgrade_request(listener.port,
                                                                 protocols=protocols))
    assert status == 400, (head, body)


def test_not_http_at_all_gets_400(router: RouterProcess) -> None:
    """Bytes that are not an HTTP request get a 400, then a close."""
    status, head, _ = http_exchange(router.listener("websocket"), b"\x7f\xf1\x00\x00\r\n\r\n")
    assert status == 400, head


# -- WebSocket: frames --------------------------------------------------------------------------


@pytest.mark.parametrize("joined", [False, True], ids=["before_hello", "established"])
def test_unmasked_client_frame_closes_1002(router: RouterProcess, joined: bool) -> None:
    """A client frame without a mask gets a close frame with 1002 (protocol error)."""
    client = WsClient.open(router.listener("websocket"), realm="realm1" if joined else None)
    client.send_frame(OP_TEXT, json.dumps([48, 1, {}, "com.example.x"]).encode(), masked=False)
    client.expect_close(1002)


@pytest.mark.parametrize("announced", [MAX + 1, 1 << 16, 1 << 40])
def test_oversized_frame_header_closes_1009(router: RouterProcess, announced: int) -> None:
    """A frame header announcing more than max_message_size gets close 1009 before any
    payload is sent."""
    client = WsClient.open(router.listener("websocket"), "wamp.2.msgpack")
    client.sock.sendall(frame_header(OP_BINARY, announced) + os.urandom(4))
    client.expect_close(1009)


def test_fragmented_message_over_the_limit_closes_1009(router: RouterProcess) -> None:
    """Fragments that together exceed max_message_size close with 1009, each fitting alone."""
    client = WsClient.open(router.listener("websocket"), "wamp.2.msgpack")
    client.send_frame(OP_BINARY, b"\x00" * (MAX // 2 + 1), fin=False)
    client.send_frame(0x0, b"\x00" * (MAX // 2 + 1), fin=True)
    client.expect_close(1009)


@pytest.mark.parametrize("joined", [False, True], ids=["before_hello", "established"])
def test_invalid_utf8_text_closes_1007(router: RouterProcess, joined: bool) -> None:
    """A text frame that is not UTF-8 gets close 1007."""
    client = WsClient.open(router.listener("websocket"), realm="realm1" if joined else None)
    client.send_frame(OP_TEXT, b'[1, "realm1\xff\xfe", {}]')
    client.expect_close(1007)


@pytest.mark.parametrize("text", ["not json{", "[1, \"realm1\"", "{\"a\": 1}", "[]"])
def test_garbage_json_text_frame_aborts(router: RouterProcess, text: str) -> None:
    """A text frame that is not a WAMP message gets ABORT protocol_violation, then a close."""
    client = WsClient.open(router.listener("websocket"))
    client.send_frame(OP_TEXT, text.encode())
    message = client.recv()
    assert message[0] == 3 and message[2] == PROTOCOL_VIOLATION, message
    opcode, payload = client.recv_frame()
    assert opcode == OP_CLOSE, (opcode, payload)
    assert client.expect_closed() == b""


def test_unknown_opcode_closes_1002(router: RouterProcess) -> None:
    """A frame with a reserved opcode gets close 1002."""
    client = WsClient.open(router.listener("websocket"))
    client.send_frame(0x3, b"[]")
    client.expect_close(1002)


def test_websocket_ping_gets_pong(router: RouterProcess) -> None:
    """A WebSocket ping is answered with a pong carrying the same payload."""
    client = WsClient.open(router.listener("websocket"))
    client.send_frame(OP_PING, b"token")
    assert client.recv_frame() == (OP_PONG, b"token")
    client.close()


def test_client_close_frame_is_echoed(router: RouterProcess) -> None:
    """A client's close frame is echoed with the same code and the router closes the TCP
    connection."""
    client = WsClient.open(router.listener("websocket"))
    client.send_frame(OP_CLOSE, (1000).to_bytes(2, "big") + b"bye")
    client.expect_close(1000)


def test_fragmented_message_with_interleaved_ping_is_served(router: RouterProcess) -> None:
    """A HELLO split into three text fragments, with a ping between them, joins the session
    and the ping is answered."""
    client = WsClient.open(router.listener("websocket"), realm=None)
    hello = json.dumps([1, "realm1", {"roles": ROLES}]).encode()
    client.send_frame(OP_TEXT, hello[:5], fin=False)
    client.send_frame(OP_PING, b"mid")
    client.send_frame(0x0, hello[5:9], fin=False)
    client.send_frame(0x0, hello[9:], fin=True)
    # RFC 6455 asks for the pong "as soon as is practical", not before other frames
    frames = sorted([client.recv_frame(), client.recv_frame()])
    assert frames[0][0] == OP_TEXT and json.loads(frames[0][1])[0] == 2, frames
    assert frames[1] == (OP_PONG, b"mid")
    client.close()


def test_huge_request_headers_get_431(router: RouterProcess) -> None:
    """Request headers growing past 16 KiB without an end get 431 and a close: the router does
    not buffer them without limit."""
    listener = router.listener("websocket")
    request = upgrade_request(listener.port)[:-2] + b"X-Filler: " + b"a" * 20000 + b"\r\n"
    status, head, _ = http_exchange(listener, request)
    assert status == 431, head


@pytest.mark.parametrize("transport", ["rawsocket", "websocket"])
def test_message_trickling_in_byte_by_byte_is_served(
    router: RouterProcess, transport: str
) -> None:
    """A handshake and HELLO sent one byte per TCP segment still join the session."""
    listener = router.listener(transport)
    sock = listener.connect()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    hello = json.dumps([1, "realm1", {"roles": ROLES}]).encode()
    if transport == "rawsocket":
        data = b"\x7f\xf1\x00\x00" + len(hello).to_bytes(4, "big") + hello
    else:
        key = os.urandom(4)
        data = (upgrade_request(listener.port) + frame_header(OP_TEXT, len(hello)) + key
                + mask(hello, key))
    for i in range(len(data)):
        sock.sendall(data[i : i + 1])
        if i % 16 == 0:
            time.sleep(0.001)
    reply = b""
    while b"realm1" not in reply:
        chunk = sock.recv(65536)
        assert chunk, reply
        reply += chunk
    assert b"[2," in reply, reply
    sock.close()


# -- payloads the router cannot pass on ---------------------------------------------------------


def answer_within(client: RawWampClient, seconds: float = 2.0) -> list[Any]:
    """The next message for ``client``; fails if none comes (the router dropped it)."""
    client.sock.settimeout(seconds)
    try:
        return client.recv()
    except TimeoutError:
        raise AssertionError(f"no answer within {seconds} s: the router sent nothing") from None
    except EOFError:
        raise AssertionError("the router closed the connection without a word") from None


def test_smallest_rawsocket_limit_can_join_or_is_refused(router: RouterProcess) -> None:
    """A client announcing the smallest limit (512 bytes) gets a WELCOME that fits, or a clear
    refusal (handshake error 2 or ABORT), never silence."""
    client = RawWampClient(router.listener("rawsocket_quick").connect(), "json")
    client.sock.sendall(bytes((0x7F, 0 << 4 | 1, 0, 0)))
    reply = recv_exactly(client.sock, 4)
    if reply == b"\x7f\x20\x00\x00":  # maximum message length unacceptable
        assert client.expect_closed() == b""
        return
    assert reply[:1] == b"\x7f" and reply[1] & 0x0F == 1, reply
    client.send([1, "realm1", {"roles": ROLES}])
    answer = answer_within(client)
    assert answer[0] in (2, 3), answer
    client.close()


def test_result_too_big_for_the_caller_fails_the_call(router: RouterProcess) -> None:
    """A RESULT over the caller's RawSocket limit becomes ERROR payload_size_exceeded, not
    silence."""
    listener = router.listener("rawsocket_quick")
    callee = RawWampClient.connect(listener)
    callee.register("com.example.big_result")
    caller = RawWampClient(listener.connect(), "json")
    caller.handshake(max_exp=3)  # it accepts messages of 4 KiB at most (the least we allow)
    caller.join()
    caller.send([48, 1, {}, "com.example.big_result"])
    invocation = callee.recv()
    callee.send([70, invocation[1], {}, ["x" * 5000]])
    reply = answer_within(caller)
    assert reply[:3] == [8, 48, 1] and reply[4] == "wamp.error.payload_size_exceeded", reply
    callee.close()
    caller.close()


def test_invocation_too_big_for_the_callee_fails_the_call(router: RouterProcess) -> None:
    """A CALL whose INVOCATION is over the callee's RawSocket limit gets ERROR
    payload_size_exceeded instead of waiting for ever."""
    listener = router.listener("rawsocket_quick")
    callee = RawWampClient(listener.connect(), "json")
    callee.handshake(max_exp=3)  # 4 KiB
    callee.join()
    callee.register("com.example.small_callee")
    caller = RawWampClient.connect(listener)
    caller.send([48, 1, {}, "com.example.small_callee", ["y" * 5000]])
    reply = answer_within(caller)
    assert reply[:3] == [8, 48, 1] and reply[4] == "wamp.error.payload_size_exceeded", reply
    callee.close()
    caller.close()


def test_call_payload_the_callee_serializer_cannot_carry(router: RouterProcess) -> None:
    """A JSON integer too big for MsgPack, called on a MsgPack callee, gets the caller an ERROR
    and keeps its session."""
    listener = router.listener("rawsocket_quick")
    callee = RawWampClient.connect(listener, "msgpack")
    callee.register("com.example.msgpack_callee")
    caller = RawWampClient.connect(listener, "json")
    caller.send([48, 1, {}, "com.example.msgpack_callee", [2**70]])
    reply = answer_within(caller)
    assert reply[:3] == [8, 48, 1], reply
    caller.register("com.example.caller_still_here")
    callee.close()
    caller.close()


def test_event_payload_one_subscriber_serializer_cannot_carry(router: RouterProcess) -> None:
    """A CBOR NaN published to a JSON and a MsgPack subscriber still reaches the MsgPack one,
    and the publisher is acknowledged and keeps its session."""
    listener = router.listener("rawsocket_quick")
    json_subscriber = RawWampClient.connect(listener, "json")
    json_subscriber.subscribe("com.example.nan")
    msgpack_subscriber = RawWampClient.connect(listener, "msgpack")
    msgpack_subscriber.subscribe("com.example.nan")
    publisher = RawWampClient.connect(listener, "cbor")
    publisher.send([16, 1, {"acknowledge": True}, "com.example.nan", [float("nan")]])
    event = answer_within(msgpack_subscriber)
    assert event[0] == 36 and event[4][0] != event[4][0], event  # NaN is not equal to itself
    assert answer_within(publisher)[:2] == [17, 1]
    for client in (json_subscriber, msgpack_subscriber, publisher):
        client.close()


def test_json_nan_literal_is_answered(router: RouterProcess) -> None:
    """``NaN`` is not JSON: a CALL carrying it is answered (ERROR or ABORT), not dropped with
    the connection."""
    listener = router.listener("rawsocket_quick")
    callee = RawWampClient.connect(listener, "json")
    callee.register("com.example.json_callee")
    caller = RawWampClient.connect(listener, "json")
    caller.send_frame(b'[48, 1, {}, "com.example.json_callee", [NaN]]')
    reply = answer_within(caller)
    assert reply[0] in (3, 8), reply
    callee.close()
    caller.close()


# -- unusual but valid --------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["rawsocket", "websocket"])
def test_handshake_and_messages_in_one_write(router: RouterProcess, transport: str) -> None:
    """A transport handshake, HELLO and REGISTER arriving in one TCP write are all served."""
    listener = router.listener(transport)
    hello = json.dumps([1, "realm1", {"roles": ROLES}]).encode()
    register = json.dumps([64, 1, {}, f"com.example.one_write.{transport}"]).encode()
    if transport == "rawsocket":
        client: RawWampClient | WsClient = RawWampClient(listener.connect(), "json")
        data = b"\x7f\xf1\x00\x00" + b"".join(
            len(m).to_bytes(4, "big") + m for m in (hello, register)
        )
        client.sock.sendall(data)
        assert recv_exactly(client.sock, 4)[0] == 0x7F
    else:
        keys = os.urandom(4), os.urandom(4)
        data = upgrade_request(listener.port) + b"".join(
            frame_header(OP_TEXT, len(m)) + key + mask(m, key)
            for m, key in zip((hello, register), keys, strict=True)
        )
        sock = listener.connect()
        sock.sendall(data)
        client = WsClient(sock, "wamp.2.json")
        while b"\r\n\r\n" not in client.buf:
            client.buf += sock.recv(65536)
        head, _, client.buf = client.buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
    assert client.recv()[0] == 2
    assert client.recv()[:2] == [65, 1]
    client.close()


def test_session_reuse_after_goodbye(router: RouterProcess, healthy: Healthy) -> None:
    """After GOODBYE the same connection may join again; the first session's registrations
    went with it."""
    client = raw_joined(router)
    client.register("com.example.first_life")
    first = client.session_id
    client.send([6, {}, "wamp.close.close_realm"])
    assert client.recv() == [6, {}, "wamp.close.goodbye_and_out"]
    healthy.caller.send([48, healthy.caller.next_request(), {}, "com.example.first_life"])
    assert healthy.caller.recv()[4] == "wamp.error.no_such_procedure"
    client.join()
    assert client.session_id != first
    client.register("com.example.first_life")
    client.close()


def test_client_abort_closes_and_frees(router: RouterProcess, healthy: Healthy) -> None:
    """ABORT from an established client closes its connection and frees its registrations."""
    client = raw_joined(router)
    client.register("com.example.aborter")
    client.send([3, {"message": "bye"}, "com.example.reason.gone"])
    assert client.expect_closed() == b""
    healthy.caller.send([48, healthy.caller.next_request(), {}, "com.example.aborter"])
    assert healthy.caller.recv()[4] == "wamp.error.no_such_procedure"
