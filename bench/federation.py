"""``python -m bench.federation``: what federation costs, measured on processes.

Starts a name server and two routers, A and B (static discovery, loopback, msgpack), and
places them on the machine's two CPUs by ``--topology``:

- ``vm`` (the default): each CPU is one VM, as in a deployment. CPU 0 is VM A: router A and its
  callers, and the callee of a local call. CPU 1 is VM B: router B and the callee of a remote
  call. The callee runs in a process of its own (``--serve-callee``), pinned to its VM's CPU.
- ``shared``: both routers (and the name server) on CPU 0, the generator with the callers and
  every callee on CPU 1. No deployment looks like this (A and B take turns on one core and
  evict each other's caches), but it measures how much router CPU a call costs each router.
- ``one``: every process on CPU 0. With one call in flight the processes only take turns, so
  one CPU loses no parallelism; what it removes is the wake-up of another CPU (an
  inter-processor interrupt, dear in a virtual machine) and the idle CPU a router's pass wakes
  up on. It isolates what the software costs from what crossing CPUs costs.

Then it measures:

- ``local-latency`` / ``remote-latency``: one caller on A, exactly one call outstanding, the
  callee on A (local) or on B (remote: A's proxy forwards to B). Target: remote p50 <= 2x local.
  With one call in flight, latency is the sum of every process's work along the way: see
  docs/federation.md for how the two topologies differ.
- ``paired-latency``: one caller on A alternates a local and a remote call, one at a time, each
  to a callee of its own (procedures ``bench.echo.a`` on A, ``bench.echo.b`` on B). Both kinds
  see the same moments of the machine, so their ratio stands up to noise from other programs
  (this machine's host takes CPU away at times) better than runs seconds apart do. It is a
  trend figure, not the target's: each call runs on caches the other kind disturbed, which
  slows local calls more (with ``--topology shared``, B's passes run on A's core in between).
- ``local-rpc`` / ``remote-rpc``: 4 callers x 64 outstanding calls: router CPU per call, A's
  and B's apart (a remote call costs both routers).
- ``ns-lookup``: 200 simulated routers joined to the name server (each subscribed to its
  notices) announce 100 URIs each (20,000: exact and prefix procedures, topics); then one more
  router looks up random URIs (hits, prefix matches, misses) with one lookup outstanding.
  Target: p99 < 1 ms. A lookup is the full WAMP round trip a proxy makes.

Prints a table and writes JSON to bench/results/federation-<timestamp>.json. The load
generator is bench.loadgen's (see bench/README.md for what the columns mean).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import selectors
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.loadgen import (
    CALL,
    PAYLOAD,
    RESULT,
    Callee,
    Caller,
    Run,
    Scenario,
    percentile,
)
from bench.peer import Peer, Target, connect
from bench.procstat import machine_busy_seconds, own_cpu_seconds, process_cpu_seconds
from bench.router import free_port, pin, pin_threads, wait_listening
from bench.wire import BenchError, Codec, FramedTemplate, get_codec

ERROR = 8
HOST = "127.0.0.1"
REALM = "realm1"
SETUP = 10.0
RESULTS_DIR = Path(__file__).resolve().parent / "results"
ROUTER = """\
[router]
mode = "{mode}"
log_level = "warn"
[access]
backend = "allow-all"
[[realms]]
name = "{realm}"
[[listeners]]
transport = "rawsocket"
endpoint = "tcp:{port}:interface={host}"
serializers = ["msgpack", "json", "cbor"]
max_message_size = 16777216
"""
FEDERATION = """\
[federation]
discovery = "static"
nameserver = "tcp:{host}:{ns_port}"
advertise = "tcp:{host}:{port}"
"""


@dataclass
class Process:
    """One serouter process of the benchmark."""

    name: str
    port: int
    popen: subprocess.Popen[bytes]
    log: Path

    def cpu(self) -> float:
        return process_cpu_seconds(self.popen.pid)

    def target(self) -> Target:
        return Target(HOST, self.port, None, "/ws", REALM)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@dataclass
class Federation:
    directory: Path
    processes: dict[str, Process] = field(default_factory=dict)

    def start(self, name: str, mode: str, ns_port: int | None = None, cpu: int | None = 0
              ) -> Process:
        port = free_port(HOST)
        text = ROUTER.format(mode=mode, realm=REALM, port=port, host=HOST)
        if ns_port is not None:
            text += FEDERATION.format(host=HOST, ns_port=ns_port, port=port)
        config = self.directory / f"{name}.toml"
        config.write_text(text)
        log = self.directory / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "serouter", "run", "-c", str(config)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        process = self.processes[name] = Process(name, port, popen, log)
        pin_threads(popen.pid, cpu)
        wait_listening(HOST, [port], 30.0, None)
        pin_threads(popen.pid, cpu)
        return process

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop()

    def log_problems(self) -> list[str]:
        words = ("traceback", "error", "unhandled", "critical")
        return [f"{p.name}: {line}" for p in self.processes.values()
                for line in p.log.read_text(errors="replace").splitlines()
                if any(w in line.lower() for w in words)]


def call(peer: Peer, procedure: str, args: list[Any], timeout: float = SETUP) -> list[Any]:
    """A blocking CALL; the RESULT or ERROR."""
    request = peer.request_id()
    peer.send_now([CALL, request, {}, procedure, args])
    while True:
        message = peer.receive(timeout, f"the answer to {procedure}")
        if message[0] in (RESULT, ERROR):
            return message  # type: ignore[no-any-return]


def session(target: Target, codec: Codec, name: str) -> Peer:
    peer = connect(target, "rawsocket", codec, name, SETUP)
    peer.join(REALM, SETUP)
    return peer


# -- remote vs local calls ---------------------------------------------------------------------


class SplitRun(Run):
    """A bench.loadgen run whose callee joins another router than its callers."""

    def __init__(self, scenario: Scenario, callers: Target, callee: Target, codec: Codec,
                 nameserver: Target, *, callee_cpu: int | None = None,
                 think: float = 0.0) -> None:
        super().__init__(scenario, callers, codec)
        self._think = think
        self._callee_target, self._nameserver = callee, nameserver
        self._callee_cpu = callee_cpu  # None: the callee is a session of this process
        self._callee_process: subprocess.Popen[str] | None = None

    def setup(self) -> None:
        sc = self.scenario
        if self._callee_cpu is None:
            callee = connect(self._callee_target, "rawsocket", self._codec, "callee", SETUP)
            self.peers.append(callee)
            callee.join(REALM, SETUP)
            self.callee = Callee(callee)
            self.callee.setup()
        else:
            self._callee_process = start_callee(self._callee_target, self._callee_cpu)
        if self._callee_target != self._target:
            wait_announced(self._nameserver, self._codec, "bench.echo",
                           f"tcp:{HOST}:{self._callee_target.rawsocket_port}")
        self.callers = [Caller(self._peer(f"caller{i}"), self.stats, sc.window, self._think)
                        for i in range(sc.sessions)]
        self._attach_all()

    def callee_cpu(self) -> float:
        """CPU seconds of the callee process (0 when the callee is a session of this one)."""
        process = self._callee_process
        return process_cpu_seconds(process.pid) if process is not None else 0.0

    def close(self) -> None:
        super().close()
        if self._callee_process is not None:
            stop_callee(self._callee_process)



def start_callee(target: Target, cpu: int | None, procedure: str = "bench.echo"
                 ) -> subprocess.Popen[str]:
    """A callee process (``--serve-callee``) on ``cpu``, registered once this returns."""
    popen = subprocess.Popen(
        [sys.executable, "-m", "bench.federation", "--serve-callee",
         f"{target.host}:{target.rawsocket_port}", "--procedure", procedure],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    pin(popen.pid, cpu)
    assert popen.stdout is not None
    line = popen.stdout.readline()  # "registered", or nothing if it failed (it says why)
    if line.strip() != "registered":
        stop_callee(popen)
        raise BenchError(f"the callee process did not register: {line!r}")
    return popen


def stop_callee(popen: subprocess.Popen[str]) -> None:
    popen.terminate()
    try:
        popen.wait(10)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait()


def serve_callee(address: str, procedure: str) -> int:
    """``--serve-callee HOST:PORT``: register ``procedure`` there, answer until terminated."""
    host, port = address.rsplit(":", 1)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    peer = session(Target(host, int(port), None, "/ws", REALM), get_codec("msgpack"), "callee")
    callee = Callee(peer, procedure)
    callee.setup()
    selector = selectors.DefaultSelector()
    peer.attach(selector, callee.handle)
    print("registered", flush=True)
    gc.disable()
    while True:
        for key, mask in selector.select():
            key.data(mask)


def measure_calls(sc: Scenario, callers: Process, callee: Process, nameserver: Process, *,
                  codec: Codec, warmup: float, duration: float,
                  callee_cpu: int | None = None, think: float = 0.0) -> dict[str, Any]:
    run = SplitRun(sc, callers.target(), callee.target(), codec, nameserver.target(),
                   callee_cpu=callee_cpu, think=think)
    gc.collect()
    gc.disable()
    try:
        run.setup()
        run.start()
        run.loop(warmup, 5.0)
        start = (time.perf_counter(), run.stats.ops, callers.cpu(), callee.cpu(),
                 own_cpu_seconds() + run.callee_cpu(), machine_busy_seconds())
        run.stats.recording = True
        run.loop(duration, 5.0)
        run.stats.recording = False
        end = (time.perf_counter(), run.stats.ops, callers.cpu(), callee.cpu(),
               own_cpu_seconds() + run.callee_cpu(), machine_busy_seconds())
        run.stop(drain_timeout=5.0)
    finally:
        gc.enable()
        run.close()
    seconds, ops = end[0] - start[0], max(end[1] - start[1], 1)
    a_cpu, b_cpu = end[2] - start[2], end[3] - start[3]
    remote = callers is not callee
    latencies = sorted(run.stats.latencies)
    other = (end[5] - start[5]) - (end[4] - start[4]) - a_cpu - (b_cpu if remote else 0.0)
    return {
        "ops_per_s": ops / seconds,
        "p50_ms": percentile(latencies, 0.5) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
        "a_us_per_op": a_cpu / ops * 1e6,
        "b_us_per_op": b_cpu / ops * 1e6 if remote else None,
        "routers_us_per_op": (a_cpu + (b_cpu if remote else 0.0)) / ops * 1e6,
        "other_cpu_pct": max(other, 0.0) / seconds * 100,
        "warnings": run.warnings,
    }


def wait_announced(nameserver: Target, codec: Codec, procedure: str, endpoint: str) -> None:
    """Until the name server names ``endpoint``'s router for ``procedure``."""
    probe = session(nameserver, codec, "probe")
    deadline = time.monotonic() + SETUP
    try:
        while endpoint not in [p["endpoint"] for p in call(
                probe, "serouter.ns.lookup", ["procedure", procedure, {}])[3][0]]:
            if time.monotonic() > deadline:
                raise BenchError(f"{procedure} never reached the name server")
            time.sleep(0.05)
    finally:
        probe.close()


