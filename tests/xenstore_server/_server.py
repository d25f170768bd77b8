"""The test xenstored on Unix sockets: one listening socket per domain.

The real xenstored knows a guest's domain from the shared ring the hypervisor set up for it,
and treats its own Unix socket as dom0's. Here every listening socket is bound to one domain
id when it is opened (``listen(path, domid)``), and a connection's domain is the one of the
socket it came in on: nothing a client sends can change it. A file descriptor handed over with
``adopt(sock, domid)`` (one end of a socketpair standing in for ``/dev/xen/xenbus``) is bound
the same way. Opening a guest domain's socket introduces the domain (``@introduceDomain``
fires); ``release(domid)`` closes its socket and connections (``@releaseDomain`` fires).
"""

from __future__ import annotations

import os
import socket
import stat
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure

from tests.xenstore_server._store import Session, Store
from tests.xenstore_server._wire import HEADER, PAYLOAD_MAX


class _Connection(Protocol):
    def __init__(self, server: XenStoreServer, domid: int) -> None:
        self.server = server
        self.domid = domid
        self.session: Session | None = None
        self.buffer = b""
        self.closed: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.server.connections.add(self)
        self.session = self.server.store.open_session(
            self.domid, self.transport.write, self.transport.loseConnection
        )

    def dataReceived(self, data: bytes) -> None:
        assert self.session is not None and self.transport is not None
        self.buffer += data
        while len(self.buffer) >= HEADER.size:
            op, req_id, tx_id, length = HEADER.unpack_from(self.buffer)
            if length > PAYLOAD_MAX:  # xenstored drops such a client at once
                self.buffer = b""
                self.transport.abortConnection()  # type: ignore[attr-defined]
                return
            end = HEADER.size + length
            if len(self.buffer) < end:
                return
            payload, self.buffer = self.buffer[HEADER.size : end], self.buffer[end:]
            self.server.store.handle(self.session, op, req_id, tx_id, payload)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.session is not None:
            self.server.store.close_session(self.session)
        self.server.connections.discard(self)
        self.closed.callback(None)


class _DomainFactory(Factory):
    noisy = False

    def __init__(self, server: XenStoreServer, domid: int) -> None:
        self.server = server
        self.domid = domid

    def buildProtocol(self, addr: Any) -> _Connection:
        return _Connection(self.server, self.domid)


class XenStoreServer:
    """Serves one ``Store`` on any number of per-domain Unix sockets."""

    def __init__(self, reactor: Any, store: Store | None = None) -> None:
        self.reactor = reactor
        self.store = store if store is not None else Store()
        self.ports: dict[str, tuple[int, IListeningPort]] = {}
        self.connections: set[_Connection] = set()

    def listen(self, path: str, domid: int = 0) -> IListeningPort:
        """Accept connections on ``path``; each one is domain ``domid`` (0: dom0, privileged)."""
        if os.path.exists(path) and stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)  # a socket left by an earlier server: xenstored replaces it too
        factory = _DomainFactory(self, domid)
        port: IListeningPort = self.reactor.listenUNIX(path, factory, mode=0o666)
        self.ports[path] = (domid, port)
        if domid != 0:
            self.store.introduce(domid)
        return port

    def adopt(self, sock: socket.socket, domid: int) -> None:
        """Serve an already connected stream socket as domain ``domid``."""
        factory = _DomainFactory(self, domid)
        self.reactor.adoptStreamConnection(sock.fileno(), socket.AF_UNIX, factory)

    def release(self, domid: int) -> defer.Deferred[None]:
        """Close the domain's sockets and connections; ``@releaseDomain`` fires."""
        ports = [port for path, (d, port) in list(self.ports.items()) if d == domid]
        for path in [path for path, (d, _) in self.ports.items() if d == domid]:
            del self.ports[path]
        closing = [c.closed for c in self.connections if c.domid == domid]
        self.store.release(domid)
        return _gather([*(p.stopListening() for p in ports), *closing])

    def stop(self) -> defer.Deferred[None]:
        """Stop listening and drop every connection (as a crashed or restarted xenstored)."""
        ports = [port for _, port in self.ports.values()]
        self.ports.clear()
        closing = [c.closed for c in self.connections]
        for connection in list(self.connections):
            assert connection.transport is not None
            connection.transport.abortConnection()  # type: ignore[attr-defined]
        return _gather([*(p.stopListening() for p in ports), *closing])


def _gather(waits: list[Any]) -> defer.Deferred[None]:
    deferreds = [w if isinstance(w, defer.Deferred) else defer.succeed(w) for w in waits]
    return defer.gatherResults(deferreds).addCallback(lambda _: None)
