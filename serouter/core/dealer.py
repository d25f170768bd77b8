"""The dealer: registrations, calls and their invocations. Pure state; no I/O, no policy.

Every public method takes the acting session and its message and *returns* the messages to
deliver as ``(session, message)`` pairs; the realm delivers them. Only timers (call timeouts)
deliver later, through the ``deliver`` callable the realm hands in. The access check happened
before any method is called; the dealer does not know it exists.

Calls, as the Advanced Profile defines them:

- patterns (``match``: exact, prefix, wildcard) and shared registrations (``invoke``: single,
  roundrobin, random, first, last);
- progressive results (``receive_progress`` / YIELD ``progress``) and progressive invocations
  (CALL ``progress``: later CALLs with the same request ID go to the same callee and
  invocation ID);
- CANCEL (``skip``, ``kill``, ``killnowait``) and router-enforced ``timeout`` (ms): the caller
  always gets exactly one final answer; once it has one early, the callee's later answers are
  dropped because the pending call is forgotten;
- caller disclosure (``disclose_me``, ``disclose_caller``), which the realm may force or forbid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from serouter.core import uris
from serouter.core.clock import Clock, Timer
from serouter.core.ids import IdGenerator
from serouter.core.matching import EXACT, MATCH_POLICIES, UriMap
from serouter.core.messages import (
    CALL,
    CANCEL,
    REGISTER,
    UNREGISTER,
    Call,
    Cancel,
    Error,
    Interrupt,
    Invocation,
    InvocationError,
    Register,
    Registered,
    Result,
    Unregister,
    Unregistered,
    Yield,
    error_reply,
)

if TYPE_CHECKING:
    from serouter.core.session import Session

log = Logger(namespace="serouter.dealer")

Deliveries = list[tuple["Session", Any]]
# Who a CALL's INVOCATION says called, when the caller is disclosed: (session, authid, authrole).
Identify = Callable[["Session", Call], tuple[int, "str | None", "str | None"]]
INVOKE_POLICIES = frozenset({"single", "roundrobin", "random", "first", "last"})
CANCEL_MODES = frozenset({"skip", "kill", "killnowait"})
DISCLOSURE = frozenset({"allow", "force", "forbid"})
RegistrationListener = Callable[[str, "Session", "Registration"], None]


def _can_interrupt(callee: Session) -> bool:
    # The spec spells the feature both ways in different sections.
    return callee.supports("callee", "call_canceling") or callee.supports(
        "callee", "call_cancelling"
    )


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-session limits of one realm, and what the realm keeps (docs/reliability.md)."""

    calls: int = 1000  # in flight as caller
    invocations: int = 5000  # in flight as callee
    registrations: int = 1000
    subscriptions: int = 1000  # enforced by the broker
    testaments: int = 100  # per session, both scopes (the meta API)
    retained: int = 10_000  # retained events in the realm, one per topic (the broker)


@dataclass(slots=True, eq=False)
class Registration:
    id: int
    procedure: str
    match: str
    invoke: str
    created: float
    callees: list[Session] = field(default_factory=list)
    disclose_caller: bool = False
    next: int = 0  # round-robin position


@dataclass(slots=True, eq=False)
class PendingCall:
    """A call on its way: the caller's request and the callee's invocation."""

    caller: Session
    request: int
    callee: Session
    invocation: int
    registration: Registration
    receive_progress: bool
    streaming: bool  # the caller is still sending progressive CALLs
    interrupted: bool = False
    timer: Timer | None = None


