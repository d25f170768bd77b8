"""Faults with real processes and real sockets: a callee or subscriber killed with SIGKILL (no
GOODBYE), a half-open TCP connection (a client in a network namespace whose veth is deleted: no
FIN, no RST, nothing), a client that stalls in the middle of a frame, and a thousand clients
that vanish mid-call.

Each fault must be answered the same way: the session is gone, what it held is freed (its
registrations and subscriptions, with their meta events), whoever waited on it gets an ERROR,
and the router's memory comes back to where it was.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.hardening_support import (
    LimitedListener,
    LimitedRouter,
    hello_frame,
    joined,
    settle_rss,
    spawn_client,
)
from tests.raw_clients import RawWampClient, recv_exactly
from tests.router_process import running

KEEPALIVE = {"ping_interval": 0.5, "ping_timeout": 0.5}
META = ("wamp.session.on_leave", "wamp.registration.on_unregister",
        "wamp.registration.on_delete", "wamp.subscription.on_unsubscribe",
        "wamp.subscription.on_delete")
CANCELED = "wamp.error.canceled"


def listeners(host: str = "127.0.0.1") -> list[LimitedListener]:
    return [
        LimitedListener("rawsocket", name="rawsocket_ka", options=KEEPALIVE, host=host),
        LimitedListener("websocket", name="websocket_ka", options=KEEPALIVE, host=host),
        LimitedListener("rawsocket"),  # no keepalive: the tests' own clients idle at times
        LimitedListener("websocket", options={"ping_interval": 0}),
    ]


@pytest.fixture(scope="module")
def router() -> Iterator[LimitedRouter]:
    with running(LimitedRouter(listeners())) as process:
        yield process


class Observer:
    """A session subscribed to the session, registration and subscription meta events."""

    def __init__(self, router: LimitedRouter) -> None:
        self.client = joined(router.listener("rawsocket"))
        self.topics = {self.client.subscribe(topic): topic for topic in META}

    def events(self, session: int, within: float = 5.0) -> dict[str, list[Any]]:
        """The meta events about ``session`` until its on_leave (topic -> arguments)."""
        found: dict[str, list[Any]] = {}
        deadline = time.monotonic() + within
        while "wamp.session.on_leave" not in found:
            self.client.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                message = self.client.recv()
            except TimeoutError:
                raise AssertionError(f"no on_leave for {session} within {within} s; "
                                     f"got {found}") from None
            if message[0] == 36 and message[4][0] == session:
                found[self.topics[message[1]]] = message[4]
        return found

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def observer(router: LimitedRouter) -> Iterator[Observer]:
    watching = Observer(router)
    yield watching
    watching.close()


def call(caller: RawWampClient, procedure: str, n: int) -> list[int]:
    """Send ``n`` CALLs; their request IDs."""
    requests = []
    for _ in range(n):
        request = caller.next_request()
        caller.send([48, request, {}, procedure, [request]])
        requests.append(request)
    return requests


def errors_for(caller: RawWampClient, requests: list[int], within: float = 5.0) -> set[str]:
    """The ERROR URIs the caller got for ``requests`` (each must get one)."""
    caller.sock.settimeout(within)
    uris = set()
    for _ in requests:
        reply = caller.recv()
        assert reply[0] == 8 and reply[1] == 48 and reply[2] in requests, reply
        uris.add(reply[4])
    return uris


def still_registered(caller: RawWampClient, procedure: str) -> bool:
    request = caller.next_request()
    caller.send([48, request, {}, "wamp.registration.lookup", [procedure]])
    reply = caller.recv()
    assert reply[:2] == [50, request], reply
    return reply[3][0] is not None


# -- a process killed ----------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["rawsocket", "websocket"])
def test_killed_callee(router: LimitedRouter, observer: Observer, transport: str) -> None:
    """SIGKILL of a callee with calls in flight: the callers get ERROR canceled at once, the
    registration is deleted with its meta events, and the procedure is gone."""
    procedure = f"com.example.killed.{transport}"
    process, session = spawn_client("127.0.0.1", router.port(transport), transport, "callee",
                                    procedure)
    caller = joined(router.listener("rawsocket"))
    requests = call(caller, procedure, 3)
    time.sleep(0.2)  # the invocations reach the callee, which never answers
    process.kill()
    process.wait(5)
    started = time.monotonic()
    assert errors_for(caller, requests) == {CANCELED}
    answered_in = time.monotonic() - started
    print(f"\n{transport} callee killed: 3 callers answered {answered_in * 1000:.0f} ms later")
    assert answered_in < 1.0
    events = observer.events(session)
    assert {"wamp.registration.on_unregister", "wamp.registration.on_delete"} <= set(events)
    assert not still_registered(caller, procedure)
    caller.close()


@pytest.mark.parametrize("transport", ["rawsocket", "websocket"])
def test_killed_subscriber(router: LimitedRouter, observer: Observer, transport: str) -> None:
    """SIGKILL of a subscriber: its subscription is deleted with meta events, and publishing
    to the topic goes on (acknowledged)."""
    topic = f"com.example.killed.topic.{transport}"
    process, session = spawn_client("127.0.0.1", router.port(transport), transport,
                                    "subscriber", topic)
    publisher = joined(router.listener("rawsocket"))
    process.kill()
    process.wait(5)
    events = observer.events(session)
    assert {"wamp.subscription.on_unsubscribe", "wamp.subscription.on_delete"} <= set(events)
    publisher.send([16, 1, {"acknowledge": True}, topic, ["after"]])
    assert publisher.recv()[:2] == [17, 1]
    publisher.close()


# -- half-open TCP: the peer's host vanishes without a word ----------------------------------------


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def netns() -> Iterator[tuple[str, str, str]]:
    """A network namespace joined to this one by a veth pair: (namespace, host side device,
    router address). Needs root (CAP_NET_ADMIN) and iproute2."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 (ip netns, veth)")
    tag = f"{os.getpid() % 10000}"
    ns, host_dev, ns_dev = f"srho{tag}", f"srh{tag}", f"src{tag}"
    subnet = f"10.{231}.{os.getpid() % 250}"
    try:
        _ip("netns", "add", ns)
        _ip("link", "add", host_dev, "type", "veth", "peer", "name", ns_dev)
        _ip("link", "set", ns_dev, "netns", ns)
        _ip("addr", "add", f"{subnet}.1/30", "dev", host_dev)
        _ip("link", "set", host_dev, "up")
        _ip("-n", ns, "addr", "add", f"{subnet}.2/30", "dev", ns_dev)
        _ip("-n", ns, "link", "set", ns_dev, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
    except (subprocess.CalledProcessError, OSError) as e:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", host_dev], capture_output=True, check=False)
        pytest.skip(f"cannot build a network namespace here: {e}")
    try:
        yield ns, host_dev, f"{subnet}.1"
    finally:
        subprocess.run(["ip", "link", "del", host_dev], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


@pytest.mark.parametrize("transport", ["rawsocket", "websocket"])
def test_half_open_connection_found_by_keepalive(netns: tuple[str, str, str],
                                                 transport: str) -> None:
    """A callee in another network namespace answers pings until its veth is deleted: from then
    on no FIN, RST or ICMP reaches the router. The keepalive (0.5 s + 0.5 s) finds it: the
    callers' pending calls get ERRORs, the registration goes, on_leave is published."""
    ns, host_dev, address = netns
    router = LimitedRouter(listeners(address)[:2] + listeners()[2:]).start()
    process = None
    try:
        observer = Observer(router)
        procedure = f"com.example.half_open.{transport}"
        process, session = spawn_client(address, router.port(f"{transport}_ka"), transport,
                                        "callee", procedure, prefix=("ip", "netns", "exec", ns))
        caller = joined(router.listener("rawsocket"))
        requests = call(caller, procedure, 2)
        time.sleep(1.2)  # a keepalive round trip or two succeeds through the veth
        assert still_registered(caller, procedure)
        _ip("link", "del", host_dev)  # the wire is cut: nothing more either way
        cut = time.monotonic()
        assert errors_for(caller, requests, within=5.0) == {CANCELED}
        detected = time.monotonic() - cut
        print(f"\nhalf-open {transport} callee found {detected:.2f} s after its wire was cut")
        assert process.poll() is None, "the client process must not have closed anything"
        assert 0.4 <= detected <= 2.5, detected
        assert "wamp.session.on_leave" in observer.events(session)
        assert not still_registered(caller, procedure)
        assert router.count("keepalive: no answer") >= 1
        caller.close()
        observer.close()
    finally:
        if process is not None:
            process.kill()
            process.wait(5)
        code, errors = router.stop(), router.internal_errors()
        assert code == 0 and not errors, errors


# -- a transport that stalls mid-frame ------------------------------------------------------------


@pytest.mark.parametrize("transport", ["rawsocket", "websocket"])
def test_callee_stalled_mid_frame(router: LimitedRouter, observer: Observer,
                                  transport: str) -> None:
    """A callee that sends half a frame and then nothing (and answers no ping): the keepalive
    closes it, its callers get ERRORs, its registration goes."""
    procedure = f"com.example.stalled.{transport}"
    listener = router.listener(f"{transport}_ka")
    if transport == "rawsocket":
        stalled: Any = RawWampClient.connect(listener)
        session = stalled.session_id
    else:
        from tests.raw_clients import WsClient

        stalled = WsClient.open(listener, "wamp.2.json", realm=None)
        stalled.send([1, "realm1", {"roles": {"callee": {}}}])
        session = stalled.recv()[1]
    stalled.send([64, 1, {}, procedure])
    assert stalled.recv()[0] == 65
    caller = joined(router.listener("rawsocket"))
    requests = call(caller, procedure, 2)
    half = b"\x00\x00\x04\x00[70, 1" if transport == "rawsocket" else b"\x81\xfe\x04\x00abcd[70"
    stalled.sock.sendall(half)
    started = time.monotonic()
    assert errors_for(caller, requests) == {CANCELED}
    stalled_for = time.monotonic() - started
    print(f"\n{transport} callee stalled mid-frame: closed after {stalled_for:.2f} s")
    assert stalled_for <= 2.5
    assert "wamp.registration.on_delete" in observer.events(session)
    stalled.close()
    caller.close()


# -- memory comes back ----------------------------------------------------------------------------

BATCH = 100


def _vanishing_batch(router: LimitedRouter, caller: RawWampClient, batch: int) -> None:
    """BATCH callees join, register, subscribe and get two calls each; then they vanish
    without GOODBYE, half with a FIN, half with an RST. Every call gets its ERROR."""
    listener = router.listener("rawsocket")
    socks = []
    for i in range(BATCH):
        sock = listener.connect()
        register = f'[64,1,{{}},"com.example.mem.b{batch}.n{i}"]'.encode()
        subscribe = b'[32,2,{},"com.example.mem.topic"]'
        sock.sendall(hello_frame() + b"".join(len(m).to_bytes(4, "big") + m
                                              for m in (register, subscribe)))
        socks.append(sock)
    for sock in socks:
        recv_exactly(sock, 4)
        for _ in range(3):  # WELCOME, REGISTERED, SUBSCRIBED
            recv_exactly(sock, int.from_bytes(recv_exactly(sock, 4), "big"))
    requests = []
    for i in range(BATCH):
        requests += call(caller, f"com.example.mem.b{batch}.n{i}", 2)
    time.sleep(0.05)
    for i, sock in enumerate(socks):
        if i % 2:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    assert errors_for(caller, requests, within=10.0) == {CANCELED}


def test_memory_returns_after_a_thousand_vanished_callees(router: LimitedRouter) -> None:
    """After a warm-up, 1,000 callees that vanish mid-call (with 2,000 calls failed, 1,000
    registrations and subscriptions freed) leave the router's RSS within 2 MiB of where it
    was."""
    caller = joined(router.listener("rawsocket"))
    for batch in range(3):  # warm-up: the allocator's pools reach their working size
        _vanishing_batch(router, caller, batch)
    before = settle_rss(router)
    for batch in range(3, 13):
        _vanishing_batch(router, caller, batch)
    after = settle_rss(router)
    print(f"router RSS {before} KiB before, {after} KiB after 1,000 vanished callees")
    assert after - before <= 2048, (before, after)
    caller.close()
