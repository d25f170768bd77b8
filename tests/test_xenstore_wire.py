"""serouter.xenstore's codec and protocol with no socket: bytes in, packets and Deferreds out."""

from __future__ import annotations

import struct

import pytest
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from serouter.xenstore import (
    Op,
    Permission,
    XenStoreError,
    XenStoreProtocol,
    XenStoreProtocolError,
    XenStoreUnavailable,
    is_valid_path,
)
from serouter.xenstore._wire import PacketDecoder, encode, nul_strings


def frame(op: int, req_id: int, tx_id: int, payload: bytes) -> bytes:
    return struct.pack("<IIII", op, req_id, tx_id, len(payload)) + payload


def test_encode_is_the_xs_wire_header() -> None:
    assert encode(Op.READ, 7, 3, b"/a\0") == b"\x02\0\0\0\x07\0\0\0\x03\0\0\0\x03\0\0\0/a\0"
    with pytest.raises(XenStoreError) as raised:
        encode(Op.WRITE, 1, 0, b"x" * 4097)
    assert raised.value.name == "E2BIG"


def test_decoder_handles_every_split() -> None:
    """Two packets, cut at every byte boundary, come out whole and in order."""
    stream = frame(Op.READ, 1, 0, b"value") + frame(Op.WATCH_EVENT, 0, 0, b"/p\0tok\0")
    for cut in range(len(stream) + 1):
        decoder = PacketDecoder()
        packets = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
        assert [(p.op, p.req_id, p.payload) for p in packets] == [
            (Op.READ, 1, b"value"), (Op.WATCH_EVENT, 0, b"/p\0tok\0")]
    decoder = PacketDecoder()
    assert [p.payload for b in stream for p in decoder.feed(bytes([b]))] == [
        b"value", b"/p\0tok\0"]


def test_decoder_refuses_oversized_payloads() -> None:
    assert PacketDecoder().feed(frame(Op.READ, 1, 0, b"x" * 4096))[0].payload == b"x" * 4096
    with pytest.raises(XenStoreProtocolError):
        PacketDecoder().feed(struct.pack("<IIII", Op.READ, 1, 0, 4097))


def test_nul_strings() -> None:
    assert nul_strings(b"") == []
    assert nul_strings(b"a\0b\0") == ["a", "b"]
    with pytest.raises(XenStoreProtocolError):
        nul_strings(b"a\0b")


@pytest.mark.parametrize(("path", "valid"), [
    ("/", True), ("/local/domain/1/name", True), ("name", True), ("data/x-y_z", True),
    ("", False), ("/a/", False), ("/a//b", False), ("/a.b", False), ("/a b", False),
    ("@introduceDomain", False), ("/" + "a" * 3071, True), ("/" + "a" * 3072, False),
])
def test_valid_paths(path: str, valid: bool) -> None:
    assert is_valid_path(path) is valid


def test_special_paths_only_where_allowed() -> None:
    assert is_valid_path("@releaseDomain", allow_special=True)
    assert not is_valid_path("@releaseDomain")


def test_permissions_parse_and_print() -> None:
    assert Permission.parse("r0") == Permission("r", 0)
    assert str(Permission("b", 12)) == "b12"
    assert Permission("r", 0).readable and not Permission("r", 0).writable
    assert Permission("w", 1).writable and not Permission("n", 1).readable
    for bad in ("x0", "r", "r-1", "0r", "r65536", ""):
        with pytest.raises(ValueError):
            Permission.parse(bad)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def __call__(self, proto: XenStoreProtocol, path: str, token: str) -> None:
        self.events.append((path, token))


def connected() -> tuple[XenStoreProtocol, StringTransport, Recorder]:
    events = Recorder()
    proto = XenStoreProtocol(events)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport, events


def test_replies_are_matched_by_request_id_in_any_order() -> None:
    proto, transport, _ = connected()
    first = proto.request(Op.READ, b"/a\0", path="/a")
    second = proto.request(Op.READ, b"/b\0", path="/b")
    sent = transport.value()
    assert sent[:16] == struct.pack("<IIII", Op.READ, 1, 0, 3)
    assert sent[19:35] == struct.pack("<IIII", Op.READ, 2, 0, 3)
    results: list[bytes] = []
    second.addCallback(results.append)
    first.addCallback(results.append)
    proto.dataReceived(frame(Op.READ, 2, 0, b"B") + frame(Op.READ, 1, 0, b"A"))
    assert results == [b"B", b"A"]


def test_error_replies_become_xenstore_errors() -> None:
    proto, _, _ = connected()
    failures: list[Failure] = []
    proto.request(Op.READ, b"/x\0", path="/x").addErrback(failures.append)
    proto.dataReceived(frame(Op.ERROR, 1, 0, b"EACCES\0"))
    error = failures[0].value
    assert isinstance(error, XenStoreError)
    assert (error.name, error.path, error.errno) == ("EACCES", "/x", 13)
    assert "EACCES" in str(error) and "/x" in str(error)


def test_watch_events_go_to_the_handler_not_to_requests() -> None:
    proto, _, events = connected()
    pending = proto.request(Op.READ, b"/a\0")
    proto.dataReceived(frame(Op.WATCH_EVENT, 0, 0, b"/a/b\0tok\0"))
    assert events.events == [("/a/b", "tok")]
    assert not pending.called
    proto.dataReceived(frame(Op.READ, 1, 0, b""))
    assert pending.called


def test_a_failing_watch_callback_does_not_break_the_connection() -> None:
    def boom(proto: XenStoreProtocol, path: str, token: str) -> None:
        raise RuntimeError("callback bug")

    proto = XenStoreProtocol(boom)
    transport = StringTransport()
    proto.makeConnection(transport)
    reply = proto.request(Op.READ, b"/a\0")
    proto.dataReceived(frame(Op.WATCH_EVENT, 0, 0, b"/a\0t\0") + frame(Op.READ, 1, 0, b"v"))
    assert reply.called and not transport.disconnecting


def test_connection_loss_fails_every_pending_request() -> None:
    proto, _, _ = connected()
    failures: list[Failure] = []
    for path in (b"/a\0", b"/b\0"):
        proto.request(Op.READ, path).addErrback(failures.append)
    proto.connectionLost(Failure(ConnectionDone()))
    assert [f.check(XenStoreUnavailable) for f in failures] == [XenStoreUnavailable] * 2
    after: list[Failure] = []
    proto.request(Op.READ, b"/c\0").addErrback(after.append)
    assert after[0].check(XenStoreUnavailable)


def test_a_broken_peer_is_dropped() -> None:
    """A reply of the wrong type, or an oversized message, closes the connection."""
    proto, transport, _ = connected()
    failures: list[Failure] = []
    proto.request(Op.READ, b"/a\0").addErrback(failures.append)
    proto.dataReceived(frame(Op.WRITE, 1, 0, b"OK\0"))
    assert failures[0].check(XenStoreProtocolError) and transport.disconnecting
    proto, transport, _ = connected()
    proto.dataReceived(struct.pack("<IIII", Op.READ, 1, 0, 5000))
    assert transport.disconnecting


def test_oversized_request_fails_without_being_sent() -> None:
    proto, transport, _ = connected()
    failures: list[Failure] = []
    proto.request(Op.WRITE, b"/a\0" + b"x" * 4096, path="/a").addErrback(failures.append)
    error = failures[0].value
    assert isinstance(error, XenStoreError) and error.name == "E2BIG"
    assert transport.value() == b""
