"""Name-server mode: the name service of each realm, as an internal callee of that realm.

The procedures (``serouter.ns.*``, see ``_protocol``) are registered by an in-process session
with ``disclose_caller``, so each invocation names the router session that called; entries
and watches belong to that session and go when it leaves (``wamp.session.on_leave``). Calling
them is a CALL like any other, checked by the realm; then every announced URI is checked with
``Action.ANNOUNCE`` and every looked-up URI with ``Action.LOOKUP``, as that router's session
(its label is transport-derived: a VM cannot announce or look up what its domain may not).
A denied announce holds nothing and says which entries were refused; a denied lookup is
ERROR ``wamp.error.not_authorized``.

Must never: hold an entry for a session that is gone, tell a router anything about a URI it
may not look up, or block (everything here is synchronous and in memory).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from serouter.core import uris
from serouter.core.access import Action
from serouter.core.messages import (
    Event,
    Invocation,
    InvocationError,
    Outgoing,
    Register,
    Yield,
)
from serouter.core.realm import Realm
from serouter.core.router import Router
from serouter.core.session import Session
from serouter.federation import _protocol as p
from serouter.federation._index import NameIndex, Outcome
from serouter.federation._internal import (
    answer,
    join_internal,
    leave_internal,
    subscribe_internal,
)

log = Logger(namespace="serouter.nameserver")

SESSION_ON_LEAVE = "wamp.session.on_leave"
LIMIT_REACHED = "serouter.ns.error.limit_reached"
Handler = Callable[[Session, list[Any]], Any]


class _Refused(Exception):
    def __init__(self, error: str, message: str | None = None) -> None:
        super().__init__(message or error)
        self.error, self.message = error, message


class NameService:
    """The name service of one realm."""

    def __init__(self, router: Router, realm: Realm, max_entries: int = 100_000) -> None:
        self.router = router
        self.realm = realm
        self.index = NameIndex(max_entries)
        self.session = join_internal(router, realm, self._receive, "serouter.nameserver")
        handlers: dict[str, Handler] = {
            p.ANNOUNCE: self._announce, p.WITHDRAW: self._withdraw,
            p.LOOKUP: self._lookup, p.UNWATCH: self._unwatch,
        }
        self._handlers: dict[int, Handler] = {}
        for procedure, handler in handlers.items():
            self._handlers[self._register(procedure)] = handler
        self._on_leave = subscribe_internal(self.session, SESSION_ON_LEAVE)

    def close(self) -> None:
        leave_internal(self.session)

    def _register(self, procedure: str) -> int:
        """Register without an access check: the name service is the router's own."""
        request = self.session.next_request_id()
        self.realm.dealer.register(
            self.session, Register(request, {"disclose_caller": True}, procedure))
        registration = self.realm.dealer.lookup(procedure)
        if registration is None or self.session not in registration.callees:
            raise RuntimeError(f"cannot register {procedure} in realm {self.realm.name}")
        return registration.id

    # -- messages to the internal session ------------------------------------------------------

    def _receive(self, message: Outgoing) -> None:
        if type(message) is Invocation:
            self._invoke(message)
        elif (type(message) is Event and message.subscription == self._on_leave
              and message.args and type(message.args[0]) is int):
            self.publish(self.index.drop(message.args[0]))
        # INTERRUPT needs nothing: every invocation is answered before it returns

    def _invoke(self, invocation: Invocation) -> None:
        try:
            value = self._run(invocation)
        except p.BadArgument as e:
            self._answer(InvocationError(invocation.request, {}, uris.INVALID_ARGUMENT,
                                         [str(e)], None))
        except _Refused as e:
            self._answer(InvocationError(invocation.request, {}, e.error,
                                         [e.message] if e.message else None, None))
        else:
            self._answer(Yield(invocation.request, {}, [value], None))

    def _run(self, invocation: Invocation) -> Any:
        handler = self._handlers.get(invocation.registration)
        caller = self.realm.sessions.get(invocation.details.get("caller", 0))
        if handler is None:
            raise _Refused(uris.NO_SUCH_PROCEDURE)
        if caller is None:  # the realm forbids disclosure (refused by the configuration)
            raise _Refused(uris.AUTHORIZATION_FAILED, "the calling session is not disclosed")
        return handler(caller, invocation.args or [])

    def _answer(self, message: Yield | InvocationError) -> None:
        answer(self.session, message)

    # -- the procedures ------------------------------------------------------------------------

    def _announce(self, caller: Session, args: list[Any]) -> list[str | None]:
        if len(args) != 2 or not isinstance(args[1], list):
            raise p.BadArgument("announce(advertise, entries)")
        endpoint = p.endpoint_from_wire(args[0])
        entries = [p.entry_from_wire(item) for item in args[1]]
        verdicts: list[str | None] = [
            self.realm.authorize(caller, Action.ANNOUNCE, e.key.uri) for e in entries]
        allowed = [e for e, v in zip(entries, verdicts, strict=True) if v is None]
        held, outcome = self.index.announce(caller.id, endpoint, allowed)
        refused = iter(held)
        result = [v if v is not None else (None if next(refused) else LIMIT_REACHED)
                  for v in verdicts]
        self.publish(outcome)
        return result

    def _withdraw(self, caller: Session, args: list[Any]) -> int:
        if len(args) != 1 or not isinstance(args[0], list):
            raise p.BadArgument("withdraw(entries)")
        keys = [p.key_list_from_wire(item) for item in args[0]]
        outcome = self.index.withdraw(caller.id, keys)
        self.publish(outcome)
        return len(outcome.changes)

    def _key(self, caller: Session, args: list[Any], action: Action | None) -> tuple[p.Key, bool]:
        if len(args) not in (2, 3):
            raise p.BadArgument("(kind, uri, options)")
        options = p.options_from_wire(args[2] if len(args) == 3 else None)
        key = p.key_from_wire(args[0], args[1], options.get("match"))
        if key.kind == p.PROCEDURE and key.match != "exact":
            raise p.BadArgument("a procedure is looked up by the URI called, not a pattern")
        if action is not None:
            refused = self.realm.authorize(caller, action, key.uri)
            if refused is not None:
                raise _Refused(refused)
        return key, options.get("watch") is True

    def _lookup(self, caller: Session, args: list[Any]) -> list[dict[str, Any]]:
        key, watch = self._key(caller, args, Action.LOOKUP)
        if watch and not self.index.watch(caller.id, key):
            raise _Refused(LIMIT_REACHED, "too many watches")
        return self.index.lookup(caller.id, key)

    def _unwatch(self, caller: Session, args: list[Any]) -> None:
        key, _watch = self._key(caller, args, None)
        self.index.unwatch(caller.id, key)

    # -- telling routers -----------------------------------------------------------------------

    def publish(self, outcome: Outcome) -> None:
        """Deliver ``on_watched`` to each notified router and ``on_change`` to its subscribers.

        Events go to the exact subscriptions of the two topics only, built here: each carries
        what that one subscriber may learn, so no broker-wide publication fits.
        """
        if outcome.notices:
            watched = self.realm.broker.lookup(p.ON_WATCHED)
            if watched is not None:
                for sid, keys in outcome.notices.items():
                    target = watched.subscribers.get(sid)
                    if target is not None:
                        self._event(target, watched.id, [[k.wire() for k in sorted(
                            keys, key=lambda k: (k.kind, k.uri, k.match))]])
        if outcome.changes:
            self._changes(outcome)

    def _changes(self, outcome: Outcome) -> None:
        feed = self.realm.broker.lookup(p.ON_CHANGE)
        if feed is None:
            return
        for target in list(feed.subscribers.values()):
            visible = [
                [op, e.key.kind, e.key.uri, e.key.match,
                 e.invoke if e.key.kind == p.PROCEDURE else None]
                for op, e in outcome.changes
                if self.realm.authorize(target, Action.LOOKUP, e.key.uri) is None
            ]
            if visible:
                self._event(target, feed.id, [visible])

    def _event(self, target: Session, subscription: int, args: list[Any]) -> None:
        event = Event(subscription, self.router.ids.random_id(), {}, args)
        self.realm.deliver([(target, event)])


class NameServer:
    """Name-server mode: the name service in every realm of the router."""

    def __init__(self, router: Router, max_entries: int = 100_000) -> None:
        self.services = {name: NameService(router, realm, max_entries)
                         for name, realm in router.realms.items()}
        log.info("name service in realms {realms}", realms=sorted(self.services))

    def close(self) -> None:
        for service in self.services.values():
            service.close()