class Dealer:
    """Routes calls of one realm."""

    def __init__(
        self,
        ids: IdGenerator,
        clock: Clock,
        deliver: Callable[[Deliveries], None],
        disclose_caller: str = "allow",
        limits: Limits = Limits(),
    ) -> None:
        self.limits = limits
        self._ids = ids
        self._clock = clock
        self._deliver = deliver
        self.disclose_caller = disclose_caller
        # Told of every registration change (the meta API, the federation proxy).
        self.listeners: list[RegistrationListener] = []
        # A callee for calls that match no registration here (the federation proxy); it gets
        # the INVOCATION with details.procedure and answers like any callee. ``fallback_serves``
        # says which callers it takes (the proxy refuses other routers' proxies: forwarding
        # their calls on could loop).
        self.fallback: Session | None = None
        self.fallback_serves: Callable[[Session], bool] = _anyone
        # The caller a disclosed INVOCATION names; the proxy names the caller another router
        # disclosed to it (as information: the access check saw the proxy's own session).
        self.identify: Identify = _itself
        self._registrations: UriMap[Registration] = UriMap()
        self._by_id: dict[int, Registration] = {}
        self._by_invocation: dict[tuple[int, int], PendingCall] = {}  # (callee id, invocation)
        self._by_call: dict[tuple[int, int], PendingCall] = {}  # (caller id, request)
        self._held: dict[int, set[int]] = {}  # registrations each session holds
        self._fallback_reg: Registration | None = None

    # -- registration --------------------------------------------------------------------

    def register(self, session: Session, msg: Register) -> Deliveries:
        opts = msg.options
        match = opts.get("match") or EXACT
        invoke = opts.get("invoke") or "single"
        refused = self._refuse_registration(session, msg, match, invoke)
        if refused is not None:
            return [(session, refused)]
        reg = self._registrations.get(msg.procedure, match)
        created = reg is None
        if reg is None:
            reg = Registration(
                self._ids.router_id(), msg.procedure, match, invoke, self._clock.seconds()
            )
            self._registrations.add(msg.procedure, match, reg)
            self._by_id[reg.id] = reg
        reg.callees.append(session)
        reg.disclose_caller = reg.disclose_caller or opts.get("disclose_caller") is True
        self._held.setdefault(session.id, set()).add(reg.id)
        self._notify("on_create" if created else None, session, reg)
        self._notify("on_register", session, reg)
        return [(session, Registered(msg.request, reg.id))]

    def _refuse_registration(
        self, session: Session, msg: Register, match: object, invoke: object
    ) -> Error | None:
        request = msg.request
        # options are the client's: a list or dict must not reach a set lookup (TypeError)
        if type(match) is not str or match not in MATCH_POLICIES:
            return error_reply(REGISTER, request, uris.OPTION_NOT_ALLOWED,
                          f"match policy {match!r} is not supported")
        if type(invoke) is not str or invoke not in INVOKE_POLICIES:
            return error_reply(REGISTER, request, uris.OPTION_NOT_ALLOWED,
                          f"invocation policy {invoke!r} is not supported")
        if len(self._held.get(session.id, ())) >= self.limits.registrations:
            return error_reply(REGISTER, request, uris.LIMIT_EXCEEDED,
                               f"at most {self.limits.registrations} registrations per session")
        if uris.is_reserved(msg.procedure):
            return error_reply(REGISTER, request, uris.INVALID_URI,
                          "procedures under 'wamp.' are reserved for the router")
        reg = self._registrations.get(msg.procedure, str(match))
        if reg is None:
            return None
        if session in reg.callees or (invoke == "single" and reg.invoke == "single"):
            return error_reply(REGISTER, request, uris.PROCEDURE_ALREADY_EXISTS,
                          f"{msg.procedure} is already registered")
        if reg.invoke != invoke:
            return error_reply(REGISTER, request, uris.PROCEDURE_EXISTS_WITH_DIFFERENT_POLICY,
                          f"{msg.procedure} is registered with invoke={reg.invoke!r}")
        return None

    def unregister(self, session: Session, msg: Unregister) -> Deliveries:
        reg = self._by_id.get(msg.registration)
        if reg is None or session not in reg.callees:
            return [(session, error_reply(UNREGISTER, msg.request, uris.NO_SUCH_REGISTRATION))]
        self._held[session.id].discard(reg.id)
        self._remove_callee(reg, session)
        return [(session, Unregistered(msg.request))]

    def _remove_callee(self, reg: Registration, callee: Session) -> None:
        """Remove one callee from a registration, and the registration once it has none.

        Invocations already sent stay pending: a callee that unregisters may still answer.
        """
        reg.callees.remove(callee)
        self._notify("on_unregister", callee, reg)
        if not reg.callees:
            self._registrations.remove(reg.procedure, reg.match)
            del self._by_id[reg.id]
            self._notify("on_delete", callee, reg)

    def _notify(self, event: str | None, session: Session, reg: Registration) -> None:
        if event is not None:
            for listener in self.listeners:
                listener(event, session, reg)

    # -- calls ---------------------------------------------------------------------------

    def call(self, caller: Session, msg: Call) -> Deliveries:
        key = (caller.id, msg.request)
        limits = self.limits
        if not msg.options and key not in self._by_call and caller.calls < limits.calls:
            reg = self._registrations.exact.get(msg.procedure)
            if reg is not None and not reg.disclose_caller and self.disclose_caller != "force":
                # The common case, kept short: no options, an exact registration, nothing to
                # disclose, so no details (what _track does, inline).
                callee = reg.callees[0] if len(reg.callees) == 1 else self._pick(reg)
                if callee.invocations < limits.invocations:
                    invocation = callee.next_request_id()
                    pending = PendingCall(caller, msg.request, callee, invocation, reg, False,
                                          False)
                    self._by_invocation[(callee.id, invocation)] = pending
                    self._by_call[key] = pending
                    caller.calls += 1
                    callee.invocations += 1
                    return [(callee, Invocation(invocation, reg.id, {}, msg.args, msg.kwargs))]
        return self._call(caller, msg)

    def _track(self, pending: PendingCall) -> None:
        self._by_invocation[(pending.callee.id, pending.invocation)] = pending
        self._by_call[(pending.caller.id, pending.request)] = pending
        pending.caller.calls += 1
        pending.callee.invocations += 1

    def _call(self, caller: Session, msg: Call) -> Deliveries:
        opts = msg.options
        progress = opts.get("progress") is True
        pending = self._by_call.get((caller.id, msg.request))
        if pending is not None:
            if pending.streaming:
                return self._continue(pending, msg, progress)
            caller.protocol_violation(f"CALL request ID {msg.request} is already in use")
            return []
        if progress and not caller.supports("caller", "progressive_call_invocations"):
            caller.protocol_violation("progressive CALL without progressive_call_invocations")
            return []
        if caller.calls >= self.limits.calls:
            return [(caller, error_reply(CALL, msg.request, uris.LIMIT_EXCEEDED,
                                         f"at most {self.limits.calls} calls in flight"))]
        reg = self._registrations.best(msg.procedure) or self._fallback_registration(caller)
        if reg is None:
            return [(caller, error_reply(CALL, msg.request, uris.NO_SUCH_PROCEDURE,
                                    f"no callee registered for procedure {msg.procedure}"))]
        details = self._invocation_details(caller, msg, reg)
        if isinstance(details, Error):
            return [(caller, details)]
        callee = self._pick(reg)
        if callee.invocations >= self.limits.invocations:
            available = [c for c in reg.callees if c.invocations < self.limits.invocations]
            if not available:
                return [(caller, error_reply(CALL, msg.request, uris.NO_AVAILABLE_CALLEE,
                                             "every callee has its maximum of calls in flight"))]
            callee = available[0]
        if progress and not (
            callee.supports("callee", "progressive_call_invocations") and _can_interrupt(callee)
        ):
            return [(caller, error_reply(CALL, msg.request, uris.FEATURE_NOT_SUPPORTED,
                                    "the callee does not take progressive invocations"))]
        invocation = callee.next_request_id()
        pending = PendingCall(caller, msg.request, callee, invocation, reg,
                              "receive_progress" in details, progress)
        self._track(pending)
        timeout = opts.get("timeout")
        if timeout:
            pending.timer = self._clock.callLater(timeout / 1000, self._timed_out, pending)
        if progress:
            details["progress"] = True
        return [(callee, Invocation(invocation, reg.id, details, msg.args, msg.kwargs))]

    def _invocation_details(
        self, caller: Session, msg: Call, reg: Registration
    ) -> dict[str, Any] | Error:
        """INVOCATION.Details for a new call, or the ERROR refusing its options."""
        opts = msg.options
        details: dict[str, Any] = {}
        if not opts:
            if reg.match != EXACT:
                details["procedure"] = msg.procedure
            if self._discloses(False, reg):
                self._disclose(caller, msg, details)
            return details
        timeout = opts.get("timeout")
        if timeout is not None and (type(timeout) is not int or timeout < 0):
            return error_reply(CALL, msg.request, uris.INVALID_ARGUMENT,
                          "timeout must be a non-negative integer (milliseconds)")
        disclose_me = opts.get("disclose_me") is True
        if disclose_me and self.disclose_caller == "forbid":
            return error_reply(CALL, msg.request, uris.DISCLOSE_ME_DISALLOWED)
        if reg.match != EXACT:
            details["procedure"] = msg.procedure
        if opts.get("receive_progress") is True:
            details["receive_progress"] = True
        if self._discloses(disclose_me, reg):
            self._disclose(caller, msg, details)
        return details

    def _fallback_registration(self, caller: Session) -> Registration | None:
        """The fallback callee as a registration of its own: it matches whatever is left."""
        if self.fallback is None or not self.fallback_serves(caller):
            return None
        reg = self._fallback_reg
        if reg is None or reg.callees[0] is not self.fallback:
            reg = Registration(0, "", "prefix", "single", self._clock.seconds(), [self.fallback])
            self._fallback_reg = reg
        return reg

    def _discloses(self, disclose_me: bool, reg: Registration) -> bool:
        """The realm's setting decides: force, forbid, or allow when caller or callee asks."""
        policy = self.disclose_caller
        return policy == "force" or (policy == "allow" and (disclose_me or reg.disclose_caller))

    def _disclose(self, caller: Session, msg: Call, details: dict[str, Any]) -> None:
        session, authid, authrole = self.identify(caller, msg)
        details["caller"] = session
        details["caller_authid"] = authid
        details["caller_authrole"] = authrole

    def _pick(self, reg: Registration) -> Session:
        """The callee for the next call, by the registration's invocation policy."""
        callees = reg.callees
        if len(callees) == 1 or reg.invoke in ("single", "first"):
            return callees[0]
        if reg.invoke == "roundrobin":
            callee = callees[reg.next % len(callees)]
            reg.next = (reg.next + 1) % len(callees)
            return callee
        if reg.invoke == "random":
            return callees[self._ids.below(len(callees))]
        return callees[-1]  # last

    def _continue(self, pending: PendingCall, msg: Call, progress: bool) -> Deliveries:
        """A later chunk of a progressive call: same callee, same invocation ID."""
        pending.streaming = progress
        details = {"progress": True} if progress else {}
        invocation = Invocation(pending.invocation, pending.registration.id, details,
                                msg.args, msg.kwargs)
        return [(pending.callee, invocation)]

    def cancel(self, caller: Session, msg: Cancel) -> Deliveries:
        pending = self._by_call.get((caller.id, msg.request))
        if pending is None:
            return []  # the call has ended: nothing left to cancel
        mode = msg.options.get("mode") or "killnowait"
        if type(mode) is not str or mode not in CANCEL_MODES:  # a list is unhashable
            return [(caller, error_reply(CANCEL, msg.request, uris.INVALID_ARGUMENT,
                                    f"cancel mode {mode!r} is not one of skip|kill|killnowait"))]
        callee = pending.callee
        interruptible = _can_interrupt(callee)
        if mode == "kill" and interruptible:
            # The callee's answer (ERROR or RESULT) will be the caller's one final answer.
            if pending.interrupted:
                return []
            pending.interrupted = True
            return [(callee, Interrupt(pending.invocation, {"mode": "kill"}))]
        self._forget(pending)
        out: Deliveries = [(caller, error_reply(CALL, msg.request, uris.CANCELED))]
        if mode == "killnowait" and interruptible:
            out.append((callee, Interrupt(pending.invocation, {"mode": "killnowait"})))
        return out

    def _timed_out(self, pending: PendingCall) -> None:
        pending.timer = None
        if self._by_call.get((pending.caller.id, pending.request)) is not pending:
            return
        self._forget(pending)
        out: Deliveries = [(pending.caller, error_reply(CALL, pending.request, uris.TIMEOUT,
                                                   "the call timed out"))]
        if _can_interrupt(pending.callee):
            interrupt = Interrupt(pending.invocation, {"mode": "killnowait",
                                                       "reason": uris.TIMEOUT})
            out.append((pending.callee, interrupt))
        self._deliver(out)

    def _forget(self, pending: PendingCall) -> None:
        if self._by_invocation.pop((pending.callee.id, pending.invocation), None) is not None:
            pending.caller.calls -= 1
            pending.callee.invocations -= 1
        self._by_call.pop((pending.caller.id, pending.request), None)
        if pending.timer is not None:
            if pending.timer.active():
                pending.timer.cancel()
            pending.timer = None

    # -- answers from callees ------------------------------------------------------------

    def yield_(self, callee: Session, msg: Yield) -> Deliveries:
        pending = self._by_invocation.get((callee.id, msg.request))
        if pending is None:
            # The call was answered already (cancel, timeout) or its caller left.
            log.debug("YIELD for unknown invocation {request}", request=msg.request)
            return []
        if msg.options and msg.options.get("progress") is True:
            if not pending.receive_progress:
                return []  # the caller did not ask for progressive results
            result = Result(pending.request, {"progress": True}, msg.args, msg.kwargs)
            return [(pending.caller, result)]
        caller = pending.caller
        if pending.timer is None:  # what _forget does, inline for the common case
            del self._by_invocation[(callee.id, msg.request)]
            self._by_call.pop((caller.id, pending.request), None)
            caller.calls -= 1
            callee.invocations -= 1
        else:
            self._forget(pending)
        return [(caller, Result(pending.request, {}, msg.args, msg.kwargs))]

    def invocation_error(self, callee: Session, msg: InvocationError) -> Deliveries:
        pending = self._by_invocation.get((callee.id, msg.request))
        if pending is None:
            return []
        self._forget(pending)
        reply = Error(CALL, pending.request, {}, msg.error, msg.args, msg.kwargs)
        return [(pending.caller, reply)]

    def fail_invocation(self, callee: Session, invocation: int, error: str) -> Deliveries:
        """An INVOCATION could not be delivered: the caller gets ``error`` at once."""
        pending = self._by_invocation.get((callee.id, invocation))
        if pending is None:
            return []
        self._forget(pending)
        text = "the call cannot be carried by the callee's transport"
        return [(pending.caller, error_reply(CALL, pending.request, error, text))]

    # -- sessions leaving ------------------------------------------------------------------

    def remove_session(self, session: Session) -> Deliveries:
        """Drop what ``session`` held; calls waiting on it as callee fail at once."""
        if self.fallback is session:
            self.fallback = None
        for reg_id in self._held.pop(session.id, ()):
            reg = self._by_id.get(reg_id)
            if reg is not None:
                self._remove_callee(reg, session)
        out: Deliveries = []
        for pending in [p for p in self._by_invocation.values() if p.callee is session]:
            self._forget(pending)
            out.append((pending.caller, error_reply(CALL, pending.request, uris.CANCELED,
                                               "callee disconnected from in-flight request")))
        # Calls the session made: their answers have nowhere to go; stop the callees' work.
        for pending in [p for p in self._by_call.values() if p.caller is session]:
            self._forget(pending)
            if _can_interrupt(pending.callee):
                out.append((pending.callee, Interrupt(pending.invocation, {"mode": "killnowait"})))
        return out

    # -- introspection (meta API, tests) ---------------------------------------------------

    def registration(self, registration_id: int) -> Registration | None:
        return self._by_id.get(registration_id)

    def lookup(self, procedure: str, match: str = EXACT) -> Registration | None:
        return self._registrations.get(procedure, match)

    def match(self, procedure: str) -> Registration | None:
        return self._registrations.best(procedure)

    def registrations(self, match: str | None = None) -> list[Registration]:
        return list(self._registrations.values(match))

    @property
    def pending_calls(self) -> int:
        return len(self._by_invocation)


def _anyone(caller: Session) -> bool:
    return True


def _itself(caller: Session, msg: Call) -> tuple[int, str | None, str | None]:
    return caller.id, caller.authid, caller.authrole
