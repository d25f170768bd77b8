"""Many sessions on one router: 10,000 concurrent idle sessions (the fd limit raised for the
router and for this process), the memory each costs, and a router that still answers.

``SERouter_SCALE_SESSIONS`` changes the count (``make soak`` runs more). The figures this prints
are those in docs/reliability.md: ``.venv/bin/python -m pytest -s tests/test_hardening_scale.py``.
"""

from __future__ import annotations

import gc
import os
import socket
import time
import tracemalloc
from collections.abc import Iterator

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from serouter.core.access import AllowAll
from serouter.core.router import Router
from serouter.serializers import CBOR, JSON, MSGPACK
from serouter.transport.rawsocket import RawSocketFactory
from tests.hardening_support import (
    LimitedListener,
    LimitedRouter,
    fd_limit,
    hello_frame,
    joined,
    settle_rss,
)
from tests.raw_clients import recv_exactly
from tests.router_process import running

SESSIONS = int(os.environ.get("SEROUTER_SCALE_SESSIONS", "10000"))
BATCH = 500  # connections opened before their WELCOMEs are read
TARGET_KIB = 16  # per idle session (the target)


@pytest.fixture(scope="module")
def fds() -> Iterator[int]:
    """RLIMIT_NOFILE for this process and the router it spawns: sessions x 2 and some."""
    with fd_limit(2 * SESSIONS + 512) as limit:
        if limit < SESSIONS + 256:
            pytest.skip(f"the hard fd limit ({limit}) is too low for {SESSIONS} sessions")
        yield limit


@pytest.fixture(scope="module")
def router(fds: int) -> Iterator[LimitedRouter]:
    process = LimitedRouter(
        [LimitedListener("rawsocket", options={"max_connections": SESSIONS + 100})],
        log_level="warn",  # no line per session: the router's time goes to the sessions
    )
    with running(process, stop_timeout=60):
        yield process


def open_sessions(router: LimitedRouter, n: int) -> list[socket.socket]:
    """``n`` minimal RawSocket sessions (handshake and HELLO in one write), opened BATCH at a
    time; each has read its WELCOME."""
    listener = router.listener("rawsocket")
    socks: list[socket.socket] = []
    while len(socks) < n:
        batch = []
        for _ in range(min(BATCH, n - len(socks))):
            sock = socket.create_connection(("127.0.0.1", listener.port), timeout=30)
            sock.sendall(hello_frame())
            batch.append(sock)
        for sock in batch:
            assert recv_exactly(sock, 4)[0] == 0x7F
            welcome = recv_exactly(sock, int.from_bytes(recv_exactly(sock, 4), "big"))
            assert welcome.startswith(b"[2,"), welcome[:60]
        socks += batch
    return socks


def test_ten_thousand_idle_sessions(router: LimitedRouter) -> None:
    """10,000 sessions join and stay; each costs the router at most 16 KiB, and a call still
    goes round while they are there."""
    before = settle_rss(router)
    started = time.monotonic()
    socks = open_sessions(router, SESSIONS)
    opened = time.monotonic() - started
    during = settle_rss(router, 1.0)
    per_session = (during - before) / SESSIONS
    callee = joined(router.listener("rawsocket"))
    callee.register("com.example.scale.echo")
    caller = joined(router.listener("rawsocket"))
    caller.send([48, 1, {}, "wamp.session.count"])
    count = caller.recv()
    t = time.monotonic()
    caller.send([48, 2, {}, "com.example.scale.echo", ["hi"]])
    invocation = callee.recv()
    callee.send([70, invocation[1], {}, ["hi"]])
    assert caller.recv() == [50, 2, {}, ["hi"]]
    round_trip = time.monotonic() - t
    for sock in socks:
        sock.close()
    after = settle_rss(router, 1.5)
    print(f"\n{SESSIONS:,d} sessions joined in {opened:.1f} s ({SESSIONS / opened:,.0f}/s); "
          f"router RSS {before / 1024:.1f} MiB before, {during / 1024:.1f} MiB with them "
          f"({per_session:.1f} KiB per session), {after / 1024:.1f} MiB after they left; "
          f"a call round trip among them {round_trip * 1000:.1f} ms")
    assert count[3][0] >= SESSIONS, count
    assert per_session <= TARGET_KIB
    caller.close()
    callee.close()


def test_what_a_session_costs() -> None:
    """Where a session's memory goes (tracemalloc, in this process, no sockets): printed by
    file and line, largest first; the total stays within the target."""
    clock = Clock()
    router = Router(["realm1"], AllowAll(), clock)
    factory = RawSocketFactory(router, clock, serializers=[JSON, MSGPACK, CBOR],
                               max_message_size=1 << 20, handshake_timeout=10)
    keep = []

    def one() -> None:
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 9))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5))
        protocol.makeConnection(transport)
        protocol.dataReceived(hello_frame())
        transport.clear()
        keep.append((protocol, transport))

    for _ in range(100):  # warm-up: caches, interned strings
        one()
    n = 2000
    gc.collect()
    tracemalloc.start(1)
    first = tracemalloc.take_snapshot()
    for _ in range(n):
        one()
    gc.collect()
    second = tracemalloc.take_snapshot()
    tracemalloc.stop()
    stats = second.compare_to(first, "lineno")
    total = sum(s.size_diff for s in stats) / n
    print(f"\nPython objects per session: {total / 1024:.2f} KiB (with the test's "
          f"StringTransport); largest:")
    for stat in stats[:12]:
        frame = stat.traceback[0]
        print(f"  {stat.size_diff / n:8.0f} B  {frame.filename.split('site-packages/')[-1]}"
              f":{frame.lineno}")
    assert total / 1024 <= TARGET_KIB
