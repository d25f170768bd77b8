"""Fuzzing inside ``make test``: a short run of every fuzz target, Hypothesis over the codecs,
and the crashes the long run (``make fuzz``) found, kept as regression tests.

The long run and its figures: docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import time
from collections.abc import Iterator
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from serouter.core.access import AllowAll
from serouter.core.messages import ProtocolViolation, parse
from serouter.core.router import Router
from serouter.serializers import CBOR, JSON, MSGPACK
from serouter.transport._rawsocket_codec import RawSocketError, RawSocketServerCodec
from serouter.transport._wscodec import Message, WebSocketServerConnection
from serouter.transport.rawsocket import RawSocketFactory
from tests.fakes import connect, make_router, send
from tests.fuzz.targets import Crash, SerializerTarget, all_targets

# Each target's short run takes about half a second (docs/reliability.md has the rates).
SHORT_RUN = {"rawsocket": 200, "websocket": 120, "serializer": 1500, "session": 600}
HYPOTHESIS = settings(max_examples=60, deadline=None, database=None, derandomize=True,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# -- the fuzz targets, briefly ------------------------------------------------------------------


@pytest.mark.parametrize("name", list(all_targets()))
def test_short_fuzz_run(name: str) -> None:
    """The first cases of ``make fuzz`` for this target: no crash, nothing left behind."""
    target = all_targets()[name]()
    for seed in range(SHORT_RUN[name.split("-", maxsplit=1)[0]]):
        try:
            target.run(seed)
        except Crash as crash:
            pytest.fail(f"{crash}\nreplay: python -m tests.fuzz --replay {name}:{seed}")


@pytest.fixture(scope="module")
def targets() -> Iterator[dict[str, Any]]:
    yield {name: make() for name, make in all_targets().items()}


@pytest.mark.parametrize("name", [n for n in all_targets() if not n.startswith("serializer")])
def test_fuzz_target_under_hypothesis(targets: dict[str, Any], name: str) -> None:
    """The same cases drawn by Hypothesis, which shrinks a failing one to a small script."""

    @HYPOTHESIS
    @given(rng=st.randoms(use_true_random=False))
    def case(rng: random.Random) -> None:
        targets[name].run(0, rng)

    case()


# -- the codecs, byte by byte ---------------------------------------------------------------------

LIMIT = 4096


def _splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)] or [b""]


@HYPOTHESIS
@given(body=st.binary(max_size=600), cuts=st.lists(st.integers(0, 10_000), max_size=6),
       valid_handshake=st.booleans())
def test_rawsocket_codec_takes_any_bytes(body: bytes, cuts: list[int],
                                         valid_handshake: bool) -> None:
    """Any bytes, split anywhere: payloads within the limit or RawSocketError, and never more
    buffered than one frame header plus the limit."""
    codec = RawSocketServerCodec({1, 2, 3}, LIMIT)
    data = (b"\x7f\xf2\x00\x00" if valid_handshake else b"") + body
    try:
        for chunk in _splits(data, cuts):
            for payload in codec.receive_data(chunk):
                assert len(payload) <= LIMIT
            assert len(codec._buf) <= LIMIT + 4  # what a partial frame may hold, at most
    except RawSocketError:
        pass


_UPGRADE = (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Protocol: wamp.2.json\r\n\r\n")


@HYPOTHESIS
@given(body=st.binary(max_size=600), cuts=st.lists(st.integers(0, 10_000), max_size=6),
       upgraded=st.booleans())
def test_websocket_codec_takes_any_bytes(body: bytes, cuts: list[int], upgraded: bool) -> None:
    """Any bytes, before or after the opening handshake and split anywhere: events, never an
    exception, messages within the limit, and at most one frame buffered."""
    codec = WebSocketServerConnection(path="/ws", subprotocols=["wamp.2.json"],
                                      max_message_size=LIMIT)
    data = (_UPGRADE if upgraded else b"") + body
    for chunk in _splits(data, cuts):
        for event in codec.receive_data(chunk):
            if isinstance(event, Message):
                assert len(event.data) <= LIMIT
        assert len(codec._buf) <= LIMIT + 14  # header and mask of one frame, plus the limit
    codec.data_to_send()


@HYPOTHESIS
@given(data=st.binary(max_size=400))
def test_serializers_take_any_bytes(data: bytes) -> None:
    """Any bytes: each serializer decodes or raises; what decodes parses or is a protocol
    violation, and re-encodes within EXPANSION times its size."""
    for name in ("json", "msgpack", "cbor"):
        SerializerTarget(name).check(data)
        SerializerTarget(name).check(data, as_text=True)


# -- regressions: what the fuzzer found -----------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "uri"),
    [
        ((64, 1, {"match": ["prefix"]}, "a.b"), "wamp.error.option_not_allowed"),
        ((64, 1, {"invoke": {"x": 1}}, "a.b"), "wamp.error.option_not_allowed"),
        ((32, 1, {"match": {"x": 1}}, "a.b"), "wamp.error.option_not_allowed"),
        ((48, 1, {"match": ["wildcard"]}, "a.b"), "wamp.error.no_such_procedure"),
    ],
    ids=["register-match", "register-invoke", "subscribe-match", "call-match"],
)
def test_option_of_an_unhashable_type_is_answered(message: tuple[Any, ...], uri: str) -> None:
    """A list or dict where an option takes a name gets an ERROR, not an internal error
    (it raised TypeError in a set lookup: fuzz seed rawsocket-cbor:334)."""
    router = make_router()
    session, peer = connect(router)
    send(session, *message)
    [reply] = peer.wire()
    assert reply[0] == 8 and reply[4] == uri, reply


def test_cancel_mode_of_an_unhashable_type_is_answered() -> None:
    """CANCEL with a list as its mode gets an ERROR, and the call goes on."""
    router = make_router()
    callee, cpeer = connect(router)
    caller, kpeer = connect(router)
    send(callee, 64, 1, {}, "a.b")
    send(caller, 48, 7, {}, "a.b")
    send(caller, 49, 7, {"mode": ["kill"]})
    [reply] = kpeer.wire()
    assert reply[:3] == [8, 49, 7] and reply[4] == "wamp.error.invalid_argument", reply
    invocation = cpeer.wire()[-1]
    send(callee, 70, invocation[1], {})
    assert kpeer.wire()[0][:2] == [50, 7]


def _shared_dag(depth: int) -> bytes:
    """A CALL whose argument names one value twice per level: 2**depth copies once
    re-encoded without references (CBOR value sharing, tags 28 and 29)."""
    shared: Any = "x" * 64
    for _ in range(depth):
        shared = [shared, shared]
    return cbor2.dumps([48, 1, {}, "a.b", [shared]], value_sharing=True)


@pytest.mark.parametrize(
    "payload",
    [
        _shared_dag(30),
        cbor2.dumps([48, 1, {}, "a.b", ["y" * 1000] * 200], string_referencing=True),
    ],
    ids=["value-sharing", "string-references"],
)
def test_cbor_references_are_refused(payload: bytes) -> None:
    """CBOR that names one value many times is refused when decoded: re-encoded for a callee
    or subscriber, a few hundred bytes would become gigabytes (fuzz seed serializer-cbor:2578:
    254 bytes re-encoded as 68 MB of JSON)."""
    assert len(payload) < 2000
    with pytest.raises(Exception, match="semantic tag"):
        CBOR.loads(payload)


def test_cbor_references_end_the_session_not_the_router() -> None:
    """Through the transport: ABORT protocol_violation at once, nothing re-encoded."""
    clock = Clock()
    router = Router(["realm1"], AllowAll(), clock)
    factory = RawSocketFactory(router, clock, serializers=[CBOR, JSON, MSGPACK],
                               max_message_size=1 << 16, handshake_timeout=5)
    peers = []
    for _ in range(2):
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 9))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5))
        protocol.makeConnection(transport)
        hello = cbor2.dumps([1, "realm1", {"roles": {"caller": {}, "callee": {}}}])
        protocol.dataReceived(b"\x7f\xf3\x00\x00" + len(hello).to_bytes(4, "big") + hello)
        peers.append((protocol, transport))
    (callee, callee_t), (caller, caller_t) = peers
    register = cbor2.dumps([64, 1, {}, "a.b"])
    callee.dataReceived(len(register).to_bytes(4, "big") + register)
    callee_t.clear()
    caller_t.clear()
    call = _shared_dag(30)
    started = time.perf_counter()
    caller.dataReceived(len(call).to_bytes(4, "big") + call)
    assert time.perf_counter() - started < 0.5
    assert b"wamp.error.protocol_violation" in caller_t.value() and caller_t.disconnecting
    assert callee_t.value() == b""


def _colliding_keys(n: int) -> bytes:
    """A CBOR map whose n integer keys all hash alike in CPython (multiples of 2**61 - 1)."""
    out = b"\xba" + n.to_bytes(4, "big")
    for i in range(1, n + 1):
        key = (i * (2**61 - 1)).to_bytes(10, "big").lstrip(b"\0")
        out += b"\xc2" + bytes((0x40 + len(key),)) + key + b"\xf6"
    return b"\x85\x18\x30\x01\xa0\x63a.b\x81" + out


def test_cbor_map_keys_that_collide_are_refused_at_once() -> None:
    """Map keys other than strings are refused while decoding, so keys chosen to collide in the
    hash table cannot make one message cost the router minutes (16,000 such keys in 200 KB took
    3.9 s, and the cost grows with the square of their number)."""
    payload = _colliding_keys(16_000)
    started = time.perf_counter()
    with pytest.raises(Exception, match="map key"):
        CBOR.loads(payload)
    assert time.perf_counter() - started < 0.1


def test_decoded_nesting_is_bounded_in_every_serializer() -> None:
    """Nesting deeper than each library allows is a decoding error, answered as a protocol
    violation (msgpack's stack, cbor2's max_depth, the interpreter's recursion limit)."""
    deep = {"json": b"[" * 100_000 + b"]" * 100_000, "msgpack": b"\x91" * 100_000 + b"\xc0",
            "cbor": b"\x81" * 100_000 + b"\xf6"}
    for serializer, payload in (("json", JSON), ("msgpack", MSGPACK), ("cbor", CBOR)):
        with pytest.raises(Exception):  # noqa: B017 - each library has its own
            payload.loads(deep[serializer])


def test_lengths_are_checked_against_the_payload_before_allocating() -> None:
    """A header announcing a huge string, binary, array or map in a few bytes fails at once,
    without allocating what it announces."""
    huge = [
        (MSGPACK, b"\xdd\xff\xff\xff\xff"), (MSGPACK, b"\xdf\xff\xff\xff\xff"),
        (MSGPACK, b"\xc6\xff\xff\xff\xff"), (MSGPACK, b"\xdb\xff\xff\xff\xff"),
        (CBOR, b"\x9b" + (2**62).to_bytes(8, "big")), (CBOR, b"\xbb" + (2**62).to_bytes(8, "big")),
        (CBOR, b"\x5b" + (2**62).to_bytes(8, "big")), (CBOR, b"\x7b" + (2**62).to_bytes(8, "big")),
    ]
    for serializer, payload in huge:
        started = time.perf_counter()
        with pytest.raises(Exception):  # noqa: B017 - each library has its own
            serializer.loads(payload)
        assert time.perf_counter() - started < 0.05, payload


def test_parse_answers_any_list_with_a_message_or_a_violation() -> None:
    """What the serializers let through, the parser judges: never an exception of its own."""
    rng = random.Random(5)
    for _ in range(2000):
        value = [rng.choice((1, 16, 32, 48, 64, 70)), *[rng.choice((None, 1, "a", [], {}, -1))
                                                      for _ in range(rng.randint(0, 6))]]
        with contextlib.suppress(ProtocolViolation):
            parse(value)
