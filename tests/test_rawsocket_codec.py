"""RawSocket framing: handshake replies, frames split anywhere, limits from the header."""

import pytest

from serouter.transport._rawsocket_codec import (
    MAX_PING,
    RawSocketError,
    RawSocketServerCodec,
    length_exponent,
)

JSON, MSGPACK = 1, 2


def codec(max_size: int = 1 << 20) -> RawSocketServerCodec:
    return RawSocketServerCodec({JSON, MSGPACK}, max_size)


def frame(payload: bytes, ftype: int = 0) -> bytes:
    return bytes((ftype,)) + len(payload).to_bytes(3, "big") + payload


HANDSHAKE = bytes((0x7F, 0xF2, 0, 0))  # max 2**24, msgpack


def test_handshake_reply_announces_our_limit_and_serializer() -> None:
    """The reply echoes the serializer and our max length exponent (2**20 -> 11)."""
    c = codec()
    assert c.receive_data(HANDSHAKE) == []
    assert c.data_to_send() == bytes((0x7F, (11 << 4) | 2, 0, 0))
    assert c.serializer_id == MSGPACK and c.peer_max == 2**24


@pytest.mark.parametrize(
    ("hs", "error"),
    [
        (bytes((0x7F, 0xF3, 0, 0)), 1),
        (bytes((0x7F, 0xF2, 1, 0)), 3),
        (bytes((0x7F, 0xF2, 0, 9)), 3),
        (bytes((0x7F, 0x22, 0, 0)), 2),  # accepts only 2 KiB: could not take a WELCOME
    ],
)
def test_handshake_errors_are_replied(hs: bytes, error: int) -> None:
    """Unsupported serializer and reserved bits get the spec's error reply."""
    c = codec()
    with pytest.raises(RawSocketError):
        c.receive_data(hs)
    assert c.data_to_send() == bytes((0x7F, error << 4, 0, 0))


def test_not_a_handshake_is_refused_without_reply() -> None:
    """A first byte other than 0x7F (e.g. an HTTP request) fails the connection silently."""
    c = codec()
    with pytest.raises(RawSocketError):
        c.receive_data(b"GET / HTTP/1.1\r\n")
    assert c.data_to_send() == b""


def test_length_exponent() -> None:
    """We announce the largest power of two not above our limit."""
    assert [length_exponent(n) for n in (512, 1000, 1024, 1 << 20, 1 << 24, 1 << 30)] == [
        0, 0, 1, 11, 15, 15]


def test_frames_split_at_every_offset() -> None:
    """However the stream is cut, the same payloads come out, pings answered once each."""
    stream = HANDSHAKE + frame(b"a" * 300) + frame(b"p", 1) + frame(b"") + frame(b"x" * 5)
    for cut in range(1, len(stream)):
        chunks = [stream[i : i + cut] for i in range(0, len(stream), cut)]
        for parts in ([stream[:cut], stream[cut:]], chunks):
            c = codec()
            got = [p for part in parts for p in c.receive_data(part)]
            assert got == [b"a" * 300, b"", b"x" * 5], cut
            assert c.data_to_send().endswith(frame(b"p", 2))


def test_one_byte_at_a_time() -> None:
    """Bytes arriving one at a time still make whole messages."""
    c = codec()
    stream = HANDSHAKE + frame(b"hello") + frame(b"world")
    got = [p for i in range(len(stream)) for p in c.receive_data(stream[i:i + 1])]
    assert got == [b"hello", b"world"]


def test_oversize_refused_from_header_alone() -> None:
    """A length over our limit fails on the 4 header bytes, before any payload."""
    c = codec(1024)
    c.receive_data(HANDSHAKE)
    with pytest.raises(RawSocketError, match="over the limit"):
        c.receive_data((1025).to_bytes(4, "big"))


def test_oversize_ping_refused_from_header() -> None:
    """Pings are small tokens: a big one is refused before buffering."""
    c = codec()
    c.receive_data(HANDSHAKE)
    with pytest.raises(RawSocketError):
        c.receive_data(bytes((1,)) + (MAX_PING + 1).to_bytes(3, "big"))


@pytest.mark.parametrize("ftype", [3, 7, 8, 0x80, 0xFF])
def test_reserved_frame_types_refused(ftype: int) -> None:
    """Frame types 3-7 and set reserved bits fail the connection."""
    c = codec()
    c.receive_data(HANDSHAKE)
    with pytest.raises(RawSocketError):
        c.receive_data(frame(b"x", ftype))


def test_pong_counted() -> None:
    """Pongs are counted for the keepalive and produce nothing."""
    c = codec()
    assert c.receive_data(HANDSHAKE + frame(b"t", 2)) == []
    assert c.pongs == 1


def test_large_message_in_small_reads_is_linear() -> None:
    """A 4 MiB message fed in 4 KiB reads arrives whole (and without quadratic copying)."""
    c = codec(1 << 24)
    data = HANDSHAKE + frame(b"z" * (4 << 20))
    got = [p for i in range(0, len(data), 4096) for p in c.receive_data(data[i:i + 4096])]
    assert got == [b"z" * (4 << 20)]


def test_frame_helpers() -> None:
    """Outgoing frames: a message is a 4-byte big-endian length, a ping has type 1."""
    assert RawSocketServerCodec.frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert RawSocketServerCodec.ping(b"t") == b"\x01\x00\x00\x01t"
