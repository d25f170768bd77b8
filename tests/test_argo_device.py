"""The device calls with the device faked at its boundary: what is asked of the driver, in
which order, with which bytes, and what each failure becomes, without leaking an fd."""

from __future__ import annotations

import errno
import os
from typing import Any

import pytest
from twisted.internet import error
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock

from serouter.argo import ARGO, V4V, ArgoAddress, ArgoDriver, PeerDomain, connect
from serouter.argo._transport import MAX_PENDING, ArgoConnection, ArgoPort
from tests.argo_support import FakeArgoDevice


def driver(abi: Any = ARGO, **device: Any) -> tuple[ArgoDriver, FakeArgoDevice]:
    fake = FakeArgoDevice(abi=abi, **device)
    return ArgoDriver(abi, fake), fake


@pytest.mark.parametrize("abi", [ARGO, V4V])
def test_listen_binds_then_listens_on_a_non_blocking_fd(abi: Any) -> None:
    """open (which leaves the fd blocking), O_NONBLOCK set, BIND with this domain "any", the
    port and the partner, then LISTEN."""
    argo, fake = driver(abi)
    fd = argo.listen(5555, partner=3)
    assert fake.calls[0] == ("open", (abi.device, os.O_RDWR | os.O_CLOEXEC))
    assert fake.calls[1] == ("set_blocking", (fd, False))
    assert fake.requests() == [abi.BIND, abi.LISTEN]
    assert abi.unpack_ring_id(fake.bound[fd]) == (abi.domid_any, 5555, 3)
    assert fake.blocking[fd] is False
    argo.listen(5556, partner=None)
    assert abi.unpack_ring_id(fake.calls[-2][1][2]) == (abi.domid_any, 5556, abi.domid_any)


def test_listen_refused_closes_the_fd() -> None:
    """A BIND the driver refuses (the port is taken) raises and leaves no fd open."""
    argo, fake = driver(fail={ARGO.BIND: errno.EADDRINUSE})
    with pytest.raises(OSError) as raised:
        argo.listen(5555, None)
    assert raised.value.errno == errno.EADDRINUSE and not fake.open_fds


def test_no_device_and_bad_ports() -> None:
    """No device node: FileNotFoundError; port 0 or PORT_ANY: ValueError before any call."""
    argo, fake = driver(present=False)
    with pytest.raises(FileNotFoundError):
        argo.listen(5555, None)
    calls = len(fake.calls)
    for port in (0, 0xFFFFFFFF):
        with pytest.raises(ValueError):
            argo.listen(port, None)
    assert len(fake.calls) == calls


def test_accept_eagain_is_none_and_accepted_fds_are_made_non_blocking() -> None:
    """Nothing waiting: None (EAGAIN). A connection: a new fd, non-blocking (the driver makes
    it blocking), and the peer's domain and port as the driver filled them in."""
    argo, fake = driver()
    listening = argo.listen(5555, None)
    assert argo.accept(listening) is None
    fake.accepts.append((7, 1234))
    accepted = argo.accept(listening)
    assert accepted is not None
    fd, peer = accepted
    assert peer == ArgoAddress(7, 1234) and fake.blocking[fd] is False


def test_connect_in_progress_then_refused_through_getconnecterr() -> None:
    """CONNECT answers EINPROGRESS; GETCONNECTERR then says -ECONNREFUSED (read once)."""
    argo, fake = driver(pending_error=errno.ECONNREFUSED)
    fd, in_progress = argo.connect(0, 5555)
    assert in_progress and fake.blocking[fd] is False
    assert ARGO.unpack_addr(fake.calls[-1][1][2]) == (0, 5555)
    assert argo.connect_error(fd) == errno.ECONNREFUSED
    assert argo.connect_error(fd) == 0


def test_connect_failing_at_once_closes_the_fd() -> None:
    """A CONNECT that fails outright (no such ring) raises and leaves no fd open."""
    argo, fake = driver(connect_errno=errno.ECONNREFUSED)
    with pytest.raises(ConnectionRefusedError):
        argo.connect(0, 5555)
    assert not fake.open_fds


def test_local_address_from_getsockname() -> None:
    argo, _fake = driver()
    fd = argo.listen(5555, None)
    assert argo.local_address(fd) == ArgoAddress(None, 5555)


# -- the transport on top, driven by hand ----------------------------------------------------------


class Recorder(Protocol):
    def __init__(self) -> None:
        self.made = False

    def connectionMade(self) -> None:
        self.made = True


