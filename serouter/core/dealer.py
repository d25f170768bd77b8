"""The dealer: registrations, calls and their invocations. Pure state; no I/O, no policy.

Every public method takes the acting session and its message and *returns* the messages to
deliver as ``(session, message)`` pairs; the realm delivers them. The access check happened
before any of these is called, and the dealer does not know it exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from serouter.core import uris
from serouter.core.ids import IdGenerator
from serouter.core.matching import EXACT, MATCH_POLICIES, UriMap
from serouter.core.messages import (
    CALL,
    REGISTER,
    UNREGISTER,
    Call,
    Error,
    Invocation,
    InvocationError,
    Register,
    Registered,
    Result,
    Unregister,
    Unregistered,
    Yield,
)

if TYPE_CHECKING:
    from serouter.core.session import Session

log = Logger(namespace="serouter.dealer")

Deliveries = list[tuple["Session", Any]]


def _error(request_type: int, request: int, error: str, message: str | None = None) -> Error:
    # Same shape as realm.error_reply; kept local so the dealer does not import the realm.
    return Error(request_type, request, {}, error, [message] if message else None)


@dataclass(slots=True, eq=False)
class Registration:
    id: int
    procedure: str
    match: str
    callees: list[Session] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class PendingCall:
    """A call on its way: the caller's request and the callee's invocation."""

    caller: Session
    request: int
    callee: Session
    invocation: int


class Dealer:
    """Routes calls of one realm."""

    def __init__(self, ids: IdGenerator) -> None:
        self._ids = ids
        self._registrations: UriMap[Registration] = UriMap()
        self._by_id: dict[int, Registration] = {}
        # Pending calls by (callee session id, invocation request id) and by (caller id, request)
        self._by_invocation: dict[tuple[int, int], PendingCall] = {}
        self._by_call: dict[tuple[int, int], PendingCall] = {}
        # Registrations each session holds, to clean up when it leaves.
        self._held: dict[int, set[int]] = {}

    # -- registration --------------------------------------------------------------------

    def register(self, session: Session, msg: Register) -> Deliveries:
        match = msg.options.get("match") or EXACT
        if match not in MATCH_POLICIES:
            return [(session, _error(REGISTER, msg.request, uris.OPTION_NOT_ALLOWED,
                                     f"match policy {match!r} is not supported"))]
        if uris.is_reserved(msg.procedure):
            return [(session, _error(REGISTER, msg.request, uris.INVALID_URI,
                                     "procedures under 'wamp.' are reserved for the router"))]
        if self._registrations.get(msg.procedure, match) is not None:
            return [(session, _error(REGISTER, msg.request, uris.PROCEDURE_ALREADY_EXISTS,
                                     f"{msg.procedure} is already registered"))]
        reg = Registration(self._ids.router_id(), msg.procedure, match, [session])
        self._registrations.add(msg.procedure, match, reg)
        self._by_id[reg.id] = reg
        self._held.setdefault(session.id, set()).add(reg.id)
        return [(session, Registered(msg.request, reg.id))]

    def unregister(self, session: Session, msg: Unregister) -> Deliveries:
        reg = self._by_id.get(msg.registration)
        if reg is None or session not in reg.callees:
            return [(session, _error(UNREGISTER, msg.request, uris.NO_SUCH_REGISTRATION))]
        self._held[session.id].discard(reg.id)
        self._remove_callee(reg, session)
        return [(session, Unregistered(msg.request))]

    # -- calls ---------------------------------------------------------------------------

    def call(self, caller: Session, msg: Call) -> Deliveries:
        key = (caller.id, msg.request)
        if key in self._by_call:
            caller.protocol_violation(f"CALL request ID {msg.request} is already in use")
            return []
        reg = self._registrations.best(msg.procedure)
        if reg is None:
            return [(caller, _error(CALL, msg.request, uris.NO_SUCH_PROCEDURE,
                                    f"no callee registered for procedure {msg.procedure}"))]
        callee = reg.callees[0]
        invocation = callee.next_request_id()
        pending = PendingCall(caller, msg.request, callee, invocation)
        self._by_invocation[(callee.id, invocation)] = pending
        self._by_call[key] = pending
        return [(callee, Invocation(invocation, reg.id, {}, msg.args, msg.kwargs))]

    def yield_(self, callee: Session, msg: Yield) -> Deliveries:
        pending = self._by_invocation.pop((callee.id, msg.request), None)
        if pending is None:
            # The caller left or the call ended meanwhile: a race, not a violation.
            log.debug("YIELD for unknown invocation {request}", request=msg.request)
            return []
        del self._by_call[(pending.caller.id, pending.request)]
        return [(pending.caller, Result(pending.request, {}, msg.args, msg.kwargs))]

    def fail_invocation(self, callee: Session, invocation: int, error: str) -> Deliveries:
        """An INVOCATION could not be delivered: the caller gets ``error`` at once."""
        pending = self._by_invocation.pop((callee.id, invocation), None)
        if pending is None:
            return []
        del self._by_call[(pending.caller.id, pending.request)]
        text = "the call cannot be carried by the callee's transport"
        return [(pending.caller, _error(CALL, pending.request, error, text))]

    def invocation_error(self, callee: Session, msg: InvocationError) -> Deliveries:
        pending = self._by_invocation.pop((callee.id, msg.request), None)
        if pending is None:
            return []
        del self._by_call[(pending.caller.id, pending.request)]
        reply = Error(CALL, pending.request, {}, msg.error, msg.args, msg.kwargs)
        return [(pending.caller, reply)]

    # -- sessions leaving ------------------------------------------------------------------

    def remove_session(self, session: Session) -> Deliveries:
        """Drop what ``session`` held; callers waiting on it as callee get an ERROR at once."""
        for reg_id in self._held.pop(session.id, ()):
            reg = self._by_id.get(reg_id)
            if reg is not None:
                self._remove_callee(reg, session)
        out: Deliveries = []
        for key in [k for k, p in self._by_invocation.items() if p.callee is session]:
            pending = self._by_invocation.pop(key)
            del self._by_call[(pending.caller.id, pending.request)]
            out.append((pending.caller, _error(CALL, pending.request, uris.CANCELED,
                                               "callee disconnected from in-flight request")))
        # Calls the session made as caller: their results have nowhere to go.
        for key in [k for k, p in self._by_call.items() if p.caller is session]:
            pending = self._by_call.pop(key)
            self._by_invocation.pop((pending.callee.id, pending.invocation), None)
        return out

    def _remove_callee(self, reg: Registration, callee: Session) -> None:
        """Remove one callee from a registration, and the registration once it has none.

        Invocations already sent stay pending: a callee that unregisters may still answer.
        """
        reg.callees.remove(callee)
        if not reg.callees:
            self._registrations.remove(reg.procedure, reg.match)
            del self._by_id[reg.id]

    # -- introspection (meta API, tests) ---------------------------------------------------

    def registration(self, registration_id: int) -> Registration | None:
        return self._by_id.get(registration_id)

    def lookup(self, procedure: str, match: str = EXACT) -> Registration | None:
        return self._registrations.get(procedure, match)

    @property
    def pending_calls(self) -> int:
        return len(self._by_invocation)