@dataclass(frozen=True)
class Placement:
    """The CPU of each process (``--topology``). Router A and the name server are on CPU 0.
    A callee of ``None`` is a session of the generator's own process."""

    generator: int
    b: int
    local_callee: int | None
    remote_callee: int | None

    def callee_process(self, *, local: bool) -> int:
        """Where a callee that must be a process of its own runs."""
        cpu = self.local_callee if local else self.remote_callee
        return self.generator if cpu is None else cpu


PLACEMENTS = {
    "vm": Placement(generator=0, b=1, local_callee=0, remote_callee=1),
    "shared": Placement(generator=1, b=0, local_callee=None, remote_callee=None),
    "one": Placement(generator=0, b=0, local_callee=0, remote_callee=0),
}


def measure_paired(a: Process, b: Process, ns: Process, codec: Codec, *, place: Placement,
                   warmup: float, duration: float) -> dict[str, Any]:
    """One caller on A alternating a local and a remote call, one outstanding; the p50s."""
    callees = [start_callee(a.target(), place.callee_process(local=True), "bench.echo.a")]
    try:
        callees.append(start_callee(b.target(), place.callee_process(local=False),
                                    "bench.echo.b"))
        wait_announced(ns.target(), codec, "bench.echo.b", f"tcp:{HOST}:{b.port}")
        caller = session(a.target(), codec, "caller")
        frames = [FramedTemplate(codec, caller.framing, [CALL, 0, {}, f"bench.echo.{x}",
                                                          [PAYLOAD]]) for x in "ab"]
        times: tuple[list[float], list[float]] = ([], [])
        gc.collect()
        gc.disable()
        try:
            for window, record in ((warmup, False), (duration, True)):
                end = time.perf_counter() + window
                while time.perf_counter() < end:
                    for kind in (0, 1):
                        request = caller.request_id()
                        data = frames[kind].frames([request])
                        sent = time.perf_counter()
                        caller.sock.sendall(data)
                        answer = caller.receive(SETUP, "a RESULT")
                        took = time.perf_counter() - sent
                        if answer[0] != RESULT or answer[1] != request:
                            raise BenchError(f"paired call: {answer!r:.200}")
                        if record:
                            times[kind].append(took)
        finally:
            gc.enable()
            caller.close()
    finally:
        for popen in callees:
            stop_callee(popen)
    local, remote = sorted(times[0]), sorted(times[1])
    return {
        "pairs": float(len(local)),
        "local_p50_ms": percentile(local, 0.5) * 1e3,
        "remote_p50_ms": percentile(remote, 0.5) * 1e3,
        "local_p99_ms": percentile(local, 0.99) * 1e3,
        "remote_p99_ms": percentile(remote, 0.99) * 1e3,
        "ratio": percentile(remote, 0.5) / percentile(local, 0.5),
    }