class Recorders(Factory):
    def __init__(self) -> None:
        self.built: list[tuple[Any, Recorder]] = []

    def buildProtocol(self, addr: Any) -> Recorder:
        protocol = Recorder()
        self.built.append((addr, protocol))
        return protocol


def test_port_accepts_until_eagain_and_skips_what_fails() -> None:
    """One readable event accepts every waiting connection; a failed ACCEPT (EMFILE) ends the
    round, logged, and the port keeps listening."""
    argo, fake = driver()
    reactor, factory = MemoryReactorClock(), Recorders()
    port = ArgoPort(reactor, argo, 5555, factory)
    port.startListening()
    assert port in reactor.readers
    fake.accepts += [(1, 100), (2, 200)]
    port.doRead()
    assert [addr for addr, _ in factory.built] == [ArgoAddress(1, 100), ArgoAddress(2, 200)]
    assert all(p.made for _, p in factory.built)
    fake.accepts += [errno.EMFILE, (3, 300)]
    port.doRead()
    assert len(factory.built) == 2
    port.doRead()
    assert factory.built[-1][0] == ArgoAddress(3, 300)
    port.stopListening()
    assert port not in reactor.readers


def test_cannot_listen_is_cannotlistenerror() -> None:
    argo, _fake = driver(fail={ARGO.LISTEN: errno.EINVAL})
    port = ArgoPort(MemoryReactorClock(), argo, 5555, Recorders())
    with pytest.raises(error.CannotListenError):
        port.startListening()


def test_protocol_only_after_the_domain_is_known() -> None:
    """The connection reaches its protocol when the resolver answers, with that answer; the
    fd is not read before."""
    from twisted.internet import defer

    argo, fake = driver()
    reactor, factory = MemoryReactorClock(), Recorders()
    asked: dict[int, defer.Deferred[PeerDomain]] = {}

    def resolver(domid: int) -> defer.Deferred[PeerDomain]:
        asked[domid] = defer.Deferred()
        return asked[domid]

    port = ArgoPort(reactor, argo, 5555, factory, resolver=resolver)
    port.startListening()
    fake.accepts.append((4, 100))
    port.doRead()
    assert list(asked) == [4] and not factory.built
    assert len(reactor.readers) == 1  # the port only
    asked[4].callback(PeerDomain(4, "guest4", None))
    (_addr, protocol), = factory.built
    transport = protocol.transport
    assert isinstance(transport, ArgoConnection)
    assert transport.peer_domain == PeerDomain(4, "guest4", None)
    assert transport in reactor.readers


def test_pending_connections_are_bounded_and_closed_with_the_port() -> None:
    """Past MAX_PENDING connections waiting for their domain, new ones are closed at once;
    stopping the port closes those still waiting, and late answers change nothing."""
    from twisted.internet import defer

    argo, fake = driver()
    reactor, factory = MemoryReactorClock(), Recorders()
    waiting: list[defer.Deferred[PeerDomain]] = []

    def resolver(domid: int) -> defer.Deferred[PeerDomain]:
        waiting.append(defer.Deferred())
        return waiting[-1]

    port = ArgoPort(reactor, argo, 5555, factory, resolver=resolver)
    port.startListening()
    fake.accepts += [(1, p) for p in range(MAX_PENDING + 5)]
    port.doRead()
    assert len(waiting) == MAX_PENDING
    assert len(fake.open_fds) == 1 + MAX_PENDING  # the port's and those waiting
    port.stopListening()
    assert not fake.open_fds
    waiting[0].callback(PeerDomain(1))
    assert not factory.built


def test_connect_waits_for_writability_then_asks_getconnecterr() -> None:
    """EINPROGRESS: the fd is watched for writability; GETCONNECTERR 0 gives a connection to
    the domain asked for."""
    argo, fake = driver()
    reactor, factory = MemoryReactorClock(), Recorders()
    result = connect(reactor, argo, factory, domain=0, port=5555)
    (waiting,) = reactor.writers
    assert not result.called
    waiting.doWrite()
    protocol = result.result
    assert protocol.made and protocol.transport.getPeer() == ArgoAddress(0, 5555)
    assert protocol.transport.peer_domain == PeerDomain(0)
    assert ARGO.GETCONNECTERR in fake.requests()


def test_connect_refused_through_getconnecterr_closes_the_fd() -> None:
    """GETCONNECTERR -ECONNREFUSED: ConnectionRefusedError, and the fd is closed."""
    argo, fake = driver(pending_error=errno.ECONNREFUSED)
    reactor = MemoryReactorClock()
    result = connect(reactor, argo, Recorders(), domain=0, port=5555)
    (waiting,) = reactor.writers
    waiting.doWrite()
    failures: list[Any] = []
    result.addErrback(failures.append)
    assert failures[0].check(error.ConnectionRefusedError)
    assert "ECONNREFUSED" in str(failures[0].value)
    assert not fake.open_fds and not reactor.writers


