"""Twisted transports over a stream device: a listening port, connections, and connecting.

There is no Argo socket family, and Twisted cannot adopt a character device's fd as a socket,
so each fd gets a ``FileDescriptor``: the reactor polls it like a socket (the driver implements
poll), reads and writes are non-blocking, and the base class brings the write buffer and the
producer/consumer protocol (a protocol registered as a streaming producer is paused when the
buffer passes ``bufferSize`` and resumed when it drains; ``pauseProducing`` on the transport
stops reading, so a router that cannot keep up leaves data in the device's ring and Xen
holds back the sender).

- ``ArgoPort`` accepts, resolves the peer's domain (``Resolver``) and only then gives the
  connection to a protocol (see ``_domains`` for why).
- ``ArgoConnection`` is one connection: ``getPeer()`` is an ``ArgoAddress`` and
  ``peer_domain`` the ``PeerDomain`` the router labels the session by.
- ``connect`` makes an outgoing connection: CONNECT answers EINPROGRESS, the fd turns
  writable when the peer answered, and GETCONNECTERR tells how.
"""

from __future__ import annotations

import contextlib
import errno
from typing import Any

from twisted.internet import defer, error, main
from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import (
    IConsumer,
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IPushProducer,
    ITransport,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from serouter.argo._device import ArgoAddress, Driver, PeerRefused
from serouter.argo._domains import PeerDomain, Resolver, domid_only

log = Logger(namespace="serouter.argo")

READ_SIZE = 65536
# Connections accepted but still waiting for their domain's name: each holds an fd, so a
# flood from one domain must not exhaust them; past this, new ones are closed at once.
MAX_PENDING = 64
_PEER_GONE = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN)


@implementer(ITransport, IConsumer, IPushProducer)
class ArgoConnection(FileDescriptor):
    """One stream connection over a non-blocking fd (closed when the connection is lost)."""

    def __init__(
        self,
        reactor: Any,
        driver: Driver,
        fd: int,
        protocol: IProtocol,
        *,
        peer: ArgoAddress,
        host: ArgoAddress,
        peer_domain: PeerDomain | None = None,
    ) -> None:
        super().__init__(reactor)
        self.driver = driver
        self._fd = fd
        self.protocol = protocol
        self._peer = peer
        self._host = host
        self.peer_domain = peer_domain
        self._aborting = False
        self.connected = 1

    def start(self) -> None:
        """Hand the connection to its protocol and start reading."""
        self.protocol.makeConnection(self)
        if self.connected and not self.disconnecting:
            self.startReading()  # type: ignore[no-untyped-call]

    def fileno(self) -> int:
        return self._fd

    def getHandle(self) -> int:
        return self._fd

    def getPeer(self) -> ArgoAddress:
        return self._peer

    def getHost(self) -> ArgoAddress:
        return self._host

    def logPrefix(self) -> str:
        return f"argo:{self._peer.host}:{self._peer.port}"

    def doRead(self) -> BaseException | None:
        try:
            data = self.driver.read(self._fd, READ_SIZE)
        except BlockingIOError:
            return None
        except InterruptedError:
            return None
        except OSError as e:
            # the Argo driver says EPIPE where a socket would say end-of-file
            return main.CONNECTION_DONE if e.errno in _PEER_GONE else main.CONNECTION_LOST
        if not data:
            return main.CONNECTION_DONE
        self.protocol.dataReceived(data)
        return None

    def writeSomeData(self, data: bytes) -> int | BaseException:
        try:
            return self.driver.write(self._fd, memoryview(data)[: self.SEND_LIMIT])
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError:
            return main.CONNECTION_LOST

    def abortConnection(self) -> None:
        """Close now, dropping whatever is buffered."""
        if self.disconnected or self._aborting:
            return
        self._aborting = True
        self.stopReading()  # type: ignore[no-untyped-call]
        self.stopWriting()  # type: ignore[no-untyped-call]
        self.doRead = lambda: None  # type: ignore[method-assign]
        self.doWrite = lambda: None  # type: ignore[method-assign]
        reactor: Any = self.reactor
        aborted = Failure(error.ConnectionAborted())  # type: ignore[no-untyped-call]
        reactor.callLater(0, self.connectionLost, aborted)

    def connectionLost(self, reason: Failure) -> None:
        if self.disconnected:
            return
        super().connectionLost(reason)  # type: ignore[no-untyped-call]
        fd, self._fd = self._fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                self.driver.close(fd)
        self.protocol.connectionLost(reason)


