"""End to end: failures in a federation of processes. A router killed mid-call, the name server
down and restarted (found again through XenStore, or at its static endpoint); every client
stays connected throughout and needs no restart."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from autobahn.wamp.exception import ApplicationError

from tests.e2e_clients import close, connect, run, uri, within
from tests.federation_support import NAMESERVER_PATH, Cluster, wait_for
from tests.test_federation_e2e import NO_SUCH_PROCEDURE, Worker, eventually, gone

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    options = getattr(request, "param", {})
    cluster = Cluster(options.get("names", ("a", "b")),
                      xenstore=options.get("xenstore", True)).start()
    killed: list[str] = []
    cluster.killed = killed  # type: ignore[attr-defined]
    try:
        wait_for(lambda: all(r.log_has("joined the name server")
                             for r in cluster.routers.values()), what="routers joined")
        yield cluster
    finally:
        cluster.check_stopped(killed=killed)


@pytest.mark.parametrize("cluster", [{"names": ("a", "b", "c")}], indirect=True)
def test_a_router_killed_mid_call(cluster: Cluster) -> None:
    """B dies (SIGKILL) with a call from A in flight: the caller gets an ERROR at once, B's
    entries vanish from the name server, and A's subscription to a topic B published is
    resolved again (C publishing it now reaches A's subscriber)."""

    async def scenario() -> None:
        callee = await connect(cluster["b"], "rawsocket", "msgpack")
        caller = await connect(cluster["a"], "websocket", "json")
        subscriber = await connect(cluster["a"], "rawsocket", "json")
        inspector = await connect(cluster.nameserver, "websocket", "json")
        worker = Worker()
        await callee.register(worker.work, worker.procedure)
        await eventually(lambda: caller.call(worker.procedure, probe=True))
        topic = uri("weather")
        events: list[Any] = []
        await subscriber.subscribe(events.append, topic)
        b_publisher = await connect(cluster["b"], "websocket", "json")
        deadline = time.monotonic() + 10
        while "b" not in events:
            assert time.monotonic() < deadline, "B's events never reached A"
            b_publisher.publish(topic, "b")
            await asyncio.sleep(0.1)

        call = asyncio.ensure_future(caller.call(worker.procedure))
        await within(worker.started)
        cluster["b"].kill()
        cluster.killed.append("b")  # type: ignore[attr-defined]
        started = time.monotonic()
        with pytest.raises(ApplicationError) as raised:
            await within(call)
        assert raised.value.error == "wamp.error.canceled"
        assert time.monotonic() - started < 2.0  # at once, not at the worker's 30 s
        for session in (callee, b_publisher):
            session.abort()

        deadline = time.monotonic() + 10
        while await within(inspector.call("serouter.ns.lookup", "procedure", worker.procedure,
                                          {})):
            assert time.monotonic() < deadline, "B's entry is still at the name server"
            await asyncio.sleep(0.05)
        assert await gone(caller, worker.procedure) < 3.0

        c_publisher = await connect(cluster["c"], "websocket", "json")
        deadline = time.monotonic() + 10
        while "c" not in events:
            assert time.monotonic() < deadline, "C's events never reached A"
            c_publisher.publish(topic, "c")
            await asyncio.sleep(0.1)
        assert caller.is_attached() and subscriber.is_attached()
        await close(caller, subscriber, inspector, c_publisher)

    run(scenario, timeout=45)


def test_a_router_stopped_with_sigterm_withdraws_at_once(cluster: Cluster) -> None:
    """B stopped by systemd (SIGTERM): it says GOODBYE to its local clients and to the name
    server and exits 0; its entries are gone from the name server as soon as it has exited (no
    keepalive needed), and A's callers get no_such_procedure instead of a dead route."""

    async def scenario() -> None:
        callee = await connect(cluster["b"], "rawsocket", "msgpack")
        caller = await connect(cluster["a"], "websocket", "json")
        inspector = await connect(cluster.nameserver, "websocket", "json")
        procedure = uri("leaving")
        await callee.register(lambda: "from b", procedure)
        assert await eventually(lambda: caller.call(procedure)) == "from b"
        cluster["b"].terminate()
        assert cluster["b"].wait() == 0, cluster["b"].output
        stopped = time.monotonic()  # the name server may take its own turn to see it go
        while await within(inspector.call("serouter.ns.lookup", "procedure", procedure, {})):
            assert time.monotonic() - stopped < 2.0, "B's entry outlived B"
            await asyncio.sleep(0.02)
        assert await gone(caller, procedure) < 2.0
        callee.abort()
        await close(caller, inspector)

    run(scenario, timeout=45)


async def _outage(cluster: Cluster, new_port: bool) -> None:
    callee = await connect(cluster["b"], "websocket", "msgpack")
    caller = await connect(cluster["a"], "rawsocket", "json")
    local = await connect(cluster["a"], "websocket", "json")
    procedure, here = uri("remote"), uri("here")
    await callee.register(lambda: "from b", procedure)
    await local.register(lambda: "from a", here)
    assert await eventually(lambda: caller.call(procedure)) == "from b"

    nameserver = cluster.nameserver
    nameserver.terminate()
    assert await asyncio.get_running_loop().run_in_executor(None, nameserver.wait) == 0
    # Without the name server: local traffic as ever, the cached route still works (the
    # connection to B is direct), unknown URIs fail fast.
    assert await within(caller.call(here)) == "from a"
    assert await within(caller.call(procedure)) == "from b"
    started = time.monotonic()
    with pytest.raises(ApplicationError) as raised:
        await within(caller.call(uri("unknown")))
    assert raised.value.error == NO_SUCH_PROCEDURE
    assert time.monotonic() - started < 2.0

    if new_port:
        nameserver.listener("rawsocket").endpoint = None
        nameserver.listener("rawsocket").port = 0
        nameserver._addressed = False
    nameserver.spawn()
    await asyncio.get_running_loop().run_in_executor(None, nameserver.wait_ready)
    # The routers find it again and announce everything: a new procedure on B, registered
    # while the name server was away, is callable from A without any client reconnecting.
    later = uri("later")
    await callee.register(lambda: "later from b", later)
    assert await eventually(lambda: caller.call(later), timeout=15) == "later from b"
    inspector = await connect(nameserver, "websocket", "json")
    found = await within(inspector.call("serouter.ns.lookup", "procedure", procedure, {}))
    assert [p["endpoint"] for p in found] == [cluster["b"].advertise]
    assert all(s.is_attached() for s in (callee, caller, local))
    await close(callee, caller, local, inspector)


def test_the_name_server_restarted_elsewhere_is_found_through_xenstore(
        cluster: Cluster) -> None:
    """The name server stops (removing its XenStore entry) and comes back on a new port: the
    routers follow XenStore, reconnect and re-announce."""
    run(lambda: _outage(cluster, new_port=True), timeout=60)
    for router in cluster.routers.values():
        assert router.log_has(f"name server at {cluster.nameserver.advertise}")
        assert router.log_has("name server at (unknown)")


@pytest.mark.parametrize("cluster", [{"xenstore": False}], indirect=True)
def test_the_name_server_restarted_at_its_static_endpoint(cluster: Cluster) -> None:
    """With static discovery the routers reconnect with backoff and re-announce."""
    run(lambda: _outage(cluster, new_port=False), timeout=60)
    for router in cluster.routers.values():
        assert router.log_has("lost the name server")


def test_a_vanished_xenstore_entry_is_written_again(cluster: Cluster) -> None:
    """Someone in dom0 removes /serouter/nameserver (or xenstored lost it): the name server
    writes it again, and the routers, which saw it go, come back."""
    assert cluster.xenstored is not None
    removed = subprocess.run(["xenstore-rm", NAMESERVER_PATH], env=cluster.xenstored.env(0),
                             capture_output=True, text=True, timeout=10, check=False)
    assert removed.returncode == 0, removed.stderr
    wait_for(lambda: cluster.nameserver.log_has("vanished from XenStore; publishing again"),
             what="the name server noticed")

    def read() -> str:
        done = subprocess.run(["xenstore-read", NAMESERVER_PATH], env=cluster.xenstored.env(1),
                              capture_output=True, text=True, timeout=10, check=False)
        return done.stdout.strip()

    wait_for(lambda: read() == cluster.nameserver.advertise, what="the entry is back")
    wait_for(lambda: all(r.output.count("joined the name server") >= 2
                         for r in cluster.routers.values()), what="the routers rejoined")
