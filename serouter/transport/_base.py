"""What every WAMP transport protocol shares: payload -> message -> session, and back.

Subclasses do the framing; this class owns the session, turns payloads into parsed messages,
answers malformed input as a protocol violation, enforces the handshake timeout, and tells the
router when the connection is gone. It implements the core's ``Peer`` interface.
"""

from __future__ import annotations

import socket
import struct
from time import perf_counter
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.serialization import Encoding
from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import IDelayedCall, IReactorTime, ISSLTransport
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from serouter.core import uris
from serouter.core.messages import CALL, RESULT, Outgoing, ProtocolViolation, parse
from serouter.core.peer import TransportInfo
from serouter.serializers import Serializer
from serouter.transport._flow import REFUSED_URI, SEND, ListenerLimits, Outflow, Verdict

if TYPE_CHECKING:
    from serouter.core.router import Router
    from serouter.core.session import Session
    from serouter.observability import Counters

log = Logger(namespace="serouter.transport")

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid

# Metrics (serouter.observability): messages are counted in lists indexed by their type code
# (one byte in WAMP), and one CALL in CALL_SAMPLE is timed until its RESULT: those whose
# request id is a multiple of it (clients count request ids up), so no state decides.
MESSAGE_CODES = 256
CALL_SAMPLE = 64
_SAMPLE_MASK = CALL_SAMPLE - 1
_TIMED_MOST = 64  # sampled calls awaiting their RESULT; more means ERRORs: start over
# TCP keepalive on every TCP connection: a peer whose host vanished without a FIN (half-open)
# is found by the kernel after about 60 + 3 x 10 s even where the WAMP-level keepalive is off
# (RawSocket's default). Probes are answered by the peer's kernel, so a stalled application
# is the WAMP keepalive's or the idle timeout's business, not this one's.
_TCP_KEEPALIVE = ((socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
                  (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 60),
                  (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10),
                  (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3))


def write_through(transport: Any, data: bytes) -> None:
    """Send ``data`` now if the connection has nothing queued, else queue it behind.

    Twisted's ``write`` only queues: the bytes leave on the reactor's next turn, which costs
    one more poll, two ``epoll_ctl`` calls and the reactor's own bookkeeping, about a third of
    the router's CPU for a lone call (bench/README.md, "Writing through"). When the queue is
    empty, sending at once keeps the order and skips that turn; whatever the socket does not
    take, and every error, goes to ``write`` as before (so Twisted notices a lost connection
    the usual way). Only for Twisted's own descriptors (TCP, Unix, Argo) with no TLS layer.

    Callers use it for a lone message (one frame in a batch, or a write outside input
    handling); a batch of several means a busy connection, where waiting for the turn lets
    frames from other reads join the same ``send``, which costs less per message under load.
    """
    if (
        isinstance(transport, FileDescriptor)
        and not transport._tempDataLen
        and transport.offset == len(transport.dataBuffer)
        and transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnected
        and not getattr(transport, "TLS", False)
    ):
        sent = transport.writeSomeData(data)
        if type(sent) is int and sent > 0:
            if sent == len(data):
                return
            data = data[sent:]
    transport.write(data)


class WriteBatcher:
    """Coalesces writes while input is handled: one ``transport.write`` per connection per batch.

    A read often carries dozens of messages, each producing a frame for some connection;
    Twisted's write path costs a microsecond or two per call, so frames are collected while
    the outermost ``dataReceived`` runs and each connection's are written joined when it
    returns. Writes outside input handling (timers, shutdown) go out at once. One batcher is
    shared by every listener of a router, since a call on one connection writes on another.
    """

    __slots__ = ("depth", "dirty")

    def __init__(self) -> None:
        self.depth = 0
        self.dirty: list[WampProtocol] = []

    def flush(self) -> None:
        while self.dirty:
            dirty, self.dirty = self.dirty, []
            for protocol in dirty:
                protocol.flush_writes()


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
        keepalive: tuple[float, float] = (0.0, 0.0),
        listener: str = "",
        batcher: WriteBatcher | None = None,
        label: str | None = None,
        read_peer_context: bool = False,
        limits: ListenerLimits | None = None,
        counters: Counters | None = None,
    ) -> None:
        self.limits = limits or ListenerLimits()
        # metrics (serouter.observability): messages by type code, in plain lists of ints
        self.counters = counters
        self.received = counters.received if counters is not None else [0] * MESSAGE_CODES
        self.sent = counters.sent if counters is not None else [0] * MESSAGE_CODES
        self.connections = 0
        # read_peer_context: read SO_PEERSEC from Unix peers; set only when SELinux is enabled
        # (on an AppArmor host the same option returns an AppArmor label).
        self.label = label
        self.read_peer_context = read_peer_context
        self.batcher = batcher or WriteBatcher()
        self.router = router
        self.clock = clock
        self.serializers = serializers
        self.max_message_size = max_message_size
        self.handshake_timeout = handshake_timeout
        self.ping_interval, self.ping_timeout = keepalive  # interval 0: no keepalive
        self.listener = listener


