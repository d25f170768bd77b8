"""A minimal WAMP client over RawSocket: how a proxy talks to the name server and to routers.

Why not Autobahn|Python: every remote call crosses this client twice (CALL out, RESULT in) on
the router's own reactor, and an Autobahn session costs several times the CPU per message of a
plain framing + serializer + dict dispatch (bench/README.md measured ~8x for its peer). The
proxy needs only the caller and subscriber roles, so the client is small: the project's own
serializers, the framing in ``_wire``, and callbacks instead of Deferreds on the hot path.

Writes go through the router's ``WriteBatcher``, and input is handled inside one batch, so a
burst of RESULTs relayed to local callers leaves in one write per connection.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

import msgpack
from twisted.internet import defer
from twisted.internet.endpoints import clientFromString
from twisted.internet.protocol import Factory, connectionDone
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from serouter.core import uris
from serouter.federation import _wire as w
from serouter.serializers import BY_NAME, Serializer
from serouter.transport._base import WriteBatcher, write_through

log = Logger(namespace="serouter.federation")

# The client's preference; a router whose listener offers none of these refuses the handshake.
SERIALIZERS = ("msgpack", "cbor", "json")
# Asked for in this order: a TLS client certificate or the kernel's peer credentials identify
# the proxy better than nothing; the remote router's realm decides what it accepts.
AUTHMETHODS = ["tls", "transport", "anonymous"]
GOODBYE_TIMEOUT = 2.0  # seconds a router has to answer our GOODBYE
FEDERATION_FEATURE = "x_serouter_federation"  # marks a proxy's session (see _hooks)
ROLES: dict[str, Any] = {
    "caller": {"features": {
        "progressive_call_results": True, "progressive_call_invocations": True,
        "call_canceling": True, "caller_identification": True, FEDERATION_FEATURE: True,
    }},
    "subscriber": {"features": {
        "pattern_based_subscription": True, "publisher_identification": True,
    }},
    "publisher": {},
}


class WampError(Exception):
    """An ERROR answer (or ABORT) from the router, with its URI and payload."""

    def __init__(
        self, error: str, args: list[Any] | None = None, kwargs: dict[str, Any] | None = None
    ) -> None:
        super().__init__(error, *(args or []))
        self.error, self.payload, self.kwargs = error, args, kwargs


class ConnectionGone(Exception):
    """The connection closed before the answer came."""


class CallHandler(Protocol):
    """Receives the answers to one CALL (progressive results, then one final answer)."""

    def on_result(
        self, details: dict[str, Any], args: list[Any] | None, kwargs: dict[str, Any] | None
    ) -> None: ...

    def on_error(
        self, details: dict[str, Any], error: str, args: list[Any] | None,
        kwargs: dict[str, Any] | None,
    ) -> None: ...

    def on_lost(self) -> None:
        """The connection went before the final answer."""


EventHandler = Callable[[int, dict[str, Any], list[Any] | None, dict[str, Any] | None], None]


class _Raw:
    """A message already in list form, for the project's serializers (they call marshal())."""

    __slots__ = ("message",)

    def __init__(self, message: list[Any]) -> None:
        self.message = message

    def marshal(self) -> list[Any]:
        return self.message


_PACKER = msgpack.Packer(use_bin_type=True, autoreset=True)


def _dumps(serializer: Serializer) -> Callable[[list[Any]], bytes]:
    """The serializer's encoder for messages already in list form (msgpack: the packer)."""
    if serializer.name == "msgpack":
        return cast(Callable[[list[Any]], bytes], _PACKER.pack)
    return lambda message: serializer.encode(cast(Any, _Raw(message)))


class _DeferredCall:
    """A CallHandler for calls whose caller awaits one final answer (the name server's)."""

    def __init__(self) -> None:
        self.done: defer.Deferred[tuple[list[Any], dict[str, Any]]] = defer.Deferred()

    def on_result(self, details: dict[str, Any], args: list[Any] | None,
                  kwargs: dict[str, Any] | None) -> None:
        if not details.get("progress") and not self.done.called:
            self.done.callback((args or [], kwargs or {}))

    def on_error(self, details: dict[str, Any], error: str, args: list[Any] | None,
                 kwargs: dict[str, Any] | None) -> None:
        if not self.done.called:
            self.done.errback(WampError(error, args, kwargs))

    def on_lost(self) -> None:
        if not self.done.called:
            self.done.errback(ConnectionGone())


