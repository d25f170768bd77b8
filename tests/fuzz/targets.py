"""Fuzz targets: a real Router behind the real RawSocket and WebSocket protocols, the
serializers alone, and the session state machine with fakes.

A target runs one *case* per seed: a few connections opened on one long-lived router, a random
script of handshakes, messages, control frames, garbage, clock jumps, producer pauses and
hang-ups fed to them in random splits, then every connection lost. After each case it checks
what must always hold, and raises ``Crash`` naming the seed otherwise:

- nothing raised out of the protocol, the session or a timer, and nothing was logged as a
  failure (the transport logs a bug of ours as "internal error");
- every byte the router sent parses as the client would parse it;
- with every connection gone, nothing is left: no session, session ID, registration,
  subscription, pending call, testament, connection count or timer (no growth across cases);
- a decoded payload re-encodes within a small factor of its size (no amplification).
"""

from __future__ import annotations

import contextlib
import random
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure

from serouter.auth import AuthPolicy
from serouter.auth.ticket import Ticket, TicketPrincipal
from serouter.core import uris
from serouter.core.access import AllowAll
from serouter.core.dealer import Limits
from serouter.core.ids import IdGenerator
from serouter.core.messages import Outgoing, ProtocolViolation, parse
from serouter.core.peer import TransportInfo
from serouter.core.realm import RealmOptions
from serouter.core.router import Router
from serouter.core.session import Session
from serouter.serializers import BY_NAME, CBOR, JSON, MSGPACK
from serouter.transport import RawSocketFactory, WebSocketFactory
from serouter.transport._base import WampProtocol, WampServerFactory, WriteBatcher
from serouter.transport._flow import ListenerLimits
from tests.fuzz import generate
from tests.fuzz.client_view import ClientView
from tests.fuzz.generate import Seen

SERIALIZERS = ("json", "msgpack", "cbor")
TRANSPORTS = ("rawsocket", "websocket")
MAX_MESSAGE = 1 << 16
# A payload re-encoded in any serializer may grow (JSON escapes a control character in six
# bytes, base64 grows binary by a third), but only by a small factor.
EXPANSION = 8


class Crash(Exception):
    """A case broke an invariant; ``seed`` reproduces it (``python -m tests.fuzz --replay``)."""

    def __init__(self, target: str, seed: int, problem: str) -> None:
        super().__init__(f"{target} seed {seed}: {problem}")
        self.target, self.seed, self.problem = target, seed, problem


@dataclass
class Stats:
    """What a target fed the router so far."""

    cases: int = 0
    messages: int = 0
    bytes: int = 0


class LogWatch:
    """Collects log events that show a bug (failures, critical) while installed."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def __call__(self, event: dict[str, Any]) -> None:
        if "log_failure" in event or str(event.get("log_level", "")).endswith("critical"):
            failure = event.get("log_failure")
            text = failure.getTraceback() if failure is not None else str(event)
            self.problems.append(f"{event.get('log_format')}: {text}")

    def __enter__(self) -> LogWatch:
        globalLogPublisher.addObserver(self)
        return self

    def __exit__(self, *exc: object) -> None:
        globalLogPublisher.removeObserver(self)


class ReactorClock(Clock):
    """task.Clock with the reactor's own check: a negative delay is a bug of the caller."""

    def callLater(self, delay: float, callable: Any, *args: Any, **kw: Any) -> Any:
        assert delay >= 0, f"{delay} is not greater than or equal to 0 seconds"
        return super().callLater(delay, callable, *args, **kw)


def make_router(clock: Clock) -> Router:
    """One realm with small limits (so the fuzzer reaches them), one behind ticket auth."""
    limits = Limits(calls=3, invocations=3, registrations=4, subscriptions=4)
    options = {
        "realm1": RealmOptions(history=("a.b", "com.example.t"), history_limit=4,
                               max_sessions=6, limits=limits),
        "tickets": RealmOptions(max_sessions=2, limits=limits),
    }
    auth = AuthPolicy({"tickets": [Ticket({"alice": TicketPrincipal("alice-ticket", "user")})]})
    return Router(["realm1", "tickets"], AllowAll(), clock, ids=IdGenerator(seed=1), auth=auth,
                  realm_options=options)


