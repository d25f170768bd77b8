"""The load generator: scenarios, the session drivers, and one measurement run.

All sessions of a run live in this one process and one thread, driven by a ``selectors`` loop.
Each driver answers a whole received batch with one ``send``; request IDs and send times are
the only per-message state. The generator measures its own CPU too: it must stay well below the
router's, or the router's figures would be limited by the generator rather than by the router.
"""

from __future__ import annotations

import gc
import math
import selectors
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from bench.peer import Peer, Target, connect, describe
from bench.procstat import machine_busy_seconds, own_cpu_seconds
from bench.wire import BenchError, Codec, FramedTemplate

CALL, RESULT, REGISTER, REGISTERED, INVOCATION, YIELD = 48, 50, 64, 65, 68, 70
PUBLISH, SUBSCRIBE, SUBSCRIBED, EVENT = 16, 32, 33, 36
PROCEDURE = "bench.echo"
TOPIC = "bench.topic"
PAYLOAD = "x" * 40  # a string, so that every serializer (JSON too) carries it the same way
SETUP_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Scenario:
    """One benchmark scenario; ``target_us`` is the router CPU budget per operation (msgpack)."""

    name: str
    kind: Literal["rpc", "pubsub"]
    transport: Literal["rawsocket", "websocket"]
    sessions: int  # callers or subscribers
    window: int  # calls outstanding per caller, or publications ahead of the slowest subscriber
    description: str
    target_us: float | None = None


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("rpc-rawsocket", "rpc", "rawsocket", 4, 64,
                 "4 callers x 64 outstanding calls to one callee", 25.0),
        Scenario("rpc-websocket", "rpc", "websocket", 4, 64,
                 "4 callers x 64 outstanding calls to one callee", 30.0),
        Scenario("pubsub-rawsocket", "pubsub", "rawsocket", 4, 256,
                 "1 publisher, 4 subscribers; ops = delivered events", 8.0),
        Scenario("pubsub-websocket", "pubsub", "websocket", 4, 256,
                 "1 publisher, 4 subscribers; ops = delivered events", 8.0),
        Scenario("latency-rawsocket", "rpc", "rawsocket", 1, 1,
                 "1 caller, exactly 1 call outstanding (unloaded latency)"),
        Scenario("latency-websocket", "rpc", "websocket", 1, 1,
                 "1 caller, exactly 1 call outstanding (unloaded latency)"),
    )
}  # fmt: skip


