"""End to end: three routers and a name server as processes, found through XenStore, behave as
one router to Autobahn|Python clients.

Each router is a "VM" with its own XenStore domain connection to the test xenstored; the name
server runs in dom0 and publishes its endpoint there. Clients on router A call procedures
registered on router B (plain, progressive, cancelled, timing out, erroring) and subscribe to
topics published on router C. The failure cases (a router killed mid-call, the name server
restarted) are in test_federation_failover.py.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallOptions, RegisterOptions, SubscribeOptions

from tests.e2e_clients import (
    CALL,
    INVOCATION,
    RESULT,
    YIELD,
    Client,
    Peer,
    close,
    connect,
    run,
    uri,
    within,
)
from tests.federation_support import NAMESERVER_PATH, Cluster, wait_for

pytestmark = pytest.mark.timeout(90)
NO_SUCH_PROCEDURE = "wamp.error.no_such_procedure"
AVAILABLE_WITHIN = 10.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    cluster = Cluster(("a", "b", "c")).start()
    try:
        wait_for(lambda: all(r.log_has("joined the name server") for r in cluster.routers.values()),
                 what="every router joined the name server")
        yield cluster
    finally:
        cluster.check_stopped()


async def eventually(call: Callable[[], Awaitable[Any]], timeout: float = AVAILABLE_WITHIN
                     ) -> Any:
    """``call()``'s result once the procedure is known (announcements take a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await within(call())
        except ApplicationError as e:
            if e.error != NO_SUCH_PROCEDURE or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.05)


async def gone(caller: Client, procedure: str, timeout: float = AVAILABLE_WITHIN) -> float:
    """Seconds until calling ``procedure`` fails with no_such_procedure."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            await within(caller.call(procedure))
        except ApplicationError as e:
            if e.error == NO_SUCH_PROCEDURE:
                return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"{procedure} is still callable after {timeout} s")


def test_the_name_server_is_found_through_xenstore(cluster: Cluster) -> None:
    """dom0's name server wrote its endpoint with perms r0 (every domain reads it, only dom0
    writes it); every router, each in its own domain, found it there and joined."""
    assert cluster.xenstored is not None
    guest = cluster.xenstored.env(2)
    read = subprocess.run(["xenstore-read", NAMESERVER_PATH], env=guest, capture_output=True,
                          text=True, timeout=10, check=False)
    assert read.stdout.strip() == cluster.nameserver.advertise, read.stderr
    listed = subprocess.run(["xenstore-ls", "-p", "/serouter"], env=cluster.xenstored.env(0),
                            capture_output=True, text=True, timeout=10, check=False)
    assert "(r0)" in listed.stdout, listed.stdout
    write = subprocess.run(["xenstore-write", NAMESERVER_PATH, "tcp:evil:1"], env=guest,
                           capture_output=True, text=True, timeout=10, check=False)
    assert write.returncode != 0
    for router in cluster.routers.values():
        assert router.log_has(f"name server at {cluster.nameserver.advertise}")


def test_a_call_on_a_reaches_a_callee_on_b(cluster: Cluster) -> None:
    """Plain calls, then more over the same route and connection; arguments both ways."""

    async def scenario() -> None:
        callee = await connect(cluster["b"], "websocket", "msgpack")
        caller = await connect(cluster["a"], "rawsocket", "json")
        procedure = uri("add")
        await callee.register(lambda x, y, scale=1: (x + y) * scale, procedure)
        assert await eventually(lambda: caller.call(procedure, 2, 3)) == 5
        results = await within(asyncio.gather(
            *(caller.call(procedure, i, i, scale=10) for i in range(20))))
        assert results == [i * 20 for i in range(20)]
        await close(caller, callee)

    run(scenario, timeout=30)


def test_progressive_results_cross_routers(cluster: Cluster) -> None:
    async def scenario() -> None:
        callee = await connect(cluster["b"], "rawsocket", "cbor")
        caller = await connect(cluster["a"], "websocket", "json")
        procedure = uri("report")

        async def report(n: int, details: Any) -> str:
            for i in range(1, n + 1):
                details.progress(i, of=n)
                await asyncio.sleep(0.01)
            return "done"

        await callee.register(report, procedure, RegisterOptions(details_arg="details"))
        progress: list[Any] = []
        options = CallOptions(on_progress=lambda *a, **kw: progress.append((a, kw)))
        assert await eventually(lambda: caller.call(procedure, 3, options=options)) == "done"
        assert progress == [((i,), {"of": 3}) for i in (1, 2, 3)]
        await close(caller, callee)

    run(scenario, timeout=30)


def test_errors_keep_their_uri_and_payload(cluster: Cluster) -> None:
    async def scenario() -> None:
        callee = await connect(cluster["b"], "websocket", "json")
        caller = await connect(cluster["a"], "websocket", "msgpack")
        procedure = uri("fail")

        def fail() -> None:
            raise ApplicationError("com.example.error.bad", "why", 7, code=42)

        await callee.register(fail, procedure)
        with pytest.raises(ApplicationError) as raised:
            await eventually(lambda: caller.call(procedure))
        assert raised.value.error == "com.example.error.bad"
        assert raised.value.args == ("why", 7) and raised.value.kwargs == {"code": 42}
        await close(caller, callee)

    run(scenario, timeout=30)


class Worker:
    """A callee on one router whose procedure runs until interrupted."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.started: asyncio.Future[None] = loop.create_future()
        self.interrupted: asyncio.Future[None] = loop.create_future()
        self.procedure = uri("work")
        self.calls = 0

    async def work(self, probe: bool = False) -> str:
        if probe:
            return "ready"
        self.calls += 1
        self.started.set_result(None)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:  # Autobahn cancels the invocation on INTERRUPT
            self.interrupted.set_result(None)
            return "stopped early"
        return "finished"