def leftovers(router: Router) -> list[str]:
    """What a router still holds although no connection is left (nothing, if all is well)."""
    found = []
    if router.sessions:
        found.append(f"{len(router.sessions)} sessions")
    if router._session_ids:  # the router's record of IDs in use: must empty with sessions
        found.append(f"{len(router._session_ids)} session IDs")
    for name, realm in router.realms.items():
        if realm.sessions:
            found.append(f"{name}: {len(realm.sessions)} joined sessions")
        if realm.dealer.registrations():
            found.append(f"{name}: {len(realm.dealer.registrations())} registrations")
        if realm.dealer.pending_calls:
            found.append(f"{name}: {realm.dealer.pending_calls} pending calls")
        if realm.broker.subscriptions():
            found.append(f"{name}: {len(realm.broker.subscriptions())} subscriptions")
        if realm.meta._testaments:  # per-session testaments: must go with the session
            found.append(f"{name}: testaments of {len(realm.meta._testaments)} sessions")
    return found


# -- a fuzzed connection through the real protocol -------------------------------------------------


@dataclass
class Connection:
    protocol: WampProtocol
    transport: StringTransport
    view: ClientView
    seen: Seen = field(default_factory=Seen)
    opened: bool = False  # our transport handshake was sent
    alive: bool = True
    paused: bool = False


class TransportTarget:
    """RawSocket or WebSocket framing, one serializer, the whole router behind it."""

    def __init__(self, transport: str, serializer: str) -> None:
        self.name = f"{transport}-{serializer}"
        self.transport, self.serializer = transport, serializer
        self.clock = ReactorClock()
        self.router = make_router(self.clock)
        self.stats = Stats()
        batcher = WriteBatcher()
        kind = RawSocketFactory if transport == "rawsocket" else WebSocketFactory
        # two listeners, one per slow-consumer policy; both offer every serializer
        self.factories: list[WampServerFactory] = [
            kind(self.router, self.clock, serializers=[JSON, MSGPACK, CBOR],
                 max_message_size=MAX_MESSAGE, handshake_timeout=5.0, keepalive=(3.0, 2.0),
                 batcher=batcher, listener=f"fuzz-{policy}",
                 limits=ListenerLimits(max_connections=3, max_queued_bytes=1 << 16,
                                       slow_consumer=policy, idle_timeout=30.0))
            for policy in ("drop", "close")
        ]
        self.batcher = batcher

    def run(self, seed: int, rng: random.Random | None = None) -> None:
        """One case, drawn from ``seed`` (or from ``rng``, e.g. Hypothesis'); raises Crash."""
        rng = rng or random.Random(seed)
        conns: list[Connection] = []
        with LogWatch() as watch:
            try:
                conns.extend(self._connect(rng) for _ in range(rng.randint(1, 3)))
                for _ in range(rng.randint(1, 24)):
                    self._step(rng, conns)
                for conn in conns:
                    self._lose(conn)
            except Crash as crash:
                raise Crash(self.name, seed, crash.problem) from None
            except Exception:
                raise Crash(self.name, seed, traceback.format_exc()) from None
            finally:  # even when Hypothesis stops a case half-way: the next starts clean
                for conn in conns:
                    if conn.alive:
                        conn.alive = False
                        conn.protocol.connectionLost(Failure(ConnectionError("case ended")))
        problems = watch.problems + self._invariants()
        self.stats.cases += 1
        if problems:
            raise Crash(self.name, seed, "\n".join(problems))

    def _connect(self, rng: random.Random) -> Connection:
        factory = rng.choice(self.factories)
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 9))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5))
        protocol.makeConnection(transport)
        conn = Connection(protocol, transport, ClientView(self.transport, self.serializer))
        self._after(conn)
        return conn

    def _step(self, rng: random.Random, conns: list[Connection]) -> None:
        live = [c for c in conns if c.alive]
        roll = rng.random()
        if not live or roll < 0.05:
            if len(conns) < 6:
                conns.append(self._connect(rng))
            return
        conn = rng.choice(live)
        if roll < 0.8:
            self._send(rng, conn)
        elif roll < 0.87:
            self.clock.advance(rng.choice((0.01, 0.5, 1.0, 2.5, 6.0, 31.0)))
        elif roll < 0.93:
            conn.paused = not conn.paused  # what Twisted does when the peer stops reading
            if conn.paused:
                conn.protocol.pauseProducing()
            else:
                conn.protocol.resumeProducing()
        elif roll < 0.96:
            self._feed(rng, conn, rng.randbytes(rng.randint(1, 40)))
        else:
            self._lose(conn)
        for other in live:
            self._after(other)

    def _send(self, rng: random.Random, conn: Connection) -> None:
        data = b""
        if not conn.opened:
            conn.opened = True
            if self.transport == "rawsocket":
                data = generate.rawsocket_handshake(rng, self.serializer)
            else:
                data = generate.upgrade_request(rng, self.serializer)
            if rng.random() < 0.3:
                self._feed(rng, conn, data)
                return
        if conn.view.pings and rng.random() < 0.7:  # answer the router's keepalive
            token = conn.view.pings.pop()
            data += (bytes((2,)) + len(token).to_bytes(3, "big") + token
                     if self.transport == "rawsocket" else generate._ws_frame(rng, 0xA, token))
        payload = generate.payload(rng, self.serializer, conn.seen)
        self.stats.messages += 1
        if self.transport == "rawsocket":
            data += generate.rawsocket_frame(rng, payload)
        else:
            data += generate.websocket_frames(rng, self.serializer, payload)
        self._feed(rng, conn, data)

    def _feed(self, rng: random.Random, conn: Connection, data: bytes) -> None:
        self.stats.bytes += len(data)
        for chunk in generate.chunks(rng, data):
            if not conn.alive:
                return
            conn.protocol.dataReceived(chunk)
            self._after(conn)

    def _after(self, conn: Connection) -> None:
        """Read what the router wrote; deliver connectionLost once it hung up, as Twisted
        would."""
        data = conn.transport.value()
        if data:
            conn.transport.clear()
            if conn.alive:
                try:
                    for msg in conn.view.feed(data):
                        conn.seen.note(msg)
                except Exception as e:  # any decoding error: the router sent garbage
                    raise Crash(self.name, -1, f"undecodable output: {e!r}") from None
        if conn.alive and (conn.transport.disconnecting or conn.transport.disconnected):
            self._lose(conn)

    def _lose(self, conn: Connection) -> None:
        if conn.alive:
            conn.alive = False
            conn.protocol.connectionLost(Failure(ConnectionError("fuzz: connection lost")))

    def _invariants(self) -> list[str]:
        found = leftovers(self.router)
        for factory in self.factories:
            if factory.connections:
                found.append(f"{factory.listener}: {factory.connections} connections counted")
        if self.clock.getDelayedCalls():
            calls = self.clock.getDelayedCalls()
            found.append(f"{len(calls)} timers left: {[c.func for c in calls]}")
        if self.batcher.depth or self.batcher.dirty:
            found.append("the write batcher was left dirty")
        return found