@dataclass(slots=True)
class Stats:
    """Counters shared by a run's drivers; latencies are kept only while ``recording``."""

    ops: int = 0
    recording: bool = False
    latencies: list[float] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Measurement:
    """What one run measured inside its window (CPU figures in seconds)."""

    ops: int
    seconds: float
    latencies: list[float]
    router_cpu: float | None  # None if the router's process is unknown
    generator_cpu: float
    machine_busy: float  # all CPUs, everything: what is neither router nor generator is noise
    warnings: list[str]

    def figures(self) -> dict[str, float | None]:
        """The reported figures: rates, latency percentiles (ms), CPU per op (µs) and load (%)."""
        ops, secs, router = max(self.ops, 1), self.seconds, self.router_cpu
        other = self.machine_busy - self.generator_cpu - (router or 0.0)
        return {
            "ops_per_s": self.ops / secs,
            "p50_ms": percentile(self.latencies, 0.50) * 1e3,
            "p99_ms": percentile(self.latencies, 0.99) * 1e3,
            "router_us_per_op": None if router is None else router / ops * 1e6,
            "router_cpu_pct": None if router is None else router / secs * 100,
            "gen_us_per_op": self.generator_cpu / ops * 1e6,
            "gen_cpu_pct": self.generator_cpu / secs * 100,
            "other_cpu_pct": max(other, 0.0) / secs * 100 if router is not None else None,
        }


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (NaN when empty)."""
    if not sorted_values:
        return math.nan
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


# --- drivers: one per session, each handles what its socket delivers ----------------------


class Callee:
    """Registers the procedure and answers each INVOCATION with a YIELD echoing its args."""

    def __init__(self, peer: Peer, procedure: str = PROCEDURE) -> None:
        self.peer = peer
        self.procedure = procedure
        self.registration = 0
        self._args = [PAYLOAD]
        self._yield = FramedTemplate(peer.codec, peer.framing, [YIELD, 0, {}, self._args])

    def setup(self) -> None:
        self.peer.send_now([REGISTER, self.peer.request_id(), {}, self.procedure])
        self.registration = self.peer.expect(REGISTERED, SETUP_TIMEOUT, "REGISTERED")[2]

    def handle(self, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self.peer.flush()
        if mask & selectors.EVENT_READ:
            self.answer(self.peer.read())

    def answer(self, messages: list[Any]) -> None:
        if not messages:
            return
        args = self._args
        for m in messages:
            if m[0] != INVOCATION or len(m) != 5 or m[4] != args:
                self._answer_slowly(messages)
                return
        # The usual case: every INVOCATION carried our args, so the packed YIELD echoes them.
        self.peer.write(self._yield.frames([m[1] for m in messages]))

    def _answer_slowly(self, messages: list[Any]) -> None:
        frame, dumps = self.peer.framing.frame, self.peer.codec.dumps
        out = []
        for m in messages:
            if m[0] != INVOCATION:
                raise BenchError(describe(self.peer.name, m))
            out.append(frame(dumps([YIELD, m[1], {}, *m[4:6]])))
        self.peer.write(b"".join(out))


class Caller:
    """Keeps ``window`` calls outstanding; latency is CALL sent -> RESULT received. With
    ``think`` (seconds), it sleeps that long after each read before it calls again."""

    def __init__(self, peer: Peer, stats: Stats, window: int, think: float = 0.0) -> None:
        self.peer = peer
        self.stats = stats
        self.window = window
        self.think = think
        self.active = True
        self.pending: dict[int, float] = {}
        self._call = FramedTemplate(peer.codec, peer.framing, [CALL, 0, {}, PROCEDURE, [PAYLOAD]])

    def start(self) -> None:
        self.issue(self.window)

    def handle(self, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self.peer.flush()
        if not mask & selectors.EVENT_READ:
            return
        messages = self.peer.read()
        now = time.perf_counter()
        pending, stats = self.pending, self.stats
        latencies = stats.latencies if stats.recording else None
        for m in messages:
            sent = pending.pop(m[1], None) if m[0] == RESULT else None
            if sent is None:
                raise BenchError(describe(self.peer.name, m))
            if latencies is not None:
                latencies.append(now - sent)
        stats.ops += len(messages)
        if self.active and messages:
            if self.think:
                time.sleep(self.think)
            self.issue(len(messages))

    def issue(self, count: int) -> None:
        ids = self.peer.request_ids(count)
        data = self._call.frames(ids)
        self.pending.update(dict.fromkeys(ids, time.perf_counter()))
        self.peer.write(data)


class Subscriber:
    """Subscribes to the topic and counts events; latency is PUBLISH sent -> EVENT received."""

    def __init__(self, peer: Peer, stats: Stats) -> None:
        self.peer = peer
        self.stats = stats
        self.received = 0
        self.on_progress: Callable[[], None] = lambda: None

    def setup(self) -> None:
        self.peer.send_now([SUBSCRIBE, self.peer.request_id(), {}, TOPIC])
        self.peer.expect(SUBSCRIBED, SETUP_TIMEOUT, "SUBSCRIBED")

    def handle(self, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self.peer.flush()
        if mask & selectors.EVENT_READ:
            self.take(self.peer.read())

    def take(self, messages: list[Any]) -> None:
        now = time.perf_counter()
        stats = self.stats
        latencies = stats.latencies if stats.recording else None
        for m in messages:
            try:
                if m[0] != EVENT:
                    raise BenchError(describe(self.peer.name, m))
                if latencies is not None:
                    latencies.append(now - m[4][0])
            except (IndexError, TypeError, KeyError):
                raise BenchError(f"{self.peer.name}: malformed EVENT {m!r:.300}") from None
        self.received += len(messages)
        stats.ops += len(messages)
        self.on_progress()


class Publisher:
    """Publishes (no acknowledge) while it is less than ``window`` ahead of every subscriber.

    Each event carries the time its PUBLISH was sent (``time.perf_counter()``, one value per
    batch) as its first argument: the subscribers live in this process and read the same clock.
    """

    def __init__(self, peer: Peer, subscribers: list[Subscriber], window: int) -> None:
        self.peer = peer
        self.subscribers = subscribers
        self.window = window
        self.active = True
        self.published = 0

    def handle(self, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self.peer.flush()
        if mask & selectors.EVENT_READ:
            for m in self.peer.read():  # no acknowledge asked: anything here is an error
                raise BenchError(describe(self.peer.name, m))

    def pump(self) -> None:
        room = self.window - (self.published - min(s.received for s in self.subscribers))
        if room <= 0 or not self.active:
            return
        message = [PUBLISH, 0, {}, TOPIC, [time.perf_counter(), PAYLOAD]]
        publish = FramedTemplate(self.peer.codec, self.peer.framing, message)
        self.peer.write(publish.frames(self.peer.request_ids(room)))
        self.published += room


# --- one run --------------------------------------------------------------------------------


class Run:
    """The sessions of one run of a scenario, from connect to GOODBYE."""

    def __init__(self, scenario: Scenario, target: Target, codec: Codec) -> None:
        self.scenario = scenario
        self.stats = Stats()
        self.selector = selectors.DefaultSelector()
        self.peers: list[Peer] = []
        self.callers: list[Caller] = []
        self.subscribers: list[Subscriber] = []
        self.publisher: Publisher | None = None
        self.callee: Callee | None = None
        self.warnings: list[str] = []
        self._target, self._codec = target, codec

    def _peer(self, name: str) -> Peer:
        peer = connect(self._target, self.scenario.transport, self._codec, name, SETUP_TIMEOUT)
        self.peers.append(peer)
        peer.join(self._target.realm, SETUP_TIMEOUT)
        return peer

    def setup(self) -> None:
        """Connect and join every session, then REGISTER or SUBSCRIBE (blocking)."""
        sc = self.scenario
        if sc.kind == "rpc":
            self.callee = Callee(self._peer("callee"))
            self.callee.setup()
            self.callers = [
                Caller(self._peer(f"caller{i}"), self.stats, sc.window) for i in range(sc.sessions)
            ]
        else:
            self.subscribers = [
                Subscriber(self._peer(f"subscriber{i}"), self.stats) for i in range(sc.sessions)
            ]
            for s in self.subscribers:
                s.setup()
            self.publisher = Publisher(self._peer("publisher"), self.subscribers, sc.window)
            for s in self.subscribers:
                s.on_progress = self.publisher.pump
        self._attach_all()

    def _attach_all(self) -> None:
        drivers: list[Caller | Callee | Subscriber | Publisher] = [*self.callers, *self.subscribers]
        drivers += [d for d in (self.callee, self.publisher) if d is not None]
        for d in drivers:
            queued = d.peer.take_queued()
            d.peer.attach(self.selector, d.handle)
            if queued:
                raise BenchError(describe(d.peer.name, queued[0]) + " (before the load started)")

    def start(self) -> None:
        for c in self.callers:
            c.start()
        if self.publisher is not None:
            self.publisher.pump()

    def outstanding(self) -> int:
        """Calls not yet answered, or events not yet delivered to some subscriber."""
        if self.publisher is not None:
            return sum(self.publisher.published - s.received for s in self.subscribers)
        return sum(len(c.pending) for c in self.callers)

    def loop(self, seconds: float, stall_timeout: float, until_idle: bool = False) -> None:
        """Drive the sockets for ``seconds`` (or until nothing is outstanding if ``until_idle``)."""
        select, stats = self.selector.select, self.stats
        now = time.perf_counter()
        deadline, last_ops, last_progress = now + seconds, stats.ops, now
        while now < deadline and not (until_idle and self.outstanding() == 0):
            for key, mask in select(min(deadline - now, 0.25)):
                key.data(mask)
            now = time.perf_counter()
            if stats.ops != last_ops:
                last_ops, last_progress = stats.ops, now
            elif now - last_progress > stall_timeout:
                raise BenchError(self.stall_report(now - last_progress))

    def stall_report(self, idle: float) -> str:
        sc = self.scenario
        if self.publisher is not None:
            got = ", ".join(f"{s.peer.name}={s.received}" for s in self.subscribers)
            state = f"published {self.publisher.published}, received {got}"
        else:
            state = ", ".join(
                f"{c.peer.name}: {len(c.pending)} calls outstanding "
                f"(oldest request {min(c.pending, default=None)})"
                for c in self.callers
            )
        return f"{sc.name}: the router made no progress for {idle:.1f} s; {state}"

    def stop(self, drain_timeout: float) -> None:
        """Stop issuing, wait for what is outstanding, then GOODBYE every session."""
        for c in self.callers:
            c.active = False
        if self.publisher is not None:
            self.publisher.active = False
        self.loop(drain_timeout, drain_timeout + 1, until_idle=True)
        if self.outstanding():
            self.warnings.append(
                f"{self.scenario.name}: {self.outstanding()} calls/events still "
                f"outstanding {drain_timeout} s after the load stopped"
            )
        for peer in self.peers[::-1]:  # the callee last: calls still queued find it there
            late = peer.leave(SETUP_TIMEOUT)
            if late:
                counts = Counter(late)
                self.warnings.append(
                    f"{peer.name}: after our GOODBYE, before the router's: "
                    + "; ".join(f"{n} x {what}" for what, n in counts.items())
                )

    def close(self) -> None:
        for peer in self.peers:
            peer.close()
        self.selector.close()


def measure(
    scenario: Scenario,
    target: Target,
    codec: Codec,
    *,
    warmup: float,
    duration: float,
    router_cpu: Callable[[], float] | None,
    stall_timeout: float = 5.0,
) -> Measurement:
    """Run ``scenario`` once: set up, warm up, measure for ``duration``, drain and say GOODBYE."""
    run = Run(scenario, target, codec)
    gc.collect()
    gc.disable()  # the drivers make no cycles; a collection would only add noise
    try:
        run.setup()
        run.start()
        run.loop(warmup, stall_timeout)
        start = _Snapshot.take(run, router_cpu)
        run.stats.recording = True
        run.loop(duration, stall_timeout)
        run.stats.recording = False
        end = _Snapshot.take(run, router_cpu)
        run.stop(drain_timeout=stall_timeout)
    finally:
        gc.enable()
        run.close()
    if end.ops == start.ops:
        raise BenchError(f"{scenario.name}: no operation completed in the measurement window")
    return Measurement(
        ops=end.ops - start.ops,
        seconds=end.time - start.time,
        latencies=sorted(run.stats.latencies),
        router_cpu=None
        if end.router is None or start.router is None
        else end.router - start.router,
        generator_cpu=end.own - start.own,
        machine_busy=end.machine - start.machine,
        warnings=run.warnings,
    )


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """Counters at one edge of the measurement window."""

    time: float
    ops: int
    router: float | None
    own: float
    machine: float

    @classmethod
    def take(cls, run: Run, router_cpu: Callable[[], float] | None) -> _Snapshot:
        router = None if router_cpu is None else router_cpu()
        return cls(
            time.perf_counter(), run.stats.ops, router, own_cpu_seconds(), machine_busy_seconds()
        )


__all__ = ["SCENARIOS", "Measurement", "Scenario", "measure"]