class WampClient(TwistedProtocol):
    """One client session: handshake, HELLO, then calls and subscriptions."""

    def __init__(self, realm: str, serializer: Serializer, batcher: WriteBatcher | None,
                 clock: Any = None) -> None:
        self.realm = realm
        self.clock = clock  # bounds a GOODBYE's wait for the answer
        self.serializer = serializer
        self.batcher = batcher or WriteBatcher()
        self.framing = w.ClientFraming(serializer.rawsocket_id)
        self._dumps = _dumps(serializer)
        self.session_id = 0
        self.ready: defer.Deferred[WampClient] = defer.Deferred()
        self.on_close: list[Callable[[WampClient], None]] = []
        self.open = False  # joined and not closing
        self._calls: dict[int, CallHandler] = {}
        self._events: dict[int, EventHandler] = {}
        self._waiting: dict[int, defer.Deferred[Any]] = {}  # SUBSCRIBE, UNSUBSCRIBE
        self._ids = itertools.count(1)
        self._writes: list[bytes] = []
        self._leaving: defer.Deferred[None] | None = None
        self._quiet: Any = None  # the timer of an unanswered GOODBYE
        self._closing_now = False

    # -- Twisted callbacks -------------------------------------------------------------------

    def connectionMade(self) -> None:
        handle = getattr(self.transport, "getHandle", lambda: None)()
        if isinstance(handle, socket.socket) and handle.family in (socket.AF_INET, socket.AF_INET6):
            handle.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport.write(w.handshake(self.serializer.rawsocket_id))  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        batcher = self.batcher
        batcher.depth += 1
        try:
            self._received(data)
        except (w.WireError, w.HandshakeRefused) as e:
            self._fail(e)
        except Exception as e:  # a bug of ours: drop this connection, keep serving the rest
            log.failure("federation: internal error on the connection to {peer}",
                        peer=self._peer())
            self._fail(e)
        finally:
            batcher.depth -= 1
            if not batcher.depth and batcher.dirty:
                batcher.flush()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.open = False
        self._writes.clear()
        if self._quiet is not None and self._quiet.active():
            self._quiet.cancel()
        if not self.ready.called:
            self.ready.errback(ConnectionGone(reason.getErrorMessage()))
        calls, self._calls = self._calls, {}
        for handler in calls.values():
            handler.on_lost()
        waiting, self._waiting = self._waiting, {}
        for d in waiting.values():
            d.errback(ConnectionGone())
        self._events.clear()
        if self._leaving is not None and not self._leaving.called:
            self._leaving.callback(None)
        for callback in self.on_close:
            try:
                callback(self)
            except Exception:
                log.failure("a connection-closed callback failed")

    # -- input -------------------------------------------------------------------------------

    def _received(self, data: bytes) -> None:
        was_ready = self.framing.ready
        payloads = self.framing.receive(data)
        if self.framing.out:
            self._write(b"".join(self.framing.out))
            self.framing.out.clear()
        if not was_ready and self.framing.ready:
            self.send([w.HELLO, self.realm, {"roles": ROLES, "authmethods": AUTHMETHODS}])
        loads = self.serializer.loads
        for payload in payloads:
            try:
                message = w.check(loads(payload))
            except w.WireError:
                raise
            except Exception as e:  # each codec has its own errors
                raise w.WireError(f"undecodable {self.serializer.name} payload: {e}") from None
            self._dispatch(message)
            if self._closing_now:
                return

    def _dispatch(self, m: list[Any]) -> None:
        code = m[0]
        if code == w.RESULT:
            self._result(m)
        elif code == w.EVENT:
            handler = self._events.get(m[1])
            if handler is not None:
                args, kwargs = w.args_kwargs(m, 4)
                handler(m[2], m[3], args, kwargs)
        elif code == w.ERROR:
            self._error(m)
        elif code in (w.SUBSCRIBED, w.PUBLISHED):
            self._acknowledged(m[1], m[2])
        elif code == w.UNSUBSCRIBED:
            self._unsubscribed(m)
        else:
            self._session_message(m)

    def _result(self, m: list[Any]) -> None:
        request, details = m[1], m[2]
        handler = self._calls.get(request) if details.get("progress") else self._calls.pop(
            request, None)
        if handler is not None:
            args, kwargs = w.args_kwargs(m, 3)
            handler.on_result(details, args, kwargs)

    def _error(self, m: list[Any]) -> None:
        request_type, request, details, error = m[1], m[2], m[3], m[4]
        args, kwargs = w.args_kwargs(m, 5)
        if request_type == w.CALL:
            handler = self._calls.pop(request, None)
            if handler is not None:
                handler.on_error(details, error, args, kwargs)
        else:
            waiting = self._waiting.pop(request, None)
            if waiting is not None:
                waiting.errback(WampError(error, args, kwargs))

    def _acknowledged(self, request: int, value: int) -> None:
        waiting = self._waiting.pop(request, None)
        if waiting is not None:
            waiting.callback(value)

    def _unsubscribed(self, m: list[Any]) -> None:
        if m[1]:
            self._acknowledged(m[1], 0)
            return
        subscription = m[2].get("subscription")  # the router ended it
        if type(subscription) is int:
            self._events.pop(subscription, None)

    def _session_message(self, m: list[Any]) -> None:
        code = m[0]
        if code == w.WELCOME and not self.ready.called:
            self.session_id, self.open = m[1], True
            self.ready.callback(self)
        elif code == w.ABORT:
            self._fail(WampError(m[2], [m[1].get("message")] if m[1].get("message") else None))
        elif code == w.GOODBYE:
            if self._leaving is None:
                self.send([w.GOODBYE, {}, uris.GOODBYE_AND_OUT])
            self._close()
        elif code == w.CHALLENGE:
            # The proxy proves who it is by its transport, never with a secret of its own.
            self.send([w.ABORT, {"message": "the proxy has no credentials"}, uris.NO_AUTH_METHOD])
            self._fail(WampError(uris.NO_AUTH_METHOD, [f"the router asked for {m[1]}"]))
        else:
            self._fail(w.WireError(f"unexpected message {m!r:.120}"))

    def _fail(self, error: Exception) -> None:
        if not self.ready.called:
            self.ready.errback(error)
        else:
            log.warn("federation: dropping the connection to {peer}: {error}",
                     peer=self._peer(), error=str(error))
        self._close(abort=True)

    def _close(self, abort: bool = False) -> None:
        self.open = False
        self._closing_now = True
        if self.transport is not None:
            self.flush_writes()
            if abort:
                self.transport.abortConnection()  # type: ignore[attr-defined]
            else:
                self.transport.loseConnection()

    def _peer(self) -> str:
        return str(self.transport.getPeer()) if self.transport is not None else "?"

    # -- output ------------------------------------------------------------------------------

    def send(self, message: list[Any]) -> str | None:
        """Encode and queue; None when sent, else the error URI saying why it was not."""
        try:
            data = self._dumps(message)
        except Exception:
            return uris.INVALID_ARGUMENT
        size = len(data)
        if size > self.framing.peer_max:
            return uris.PAYLOAD_SIZE_EXCEEDED
        self._write(size.to_bytes(4, "big") + data)  # a message frame: type 0, 3-byte length
        return None

    def _write(self, data: bytes) -> None:
        batcher = self.batcher
        if batcher.depth:
            if not self._writes:
                batcher.dirty.append(cast(Any, self))  # duck-typed: flush_writes()
            self._writes.append(data)
        elif self.transport is not None:
            write_through(self.transport, data)

    def flush_writes(self) -> None:
        writes, self._writes = self._writes, []
        if self.transport is None or not writes:
            return
        if len(writes) == 1:
            write_through(self.transport, writes[0])
        else:  # busy: see write_through
            self.transport.write(b"".join(writes))

    # -- the caller and subscriber roles ------------------------------------------------------

    def next_id(self) -> int:
        return next(self._ids)

    def call(
        self, procedure: str, options: dict[str, Any], args: list[Any] | None,
        kwargs: dict[str, Any] | None, handler: CallHandler, *, request: int | None = None,
    ) -> tuple[int, str | None]:
        """CALL; ``(request, None)`` once sent, or the error URI if it could not be.

        A progressive call's later chunks pass their first chunk's ``request``.
        """
        request = request or next(self._ids)
        if kwargs:
            message = [w.CALL, request, options, procedure, args or [], kwargs]
        else:
            message = [w.CALL, request, options, procedure, args] if args else [
                w.CALL, request, options, procedure]
        refused = self.send(message)
        if refused is None:
            self._calls[request] = handler
        return request, refused

    def cancel(self, request: int, mode: str) -> None:
        if request in self._calls:
            self.send([w.CANCEL, request, {"mode": mode}])

    def forget(self, request: int) -> None:
        """Stop routing answers of ``request`` anywhere (its caller is gone)."""
        self._calls.pop(request, None)

    def call_deferred(
        self, procedure: str, args: list[Any] | None = None, kwargs: dict[str, Any] | None = None
    ) -> defer.Deferred[tuple[list[Any], dict[str, Any]]]:
        """CALL whose final answer fires ``(args, kwargs)`` or fails with WampError."""
        handler = _DeferredCall()
        _request, refused = self.call(procedure, {}, args, kwargs, handler)
        if refused is not None:
            return defer.fail(WampError(refused))
        return handler.done

    def subscribe(self, topic: str, options: dict[str, Any], on_event: EventHandler
                  ) -> defer.Deferred[int]:
        request = self.next_id()
        refused = self.send([w.SUBSCRIBE, request, options, topic])
        if refused is not None:
            return defer.fail(WampError(refused))
        d: defer.Deferred[int] = defer.Deferred()

        def subscribed(subscription: int) -> int:
            self._events[subscription] = on_event
            return subscription

        self._waiting[request] = d
        return d.addCallback(subscribed)

    def unsubscribe(self, subscription: int) -> defer.Deferred[Any]:
        self._events.pop(subscription, None)
        request = self.next_id()
        refused = self.send([w.UNSUBSCRIBE, request, subscription])
        if refused is not None:
            return defer.fail(WampError(refused))
        d: defer.Deferred[Any] = defer.Deferred()
        self._waiting[request] = d
        return d

    @property
    def pending_calls(self) -> int:
        return len(self._calls)

    def leave(self, reason: str = uris.CLOSE_NORMAL) -> defer.Deferred[None]:
        """GOODBYE; fires once the connection is closed (the caller bounds the wait)."""
        if self._leaving is None:
            self._leaving = defer.Deferred()
            if self.open:
                self.open = False
                self.send([w.GOODBYE, {}, reason])
                self.flush_writes()
                if self.clock is not None:  # a router that never answers is left anyway
                    self._quiet = self.clock.callLater(GOODBYE_TIMEOUT, self._gone_quiet)
            else:
                self._close()
        return self._leaving

    def abort(self) -> None:
        self._close(abort=True)

    def _gone_quiet(self) -> None:
        self._quiet = None
        if self._leaving is not None and not self._leaving.called:
            self.abort()