# -- the session state machine with fakes ----------------------------------------------------------


class FuzzPeer:
    """A Peer that records what the core sends and, now and then, refuses it (as a transport
    whose peer has a small limit or another serializer would)."""

    REFUSALS = (uris.PAYLOAD_SIZE_EXCEEDED, uris.INVALID_ARGUMENT, uris.NO_AVAILABLE_CALLEE)

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.seen = Seen()
        self.closed = False
        self.refuse = 0.0

    def send(self, message: Outgoing) -> str | None:
        marshalled = message.marshal()  # must never raise
        if self.refuse and self.rng.random() < self.refuse:
            return self.rng.choice(self.REFUSALS)
        self.seen.note(marshalled)
        return None

    def close(self) -> None:
        self.closed = True


class SessionTarget:
    """Random message sequences straight into sessions of one router (no transport)."""

    name = "session"

    def __init__(self) -> None:
        self.clock = ReactorClock()
        self.router = make_router(self.clock)
        self.stats = Stats()

    def run(self, seed: int, rng: random.Random | None = None) -> None:
        rng = rng or random.Random(seed)
        sessions: list[tuple[Session, FuzzPeer]] = []
        with LogWatch() as watch:
            try:
                for _ in range(rng.randint(1, 24)):
                    self._step(rng, sessions)
                for session, peer in sessions:
                    peer.closed = True
                    self.router.close_session(session)
            except Exception:
                raise Crash(self.name, seed, traceback.format_exc()) from None
            finally:  # even when Hypothesis stops a case half-way: the next starts clean
                for session, _peer in sessions:
                    if session in self.router.sessions:
                        self.router.close_session(session)
        problems = watch.problems + leftovers(self.router)
        if self.clock.getDelayedCalls():
            problems.append(f"{len(self.clock.getDelayedCalls())} timers left")
        self.stats.cases += 1
        if problems:
            raise Crash(self.name, seed, "\n".join(problems))

    def _step(self, rng: random.Random, sessions: list[tuple[Session, FuzzPeer]]) -> None:
        live = [(s, p) for s, p in sessions if not p.closed]
        roll = rng.random()
        if not live or (roll < 0.08 and len(sessions) < 6):
            peer = FuzzPeer(rng)
            info = TransportInfo("rawsocket", rng.choice(SERIALIZERS), "fuzz", listener="fuzz")
            sessions.append((self.router.open_session(peer, info), peer))
            return
        session, peer = rng.choice(live)
        if roll < 0.85:
            self.stats.messages += 1
            peer.refuse = 0.1 if rng.random() < 0.1 else 0.0
            raw = generate.message(rng, peer.seen)
            try:
                msg = parse(raw)
            except ProtocolViolation as e:
                session.protocol_violation(str(e))
            else:
                session.receive(msg)
            peer.refuse = 0.0
        elif roll < 0.93:
            self.clock.advance(rng.choice((0.01, 1.0, 6.0, 31.0)))
        elif roll < 0.96:
            session.shutdown()
        else:
            peer.closed = True
        for s, p in sessions:  # the transport closes what the session asked to close
            if p.closed and s in self.router.sessions:
                self.router.close_session(s)