@implementer(IListeningPort)
class ArgoPort(FileDescriptor):
    """A listening ring: accepts, resolves the peer's domain, then builds its protocol."""

    def __init__(
        self,
        reactor: Any,
        driver: Driver,
        port: int,
        factory: IProtocolFactory,
        *,
        partner: int | None = None,
        resolver: Resolver = domid_only,
    ) -> None:
        super().__init__(reactor)
        self.driver = driver
        self.port = port
        self.partner = partner
        self.factory = factory
        self.resolver = resolver
        self._fd = -1
        self._host = ArgoAddress(None, port)
        self._pending: dict[int, ArgoAddress] = {}  # accepted fds waiting for their domain

    def startListening(self) -> None:
        """BIND and LISTEN (CannotListenError if refused), then wait for connections."""
        try:
            self._fd = self.driver.listen(self.port, self.partner)
        except (OSError, ValueError) as e:
            raise error.CannotListenError(  # type: ignore[no-untyped-call]
                self.driver.name, self.port, e
            ) from e
        with contextlib.suppress(OSError):
            self._host = self.driver.local_address(self._fd)
        self.factory.doStart()
        self.connected = 1
        self.startReading()  # type: ignore[no-untyped-call]
        log.debug("listening on {driver} port {port}", driver=self.driver.name, port=self.port)

    def fileno(self) -> int:
        return self._fd

    def getHost(self) -> ArgoAddress:
        return self._host

    def logPrefix(self) -> str:
        return f"argo port {self.port}"

    def doRead(self) -> None:
        for _ in range(100):  # then let the reactor serve everyone else
            try:
                accepted = self.driver.accept(self._fd)
            except PeerRefused as refused:
                log.info("argo port {port}: refused: {why}", port=self.port, why=str(refused))
                continue
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                # EMFILE/ENFILE/ENOMEM and the like: try again when next readable
                log.error("argo port {port}: accept failed: {error}", port=self.port,
                          error=e.strerror or e)
                return
            if accepted is None:
                return
            self._admit(*accepted)

    def _admit(self, fd: int, peer: ArgoAddress) -> None:
        domain = peer.domain
        if domain is None or len(self._pending) >= MAX_PENDING:
            why = ("no peer domain from the driver" if domain is None else
                   f"{len(self._pending)} are still waiting for their domain's name")
            log.warn("argo port {port}: closed a connection from domain {domain}: {why}",
                     port=self.port, domain=domain, why=why)
            self.driver.close(fd)
            return
        self._pending[fd] = peer
        self.resolver(domain).addCallbacks(
            self._resolved, self._unresolved, callbackArgs=(fd, peer), errbackArgs=(fd,)
        )

    def _resolved(self, domain: PeerDomain, fd: int, peer: ArgoAddress) -> None:
        if self._pending.pop(fd, None) is None:
            return  # the port stopped meanwhile and closed it
        try:
            protocol = self.factory.buildProtocol(peer)
        except Exception:
            log.failure("argo port {port}: building a protocol failed", port=self.port)
            protocol = None
        if protocol is None:
            self.driver.close(fd)
            return
        ArgoConnection(self.reactor, self.driver, fd, protocol, peer=peer, host=self._host,
                       peer_domain=domain).start()

    def _unresolved(self, failure: Failure, fd: int) -> None:
        """A resolver that failed (ours never do): the connection is closed, unlabeled."""
        log.failure("argo port {port}: resolving a peer's domain failed", failure,
                    port=self.port)
        if self._pending.pop(fd, None) is not None:
            self.driver.close(fd)

    def stopListening(self) -> defer.Deferred[None]:
        """Stop accepting; connections already made stay."""
        self.disconnecting = 1
        self.stopReading()  # type: ignore[no-untyped-call]
        if self.connected:
            self.connectionLost(Failure(main.CONNECTION_DONE))  # type: ignore[no-untyped-call]
        return defer.succeed(None)

    loseConnection = stopListening

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)  # type: ignore[no-untyped-call]
        fds = [*self._pending, self._fd]  # those waiting for their domain, and the port's
        self._pending, self._fd = {}, -1
        for fd in fds:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    self.driver.close(fd)
        self.factory.doStop()