class _Factory(Factory):
    noisy = False

    def __init__(self, make: Callable[[], WampClient]) -> None:
        self._make = make

    def buildProtocol(self, addr: object) -> WampClient:
        return self._make()


async def open_session(
    reactor: Any,
    endpoint: str,
    realm: str,
    *,
    batcher: WriteBatcher | None = None,
    timeout: float = 5.0,
    serializers: Sequence[str] = SERIALIZERS,
) -> WampClient:
    """Connect to ``endpoint`` (a Twisted client endpoint string) and join ``realm``.

    Serializers are tried in order while the router refuses them in the handshake. Fails with
    WampError (ABORT), ConnectionGone, or the endpoint's own error; gives up after ``timeout``.
    """
    last: Exception | None = None
    for name in serializers:
        client = WampClient(realm, BY_NAME[name], batcher, reactor)
        try:
            return await _attempt(reactor, endpoint, client, timeout)
        except w.HandshakeRefused as e:
            if e.code != w.ERR_SERIALIZER_UNSUPPORTED:
                raise
            last = e
    raise last or ConnectionGone("no serializer to try")


async def _attempt(reactor: Any, endpoint: str, client: WampClient, timeout: float) -> WampClient:
    endpoint_object = clientFromString(reactor, endpoint)  # type: ignore[no-untyped-call]
    connecting = endpoint_object.connect(_Factory(lambda: client))
    connecting.addTimeout(timeout, reactor)
    await connecting
    joining = client.ready

    def abandon(result: Any, seconds: float) -> Any:
        client.abort()
        if isinstance(result, Failure) and isinstance(result.value, defer.CancelledError):
            raise defer.TimeoutError(f"no WELCOME from {endpoint} within {seconds} s")
        return result

    joining.addTimeout(timeout, reactor, onTimeoutCancel=abandon)
    return await joining
