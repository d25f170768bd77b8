"""The proxy's callee side: calls that match no local registration, forwarded to a provider.

The dealer hands the proxy (its fallback callee) an INVOCATION for every call nobody here
registered. The proxy finds the provider (its route cache, else a name-server lookup that also
watches the URI), sends the CALL on its session with that router, and relays everything back
as the callee: progressive results, the final result or error (args and kwargs kept), and the
local caller's cancel (INTERRUPT -> CANCEL). The dealer keeps the call's timeout and the
caller's single final answer, as for any callee.

When the name server cannot be asked, or knows no provider, the call fails at once with
``wamp.error.no_such_procedure``. When the provider's connection goes, the call fails at once
with ``wamp.error.canceled``, as for a local callee that disconnects. A provider that answers
``no_such_procedure`` held a stale entry: the route is dropped and the call looked up again,
once (it never ran, so it is safe to send again).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure

from serouter.core import uris
from serouter.core.messages import Interrupt, Invocation, InvocationError, Yield
from serouter.federation._client import WampClient, WampError
from serouter.federation._link import NameServerLink, NameServerUnavailable
from serouter.federation._protocol import PROCEDURE, Key
from serouter.federation._remote import RemotePool

log = Logger(namespace="serouter.federation")

FORWARDED_CALLER = "x_serouter_caller"  # CALL option: the caller as the calling router knows it
Answer = Callable[[Yield | InvocationError], None]
RESOLVING, CONNECTING, SENT = 1, 2, 3


class Route:
    """The providers of a procedure, as the name server answered, and whose turn it is."""

    __slots__ = ("endpoints", "invoke", "next")

    def __init__(self, endpoints: list[str], invoke: str) -> None:
        self.endpoints = endpoints
        self.invoke = invoke
        self.next = 0

    def pick(self, below: Callable[[int], int]) -> str:
        endpoints = self.endpoints
        if len(endpoints) == 1 or self.invoke in ("single", "first"):
            return endpoints[0]
        if self.invoke == "roundrobin":
            self.next = (self.next + 1) % len(endpoints)
            return endpoints[self.next]
        if self.invoke == "random":
            return endpoints[below(len(endpoints))]
        return endpoints[-1]


class Forward:
    """One forwarded call, from its INVOCATION to its final answer (a CallHandler)."""

    __slots__ = ("calls", "chunks", "client", "details", "endpoint", "invocation", "procedure",
                 "request", "retried", "state")

    def __init__(self, calls: Calls, invocation: Invocation, procedure: str) -> None:
        self.calls = calls
        self.invocation = invocation
        self.procedure = procedure
        self.details = invocation.details
        self.state: int | None = RESOLVING  # None: answered, or cancelled
        self.chunks: list[Invocation] = []  # later chunks of a progressive call, not yet sent
        self.client: WampClient | None = None
        self.endpoint = ""
        self.request = 0
        self.retried = False

    @property
    def streaming(self) -> bool:
        return self.details.get("progress") is True

    def send(self, client: WampClient, endpoint: str) -> None:
        if self.state is None:
            return  # cancelled meanwhile
        d = self.details
        options: dict[str, Any] = {}
        if d.get("receive_progress") is True:
            options["receive_progress"] = True
        if d.get("progress") is True:
            options["progress"] = True
        if "caller" in d:  # disclosed here: disclose it there too, as what it is
            options["disclose_me"] = True
            options[FORWARDED_CALLER] = {
                "session": d["caller"], "authid": d.get("caller_authid"),
                "authrole": d.get("caller_authrole")}
        inv = self.invocation
        request, refused = client.call(self.procedure, options, inv.args, inv.kwargs, self)
        if refused is not None:
            self.finish(InvocationError(inv.request, {}, refused, None, None))
            return
        self.state, self.client, self.endpoint, self.request = SENT, client, endpoint, request
        chunks, self.chunks = self.chunks, []
        for chunk in chunks:
            self.more(chunk)

    def more(self, chunk: Invocation) -> None:
        """A later chunk of a progressive call (same invocation ID): the same CALL request."""
        if self.state != SENT:
            self.chunks.append(chunk)
            return
        assert self.client is not None
        options = {"progress": True} if chunk.details.get("progress") is True else {}
        self.client.call(self.procedure, options, chunk.args, chunk.kwargs, self,
                         request=self.request)

    def finish(self, message: Yield | InvocationError) -> None:
        self.state = None
        self.calls.done(self)
        self.calls.answer(message)

    # -- CallHandler: answers from the remote router ---------------------------------------

    def on_result(self, details: dict[str, Any], args: list[Any] | None,
                  kwargs: dict[str, Any] | None) -> None:
        request = self.invocation.request
        if details.get("progress") is True:
            self.calls.answer(Yield(request, {"progress": True}, args, kwargs))
        else:
            self.finish(Yield(request, {}, args, kwargs))

    def on_error(self, details: dict[str, Any], error: str, args: list[Any] | None,
                 kwargs: dict[str, Any] | None) -> None:
        if error == uris.NO_SUCH_PROCEDURE and not self.retried and not self.streaming:
            self.retried = True  # a stale route: the call never ran there, ask again
            self.calls.invalidate(self.procedure)
            self.state = RESOLVING
            self.calls.resolve(self)
            return
        self.finish(InvocationError(self.invocation.request, {}, error, args, kwargs))

    def on_lost(self) -> None:
        self.finish(InvocationError(self.invocation.request, {}, uris.CANCELED,
                                    ["the router providing the procedure went away"], None))

    def cancel(self, mode: str) -> None:
        """The local caller cancelled (INTERRUPT): cancel there, or end it here if unsent."""
        if self.state == SENT:
            assert self.client is not None
            self.client.cancel(self.request, mode)
            if mode != "kill":  # the caller has its answer already; the callee's is dropped
                self.client.forget(self.request)
                self.state = None
                self.calls.done(self)
            return
        self.finish(InvocationError(self.invocation.request, {}, uris.CANCELED, None, None))


class Calls:
    """Forwarded calls of one realm, and the cache of routes to their providers."""

    def __init__(
        self,
        answer: Answer,
        link: NameServerLink,
        pool: RemotePool,
        below: Callable[[int], int],
        cache_size: int = 10_000,
    ) -> None:
        self.answer = answer  # to the dealer, as the fallback callee
        self.link = link
        self.pool = pool
        self.below = below
        self.cache_size = cache_size
        self._forwards: dict[int, Forward] = {}
        self._routes: OrderedDict[str, Route] = OrderedDict()
        self._resolving: dict[str, list[Forward]] = {}

    @property
    def pending(self) -> int:
        return len(self._forwards)

    def invocation(self, invocation: Invocation) -> None:
        request = invocation.request
        forward = self._forwards.get(request)
        if forward is not None:
            forward.more(invocation)
            return
        procedure = invocation.details.get("procedure")
        if type(procedure) is not str:
            self.answer(InvocationError(request, {}, uris.NO_SUCH_PROCEDURE, None, None))
            return
        forward = self._forwards[request] = Forward(self, invocation, procedure)
        route = self._routes.get(procedure)
        if route is None:
            self.resolve(forward)
        else:
            self.dispatch(forward, route)

    def interrupt(self, interrupt: Interrupt) -> None:
        forward = self._forwards.get(interrupt.request)
        if forward is not None:
            mode = interrupt.options.get("mode")
            forward.cancel(mode if mode in ("kill", "killnowait") else "killnowait")

    def done(self, forward: Forward) -> None:
        self._forwards.pop(forward.invocation.request, None)

    def dispatch(self, forward: Forward, route: Route) -> None:
        endpoint = route.pick(self.below)
        client = self.pool.ready(endpoint)
        if client is not None:
            forward.send(client, endpoint)
            return
        forward.state = CONNECTING
        self.pool.connect(endpoint).addCallbacks(
            lambda c: forward.send(c, endpoint),
            lambda f: self._unreachable(forward, endpoint, f))

    def _unreachable(self, forward: Forward, endpoint: str, failure: Failure) -> None:
        self.endpoint_lost(endpoint)
        if forward.state == CONNECTING:
            forward.finish(InvocationError(
                forward.invocation.request, {}, uris.NO_AVAILABLE_CALLEE,
                ["the router providing the procedure cannot be reached"], None))

    # -- routes --------------------------------------------------------------------------------

    def resolve(self, forward: Forward) -> None:
        procedure = forward.procedure
        waiting = self._resolving.get(procedure)
        if waiting is not None:
            waiting.append(forward)
            return
        if not self.link.connected:  # fail fast: local traffic never waits for the name server
            self._no_route(forward)
            return
        self._resolving[procedure] = [forward]
        looked_up = self.link.lookup(Key(PROCEDURE, procedure), watch=True)
        looked_up.addCallbacks(lambda providers: self._resolved(procedure, providers),
                               lambda f: self._failed(procedure, f))

    def _resolved(self, procedure: str, providers: list[dict[str, Any]]) -> None:
        endpoints = [item["endpoint"] for item in providers
                     if self.pool.acceptable(item["endpoint"])]
        route = None
        if endpoints:
            route = Route(list(dict.fromkeys(endpoints)), providers[0].get("invoke", "single"))
            self._remember(procedure, route)
        for forward in self._resolving.pop(procedure, []):
            if forward.state != RESOLVING:
                continue  # cancelled meanwhile
            if route is None:
                self._no_route(forward)
            else:
                self.dispatch(forward, route)

    def _failed(self, procedure: str, failure: Failure) -> None:
        error = failure.value
        if isinstance(error, WampError):
            log.info("federation: the name server refused the lookup of {procedure}: {error}",
                     procedure=procedure, error=error.error)
        elif not isinstance(error, NameServerUnavailable):
            log.info("federation: looking up {procedure} failed: {error}", procedure=procedure,
                     error=failure.getErrorMessage())
        for forward in self._resolving.pop(procedure, []):
            if forward.state == RESOLVING:
                self._no_route(forward)

    def _no_route(self, forward: Forward) -> None:
        forward.finish(InvocationError(
            forward.invocation.request, {}, uris.NO_SUCH_PROCEDURE,
            [f"no callee registered for procedure {forward.procedure}"], None))

    def _remember(self, procedure: str, route: Route) -> None:
        self._routes[procedure] = route
        while len(self._routes) > self.cache_size:
            evicted, _route = self._routes.popitem(last=False)
            self.link.unwatch(Key(PROCEDURE, evicted))

    def invalidate(self, procedure: str) -> None:
        """The name server says the providers may have changed (or a provider said so)."""
        self._routes.pop(procedure, None)

    def forget_routes(self) -> None:
        """A new name-server session: watches from the last one are gone, so are routes."""
        self._routes.clear()

    def endpoint_lost(self, endpoint: str) -> None:
        for procedure in [p for p, r in self._routes.items() if endpoint in r.endpoints]:
            del self._routes[procedure]

    def close(self) -> None:
        """Stopping: every pending call ends with an ERROR now."""
        for forward in list(self._forwards.values()):
            forward.finish(InvocationError(forward.invocation.request, {}, uris.CANCELED,
                                           ["the router is shutting down"], None))