class _Connecting(FileDescriptor):
    """Waits for a non-blocking CONNECT to end: the fd turns writable when the peer answered."""

    def __init__(
        self,
        reactor: Any,
        driver: Driver,
        fd: int,
        *,
        peer: ArgoAddress,
        factory: IProtocolFactory,
        timeout: float,
    ) -> None:
        super().__init__(reactor)
        self.driver = driver
        self._fd = fd
        self.peer = peer
        self.factory = factory
        self.result: defer.Deferred[IProtocol] = defer.Deferred(self._cancel)
        late = error.TimeoutError(  # type: ignore[no-untyped-call]
            string=f"argo: domain {peer.domain} port {peer.port} did not answer in {timeout} s")
        self._timer = reactor.callLater(timeout, self._give_up, late)

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return f"argo connecting to {self.peer.host}:{self.peer.port}"

    def doWrite(self) -> None:
        try:
            code = self.driver.connect_error(self._fd)
        except OSError as e:
            code = e.errno or errno.EIO
        if code:
            self._give_up(error.ConnectionRefusedError(  # type: ignore[no-untyped-call]
                string=f"argo: domain {self.peer.domain} port {self.peer.port}: "
                       f"{errno.errorcode.get(code, code)}"))
            return
        self.connected_now()

    def connected_now(self) -> None:
        self._stop()
        fd, self._fd = self._fd, -1
        try:
            host = self.driver.local_address(fd)
        except OSError:
            host = ArgoAddress(None, 0)
        try:
            protocol = self.factory.buildProtocol(self.peer)
        except Exception:
            self.driver.close(fd)
            self.result.errback()
            return
        if protocol is None:
            self.driver.close(fd)
            self.result.errback(
                error.ConnectError(string="the factory built no protocol")  # type: ignore[no-untyped-call]
            )
            return
        # Xen delivers to the domain the ring belongs to: the peer is whom we asked for
        domain = PeerDomain(self.peer.domain) if self.peer.domain is not None else None
        connection = ArgoConnection(
            self.reactor, self.driver, fd, protocol, peer=self.peer, host=host,
            peer_domain=domain,
        )
        self.result.callback(protocol)
        connection.start()

    def _stop(self) -> None:
        self.stopWriting()  # type: ignore[no-untyped-call]
        if self._timer.active():
            self._timer.cancel()

    def _give_up(self, reason: BaseException) -> None:
        self._stop()
        fd, self._fd = self._fd, -1
        if fd >= 0:
            self.driver.close(fd)
        if not self.result.called:
            self.result.errback(Failure(reason))  # type: ignore[no-untyped-call]

    def _cancel(self, _result: defer.Deferred[IProtocol]) -> None:
        self._stop()
        fd, self._fd = self._fd, -1
        if fd >= 0:
            self.driver.close(fd)


def connect(
    reactor: Any,
    driver: Driver,
    factory: IProtocolFactory,
    *,
    domain: int,
    port: int,
    timeout: float = 30.0,
) -> defer.Deferred[IProtocol]:
    """Connect to (``domain``, ``port``); fires with the connected protocol."""
    try:
        fd, in_progress = driver.connect(domain, port)
    except (OSError, ValueError) as e:
        reason = error.ConnectError(  # type: ignore[no-untyped-call]
            string=f"argo: domain {domain} port {port}: {e}")
        return defer.fail(reason)
    waiting = _Connecting(reactor, driver, fd, peer=ArgoAddress(domain, port), factory=factory,
                          timeout=timeout)
    if in_progress:
        waiting.startWriting()  # type: ignore[no-untyped-call]
    else:
        waiting.connected_now()
    return waiting.result
