"""The soak run: ``python -m tests.soak`` (``make soak``).

Starts a router and keeps it busy for ``--duration`` seconds (default one hour) with mixed load
over RawSocket and WebSocket: callers keep calls outstanding on a shared registration of two
callees, a publisher publishes to subscribers (exact and prefix), and churning sessions come and
go (join, register, subscribe, add a testament, call, publish, call the meta API, then leave by
GOODBYE, by closing, or by a reset). The router's RSS is sampled every ``--sample`` seconds and
printed with the traffic so far; the run fails if RSS at the end exceeds RSS after the warm-up
by ``--max-growth`` percent (default 5), if any client saw an unexpected answer, or if the
router logged an internal error.

    python -m tests.soak                                # one hour
    python -m tests.soak --duration 300 --sample 10     # a short one
"""

from __future__ import annotations

import argparse
import itertools
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import mean
from typing import Any

from tests.hardening_support import LimitedListener, LimitedRouter, fd_limit
from tests.raw_clients import RawWampClient, WsClient

PROCEDURE, TOPIC = "soak.echo", "soak.topic"


@dataclass
class Counters:
    """Traffic so far, shared by the load threads (each adds to its own fields)."""

    calls: int = 0
    events: int = 0
    published: int = 0
    churned: int = 0
    errors: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(what)


