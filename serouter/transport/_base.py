"""What every WAMP transport protocol shares: payload -> message -> session, and back.

Subclasses do the framing; this class owns the session, turns payloads into parsed messages,
answers malformed input as a protocol violation, enforces the handshake timeout, and tells the
router when the connection is gone. It implements the core's ``Peer`` interface.
"""

from __future__ import annotations

import socket
import struct
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime, ISSLTransport
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from serouter.core.messages import Outgoing, ProtocolViolation, parse
from serouter.core.peer import TransportInfo
from serouter.serializers import SerializationError, Serializer

if TYPE_CHECKING:
    from serouter.core.router import Router
    from serouter.core.session import Session

log = Logger(namespace="serouter.transport")

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class WampServerFactory(ServerFactory):
    """Shared settings of one listener."""

    kind = ""
    noisy = False  # the service logs one line per listener itself

    def __init__(
        self,
        router: Router,
        clock: IReactorTime,
        *,
        serializers: list[Serializer],
        max_message_size: int,
        handshake_timeout: float,
        listener: str = "",
    ) -> None:
        self.router = router
        self.clock = clock
        self.serializers = serializers
        self.max_message_size = max_message_size
        self.handshake_timeout = handshake_timeout
        self.listener = listener


class WampProtocol(Protocol):
    """Base of the RawSocket and WebSocket server protocols (one per connection)."""

    factory: WampServerFactory

    def __init__(self) -> None:
        self.session: Session | None = None
        self.serializer: Serializer | None = None
        self._timer: IDelayedCall | None = None
        self._closing = False

    # -- Twisted callbacks ---------------------------------------------------------------

    def connectionMade(self) -> None:
        handle = getattr(self.transport, "getHandle", lambda: None)()
        if isinstance(handle, socket.socket) and handle.family in (socket.AF_INET, socket.AF_INET6):
            handle.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._timer = self.factory.clock.callLater(
            self.factory.handshake_timeout, self._handshake_timed_out
        )

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancel_timer()
        if self.session is not None:
            session, self.session = self.session, None
            self.factory.router.close_session(session)

    # -- for subclasses -------------------------------------------------------------------

    def start_session(self, serializer: Serializer, kind: str, extra: dict[str, str]) -> None:
        """The transport handshake is done: open the WAMP session."""
        self.serializer = serializer
        self.session = self.factory.router.open_session(self, self._transport_info(kind, extra))

    def payload_received(self, payload: bytes | str) -> None:
        """One complete WAMP message arrived."""
        session = self.session
        if session is None:
            return
        assert self.serializer is not None
        try:
            msg = parse(self.serializer.decode(payload))
        except (SerializationError, ProtocolViolation) as e:
            session.protocol_violation(str(e))
            return
        try:
            session.receive(msg)
        except Exception:
            # A bug of ours: drop this connection, keep serving everyone else.
            log.failure("internal error handling {msg!r}", msg=type(msg).__name__)
            self.close()
            return
        if self._timer is not None and session.is_open:
            self._cancel_timer()

    def send_payload(self, data: bytes) -> None:
        """Frame and write one serialized message."""
        raise NotImplementedError

    def max_outgoing(self) -> int:
        """The largest message the peer accepts."""
        return self.factory.max_message_size

    # -- the core's Peer interface --------------------------------------------------------

    def send(self, message: Outgoing) -> None:
        if self._closing:
            return
        assert self.serializer is not None
        data = self.serializer.encode(message)
        if len(data) > self.max_outgoing():
            log.warn(
                "dropped a {type} of {size} bytes: over {peer}'s limit",
                type=type(message).__name__, size=len(data), peer=self._peer_string(),
            )
            return
        self.send_payload(data)

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._cancel_timer()
            self.close_transport()

    def close_transport(self) -> None:
        """Close after flushing (subclasses may send a close frame first)."""
        self.transport.loseConnection()  # type: ignore[union-attr]

    # -- helpers ------------------------------------------------------------------------------

    def _handshake_timed_out(self) -> None:
        self._timer = None
        log.info("handshake timeout: closing {peer}", peer=self._peer_string())
        self.transport.abortConnection()  # type: ignore[union-attr]

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _peer_string(self) -> str:
        peer: Any = self.transport.getPeer()  # type: ignore[union-attr]
        host, port = getattr(peer, "host", None), getattr(peer, "port", None)
        if host is not None:
            return f"{peer.type.lower()}:{host}:{port}"
        return "unix"

    def _transport_info(self, kind: str, extra: dict[str, str]) -> TransportInfo:
        assert self.serializer is not None
        pid = uid = gid = None
        handle = getattr(self.transport, "getHandle", lambda: None)()
        if isinstance(handle, socket.socket) and handle.family == socket.AF_UNIX:
            # The kernel vouches for these: they may later feed labels and authids.
            pid, uid, gid = _PEERCRED.unpack(
                handle.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
            )
        return TransportInfo(
            kind=kind,
            serializer=self.serializer.name,
            peer=self._peer_string(),
            listener=self.factory.listener,
            secure=ISSLTransport.providedBy(self.transport),
            peer_uid=uid,
            peer_gid=gid,
            peer_pid=pid,
            extra=extra,
        )
