"""A subscriber that stops reading during a flood, end to end: the router's memory stays
bounded, everyone else gets every event, the publisher is slowed by TCP, not failed, and the
router says what it did (once per episode).

The figures this prints are those in docs/reliability.md:
``.venv/bin/python -m pytest -s tests/test_hardening_slow_consumer.py``.
"""

from __future__ import annotations

import fcntl
import re
import selectors
import socket
import struct
import termios
import threading
import time
from collections.abc import Iterator

import msgpack
import pytest

from tests.hardening_support import (
    LimitedListener,
    LimitedRouter,
    RssSampler,
    joined,
    settle_rss,
)
from tests.raw_clients import RawWampClient
from tests.router_process import running

EVENTS = 100_000
PAYLOAD = 1024  # bytes of each event's argument
TOPIC = "com.example.flood"
HEALTHY = 3
RSS_BOUND_MIB = 64  # the target for the router's growth
WINDOW = 50  # PUBLISHes per write


@pytest.fixture(scope="module")
def router() -> Iterator[LimitedRouter]:
    # the defaults: max_queued_bytes = 1 MiB, slow_consumer = "drop"
    listeners = [LimitedListener("rawsocket", serializers=("msgpack",))]
    with running(LimitedRouter(listeners)) as process:
        yield process


class FrameCounter(threading.Thread):
    """Reads subscriber sockets as fast as they come and counts RawSocket message frames
    without decoding them (the test must read faster than the router writes)."""

    def __init__(self, socks: list[socket.socket]) -> None:
        super().__init__(daemon=True)
        self.socks = socks
        self.counts = dict.fromkeys(socks, 0)
        self.last: dict[socket.socket, bytes] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        pending = dict.fromkeys(self.socks, b"")
        with selectors.DefaultSelector() as selector:
            for sock in self.socks:
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ)
            while not self.stop.is_set():
                for key, _ in selector.select(0.1):
                    sock: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = pending[sock] + sock.recv(1 << 18)
                    pos, n = 0, len(data)
                    while n - pos >= 4:
                        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
                        if n - pos - 4 < size:
                            break
                        if data[pos] == 0:
                            self.counts[sock] += 1
                            self.last[sock] = data[pos + 4 : pos + 4 + size]
                        pos += 4 + size
                    pending[sock] = data[pos:]

    def wait_for(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while min(self.counts.values()) < count and time.monotonic() < deadline:
            time.sleep(0.05)


def _queued(sock: socket.socket) -> int:
    """Bytes written to ``sock`` that the peer has not acknowledged (SIOCOUTQ)."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]


def test_slow_subscriber_during_a_flood(router: LimitedRouter) -> None:
    """One subscriber stops reading while 100,000 events of 1 KiB are published: the router
    grows by at most 64 MiB, the other subscribers get all 100,000, the publisher is slowed and
    acknowledged, and the router logs the episode once (and its end, with the count)."""
    listener = router.listener("rawsocket")
    stalled = joined(listener, "msgpack", rcvbuf=4096)
    stalled.subscribe(TOPIC)
    healthy = [joined(listener, "msgpack") for _ in range(HEALTHY)]
    for client in healthy:
        client.subscribe(TOPIC)
    publisher = joined(listener, "msgpack")
    counter = FrameCounter([c.sock for c in healthy])
    counter.start()
    before = settle_rss(router)

    body = b"".join(
        (len(m).to_bytes(4, "big") + m)
        for m in [msgpack.packb([16, i + 1, {}, TOPIC, ["x" * PAYLOAD]])
                  for i in range(WINDOW)]
    )
    blocked = 0.0
    backlog: list[int] = []
    with RssSampler(router.pid) as sampler:
        started = time.monotonic()
        for _ in range(EVENTS // WINDOW):
            t = time.monotonic()
            publisher.sock.sendall(body)
            blocked += time.monotonic() - t
            if len(backlog) < 10_000:
                backlog.append(_queued(publisher.sock))
        published = time.monotonic() - started
        counter.wait_for(EVENTS // WINDOW * WINDOW, timeout=120)
        delivered = time.monotonic() - started
    events = EVENTS // WINDOW * WINDOW
    grown_mib = (sampler.peak - before) / 1024
    print(f"\n{events:,d} events of {PAYLOAD} B to {HEALTHY} readers and one stalled "
          f"subscriber: published in {published:.1f} s ({events / published:,.0f}/s), "
          f"delivered in {delivered:.1f} s; publisher in sendall {blocked / published:.0%}"
          f" of the time, its unsent backlog up to {max(backlog) / 1024:.0f} KiB "
          f"(median {sorted(backlog)[len(backlog) // 2] / 1024:.0f} KiB); router RSS "
          f"{before / 1024:.1f} MiB before, peak {sampler.peak / 1024:.1f} MiB "
          f"(+{grown_mib:.1f} MiB)")
    assert list(counter.counts.values()) == [events] * HEALTHY
    assert grown_mib <= RSS_BOUND_MIB
    assert blocked / published > 0.2, "the publisher was not slowed by TCP backpressure"
    assert router.count("dropping its events until it catches up") == 1

    # the publisher is served normally, and the stalled subscriber recovers when it reads
    counter.stop.set()
    counter.join(5)
    received = _drain(stalled)
    publisher.send([16, 999_999, {"acknowledge": True}, TOPIC, ["after"]])
    assert publisher.recv()[:2] == [17, 999_999]
    stalled.sock.settimeout(5)
    assert stalled.recv()[4] == ["after"]
    caught_up = _caught_up(router)
    print(f"stalled subscriber: {received:,d} events delivered, {caught_up:,d} dropped "
          f"and counted")
    assert received + caught_up == events
    for client in (stalled, publisher, *healthy):
        client.close()


def _drain(client: RawWampClient) -> int:
    """Read what the router queued for a stalled subscriber until it goes quiet; how many
    events."""
    client.sock.settimeout(1.0)
    count = 0
    try:
        while True:
            client.recv()
            count += 1
    except TimeoutError:
        return count


def _caught_up(router: LimitedRouter, timeout: float = 5.0) -> int:
    """The dropped-events count of the router's "caught up" line (there must be one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.findall(r"caught up: (\d+) events were dropped", router.output)
        if found:
            assert len(found) == 1, found
            return int(found[0])
        time.sleep(0.1)
    raise AssertionError("the router did not log the end of the slow-consumer episode")
