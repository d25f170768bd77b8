"""WAMP over WebSocket: the Twisted protocol around the sans-IO codec (``_wscodec``)."""

from __future__ import annotations

from serouter.serializers import BY_SUBPROTOCOL, Serializer
from serouter.transport._base import WampProtocol, WampServerFactory, log
from serouter.transport._wscodec import (
    Accepted,
    CloseReceived,
    Failed,
    Message,
    Ping,
    Pong,
    WebSocketServerConnection,
)


class WebSocketProtocol(WampProtocol):
    """One WebSocket connection."""

    factory: WebSocketFactory

    def connectionMade(self) -> None:
        super().connectionMade()
        f = self.factory
        self.codec = WebSocketServerConnection(
            path=f.path,
            subprotocols=[s.subprotocol for s in f.serializers],
            max_message_size=f.max_message_size,
        )
        self.pongs = 0

    def frames_received(self, data: bytes) -> None:
        codec = self.codec
        for event in codec.receive_data(data):
            kind = type(event)
            if kind is Message:
                self.payload_received(event.data)  # type: ignore[union-attr]
            elif kind is Accepted:
                self._flush()
                self._accepted(event)  # type: ignore[arg-type]
            elif kind is Ping:
                self._flush()  # the pong goes out before answers to later messages
            elif kind is Pong:
                self.pongs += 1
            elif kind is CloseReceived or kind is Failed:
                if kind is Failed:
                    log.info("websocket failure from {peer}: {reason}",
                             peer=self._peer_string(), reason=event.reason)  # type: ignore[union-attr]
                self._flush()
                self.lose_connection()
                return
        self._flush()
        if codec.closed:  # e.g. the status page answered a plain GET
            self.lose_connection()

    def _accepted(self, event: Accepted) -> None:
        serializer: Serializer = BY_SUBPROTOCOL[event.subprotocol]
        self.start_session(
            serializer, "websocket", {"path": event.path}, self.factory.max_message_size
        )

    def _flush(self) -> None:
        out = self.codec.data_to_send()
        if out:
            self.write_reply(out)

    def send_payload(self, data: bytes) -> None:
        assert self.serializer is not None
        frame = self.codec.send_message(data if self.serializer.binary else data.decode())
        self.write(frame)

    def refuse_connection(self) -> None:
        self.transport.write(  # type: ignore[union-attr]
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )

    def send_ping(self, payload: bytes = b"") -> None:
        self.write(self.codec.send_ping(payload))

    def close_transport(self) -> None:
        if self.session is not None and not self.codec.closed:
            self.write(self.codec.send_close(1000))
        self.lose_connection()


class WebSocketFactory(WampServerFactory):
    protocol = WebSocketProtocol  # type: ignore[assignment]  # Twisted types it loosely
    kind = "websocket"
    path = "/ws"