def test_connect_times_out_and_can_be_cancelled() -> None:
    """No answer within the timeout: TimeoutError; cancelling: CancelledError; the fd is
    closed either way."""
    from twisted.internet import defer

    argo, fake = driver()
    reactor = MemoryReactorClock()
    result = connect(reactor, argo, Recorders(), domain=0, port=5555, timeout=2)
    reactor.advance(2)
    failures: list[Any] = []
    result.addErrback(failures.append)
    assert failures[0].check(error.TimeoutError) and not fake.open_fds
    other = connect(reactor, argo, Recorders(), domain=0, port=5555)
    other.cancel()
    other.addErrback(failures.append)
    assert failures[1].check(defer.CancelledError) and not fake.open_fds


def test_connect_failing_at_once_is_a_failed_deferred() -> None:
    argo, fake = driver(connect_errno=errno.ENOENT)
    failures: list[Any] = []
    connect(MemoryReactorClock(), argo, Recorders(), domain=9, port=1).addErrback(
        failures.append)
    assert failures[0].check(error.ConnectError) and not fake.open_fds


class _Scripted:
    """A driver whose read and write answer from a script (errors included)."""

    name = "scripted"

    def __init__(self, reads: list[Any], writes: list[Any]) -> None:
        self.reads, self.writes, self.closed = reads, writes, []

    def read(self, fd: int, size: int) -> bytes:
        item = self.reads.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item  # type: ignore[no-any-return]

    def write(self, fd: int, data: Any) -> int:
        item = self.writes.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item  # type: ignore[no-any-return]

    def close(self, fd: int) -> None:
        self.closed.append(fd)


def _connection(driver: Any) -> tuple[ArgoConnection, list[bytes]]:
    got: list[bytes] = []
    protocol = Protocol()
    protocol.dataReceived = got.append  # type: ignore[method-assign]
    connection = ArgoConnection(MemoryReactorClock(), driver, 42, protocol,
                                peer=ArgoAddress(1, 2), host=ArgoAddress(None, 3))
    connection.start()
    return connection, got


def test_read_results_map_to_twisted_outcomes() -> None:
    """Data is delivered; EAGAIN/EINTR are nothing; EPIPE (the Argo driver's word for a peer
    that closed), ECONNRESET and end-of-file are a clean end; other errors a lost connection."""
    from twisted.internet import main

    script = [b"data", BlockingIOError(errno.EAGAIN, "again"),
              InterruptedError(errno.EINTR, "intr"), BrokenPipeError(errno.EPIPE, "pipe"),
              ConnectionResetError(errno.ECONNRESET, "reset"), b"", OSError(errno.EIO, "io")]
    connection, got = _connection(_Scripted(script, []))
    results = [connection.doRead() for _ in range(7)]
    assert got == [b"data"]
    assert results[:3] == [None, None, None]
    assert results[3:6] == [main.CONNECTION_DONE] * 3
    assert results[6] is main.CONNECTION_LOST


def test_write_results_map_to_twisted_outcomes() -> None:
    """A short write is counted; EAGAIN is 0 bytes; EPIPE is a lost connection; at most
    SEND_LIMIT bytes are offered at once."""
    from twisted.internet import main

    offered: list[int] = []
    driver = _Scripted([], [3, BlockingIOError(errno.EAGAIN, "x"), OSError(errno.EPIPE, "p")])
    write = driver.write
    driver.write = lambda fd, data: (offered.append(len(data)), write(fd, data))[1]  # type: ignore[method-assign]
    connection, _ = _connection(driver)
    big = b"x" * (ArgoConnection.SEND_LIMIT + 10)
    assert connection.writeSomeData(big) == 3
    assert connection.writeSomeData(b"abc") == 0
    assert connection.writeSomeData(b"abc") is main.CONNECTION_LOST
    assert offered[0] == ArgoConnection.SEND_LIMIT


def test_connection_lost_closes_the_fd_once() -> None:
    from twisted.internet import main
    from twisted.python.failure import Failure

    driver = _Scripted([], [])
    connection, _ = _connection(driver)
    connection.connectionLost(Failure(main.CONNECTION_DONE))
    connection.connectionLost(Failure(main.CONNECTION_DONE))
    assert driver.closed == [42] and connection.fileno() == -1
