"""serouter's XenStore client: a Twisted service that stays connected and keeps its watches.

Built on ``ClientService``: it connects (``XenStoreEndpoint`` finds xenstored), reconnects
with backoff when the connection goes, and before a new connection is used re-registers every
watch on it (xenstored fires each once at registration, so watchers re-read what they follow).
A request made while disconnected waits for the connection, up to ``request_timeout``, then
fails with ``XenStoreUnavailable``; a request in flight when the connection goes fails the
same way (it may or may not have been applied). There are no threads and no blocking calls:
stopping the service, or the reactor, never waits on xenstored.
"""

from __future__ import annotations

import contextlib
import itertools
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from serouter.xenstore import _helpers
from serouter.xenstore._endpoints import XenStoreEndpoint
from serouter.xenstore._errors import XenStoreError, XenStoreUnavailable
from serouter.xenstore._ops import Operations
from serouter.xenstore._protocol import XenStoreProtocol
from serouter.xenstore._wire import Op, is_valid_path

log = Logger(namespace="serouter.xenstore")
T = TypeVar("T")
WatchCallback = Callable[[str], object]
TRANSACTION_ATTEMPTS = 16
# First retry after 0.1-0.2 s (Twisted's default jitter adds up to a whole second), then up
# to 5 s apart: a restarted xenstored is found quickly, a missing one is not hammered.
_RETRY = backoffPolicy(initialDelay=0.1, maxDelay=5.0, jitter=lambda: random.uniform(0, 0.1))


@dataclass(eq=False)
class _WatchEntry:
    path: str
    token: str
    callback: WatchCallback
    proto: XenStoreProtocol | None = None  # the connection it is registered on


class Watch:
    """A registered watch; it survives reconnections until ``cancel()``."""

    def __init__(self, client: XenStoreClient, entry: _WatchEntry) -> None:
        self._client = client
        self._entry = entry

    @property
    def path(self) -> str:
        return self._entry.path

    def cancel(self) -> defer.Deferred[None]:
        """Stop the callbacks at once; UNWATCH is sent if connected (its failure is ignored)."""
        return self._client._unwatch(self._entry)


class Transaction(Operations):
    """The operations inside one transaction (see ``XenStoreClient.transaction``)."""

    def __init__(self, proto: XenStoreProtocol, tx_id: int) -> None:
        self._proto = proto
        self.tx_id = tx_id

    def _call(self, op: Op, payload: bytes, path: str | None) -> defer.Deferred[bytes]:
        return self._proto.request(op, payload, self.tx_id, path)

    async def _end(self, commit: bool) -> None:
        await self._proto.request(Op.TRANSACTION_END, b"T\0" if commit else b"F\0", self.tx_id)


class _Factory(Factory):
    noisy = False

    def __init__(self, client: XenStoreClient) -> None:
        self._client = client

    def buildProtocol(self, addr: object) -> XenStoreProtocol:
        return XenStoreProtocol(self._client._on_event, self._client._on_connect)