def test_a_cancel_on_a_interrupts_the_callee_on_b(cluster: Cluster) -> None:
    async def scenario() -> None:
        callee = await connect(cluster["b"], "rawsocket", "msgpack")
        caller = await connect(cluster["a"], "rawsocket", "msgpack")
        worker = Worker()
        await callee.register(worker.work, worker.procedure)
        assert await eventually(lambda: caller.call(worker.procedure, probe=True)) == "ready"
        call = asyncio.ensure_future(caller.call(worker.procedure))
        await within(worker.started)
        call.cancel()
        await within(worker.interrupted)
        await asyncio.sleep(0.1)  # the late YIELD crosses both routers and is dropped
        assert caller.is_attached()
        assert await within(caller.call(worker.procedure, probe=True)) == "ready"
        await close(caller, callee)

    run(scenario, timeout=30)


def test_a_timeout_on_a_interrupts_the_callee_on_b(cluster: Cluster) -> None:
    """Router A times the call out (Autobahn's timeout is milliseconds on the wire)."""

    async def scenario() -> None:
        callee = await connect(cluster["b"], "websocket", "cbor")
        caller = await connect(cluster["a"], "websocket", "cbor")
        worker = Worker()
        await callee.register(worker.work, worker.procedure)
        await eventually(lambda: caller.call(worker.procedure, probe=True))
        started = time.monotonic()
        with pytest.raises(ApplicationError) as raised:
            await within(caller.call(worker.procedure, options=CallOptions(timeout=300)))
        assert raised.value.error == "wamp.error.timeout"
        assert 0.25 <= time.monotonic() - started < 2.0
        await within(worker.interrupted)
        await close(caller, callee)

    run(scenario, timeout=30)


def test_disclosed_callers_are_seen_across_routers(cluster: Cluster) -> None:
    """disclose_me on A: B's callee sees the caller as A knows it; without it, nothing."""

    async def scenario() -> None:
        callee = await connect(cluster["b"], "websocket", "json")
        caller = await Peer.open(cluster["a"], "rawsocket", "json")
        procedure = uri("who")

        def who(details: Any) -> list[Any]:
            return [details.caller, details.caller_authid, details.caller_authrole]

        await callee.register(who, procedure, RegisterOptions(details_arg="details"))
        deadline = time.monotonic() + AVAILABLE_WITHIN
        while True:
            reply = await caller.call(procedure, [], {"disclose_me": True})
            if reply[0] == RESULT or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert reply[0] == RESULT, reply
        assert reply[3] == [[caller.id, f"anonymous-{caller.id}", "anonymous"]]
        reply = await caller.call(procedure)
        assert reply[3] == [[None, None, None]]
        await close(callee)

    run(scenario, timeout=30)


def test_progressive_invocations_cross_routers(cluster: Cluster) -> None:
    """A caller on A streams a progressive CALL to a callee on B: same invocation throughout."""

    async def scenario() -> None:
        callee = await Peer.open(cluster["b"], "rawsocket", "msgpack")
        caller = await Peer.open(cluster["a"], "websocket", "json")
        procedure = uri("upload")
        await callee.register(procedure)
        deadline = time.monotonic() + AVAILABLE_WITHIN
        while True:  # a probe call answered by hand, until B's registration is known on A
            caller.send([CALL, caller.next_request(), {}, procedure, ["probe"]])
            try:
                invocation = await callee.recv(timeout=0.3)
            except TimeoutError:
                reply = await caller.recv()
                assert reply[4] == NO_SUCH_PROCEDURE and time.monotonic() < deadline, reply
                continue
            callee.send([YIELD, invocation[1], {}, ["ok"]])
            assert (await caller.recv())[0] == RESULT
            break
        request = caller.next_request()
        for chunk, more in (("a", True), ("b", True), ("c", False)):
            caller.send([CALL, request, {"progress": True} if more else {}, procedure, [chunk]])
        invocations = [await callee.recv() for _ in range(3)]
        assert [m[0] for m in invocations] == [INVOCATION] * 3
        assert len({m[1] for m in invocations}) == 1
        assert [(m[3].get("progress"), m[4]) for m in invocations] == [
            (True, ["a"]), (True, ["b"]), (None, ["c"])]
        callee.send([YIELD, invocations[0][1], {}, ["got 3"]])
        assert await caller.recv() == [RESULT, request, {}, ["got 3"]]

    run(scenario, timeout=30)


