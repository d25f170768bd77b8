"""A realm: its sessions, its dealer and broker, and the one place access is checked.

Every action a session asks for passes :meth:`Realm.dispatch`: the URI is validated, the access
check is asked once, and only then does the dealer or broker see the message. Their answers
(lists of ``(session, message)``) are delivered here, so neither of them does I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from serouter.core import uris
from serouter.core.access import AccessCheck, AccessCheckFailed, Action
from serouter.core.broker import Broker
from serouter.core.clock import Clock
from serouter.core.dealer import Dealer, Limits
from serouter.core.ids import IdGenerator
from serouter.core.matching import EXACT, MATCH_POLICIES
from serouter.core.messages import (
    CALL,
    Call,
    Cancel,
    Error,
    Incoming,
    Invocation,
    InvocationError,
    Publish,
    Register,
    Result,
    Subscribe,
    Unregister,
    Unsubscribe,
    Yield,
    error_reply,
)
from serouter.core.meta import MetaApi

if TYPE_CHECKING:
    from serouter.core.session import Session

log = Logger(namespace="serouter.realm")

Deliveries = list[tuple["Session", Any]]


@dataclass(frozen=True, slots=True)
class RealmOptions:
    """Per-realm routing settings (from the configuration's [[realms]] table)."""

    disclose_caller: str = "allow"  # "allow" | "force" | "forbid"
    disclose_publisher: str = "allow"
    history: tuple[str, ...] = ()  # topics with event history
    history_limit: int = 100
    max_sessions: int = 100_000
    limits: Limits = field(default_factory=Limits)


# Python 3.11 finds an enum member through ``EnumType.__getattr__`` (~140 ns): per-message
# code uses these names.
_CALL, _PUBLISH = Action.CALL, Action.PUBLISH
_REGISTER, _SUBSCRIBE = Action.REGISTER, Action.SUBSCRIBE
_VALID_URI_CACHE = 10_000  # bounded: clients choose the URIs


class Realm:
    """Sessions joined to one realm name, and the routing between them."""

    def __init__(
        self,
        name: str,
        access: AccessCheck,
        ids: IdGenerator,
        clock: Clock,
        config: RealmOptions | None = None,
    ) -> None:
        options = config or RealmOptions()
        self.name = name
        self.access = access
        self.sessions: dict[int, Session] = {}
        self._valid_uris: set[str] = set()  # URIs seen valid: the regex runs once per URI
        self._dispatching = False
        self._after: Deliveries = []
        self.max_sessions = options.max_sessions
        self.dealer = Dealer(ids, clock, self.deliver, options.disclose_caller, options.limits)
        self.broker = Broker(
            ids, clock, options.disclose_publisher, history=options.history,
            history_limit=options.history_limit, max_subscriptions=options.limits.subscriptions,
            max_retained=options.limits.retained,
        )
        self.meta = MetaApi(self)
        # The roles (and features) announced in WELCOME: what is implemented, no more.
        self.roles: dict[str, Any] = {"broker": {"features": {
            "publisher_identification": True,
            "publisher_exclusion": True,
            "subscriber_blackwhite_listing": True,
            "pattern_based_subscription": True,
            "event_retention": True,
            "event_history": True,
            "session_meta_api": True,
            "subscription_meta_api": True,
        }}, "dealer": {"features": {
            "session_meta_api": True,
            "registration_meta_api": True,
            "testament_meta_api": True,
            "progressive_call_results": True,
            "progressive_call_invocations": True,
            "call_canceling": True,
            "call_timeout": True,
            "caller_identification": True,
            "pattern_based_registration": True,
            "shared_registration": True,
        }}}
        self._handlers: dict[type, Callable[[Session, Any], Deliveries]] = {
            Call: self._call,
            Cancel: self.dealer.cancel,
            Yield: self.dealer.yield_,
            InvocationError: self.dealer.invocation_error,
            Register: self._register,
            Unregister: self.dealer.unregister,
            Publish: self._publish,
            Subscribe: self._subscribe,
            Unsubscribe: self.broker.unsubscribe,
        }

    # -- membership ----------------------------------------------------------------------

    def join(self, session: Session) -> None:
        self.sessions[session.id] = session
        self.deliver(self.meta.joined(session))

    def leave(self, session: Session) -> None:
        """A session left (GOODBYE, ABORT, lost connection): free all it held, tell others."""
        self.sessions.pop(session.id, None)
        self.broker.remove_session(session)
        self.deliver(self.dealer.remove_session(session))
        self.deliver(self.meta.left(session))

    # -- the access check ------------------------------------------------------------------

    def authorize(self, session: Session, action: Action, uri: str) -> str | None:
        """None if allowed, else the error URI to answer with."""
        try:
            allowed = self.access.check(session.subject, action, self.name, uri)
        except AccessCheckFailed as e:
            log.error(
                "access check failed: {action} {uri} by session {session}: {error}",
                action=action.value, uri=uri, session=session.id, error=str(e),
            )
            return uris.AUTHORIZATION_FAILED
        except Exception:
            log.failure("access check raised: {action} {uri}", action=action.value, uri=uri)
            return uris.AUTHORIZATION_FAILED
        return None if allowed else uris.NOT_AUTHORIZED

    # -- dispatch --------------------------------------------------------------------------

    def dispatch(self, session: Session, msg: Incoming) -> bool:
        """Route one message from an established session; False if it is not for the realm."""
        handler = self._handlers.get(type(msg))
        if handler is None:
            return False
        self._dispatching = True
        try:
            self.deliver(handler(session, msg))
        finally:
            self._dispatching = False
        if self._after:
            after, self._after = self._after, []
            self.deliver(after)
        return True

    def deliver_after(self, deliveries: Deliveries) -> None:
        """Deliver once the message being dispatched has been answered (meta events caused by
        a SUBSCRIBE must follow its SUBSCRIBED, or the client sees an unknown subscription)."""
        if self._dispatching:
            self._after.extend(deliveries)
        else:
            self.deliver(deliveries)

    def deliver(self, deliveries: Deliveries) -> None:
        for target, message in deliveries:
            refused = target.peer.send(message)
            if refused is not None:
                self._undeliverable(target, message, refused)

    def _undeliverable(self, target: Session, message: Any, error: str) -> None:
        """A message its peer's transport cannot carry: fail whatever waits on it."""
        if isinstance(message, Invocation):
            self.deliver(self.dealer.fail_invocation(target, message.request, error))
        elif isinstance(message, Result) or (
            isinstance(message, Error) and (message.args or message.kwargs)
        ):
            text = "the callee's answer cannot be carried by the caller's transport"
            target.peer.send(error_reply(CALL, message.request, error, text))
        # An EVENT one subscriber cannot take is dropped for that subscriber only (logged).

    def _checked(
        self, session: Session, action: Action, msg: Call | Register | Subscribe | Publish, uri: str
    ) -> Error | None:
        """Validate the URI (or pattern) and ask the access check; the ERROR if either says no.

        For a pattern the access check sees the pattern as written.
        """
        if msg.options or uri not in self._valid_uris:  # else: a known URI, the common case
            invalid = self._invalid(msg, uri)
            if invalid is not None:
                return error_reply(msg.TYPE, msg.request, uris.INVALID_URI, invalid)
        error = self.authorize(session, action, uri)
        return None if error is None else error_reply(msg.TYPE, msg.request, error)

    def _invalid(self, msg: Call | Register | Subscribe | Publish, uri: str) -> str | None:
        """What is wrong with the URI (or pattern), if anything; valid URIs are remembered."""
        match = msg.options.get("match")
        if match and match != EXACT:
            # options are the client's: a list or dict here must not reach a set lookup
            known = type(match) is str and match in MATCH_POLICIES
            if known and not uris.is_valid_pattern(uri, match):
                return f"invalid {match} pattern {uri!r}"
        elif uri not in self._valid_uris:
            if not uris.is_valid_uri(uri):
                return f"invalid URI {uri!r}"
            if len(self._valid_uris) >= _VALID_URI_CACHE:
                self._valid_uris.clear()
            self._valid_uris.add(uri)
        return None

    def _call(self, session: Session, msg: Call) -> Deliveries:
        refused = self._checked(session, _CALL, msg, msg.procedure)
        if refused is not None:
            return [(session, refused)]
        if msg.procedure.startswith(uris.RESERVED_PREFIX):
            return self.meta.call(session, msg)  # nobody else may register wamp.*
        return self.dealer.call(session, msg)

    def _register(self, session: Session, msg: Register) -> Deliveries:
        refused = self._checked(session, _REGISTER, msg, msg.procedure)
        if refused is not None:
            return [(session, refused)]
        return self.dealer.register(session, msg)

    def _subscribe(self, session: Session, msg: Subscribe) -> Deliveries:
        refused = self._checked(session, _SUBSCRIBE, msg, msg.topic)
        if refused is not None:
            return [(session, refused)]
        return self.broker.subscribe(session, msg)

    def _publish(self, session: Session, msg: Publish) -> Deliveries:
        refused = self._checked(session, _PUBLISH, msg, msg.topic)
        if refused is not None:
            # An unacknowledged publication gets no answer, not even a refusal.
            return [(session, refused)] if msg.options.get("acknowledge") is True else []
        return self.broker.publish(session, msg)
