"""Where xenstored is, and the transport for ``/dev/xen/xenbus``.

The order is that of Xen's own tools and pyxs: ``XENSTORED_PATH`` if set (a socket, or the
xenbus device), else dom0's xenstored socket (``/var/run/xenstored/socket``,
``/run/xenstored/socket``), else a guest's ``/dev/xen/xenbus``. The choice is made at every
connection attempt, so a xenstored that starts late is found on the next retry.

``/dev/xen/xenbus`` is a character device, not a socket: Twisted cannot adopt it, so it gets a
``FileDescriptor`` of its own, non-blocking, driven by the reactor like any socket (the driver
buffers partial writes until a whole message is in and supports poll). Nothing here blocks.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer, main
from twisted.internet.abstract import FileDescriptor
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.interfaces import IAddress, IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.python.failure import Failure
from zope.interface import implementer

from serouter.xenstore._errors import XenStoreUnavailable

XENBUS = "/dev/xen/xenbus"
DEFAULT_PATHS = ("/var/run/xenstored/socket", "/run/xenstored/socket", XENBUS)
_READ_SIZE = 65536


@implementer(IAddress)
@dataclass(frozen=True)
class XenbusAddress:
    path: str


class XenbusTransport(FileDescriptor):
    """A transport over an open, non-blocking xenbus file descriptor (closed when lost)."""

    def __init__(self, reactor: Any, fd: int, path: str, protocol: IProtocol) -> None:
        super().__init__(reactor)
        self._fd = fd
        self._address = XenbusAddress(path)
        self.protocol = protocol
        self.connected = 1
        protocol.makeConnection(self)
        self.startReading()  # type: ignore[no-untyped-call]

    def fileno(self) -> int:
        return self._fd

    def doRead(self) -> BaseException | None:
        try:
            data = os.read(self._fd, _READ_SIZE)
        except BlockingIOError:
            return None
        except OSError as error:
            return error
        if not data:
            return main.CONNECTION_DONE
        self.protocol.dataReceived(data)
        return None

    def writeSomeData(self, data: bytes) -> int | BaseException:
        try:
            return os.write(self._fd, data)
        except BlockingIOError:
            return 0
        except OSError as error:
            return error

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)  # type: ignore[no-untyped-call]
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
        self.protocol.connectionLost(reason)

    def getHost(self) -> XenbusAddress:
        return self._address

    def getPeer(self) -> XenbusAddress:
        return self._address


Opener = Callable[[str, int], int]


@implementer(IStreamClientEndpoint)
class XenbusEndpoint:
    """Connects through the xenbus character device (a guest's way to xenstored)."""

    def __init__(self, reactor: Any, path: str = XENBUS, opener: Opener = os.open) -> None:
        self._reactor = reactor
        self._path = path
        self._open = opener

    def connect(self, protocolFactory: IProtocolFactory) -> defer.Deferred[IProtocol]:
        try:
            fd = self._open(self._path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as error:
            return defer.fail(XenStoreUnavailable(f"{self._path}: {error.strerror}"))
        address = XenbusAddress(self._path)
        protocol = protocolFactory.buildProtocol(address)
        if protocol is None:
            os.close(fd)
            return defer.fail(XenStoreUnavailable("the factory built no protocol"))
        os.set_blocking(fd, False)
        XenbusTransport(self._reactor, fd, self._path, protocol)
        return defer.succeed(protocol)


@implementer(IStreamClientEndpoint)
class XenStoreEndpoint:
    """Finds xenstored at each connection attempt: ``XENSTORED_PATH`` (as set when this
    endpoint was made), else the first of the usual paths that exists."""

    def __init__(
        self,
        reactor: Any,
        environ: Mapping[str, str] | None = None,
        paths: Sequence[str] = DEFAULT_PATHS,
    ) -> None:
        self._reactor = reactor
        # Read once: a later change of the environment must not move a running client.
        pinned = (os.environ if environ is None else environ).get("XENSTORED_PATH")
        self._paths = [pinned] if pinned else list(paths)

    def candidates(self) -> list[str]:
        return list(self._paths)

    def connect(self, protocolFactory: IProtocolFactory) -> defer.Deferred[IProtocol]:
        for path in self.candidates():
            try:
                mode = os.stat(path).st_mode
            except OSError:
                continue
            if stat.S_ISSOCK(mode):
                unix = UNIXClientEndpoint(self._reactor, path)  # type: ignore[no-untyped-call]
                connecting: defer.Deferred[IProtocol] = unix.connect(  # type: ignore[no-untyped-call]
                    protocolFactory
                )
                return connecting
            if stat.S_ISCHR(mode):
                return XenbusEndpoint(self._reactor, path).connect(protocolFactory)
            return defer.fail(XenStoreUnavailable(f"{path}: not a socket nor the xenbus device"))
        tried = ", ".join(self.candidates())
        return defer.fail(XenStoreUnavailable(f"no xenstored found (tried {tried})"))