# -- the serializers alone ------------------------------------------------------------------------


class SerializerTarget:
    """Random and spoiled payloads into one serializer; what decodes is parsed and
    re-encoded in every serializer, which must stay within EXPANSION times its size."""

    def __init__(self, serializer: str) -> None:
        self.name = f"serializer-{serializer}"
        self.serializer = BY_NAME[serializer]
        self.stats = Stats()

    def run(self, seed: int, rng: random.Random | None = None) -> None:
        rng = rng or random.Random(seed)
        data = generate.payload(rng, self.serializer.name, Seen(request=rng.randrange(9)))
        for _ in range(rng.choice((0, 0, 1, 2, 4))):
            data = generate.mutate(rng, data)
        self.stats.cases += 1
        self.stats.messages += 1
        self.stats.bytes += len(data)
        started = time.perf_counter()
        try:
            self.check(data, as_text=rng.random() < 0.5)
        except Crash as crash:
            raise Crash(self.name, seed, crash.problem) from None
        except Exception:
            raise Crash(self.name, seed, traceback.format_exc()) from None
        if time.perf_counter() - started > 1.0:
            raise Crash(self.name, seed, f"{len(data)} bytes took over a second")

    def check(self, data: bytes, as_text: bool = False) -> None:
        """Decode as the transport does; what decodes must parse or be refused, and
        re-encode without amplification."""
        raw: bytes | str = data
        if self.serializer is JSON and as_text:
            try:
                raw = data.decode("utf-8")  # a WebSocket text frame arrives as str
            except UnicodeDecodeError:
                raw = data
        try:
            value = self.serializer.loads(raw)
        except Exception:
            return  # refused: answered as a protocol violation by the transport
        with contextlib.suppress(ProtocolViolation):
            parse(value)
        limit = EXPANSION * len(data) + 64
        for other in (JSON, MSGPACK, CBOR):
            try:
                size = len(other._dumps(value))
            except Exception:
                continue
            if size > limit:
                raise Crash(self.name, -1, f"{len(data)} bytes re-encode as {size} in "
                            f"{other.name}: {data[:80]!r}")


# -- registry -------------------------------------------------------------------------------------

Target = TransportTarget | SessionTarget | SerializerTarget


def all_targets() -> dict[str, Callable[[], Target]]:
    """Name -> a constructor, in the order ``make fuzz`` runs them."""
    targets: dict[str, Callable[[], Target]] = {}
    for transport in TRANSPORTS:
        for serializer in SERIALIZERS:
            targets[f"{transport}-{serializer}"] = (
                lambda t=transport, s=serializer: TransportTarget(t, s))
    for serializer in SERIALIZERS:
        targets[f"serializer-{serializer}"] = lambda s=serializer: SerializerTarget(s)
    targets["session"] = SessionTarget
    return targets