# -- name-server lookups -------------------------------------------------------------------------


def announce_many(nameserver: Process, codec: Codec, routers: int, per_router: int
                  ) -> tuple[list[Peer], list[str], list[str]]:
    """``routers`` sessions, each announcing ``per_router`` URIs; (sessions, exact URIs,
    URIs only a prefix entry covers)."""
    sessions: list[Peer] = []
    exact: list[str] = []
    covered: list[str] = []
    for r in range(routers):
        peer = session(nameserver.target(), codec, f"router{r}")
        peer.send_now([32, peer.request_id(), {}, "serouter.ns.on_watched"])
        peer.expect(33, SETUP, "SUBSCRIBED")
        entries: list[list[Any]] = []
        for i in range(per_router):
            base = f"com.vm{r}.svc{i // 10}.op{i}"
            if i % 20 == 0:
                entries.append(["procedure", f"com.vm{r}.prefix{i}.", "prefix", "single"])
                covered.append(f"com.vm{r}.prefix{i}.anything")
            elif i % 20 == 1:
                entries.append(["topic", f"com.vm{r}.topic{i}"])
            else:
                entries.append(["procedure", base, "exact", "single"])
                exact.append(base)
        answer = call(peer, "serouter.ns.announce", [f"tcp:{HOST}:{20000 + r}", entries])
        if answer[0] != RESULT or any(answer[3][0]):
            raise BenchError(f"announce refused: {answer!r:.300}")
        sessions.append(peer)
    return sessions, exact, covered