class Load:
    """The load threads against one router, until ``stop`` is set."""

    def __init__(self, router: LimitedRouter, churn_rate: float, window: int,
                 publish_rate: float) -> None:
        self.router = router
        self.churn_rate, self.window, self.publish_rate = churn_rate, window, publish_rate
        self.counters = Counters()
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def connect(self, transport: str, serializer: str) -> RawWampClient | WsClient:
        listener = self.router.listener(transport)
        if transport == "rawsocket":
            return RawWampClient.connect(listener, serializer)
        return WsClient.open(listener, f"wamp.2.{serializer}")

    def start(self) -> None:
        callees = [self.connect("rawsocket", "msgpack"), self.connect("websocket", "cbor")]
        for callee in callees:
            request = callee.next_request()
            callee.send([64, request, {"invoke": "roundrobin"}, PROCEDURE])
            assert callee.recv()[0] == 65
        subscribers = [self.connect("websocket", "json"), self.connect("rawsocket", "cbor")]
        for subscriber, match in zip(subscribers, ("exact", "prefix"), strict=True):
            request = subscriber.next_request()
            uri = TOPIC if match == "exact" else "soak."
            subscriber.send([32, request, {"match": match}, uri])
            assert subscriber.recv()[0] == 33
        callers = [self.connect("websocket", "msgpack"), self.connect("rawsocket", "json")]
        publisher = self.connect("rawsocket", "msgpack")
        jobs: list[tuple[Callable[..., None], Any]] = [
            *((self._callee, c) for c in callees), *((self._subscriber, s) for s in subscribers),
            *((self._caller, c) for c in callers), (self._publisher, publisher),
            (self._churn, None),
        ]
        for job, client in jobs:
            thread = threading.Thread(target=self._guard, args=(job, client), daemon=True)
            thread.start()
            self.threads.append(thread)

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)

    def _guard(self, job: Callable[..., None], client: Any) -> None:
        try:
            job(client) if client is not None else job()
        except Exception as e:
            if not self.stop.is_set():
                self.counters.error(f"{job.__name__}: {e!r}")
        finally:
            if client is not None:
                client.close()

    def _recv(self, client: Any) -> list[Any] | None:
        """The next message, or None if none came within a moment (to look at ``stop``)."""
        client.sock.settimeout(0.5)
        try:
            return client.recv()  # type: ignore[no-any-return]
        except TimeoutError:
            return None

    def _callee(self, client: Any) -> None:
        while not self.stop.is_set():
            message = self._recv(client)
            if message is not None and message[0] == 68:
                client.send([70, message[1], {}, message[4] if len(message) > 4 else []])

    def _subscriber(self, client: Any) -> None:
        while not self.stop.is_set():
            message = self._recv(client)
            if message is not None and message[0] == 36:
                self.counters.events += 1

    def _caller(self, client: Any) -> None:
        for _ in range(self.window):
            client.send([48, client.next_request(), {}, PROCEDURE, ["ping"]])
        while not self.stop.is_set():
            message = self._recv(client)
            if message is None:
                continue
            if message[0] != 50:
                self.counters.error(f"caller got {message!r:.200}")
            self.counters.calls += 1
            client.send([48, client.next_request(), {}, PROCEDURE, ["ping"]])

    def _publisher(self, client: Any) -> None:
        batch = max(1, int(self.publish_rate / 50))
        for n in itertools.count():
            if self.stop.wait(0.02):
                return
            for _ in range(batch):
                client.send([16, client.next_request(), {}, TOPIC, [n, "x" * 100]])
            self.counters.published += batch
            if n % 50 == 0:  # an acknowledged one now and then: the publisher is served
                request = client.next_request()
                client.send([16, request, {"acknowledge": True}, TOPIC, [n]])
                reply = client.recv()
                if reply[:2] != [17, request]:
                    self.counters.error(f"publisher got {reply!r:.200}")

    def _churn(self) -> None:
        kinds = itertools.cycle([("rawsocket", "json"), ("websocket", "msgpack"),
                                 ("rawsocket", "cbor"), ("websocket", "json")])
        for n in itertools.count():
            if self.stop.wait(1.0 / self.churn_rate):
                return
            self._one_churn(n, *next(kinds))
            self.counters.churned += 1

    def _one_churn(self, n: int, transport: str, serializer: str) -> None:
        client = self.connect(transport, serializer)
        steps: list[tuple[int, list[Any]]] = [
            (65, [64, 1, {}, f"soak.churn.n{n}"]),
            (33, [32, 2, {}, TOPIC]),
            (50, [48, 3, {}, "wamp.session.add_testament",
                  [f"soak.testament.n{n}", ["bye", n]]]),
            (50, [48, 4, {}, PROCEDURE, ["churn", n]]),
            (17, [16, 5, {"acknowledge": True}, "soak.churn", [n]]),
            (50, [48, 6, {}, "wamp.session.count"]),
        ]
        for expected, message in steps:
            client.send(message)
            reply = client.recv()
            while reply[0] == 36:  # its own subscription may deliver first
                reply = client.recv()
            if reply[0] != expected:
                self.counters.error(f"churn {n} sent {message[0]}, got {reply!r:.200}")
        if n % 3 == 0:
            client.send([6, {}, "wamp.close.close_realm"])
            reply = client.recv()
            while reply[0] == 36:
                reply = client.recv()
        elif n % 3 == 1:
            client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=3600.0, help="seconds of load")
    parser.add_argument("--sample", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds before the baseline (default: a tenth, 10 s at least)")
    parser.add_argument("--max-growth", type=float, default=5.0, help="percent")
    parser.add_argument("--churn-rate", type=float, default=20.0, help="sessions per second")
    parser.add_argument("--window", type=int, default=16, help="outstanding calls per caller")
    parser.add_argument("--publish-rate", type=float, default=2000.0, help="events per second")
    args = parser.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else max(10.0, args.duration / 10)
    router = LimitedRouter([LimitedListener("rawsocket"), LimitedListener("websocket")],
                           log_level="warn")
    with fd_limit(4096):
        router.start()
    load = Load(router, args.churn_rate, args.window, args.publish_rate)
    samples: list[tuple[float, int]] = []
    started = time.monotonic()
    print(f"soak: {args.duration:.0f} s, sample every {args.sample:.0f} s, baseline after "
          f"{warmup:.0f} s; router pid {router.pid}", flush=True)
    try:
        load.start()
        while (elapsed := time.monotonic() - started) < args.duration:
            time.sleep(min(args.sample, max(0.0, args.duration - elapsed)))
            elapsed = time.monotonic() - started
            rss = router.rss_kib()
            samples.append((elapsed, rss))
            c = load.counters
            print(f"t={elapsed:7.0f} s  RSS {rss / 1024:7.1f} MiB  calls {c.calls:>11,d}  "
                  f"events {c.events:>12,d}  published {c.published:>11,d}  "
                  f"churned {c.churned:>8,d}  errors {len(c.errors)}", flush=True)
            if not router.running:
                load.counters.error("the router exited")
                break
    finally:
        load.join()
        errors = router.internal_errors()
        code = router.stop(timeout=30)
    return verdict(samples, warmup, args.max_growth, counters=load.counters, errors=errors,
                   code=code)


def verdict(samples: list[tuple[float, int]], warmup: float, max_growth: float, *,
            counters: Counters, errors: list[str], code: int | None) -> int:
    """Print the outcome; 0 if memory held and nothing went wrong."""
    after = [rss for t, rss in samples if t >= warmup]
    if len(after) < 2:
        print("too few samples after the warm-up to judge growth")
        return 1
    baseline, end = mean(after[:3]), mean(after[-3:])
    growth = (end / baseline - 1) * 100
    print(f"RSS after warm-up {baseline / 1024:.1f} MiB, at the end {end / 1024:.1f} MiB "
          f"({growth:+.1f}%), peak {max(after) / 1024:.1f} MiB; {counters.calls:,d} calls, "
          f"{counters.events:,d} events delivered, {counters.churned:,d} sessions churned")
    failed = growth >= max_growth or counters.errors or errors or code != 0
    for problem in [*counters.errors, *errors]:
        print(f"  problem: {problem}")
    if code != 0:
        print(f"  router exit code {code}")
    print("FAILED" if failed else "ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
