"""One connection to xenstored: requests matched to replies by id, watch events handed on.

The protocol knows nothing of reconnecting or of what a watch is for; ``XenStoreClient``
does. It must never block: every request is a Deferred, fired by ``dataReceived`` or failed by
``connectionLost``.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import defer
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from serouter.xenstore._errors import XenStoreError, XenStoreProtocolError, XenStoreUnavailable
from serouter.xenstore._wire import Op, Packet, PacketDecoder, encode

log = Logger(namespace="serouter.xenstore")
EventHandler = Callable[["XenStoreProtocol", str, str], None]


class XenStoreProtocol(Protocol):
    """Speaks the wire protocol on one transport (a Unix socket or ``/dev/xen/xenbus``)."""

    def __init__(
        self,
        on_event: EventHandler,
        on_connect: Callable[[XenStoreProtocol], None] = lambda _: None,
    ) -> None:
        self._on_event = on_event
        self._on_connect = on_connect
        self._decoder = PacketDecoder()
        self._pending: dict[int, tuple[Op, str | None, defer.Deferred[bytes]]] = {}
        self._next_id = 0
        self.open = False

    def connectionMade(self) -> None:
        self.open = True
        self._on_connect(self)

    def request(
        self, op: Op, payload: bytes, tx_id: int = 0, path: str | None = None
    ) -> defer.Deferred[bytes]:
        """Send one request; its Deferred fires with the reply payload or fails with
        XenStoreError (refused) or XenStoreUnavailable (connection gone)."""
        if not self.open or self.transport is None:
            return defer.fail(XenStoreUnavailable("not connected to xenstored"))
        req_id = self._allocate_id()
        try:
            message = encode(op, req_id, tx_id, payload)
        except XenStoreError:
            return defer.fail(XenStoreError("E2BIG", path))
        waiting: defer.Deferred[bytes] = defer.Deferred()
        self._pending[req_id] = (op, path, waiting)
        self.transport.write(message)
        return waiting

    def _allocate_id(self) -> int:
        while True:  # uint32, skipping 0 (watch events) and ids still waiting for a reply
            self._next_id = self._next_id % 0xFFFFFFFF + 1
            if self._next_id not in self._pending:
                return self._next_id

    def dataReceived(self, data: bytes) -> None:
        try:
            packets = self._decoder.feed(data)
        except XenStoreProtocolError as error:
            self._drop(error)
            return
        for packet in packets:
            if packet.op == Op.WATCH_EVENT:
                self._event(packet)
            else:
                self._reply(packet)

    def _event(self, packet: Packet) -> None:
        path, _, rest = packet.payload.partition(b"\0")
        token = rest.partition(b"\0")[0]
        try:
            self._on_event(self, path.decode("ascii", "replace"), token.decode("ascii", "replace"))
        except Exception:
            log.failure("a XenStore watch callback failed")

    def _reply(self, packet: Packet) -> None:
        entry = self._pending.pop(packet.req_id, None)
        if entry is None:
            log.warn("xenstored replied to unknown request {req_id}", req_id=packet.req_id)
            return
        op, path, waiting = entry
        if packet.op == Op.ERROR:
            name = packet.payload.partition(b"\0")[0].decode("ascii", "replace")
            waiting.errback(XenStoreError(name or "EINVAL", path))
        elif packet.op != op:
            error = XenStoreProtocolError(f"reply of type {packet.op} to {op.name}")
            self._drop(error)
            waiting.errback(error)
        else:
            waiting.callback(packet.payload)

    def _drop(self, error: Exception) -> None:
        log.error("xenstored connection dropped: {error}", error=error)
        if self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.open = False
        pending, self._pending = self._pending, {}
        for _op, _path, waiting in pending.values():
            waiting.errback(XenStoreUnavailable(f"connection to xenstored lost: {reason.value}"))