def measure_lookups(nameserver: Process, codec: Codec, routers: int, per_router: int,
                    lookups: int) -> dict[str, Any]:
    sessions, exact, covered = announce_many(nameserver, codec, routers, per_router)
    asker = session(nameserver.target(), codec, "asker")
    rng = random.Random(1)
    kinds = ([("hit", u) for u in rng.choices(exact, k=lookups * 8 // 10)]
             + [("prefix", u) for u in rng.choices(covered, k=lookups // 10)]
             + [("miss", f"com.nowhere.op{i}") for i in range(lookups // 10)])
    rng.shuffle(kinds)
    for _kind, uri in kinds[:500]:  # warm-up
        call(asker, "serouter.ns.lookup", ["procedure", uri, {"watch": True}])
    gc.collect()
    gc.disable()
    latencies: list[float] = []
    cpu0, t0 = nameserver.cpu(), time.perf_counter()
    try:
        for kind, uri in kinds:
            sent = time.perf_counter()
            answer = call(asker, "serouter.ns.lookup", ["procedure", uri, {"watch": True}])
            latencies.append(time.perf_counter() - sent)
            if answer[0] != RESULT or bool(answer[3][0]) != (kind != "miss"):
                raise BenchError(f"lookup of {uri} ({kind}): {answer!r:.300}")
    finally:
        gc.enable()
    seconds, cpu = time.perf_counter() - t0, nameserver.cpu() - cpu0
    for peer in [*sessions, asker]:
        peer.close()
    latencies.sort()
    return {
        "routers": routers, "uris": routers * per_router, "lookups": len(latencies),
        "ops_per_s": len(latencies) / seconds,
        "p50_ms": percentile(latencies, 0.5) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
        "max_ms": latencies[-1] * 1e3,
        "ns_us_per_op": cpu / len(latencies) * 1e6,
    }


# -- the whole thing ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.federation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before each window")
    p.add_argument("--duration", type=float, default=5.0, help="measurement window, s")
    p.add_argument("--routers", type=int, default=200, help="routers at the name server")
    p.add_argument("--per-router", type=int, default=100, help="URIs each announces")
    p.add_argument("--lookups", type=int, default=10_000, help="lookups measured")
    p.add_argument("--repeat", type=int, default=3,
                   help="runs of each call scenario (interleaved); medians reported")
    p.add_argument("--nice", type=int, help="run everything at this nice value (root: < 0)")
    p.add_argument("--skip", nargs="*", default=[], choices=["calls", "lookups"])
    p.add_argument("--topology", choices=sorted(PLACEMENTS), default="vm",
                   help="where routers and clients run (see above)")
    p.add_argument("--think-us", type=float, default=0.0,
                   help="in local-/remote-latency, the caller idles this long after each "
                        "result (an experiment: how an idle CPU slows the next pass)")
    p.add_argument("--serve-callee", metavar="HOST:PORT", help=argparse.SUPPRESS)
    p.add_argument("--procedure", default="bench.echo", help=argparse.SUPPRESS)
    p.add_argument("--no-save", action="store_true")
    return p.parse_args(argv)


def fmt(value: Any, spec: str) -> str:
    return "-" if value is None else spec.format(value)


def report(results: dict[str, dict[str, Any]]) -> str:
    lines = [f"{'scenario':18} {'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'A µs/op':>8} "
             f"{'B µs/op':>8} {'sum µs/op':>9} {'other%':>7}"]
    for name, r in results.items():
        if name in ("ns-lookup", "paired-latency"):
            continue
        lines.append(
            f"{name:18} {r['ops_per_s']:9,.0f} {r['p50_ms']:8.3f} {r['p99_ms']:8.3f} "
            f"{r['a_us_per_op']:8.1f} {fmt(r['b_us_per_op'], '{:8.1f}'):>8} "
            f"{r['routers_us_per_op']:9.1f} {r['other_cpu_pct']:7.0f}")
    local, remote = results.get("local-latency"), results.get("remote-latency")
    if local and remote:
        ratio = remote["p50_ms"] / local["p50_ms"]
        lines.append(f"\nremote/local p50 latency: {ratio:.2f}x (target <= 2x: "
                     f"{'ok' if ratio <= 2 else 'MISS'})")
    paired = results.get("paired-latency")
    if paired:
        lines.append(
            f"paired (alternating local and remote calls, {paired['pairs']:,.0f} pairs): "
            f"local p50 {paired['local_p50_ms']:.3f} ms, remote p50 "
            f"{paired['remote_p50_ms']:.3f} ms, remote/local {paired['ratio']:.2f}x "
            "(a trend figure, not the target's: each kind disturbs the other's caches)")
    lookup = results.get("ns-lookup")
    if lookup:
        lines.append(
            f"\nns-lookup: {lookup['routers']} routers, {lookup['uris']:,} URIs, "
            f"{lookup['lookups']:,} lookups: {lookup['ops_per_s']:,.0f}/s, "
            f"p50 {lookup['p50_ms']:.3f} ms, p99 {lookup['p99_ms']:.3f} ms, "
            f"max {lookup['max_ms']:.3f} ms, name server {lookup['ns_us_per_op']:.1f} µs/lookup"
            f" (target p99 < 1 ms: {'ok' if lookup['p99_ms'] < 1 else 'MISS'})")
    return "\n".join(lines)


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the runs (warnings: all of them)."""
    out: dict[str, Any] = {"runs": len(runs), "warnings": [w for r in runs for w in r["warnings"]]}
    for key, value in runs[0].items():
        if isinstance(value, float):
            out[key] = statistics.median(r[key] for r in runs)
        elif value is None:
            out[key] = None
    return out


def measure_all_calls(a: Process, b: Process, ns: Process, codec: Codec,
                      args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Each call scenario ``--repeat`` times, local and remote interleaved (so that noise from
    other programs hits both alike); the medians."""
    scenarios = [
        ("local-latency", Scenario("latency", "rpc", "rawsocket", 1, 1, ""), a),
        ("remote-latency", Scenario("latency", "rpc", "rawsocket", 1, 1, ""), b),
        ("local-rpc", Scenario("rpc", "rpc", "rawsocket", 4, 64, ""), a),
        ("remote-rpc", Scenario("rpc", "rpc", "rawsocket", 4, 64, ""), b),
    ]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _sc, _callee in scenarios}
    runs["paired-latency"] = []
    place = PLACEMENTS[args.topology]
    for i in range(args.repeat):
        paired = measure_paired(a, b, ns, codec, place=place, warmup=args.warmup,
                                duration=args.duration)
        runs["paired-latency"].append({**paired, "warnings": []})
        print(f"paired-latency {i + 1}/{args.repeat}: local p50 {paired['local_p50_ms']:.3f} ms, "
              f"remote p50 {paired['remote_p50_ms']:.3f} ms, {paired['ratio']:.2f}x",
              file=sys.stderr, flush=True)
        for name, sc, callee in scenarios:
            callee_cpu = place.local_callee if callee is a else place.remote_callee
            think = args.think_us / 1e6 if sc.window == 1 else 0.0
            run = measure_calls(sc, a, callee, ns, codec=codec, warmup=args.warmup,
                                duration=args.duration, callee_cpu=callee_cpu, think=think)
            runs[name].append(run)
            print(f"{name} {i + 1}/{args.repeat}: p50 {run['p50_ms']:.3f} ms, "
                  f"routers {run['routers_us_per_op']:.1f} µs/op, "
                  f"other {run['other_cpu_pct']:.0f}%", file=sys.stderr, flush=True)
    return {name: medians(found) for name, found in runs.items()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_callee:
        return serve_callee(args.serve_callee, args.procedure)
    codec = get_codec("msgpack")
    place = PLACEMENTS[args.topology]
    pin(0, place.generator)
    if args.nice is not None:  # before the routers start: they inherit it
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="serouter-fedbench-") as tmp:
        fed = Federation(Path(tmp))
        try:
            ns = fed.start("nameserver", "nameserver")
            if "calls" not in args.skip:
                a = fed.start("a", "router", ns.port, cpu=0)
                b = fed.start("b", "router", ns.port, cpu=place.b)
                results.update(measure_all_calls(a, b, ns, codec, args))
            if "lookups" not in args.skip:
                results["ns-lookup"] = measure_lookups(ns, codec, args.routers, args.per_router,
                                                       args.lookups)
            problems = fed.log_problems()
        finally:
            fed.stop()
    print(f"topology: {args.topology}\n" + report(results))
    if problems:
        print("\nrouter logs:\n" + "\n".join(problems[:20]))
    if not args.no_save:
        RESULTS_DIR.mkdir(exist_ok=True)
        path = RESULTS_DIR / time.strftime("federation-%Y%m%dT%H%M%S.json")
        path.write_text(json.dumps({"settings": vars(args), "results": results,
                                    "command": shlex.join(sys.argv), "cpus": os.cpu_count()},
                                   indent=2) + "\n")
        print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
