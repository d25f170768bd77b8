"""The daemon's reactor (serouter/transport/reactor.py): Twisted's epoll reactor without the
per-event logging context. Each test drives a reactor of its own, turn by turn, over real
socket pairs; the daemon's own tests (every router process the suite starts) run on it too.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.abstract import FileDescriptor
from twisted.logger import globalLogPublisher

from serouter.transport.reactor import LeanEPollReactor


class Reader(FileDescriptor):
    """Reads one end of a socket pair; what it read, and what its ``on_read`` does."""

    def __init__(self, reactor: Any, sock: socket.socket, on_read: Any = None,
                 on_lost: Any = None) -> None:
        super().__init__(reactor)
        self.sock, self.on_read, self.on_lost = sock, on_read, on_lost
        self.read: list[bytes] = []
        self.lost = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def doRead(self) -> None:
        self.read.append(self.sock.recv(4096))
        if self.on_read is not None:
            self.on_read()

    def connectionLost(self, reason: Any) -> None:
        self.lost = True
        if self.on_lost is not None:
            self.on_lost()


@pytest.fixture
def reactor() -> Iterator[LeanEPollReactor]:
    r = LeanEPollReactor()  # type: ignore[no-untyped-call]
    yield r
    r.waker.connectionLost(None)  # closing the poller drops every registration
    r._poller.close()


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    made = [socket.socketpair() for _ in range(3)]
    yield made
    for a, b in made:
        a.close()
        b.close()


def turn(reactor: LeanEPollReactor) -> None:
    reactor.doIteration(0.5)


def test_ready_descriptors_are_handed_to_their_readers(reactor: Any, pairs: Any) -> None:
    readers = [Reader(reactor, near) for near, _far in pairs]
    for r in readers:
        reactor.addReader(r)
    pairs[0][1].send(b"one")
    pairs[2][1].send(b"three")
    turn(reactor)
    assert [r.read for r in readers] == [[b"one"], [], [b"three"]]


def test_a_reader_removed_earlier_in_the_same_batch_is_skipped(reactor: Any, pairs: Any) -> None:
    first, second = Reader(reactor, pairs[0][0]), Reader(reactor, pairs[1][0])
    first.on_read = lambda: reactor.removeReader(second)
    second.on_read = lambda: reactor.removeReader(first)
    reactor.addReader(first)
    reactor.addReader(second)
    pairs[0][1].send(b"a")
    pairs[1][1].send(b"b")
    turn(reactor)  # both are ready in this one poll; whichever runs first removes the other
    assert sorted(len(r.read) for r in (first, second)) == [0, 1]


def test_an_error_escaping_a_handler_is_logged_and_the_others_are_served(
        reactor: Any, pairs: Any) -> None:
    def broken_read() -> None:
        raise RuntimeError("doRead failed")

    def broken_lost() -> None:  # Twisted's handler turns doRead's error into connectionLost
        raise RuntimeError("connectionLost failed too")

    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        broken = Reader(reactor, pairs[0][0], broken_read, broken_lost)
        healthy = Reader(reactor, pairs[1][0])
        reactor.addReader(broken)
        reactor.addReader(healthy)
        pairs[0][1].send(b"x")
        pairs[1][1].send(b"y")
        turn(reactor)
        pairs[1][1].send(b"z")
        turn(reactor)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert broken.lost
    assert healthy.read == [b"y", b"z"]
    failures = [e for e in events if e.get("log_namespace") == "serouter.reactor"]
    assert len(failures) == 1
    assert "connectionLost failed too" in str(failures[0]["log_failure"].value)


def test_a_timeout_with_nothing_ready_returns(reactor: Any) -> None:
    reactor.doIteration(0.01)
    reactor.doIteration(0)


def run_python(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30, env=env, check=True)
    return done.stdout.strip()


def test_the_daemon_installs_it() -> None:
    # Everything the command imports before it installs the reactor must leave it uninstalled;
    # one import of twisted.internet.reactor there would silently put the default back.
    code = ("import sys, serouter.cli\n"
            "assert 'twisted.internet.reactor' not in sys.modules, 'installed too early'\n"
            "from serouter.transport.reactor import install_reactor\n"
            "print(type(install_reactor()).__name__)")
    assert run_python(code) == "LeanEPollReactor"


def test_a_reactor_installed_already_is_kept() -> None:
    code = ("from twisted.internet import reactor\n"
            "from serouter.transport.reactor import install_reactor\n"
            "print(install_reactor() is reactor, type(reactor).__name__)")
    assert run_python(code) == "True EPollReactor"
