"""WAMP over RawSocket: the Twisted protocol around the sans-IO codec."""

from __future__ import annotations

from serouter.serializers import BY_RAWSOCKET_ID
from serouter.transport._base import WampProtocol, WampServerFactory, log
from serouter.transport._rawsocket_codec import (
    ERR_MAX_CONNECTIONS,
    RawSocketError,
    RawSocketServerCodec,
)


class RawSocketProtocol(WampProtocol):
    """One RawSocket connection."""

    def connectionMade(self) -> None:
        super().connectionMade()
        f = self.factory
        self.codec = RawSocketServerCodec(
            {s.rawsocket_id for s in f.serializers}, f.max_message_size
        )

    def frames_received(self, data: bytes) -> None:
        codec = self.codec
        try:
            payloads = codec.receive_data(data)
        except RawSocketError as e:
            log.info("rawsocket error from {peer}: {error}", peer=self._peer_string(), error=e)
            self._flush()
            self.lose_connection()
            return
        if self.session is None and codec.serializer_id:
            self._flush()
            serializer = BY_RAWSOCKET_ID[codec.serializer_id]
            self.start_session(serializer, "rawsocket", {}, codec.peer_max)
        for payload in payloads:
            self.payload_received(payload)
        if codec.has_output:
            self._flush()

    def _flush(self) -> None:
        out = self.codec.data_to_send()
        if out:
            self.write_reply(out)

    def send_payload(self, data: bytes) -> None:
        # RawSocketServerCodec.frame, inline: this runs once per message sent
        self.write(len(data).to_bytes(4, "big") + data)

    def refuse_connection(self) -> None:
        # The spec's handshake error 4: maximum connection count reached.
        self.transport.write(bytes((0x7F, ERR_MAX_CONNECTIONS << 4, 0, 0)))  # type: ignore[union-attr]

    def send_ping(self, payload: bytes = b"") -> None:
        self.write(RawSocketServerCodec.ping(payload))


class RawSocketFactory(WampServerFactory):
    protocol = RawSocketProtocol  # type: ignore[assignment]  # Twisted types it loosely
    kind = "rawsocket"