class WampProtocol(Protocol):
    """Base of the RawSocket and WebSocket server protocols (one per connection)."""

    factory: WampServerFactory

    def __init__(self) -> None:
        self.session: Session | None = None
        self.serializer: Serializer | None = None
        self._timer: IDelayedCall | None = None  # the handshake timeout
        self._keepalive: IDelayedCall | None = None
        self._heard = False  # anything received since the last keepalive ping
        self._closing = False
        self._max_out = 0  # the largest message the peer accepts, known after the handshake
        self._writes: list[bytes] = []
        self._active = False  # a WAMP message arrived since the last idle check
        self._idle: IDelayedCall | None = None
        self._counted = False
        self._producing = False  # registered as the transport's producer

    # -- Twisted callbacks ---------------------------------------------------------------

    def connectionMade(self) -> None:
        factory = self.factory
        self._rx, self._tx = factory.received, factory.sent
        self._timed: dict[int, float] = {}  # request -> when, of the CALLs sampled for latency
        if factory.connections >= factory.limits.max_connections:
            log.info("refused {peer}: the listener has its maximum of {n} connections",
                     peer=self._peer_string(), n=factory.limits.max_connections)
            self.refuse_connection()
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        factory.connections += 1
        self._counted = True
        self.outflow = Outflow(factory.limits)
        self.transport.registerProducer(self, True)  # type: ignore[union-attr]
        self._producing = True
        handle = getattr(self.transport, "getHandle", lambda: None)()
        if isinstance(handle, socket.socket) and handle.family in (socket.AF_INET, socket.AF_INET6):
            handle.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for level, option, value in _TCP_KEEPALIVE:
                handle.setsockopt(level, option, value)
        self._timer = self.factory.clock.callLater(
            self.factory.handshake_timeout, self._handshake_timed_out
        )

    def dataReceived(self, data: bytes) -> None:
        if not self._counted:
            return  # refused: over the connection limit, closing
        self._heard = True
        batcher = self.factory.batcher
        batcher.depth += 1
        try:
            self.frames_received(data)
        finally:
            batcher.depth -= 1
            if not batcher.depth and batcher.dirty:
                batcher.flush()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._counted:
            self._counted = False
            self.factory.connections -= 1
        self._writes.clear()
        self._cancel_timer()
        self._stop_keepalive()
        self._stop_idle()
        if self.session is not None:
            session, self.session = self.session, None
            self.factory.router.close_session(session)

    # -- for subclasses -------------------------------------------------------------------

    def frames_received(self, data: bytes) -> None:
        """Bytes from the peer (subclasses: the framing)."""
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        """Every write goes through here, so batched frames keep their order."""
        batcher = self.factory.batcher
        if batcher.depth:
            if not self._writes:
                batcher.dirty.append(self)
            self._writes.append(data)
        else:
            write_through(self.transport, data)

    def flush_writes(self) -> None:
        writes, self._writes = self._writes, []
        if len(writes) == 1:
            write_through(self.transport, writes[0])
        elif writes:  # a busy connection: Twisted's turn may join more into one send
            self.transport.write(b"".join(writes))  # type: ignore[union-attr]

    def start_session(
        self, serializer: Serializer, kind: str, extra: dict[str, str], max_out: int
    ) -> None:
        """The transport handshake is done: open the WAMP session."""
        self._max_out = max_out
        self.serializer = serializer
        self._decode = serializer.loads
        self.transport_serializer = serializer.name
        self.session = self.factory.router.open_session(self, self._transport_info(kind, extra))

    def payload_received(self, payload: bytes | str) -> None:
        """One complete WAMP message arrived."""
        session = self.session
        if session is None:
            return
        self._active = True
        try:
            raw = self._decode(payload)
            msg = parse(raw)
        except ProtocolViolation as e:
            session.protocol_violation(str(e))
            return
        except Exception as e:  # each codec has its own errors: all mean a malformed payload
            session.protocol_violation(f"invalid {self.transport_serializer} payload: {e}")
            return
        code = raw[0]  # parse took it: an int, the message's TYPE (cheaper to read here)
        self._rx[code] += 1
        if code == CALL and not msg.request & _SAMPLE_MASK:  # type: ignore[union-attr]
            self._time_call(msg.request)  # type: ignore[union-attr]
        try:
            session.receive(msg)
        except Exception:
            # A bug of ours: drop this connection, keep serving everyone else.
            log.failure("internal error handling {msg!r}", msg=type(msg).__name__)
            self.close()
            return
        if self._timer is not None and session.is_open:
            self._cancel_timer()
            self._start_keepalive()
            self._start_idle()

    def send_payload(self, data: bytes) -> None:
        """Frame and write one serialized message."""
        raise NotImplementedError

    # -- the core's Peer interface --------------------------------------------------------

    def send(self, message: Outgoing) -> str | None:
        if self._closing:
            return None  # going away: nobody waits for an answer about this
        assert self.serializer is not None
        try:
            data = self.serializer.encode(message)
        except Exception as e:  # the payload has no form in this peer's serialization
            log.info("not sent: a {type} has no {ser} form: {error}",
                     type=type(message).__name__, ser=self.serializer.name, error=str(e))
            return uris.INVALID_ARGUMENT
        if len(data) > self._max_out:
            log.info(
                "not sent: a {type} of {size} bytes is over {peer}'s limit of {limit}",
                type=type(message).__name__, size=len(data), peer=self._peer_string(),
                limit=self._max_out,
            )
            return uris.PAYLOAD_SIZE_EXCEEDED
        if self.outflow.paused:
            verdict = self.outflow.judge(message, len(data))
            if verdict is not SEND:
                return self._over_limit(message, verdict)
        code = message.TYPE
        self._tx[code] += 1
        if code == RESULT and not message.request & _SAMPLE_MASK:  # type: ignore[union-attr]
            self._result_sent(message.request)  # type: ignore[union-attr]
        self.send_payload(data)
        return None

    def _time_call(self, request: int) -> None:
        """A sampled CALL arrived: its RESULT will tell how long the router took."""
        if self.factory.counters is not None:
            if len(self._timed) >= _TIMED_MOST:
                self._timed.clear()
            self._timed[request] = perf_counter()

    def _result_sent(self, request: int) -> None:
        """The RESULT of a sampled CALL: how long the router took, if it was timed."""
        started = self._timed.pop(request, None)
        if started is not None:
            assert self.factory.counters is not None  # only counted calls are timed
            self.factory.counters.observe_call(perf_counter() - started)

    def _over_limit(self, message: Outgoing, verdict: Verdict) -> str | None:
        """The peer is not reading and its queue is full: the listener's policy."""
        if verdict is Verdict.DROP:
            if self.outflow.dropped == 1:
                log.warn("slow consumer {peer}: dropping its events until it catches up",
                         peer=self._peer_string())
            return None
        if verdict is Verdict.REFUSE:
            return REFUSED_URI
        self._does_not_read(type(message).__name__)
        return None

    def write_reply(self, data: bytes) -> None:
        """Write what the codec owes the peer (pongs, close frames, handshake replies).

        These bypass ``send``, so while the peer does not read they count against
        ``max_queued_bytes`` here: a peer that pings without reading is closed rather than
        answered with pongs without bound.
        """
        if self._closing:
            return  # nobody waits for a pong from a connection we are dropping
        outflow = self.outflow
        if outflow.paused:
            if outflow.queued + len(data) > outflow.limits.max_queued_bytes:
                self._does_not_read("pong")
                return
            outflow.queued += len(data)
        self.write(data)

    def _does_not_read(self, kind: str) -> None:
        log.warn("closing {peer}: it does not read ({kind} over {limit} queued bytes)",
                 peer=self._peer_string(), kind=kind, limit=self.factory.limits.max_queued_bytes)
        self._closing = True
        self._unregister()
        self.transport.abortConnection()  # type: ignore[union-attr]

    # -- IPushProducer: the transport tells us when the peer stops and resumes reading ----

    def pauseProducing(self) -> None:
        self.outflow.pause()

    def resumeProducing(self) -> None:
        dropped = self.outflow.resume()
        if dropped:
            log.warn("slow consumer {peer} caught up: {n} events were dropped for it",
                     peer=self._peer_string(), n=dropped)

    def stopProducing(self) -> None:
        pass

    def refuse_connection(self) -> None:
        """Tell a peer over the connection limit (subclasses: in their handshake's terms)."""

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._cancel_timer()
            self._stop_keepalive()
            self._stop_idle()
            self.close_transport()

    def close_transport(self) -> None:
        """Close after flushing (subclasses may send a close frame first)."""
        self.lose_connection()

    def lose_connection(self) -> None:
        """Write what is batched for this connection, then close it."""
        self.flush_writes()
        self._unregister()
        self.transport.loseConnection()  # type: ignore[union-attr]

    def _unregister(self) -> None:
        # A transport with a registered producer waits for it before closing (TLS does).
        if self._producing:
            self._producing = False
            self.transport.unregisterProducer()  # type: ignore[union-attr]

    # -- helpers ------------------------------------------------------------------------------

    def _handshake_timed_out(self) -> None:
        self._timer = None
        log.info("handshake timeout: closing {peer}", peer=self._peer_string())
        self.transport.abortConnection()  # type: ignore[union-attr]

    def send_ping(self, payload: bytes = b"") -> None:
        """A transport-level ping (subclasses: the framing)."""
        raise NotImplementedError

    def _start_keepalive(self) -> None:
        if self.factory.ping_interval > 0 and self._keepalive is None:
            self._keepalive = self.factory.clock.callLater(self.factory.ping_interval, self._ping)

    def _ping(self) -> None:
        self._heard = False
        self.send_ping(b"serouter")
        self._keepalive = self.factory.clock.callLater(self.factory.ping_timeout, self._check)

    def _check(self) -> None:
        """A peer that sent nothing at all since the ping (no pong either) is gone."""
        if not self._heard:
            self._keepalive = None
            log.info("keepalive: no answer from {peer} within {timeout} s: closing",
                     peer=self._peer_string(), timeout=self.factory.ping_timeout)
            self.transport.abortConnection()  # type: ignore[union-attr]
            return
        rest = max(self.factory.ping_interval - self.factory.ping_timeout, 0.0)
        self._keepalive = self.factory.clock.callLater(rest, self._ping)

    def _start_idle(self) -> None:
        if self.factory.limits.idle_timeout > 0 and self._idle is None:
            self._active = False
            self._idle = self.factory.clock.callLater(
                self.factory.limits.idle_timeout, self._idle_check
            )

    def _idle_check(self) -> None:
        self._idle = None
        session = self.session
        if self._active or session is None:
            self._start_idle()
            return
        log.info("idle timeout: closing {peer} after {t} s without a message",
                 peer=self._peer_string(), t=self.factory.limits.idle_timeout)
        session.shutdown(uris.CLOSE_IDLE)
        self.close()

    def _stop_idle(self) -> None:
        if self._idle is not None:
            if self._idle.active():
                self._idle.cancel()
            self._idle = None

    def _stop_keepalive(self) -> None:
        if self._keepalive is not None:
            if self._keepalive.active():
                self._keepalive.cancel()
            self._keepalive = None

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
        context = None
        handle = getattr(self.transport, "getHandle", lambda: None)()
        if isinstance(handle, socket.socket) and handle.family == socket.AF_UNIX:
            # The kernel vouches for these: they may feed labels and authids.
            pid, uid, gid = _PEERCRED.unpack(
                handle.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
            )
            if self.factory.read_peer_context:
                context = _peer_context(handle)
        secure = ISSLTransport.providedBy(self.transport)
        # Argo (serouter.argo): the domain id Xen stamped, named by dom0's XenStore
        domain = getattr(self.transport, "peer_domain", None)
        return TransportInfo(
            kind=kind,
            serializer=self.serializer.name,
            peer=self._peer_string(),
            listener=self.factory.listener,
            secure=secure,
            peer_uid=uid,
            peer_gid=gid,
            peer_pid=pid,
            peer_context=context,
            peer_certificate=_peer_certificate(self.transport) if secure else None,
            listener_label=self.factory.label,
            peer_domain=None if domain is None else domain.domid,
            peer_domain_name=None if domain is None else domain.name,
            peer_domain_uuid=None if domain is None else domain.uuid,
            extra=extra,
        )


def _peer_certificate(transport: Any) -> bytes | None:
    """The TLS peer's certificate as DER, or None when the peer presented none.

    Only listeners with a configured CA ask for one, and their TLS layer verifies it against
    that CA before any byte reaches us.
    """
    certificate = transport.getPeerCertificate()
    if certificate is None:
        return None
    return certificate.to_cryptography().public_bytes(Encoding.DER)  # type: ignore[no-any-return]


def _peer_context(handle: socket.socket) -> str | None:
    """The peer's SELinux context (SO_PEERSEC), or None where the kernel has none to give."""
    try:
        raw = handle.getsockopt(socket.SOL_SOCKET, socket.SO_PEERSEC, 256)
    except OSError:  # ENOPROTOOPT without SELinux
        return None
    context = raw.rstrip(b"\0").decode("ascii", errors="replace")
    return context or None