def test_a_subscriber_on_a_gets_what_c_publishes(cluster: Cluster) -> None:
    """Once C has published the topic, A's subscribers get every event, in order, once."""

    async def scenario() -> None:
        subscriber = await connect(cluster["a"], "websocket", "msgpack")
        also = await connect(cluster["a"], "rawsocket", "json")
        publisher = await connect(cluster["c"], "rawsocket", "cbor")
        topic = uri("news")
        got: list[Any] = []
        pattern: list[Any] = []
        first = asyncio.get_running_loop().create_future()

        def on_event(n: int, text: str = "") -> None:
            got.append((n, text))
            if not first.done():
                first.set_result(None)

        await subscriber.subscribe(on_event, topic)
        await also.subscribe(lambda *a, **kw: pattern.append(a), topic.rsplit(".", 1)[0] + ".",
                             SubscribeOptions(match="prefix"))
        deadline = time.monotonic() + AVAILABLE_WITHIN
        while not first.done():  # the topic is announced once C has published it
            assert time.monotonic() < deadline, "no event reached router A"
            publisher.publish(topic, -1)
            await asyncio.sleep(0.1)
        got.clear()
        pattern.clear()
        for n in range(10):
            publisher.publish(topic, n, text=f"event {n}")
        deadline = time.monotonic() + 5
        while (len(got) < 10 or len(pattern) < 10) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)  # and no duplicates after them
        assert got == [(n, f"event {n}") for n in range(10)]
        assert pattern == [(n,) for n in range(10)]
        await close(subscriber, also, publisher)

    run(scenario, timeout=30)


def test_local_traffic_and_unknown_uris(cluster: Cluster) -> None:
    """A local callee is used without the name server; an unknown URI fails fast."""

    async def scenario() -> None:
        callee = await connect(cluster["a"], "websocket", "json")
        caller = await connect(cluster["a"], "rawsocket", "json")
        procedure = uri("local")
        await callee.register(lambda: "here", procedure)
        assert await within(caller.call(procedure)) == "here"
        started = time.monotonic()
        with pytest.raises(ApplicationError) as raised:
            await within(caller.call(uri("nobody")))
        assert raised.value.error == NO_SUCH_PROCEDURE
        assert time.monotonic() - started < 2.0  # no waiting on anything remote
        await close(caller, callee)

    run(scenario, timeout=30)


def test_an_unregistered_procedure_goes_from_the_name_server(cluster: Cluster) -> None:
    """When B's callee leaves, A's callers soon get no_such_procedure; the name server
    forgets the entry."""

    async def scenario() -> None:
        callee = await connect(cluster["b"], "websocket", "json")
        caller = await connect(cluster["a"], "rawsocket", "json")
        inspector = await connect(cluster.nameserver, "websocket", "json")
        procedure = uri("brief")
        await callee.register(lambda: "ok", procedure)
        await eventually(lambda: caller.call(procedure))
        found = await within(inspector.call("serouter.ns.lookup", "procedure", procedure, {}))
        assert [p["endpoint"] for p in found] == [cluster["b"].advertise]
        await close(callee)
        assert await gone(caller, procedure) < 3.0
        assert await within(
            inspector.call("serouter.ns.lookup", "procedure", procedure, {})) == []
        await close(caller, inspector)

    run(scenario, timeout=30)


def test_three_routers_one_procedure_each(cluster: Cluster) -> None:
    """Every router reaches every other: a full mesh of calls."""

    async def scenario() -> None:
        names = ("a", "b", "c")
        callees = {n: await connect(cluster[n], "rawsocket", "msgpack") for n in names}
        procedures = {n: uri(f"on_{n}") for n in names}
        for n in names:
            await callees[n].register(lambda n=n: n, procedures[n])
        callers = {n: await connect(cluster[n], "websocket", "json") for n in names}
        for here in names:
            for there in names:
                assert await eventually(lambda h=here, t=there: callers[h].call(procedures[t])) \
                    == there
        await close(*callees.values(), *callers.values())

    run(scenario, timeout=40)