class XenStoreClient(Operations, Service):
    """Requests as Deferreds, watches with reconnect-and-rewatch, transactions with retry."""

    def __init__(
        self,
        reactor: Any,
        endpoint: IStreamClientEndpoint | None = None,
        *,
        request_timeout: float = 10.0,
        retry_policy: Callable[[int], float] | None = None,
    ) -> None:
        self.reactor = reactor
        self.request_timeout = request_timeout
        self._watches: dict[str, _WatchEntry] = {}
        self._tokens = itertools.count(1)
        self._current: XenStoreProtocol | None = None
        self._service = ClientService(
            endpoint if endpoint is not None else XenStoreEndpoint(reactor),
            _Factory(self),
            retryPolicy=retry_policy or _RETRY,
            clock=reactor,
            prepareConnection=self._prepare,
        )

    # -- service -----------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._service.startService()

    def stopService(self) -> defer.Deferred[None]:
        """Stop reconnecting and close the connection; waiting requests fail at once."""
        super().stopService()  # type: ignore[no-untyped-call]
        return self._service.stopService()

    @property
    def connected(self) -> bool:
        return self._current is not None and self._current.open

    def when_connected(self) -> defer.Deferred[None]:
        """Fires once connected and every watch is registered (no timeout)."""
        return self._service.whenConnected().addCallback(lambda _: None)

    def _on_connect(self, proto: XenStoreProtocol) -> None:
        self._current = proto
        peer = proto.transport.getPeer() if proto.transport is not None else None
        log.info("connected to xenstored ({peer})", peer=peer)

    def _prepare(self, _proxy: object) -> defer.Deferred[None]:
        """Re-register every watch on the new connection before anyone uses it."""
        proto = self._current
        assert proto is not None

        async def register(entry: _WatchEntry) -> None:
            try:
                await self._register(proto, entry)
            except XenStoreError as error:  # a lost connection propagates: ClientService retries
                log.error("xenstored refused the watch on {path}: {error}",
                          path=entry.path, error=error)

        registering = [defer.Deferred.fromCoroutine(register(e)) for e in self._watches.values()]
        return defer.gatherResults(registering, consumeErrors=True).addCallback(lambda _: None)

    async def _connection(self) -> XenStoreProtocol:
        return cast(XenStoreProtocol, await self._service.whenConnected())

    def _bounded(self, work: Coroutine[Any, Any, T], what: str | None) -> defer.Deferred[T]:
        """``work`` as a Deferred that fails with XenStoreUnavailable after the timeout."""

        async def guarded() -> T:
            waiting = defer.Deferred.fromCoroutine(work)
            waiting.addTimeout(self.request_timeout, self.reactor)
            try:
                return await waiting
            except defer.TimeoutError as error:
                raise XenStoreUnavailable(
                    f"no answer from xenstored within {self.request_timeout}s ({what})") from error
            except defer.CancelledError as error:
                if self._service.running:
                    raise
                raise XenStoreUnavailable("the XenStore client is stopped") from error

        return defer.Deferred.fromCoroutine(guarded())

    async def _on_connection(self, use: Callable[[XenStoreProtocol], Awaitable[T]]) -> T:
        """``use(connection)``; again on the next connection if this one goes meanwhile (every
        single XenStore request is idempotent, and a transaction body may run again anyway)."""
        while True:
            proto = await self._connection()
            try:
                return await use(proto)
            except XenStoreUnavailable:
                if proto.open:
                    raise
            # Let ClientService hear of the loss first, or it would hand out this one again.
            await task.deferLater(self.reactor, 0, lambda: None)

    def _call(self, op: Op, payload: bytes, path: str | None) -> defer.Deferred[bytes]:
        def ask(proto: XenStoreProtocol) -> defer.Deferred[bytes]:
            return proto.request(op, payload, 0, path)

        return self._bounded(self._on_connection(ask), path or op.name)

    # -- watches -----------------------------------------------------------------------------

    def watch(self, path: str, callback: WatchCallback) -> defer.Deferred[Watch]:
        """Call ``callback(event_path)`` on every change at or below ``path`` (``@...`` special
        paths too), once at once, and once after every reconnection. Fires when xenstored has
        acknowledged it; if it cannot within the timeout, nothing stays registered."""
        if not is_valid_path(path, allow_special=True):
            return defer.fail(XenStoreError("EINVAL", path))
        entry = _WatchEntry(path, f"serouter-{next(self._tokens)}", callback)
        self._watches[entry.token] = entry

        async def on(proto: XenStoreProtocol) -> None:
            if entry.proto is not proto:  # else the reconnection registered it already
                await self._register(proto, entry)

        async def register() -> Watch:
            try:
                await self._on_connection(on)
            except BaseException:
                self._watches.pop(entry.token, None)
                raise
            return Watch(self, entry)

        return self._bounded(register(), path)

    def _register(self, proto: XenStoreProtocol, entry: _WatchEntry) -> defer.Deferred[None]:
        entry.proto = proto
        payload = f"{entry.path}\0{entry.token}\0".encode("ascii")

        def failed(failure: Failure) -> Failure:
            if entry.proto is proto:
                entry.proto = None
            return failure

        return proto.request(Op.WATCH, payload, 0, entry.path).addCallbacks(lambda _: None, failed)

    def _unwatch(self, entry: _WatchEntry) -> defer.Deferred[None]:
        proto, entry.proto = entry.proto, None
        if self._watches.pop(entry.token, None) is None or proto is None or not proto.open:
            return defer.succeed(None)
        payload = f"{entry.path}\0{entry.token}\0".encode("ascii")

        def ignore(failure: Failure) -> Failure | None:
            gone = isinstance(failure.value, XenStoreError | XenStoreUnavailable)
            return None if gone else failure

        unwatching = proto.request(Op.UNWATCH, payload, 0, entry.path)
        return unwatching.addCallbacks(lambda _: None, ignore)

    def _on_event(self, proto: XenStoreProtocol, path: str, token: str) -> None:
        entry = self._watches.get(token)
        if entry is not None:
            entry.callback(path)

    # -- transactions ------------------------------------------------------------------------

    def transaction(
        self,
        body: Callable[[Transaction], Awaitable[T]],
        attempts: int = TRANSACTION_ATTEMPTS,
    ) -> defer.Deferred[T]:
        """Run ``body(tx)`` in a transaction and commit; on a conflict (EAGAIN) run it again,
        up to ``attempts`` times. If ``body`` fails the transaction is abandoned."""

        async def once(proto: XenStoreProtocol) -> tuple[bool, T | None]:
            reply = await proto.request(Op.TRANSACTION_START, b"\0")
            tx = Transaction(proto, int(reply.rstrip(b"\0") or b"0"))
            try:
                result = await body(tx)
            except BaseException:
                await _quietly(tx._end(commit=False))
                raise
            try:
                await tx._end(commit=True)
            except XenStoreError as error:
                if error.name == "EAGAIN":
                    return False, None
                raise
            return True, result

        async def run() -> T:
            for _ in range(attempts):
                done, result = await self._on_connection(once)
                if done:
                    return cast(T, result)
            raise XenStoreError("EAGAIN")

        return self._bounded(run(), "transaction")


    # -- what federation and labeling need (see _helpers) --------------------------------------

    def publish_nameserver(self, path: str, endpoint: str) -> defer.Deferred[None]:
        """Write ``endpoint`` at ``path`` with perms ``r0``: every domain reads, dom0 writes."""
        return defer.Deferred.fromCoroutine(_helpers.publish_nameserver(self, path, endpoint))

    def remove(self, path: str) -> defer.Deferred[None]:
        """Remove ``path`` if it is there."""
        return defer.Deferred.fromCoroutine(_helpers.remove(self, path))

    def watch_value(
        self, path: str, on_change: _helpers.ValueCallback
    ) -> defer.Deferred[_helpers.ValueWatch]:
        """Call ``on_change(text or None)`` now and on every change of the value at ``path``;
        fires once the current value was reported. ``cancel()`` the result to stop."""
        following = _helpers.watch_value(self, path, on_change, self.request_timeout)
        return defer.Deferred.fromCoroutine(following)

    def domain_info(self, domid: int) -> defer.Deferred[_helpers.DomainInfo]:
        """``(name, uuid)`` of domain ``domid`` from ``/local/domain/<domid>/{name,vm}``."""
        return defer.Deferred.fromCoroutine(_helpers.domain_info(self, domid))


async def _quietly(work: Awaitable[None]) -> None:
    with contextlib.suppress(XenStoreError, XenStoreUnavailable):
        await work
