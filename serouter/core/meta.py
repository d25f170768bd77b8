"""The meta API of one realm: ``wamp.session.*``, ``wamp.registration.*``,
``wamp.subscription.*`` procedures, their events, testaments and topic history.

Meta procedures are URIs like any other: the realm runs its access check on the CALL first,
then hands it here instead of to the dealer (clients can never register ``wamp.*``). Events
are published by the router itself through the broker, so subscribing to them is checked like
any SUBSCRIBE. Argument shapes follow the spec (``ap_session_meta_api.md`` and the
registration/subscription meta API pages) and Crossbar where the spec is silent
(``get_events``, testaments).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from serouter.core import uris
from serouter.core.access import Action
from serouter.core.broker import Stored, Subscription, audience_of
from serouter.core.dealer import Registration
from serouter.core.matching import EXACT, PREFIX, WILDCARD
from serouter.core.messages import CALL, Call, Result, error_reply

if TYPE_CHECKING:
    from serouter.core.realm import Realm
    from serouter.core.session import Session

Deliveries = list[tuple["Session", Any]]
Handler = Callable[["Session", list[Any], dict[str, Any]], Any]


class MetaError(Exception):
    """A meta procedure refuses: answered as ERROR ``uri`` with ``message``."""

    def __init__(self, uri: str, message: str = "") -> None:
        super().__init__(message)
        self.uri, self.message = uri, message


@dataclass(slots=True, frozen=True)
class Testament:
    topic: str
    args: list[Any] | None
    kwargs: dict[str, Any] | None
    options: dict[str, Any]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SCOPES = ("detached", "destroyed")  # the order testaments are published in when a session ends


def micros(timestamp: float) -> int:
    """Whole microseconds: timestamps are reported and compared at this precision only."""
    return round(timestamp * 1_000_000)


def iso(timestamp: float) -> str:
    moment = _EPOCH + timedelta(microseconds=micros(timestamp))
    return moment.isoformat().replace("+00:00", "Z")


def _arg(args: list[Any], i: int, kind: type, name: str, default: Any = ...) -> Any:
    """Positional argument ``i``, of type ``kind`` (bool is no int here), or ``default``."""
    if i >= len(args) or args[i] is None:
        if default is ...:
            raise MetaError(uris.INVALID_ARGUMENT, f"missing argument {name}")
        return default
    value = args[i]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise MetaError(uris.INVALID_ARGUMENT, f"{name} has the wrong type")
    return value


def session_details(s: Session) -> dict[str, Any]:
    t = s.transport
    transport: dict[str, Any] = {"type": t.kind, "serializer": t.serializer, "peer": t.peer}
    if t.peer_uid is not None:
        transport.update(peer_uid=t.peer_uid, peer_gid=t.peer_gid, peer_pid=t.peer_pid)
    if t.peer_domain is not None:
        transport.update(peer_domain=t.peer_domain, peer_domain_name=t.peer_domain_name,
                         peer_domain_uuid=t.peer_domain_uuid)
    return {"session": s.id, "authid": s.authid, "authrole": s.authrole,
            "authmethod": s.authmethod, "authprovider": s.authprovider,
            "authextra": s.authextra, "label": s.label, "transport": transport}


def registration_details(r: Registration) -> dict[str, Any]:
    return {"id": r.id, "created": iso(r.created), "uri": r.procedure, "match": r.match,
            "invoke": r.invoke}


def subscription_details(s: Subscription) -> dict[str, Any]:
    return {"id": s.id, "created": iso(s.created), "uri": s.topic, "match": s.match}


def stored_event(e: Stored) -> dict[str, Any]:
    return {"timestamp": iso(e.timestamp), "publication": e.publication, "topic": e.topic,
            "args": e.args, "kwargs": e.kwargs}


class MetaApi:
    """Meta procedures and events for one realm."""

    def __init__(self, realm: Realm) -> None:
        self._realm = realm
        # Per session, per scope. Without session resumption a session is never merely
        # detached, but the spec keeps two buckets so flush_testaments(scope) works, and has
        # "detached" ones published before "destroyed" ones when the session ends.
        self._testaments: dict[int, dict[str, list[Testament]]] = {}
        self._quiet = False  # kill_all: no session meta events or testaments
        realm.dealer.listeners.append(self._registration_changed)
        realm.broker.listeners.append(self._subscription_changed)
        self.procedures: dict[str, Handler] = {
            "wamp.session.count": self._session_count,
            "wamp.session.list": self._session_list,
            "wamp.session.get": self._session_get,
            "wamp.session.kill": self._session_kill,
            "wamp.session.kill_by_authid": self._kill_by_authid,
            "wamp.session.kill_by_authrole": self._kill_by_authrole,
            "wamp.session.kill_all": self._kill_all,
            "wamp.session.add_testament": self._add_testament,
            "wamp.session.flush_testaments": self._flush_testaments,
            "wamp.registration.list": self._registration_list,
            "wamp.registration.lookup": self._registration_lookup,
            "wamp.registration.match": self._registration_match,
            "wamp.registration.get": self._registration_get,
            "wamp.registration.list_callees": self._list_callees,
            "wamp.registration.count_callees": self._count_callees,
            "wamp.subscription.list": self._subscription_list,
            "wamp.subscription.lookup": self._subscription_lookup,
            "wamp.subscription.match": self._subscription_match,
            "wamp.subscription.get": self._subscription_get,
            "wamp.subscription.list_subscribers": self._list_subscribers,
            "wamp.subscription.count_subscribers": self._count_subscribers,
            "wamp.subscription.get_events": self._get_events,
            "wamp.topic.history.last": self._history_last,
            "wamp.topic.history.since": self._history_since,
            "wamp.topic.history.after": self._history_after,
        }

    # -- calls -----------------------------------------------------------------------------

    def call(self, session: Session, msg: Call) -> Deliveries:
        handler = self.procedures.get(msg.procedure)
        if handler is None:
            return [(session, error_reply(CALL, msg.request, uris.NO_SUCH_PROCEDURE,
                                          f"no meta procedure {msg.procedure}"))]
        try:
            value = handler(session, msg.args or [], msg.kwargs or {})
        except MetaError as e:
            return [(session, error_reply(CALL, msg.request, e.uri, e.message or None))]
        return [(session, Result(msg.request, {}, [value]))]

    # -- session events ----------------------------------------------------------------------

    def joined(self, session: Session) -> Deliveries:
        return self._publish("wamp.session.on_join", [session_details(session)])

    def left(self, session: Session) -> Deliveries:
        testaments = self._testaments.pop(session.id, {})
        if self._quiet:
            return []
        out: Deliveries = []
        for scope in SCOPES:
            for t in testaments.get(scope, ()):
                out += self._publish_testament(session, t)
        out += self._publish("wamp.session.on_leave", [session.id, session.authid,
                                                       session.authrole])
        return out

    def _publish(self, topic: str, args: list[Any]) -> Deliveries:
        return self._realm.broker.publish_meta(topic, args)

    def _publish_testament(self, session: Session, t: Testament) -> Deliveries:
        audience = audience_of(session, t.options)
        if isinstance(audience, str):  # checked when the testament was added
            return []
        return self._realm.broker.publish_as(session.id, t.topic, t.args, t.kwargs, audience)

    def _registration_changed(self, event: str, session: Session, reg: Registration) -> None:
        payload = registration_details(reg) if event == "on_create" else reg.id
        self._realm.deliver_after(
            self._publish(f"wamp.registration.{event}", [session.id, payload])
        )

    def _subscription_changed(self, event: str, session: Session, sub: Subscription) -> None:
        payload = subscription_details(sub) if event == "on_create" else sub.id
        self._realm.deliver_after(
            self._publish(f"wamp.subscription.{event}", [session.id, payload])
        )

    # -- wamp.session.* ------------------------------------------------------------------------

    def _sessions(self, args: list[Any]) -> list[Session]:
        roles = _arg(args, 0, list, "filter_authroles", None)
        sessions = list(self._realm.sessions.values())
        return sessions if roles is None else [s for s in sessions if s.authrole in roles]

    def _session_count(self, caller: Session, args: list[Any], kw: dict[str, Any]) -> int:
        return len(self._sessions(args))

    def _session_list(self, caller: Session, args: list[Any], kw: dict[str, Any]) -> list[int]:
        return [s.id for s in self._sessions(args)]

    def _session_get(self, caller: Session, args: list[Any], kw: dict[str, Any]) -> Any:
        target = self._realm.sessions.get(_arg(args, 0, int, "session"))
        if target is None:
            raise MetaError(uris.NO_SUCH_SESSION)
        return session_details(target)

    def _kill(self, targets: list[Session], caller: Session, kw: dict[str, Any]) -> int:
        reason = kw.get("reason") or uris.CLOSE_NORMAL
        message = kw.get("message")
        if not uris.is_valid_uri(reason):
            raise MetaError(uris.INVALID_URI, "reason must be a URI")
        if message is not None and not isinstance(message, str):
            raise MetaError(uris.INVALID_ARGUMENT, "message must be a string")
        victims = [s for s in targets if s is not caller]
        for s in victims:
            s.shutdown(reason, message)
        return len(victims)

    def _session_kill(self, caller: Session, args: list[Any], kw: dict[str, Any]) -> None:
        target = self._realm.sessions.get(_arg(args, 0, int, "session"))
        if target is None or target is caller:
            raise MetaError(uris.NO_SUCH_SESSION)
        self._kill([target], caller, kw)

    def _kill_by_authid(self, caller: Session, args: list[Any], kw: dict[str, Any]) -> int:
        authid = _arg(args, 0, str, "authid")
        targets = [s for s in self._realm.sessions.values() if s.authid == authid]
        return self._kill(targets, caller, kw)

    def _kill_by_authrole(self, caller: Session, args: list[Any], kw: dict[str, Any]) -> int:
        role = _arg(args, 0, str, "authrole")
        targets = [s for s in self._realm.sessions.values() if s.authrole == role]
        return self._kill(targets, caller, kw)

    def _kill_all(self, caller: Session, args: list[Any], kw: dict[str, Any]) -> int:
        # The spec: closing everyone generates no session meta events or testaments.
        self._quiet = True
        try:
            return self._kill(list(self._realm.sessions.values()), caller, kw)
        finally:
            self._quiet = False

    def _add_testament(self, caller: Session, args: list[Any], kw: dict[str, Any]) -> None:
        topic = _arg(args, 0, str, "topic")
        t_args = _arg(args, 1, list, "args", None)
        t_kwargs = _arg(args, 2, dict, "kwargs", None)
        options = kw.get("publish_options") or {}
        scope = self._scope(kw)
        if not isinstance(options, dict) or isinstance(audience_of(caller, options), str):
            raise MetaError(uris.INVALID_ARGUMENT, "publish_options are malformed")
        if not uris.is_valid_uri(topic):
            raise MetaError(uris.INVALID_URI, f"invalid topic {topic!r}")
        # The testament is published on the session's behalf later: check that right now.
        refused = self._realm.authorize(caller, Action.PUBLISH, topic)
        if refused is not None:
            raise MetaError(refused)
        buckets = self._testaments.setdefault(caller.id, {})
        most = self._realm.dealer.limits.testaments
        if sum(map(len, buckets.values())) >= most:
            raise MetaError(uris.LIMIT_EXCEEDED, f"at most {most} testaments per session")
        buckets.setdefault(scope, []).append(Testament(topic, t_args, t_kwargs, options))

    def _flush_testaments(self, caller: Session, args: list[Any], kw: dict[str, Any]) -> int:
        """Removes the scope's testaments; returns how many (as Crossbar does)."""
        return len(self._testaments.get(caller.id, {}).pop(self._scope(kw), []))

    @staticmethod
    def _scope(kw: dict[str, Any]) -> str:
        scope = kw.get("scope") or "destroyed"
        if scope not in SCOPES:
            raise MetaError(uris.INVALID_ARGUMENT, "scope must be destroyed or detached")
        return str(scope)

    # -- wamp.registration.* ----------------------------------------------------------------------

    def _registration(self, args: list[Any]) -> Registration:
        reg = self._realm.dealer.registration(_arg(args, 0, int, "registration"))
        if reg is None:
            raise MetaError(uris.NO_SUCH_REGISTRATION)
        return reg

    def _registration_list(self, caller: Session, args: list[Any], kw: dict[str, Any]) -> Any:
        dealer = self._realm.dealer
        return {m: [r.id for r in dealer.registrations(m)] for m in (EXACT, PREFIX, WILDCARD)}

    def _registration_lookup(self, caller: Session, args: list[Any], kw: dict[str, Any]) -> Any:
        options = _arg(args, 1, dict, "options", {})
        reg = self._realm.dealer.lookup(_arg(args, 0, str, "procedure"),
                                        options.get("match") or EXACT)
        return reg.id if reg is not None else None

    def _registration_match(self, caller: Session, args: list[Any], kw: dict[str, Any]) -> Any:
        reg = self._realm.dealer.match(_arg(args, 0, str, "procedure"))
        return reg.id if reg is not None else None

    def _registration_get(self, caller: Session, args: list[Any], kw: dict[str, Any]) -> Any:
        return registration_details(self._registration(args))

    def _list_callees(self, caller: Session, args: list[Any], kw: dict[str, Any]) -> Any:
        return [s.id for s in self._registration(args).callees]

    def _count_callees(self, caller: Session, args: list[Any], kw: dict[str, Any]) -> int:
        return len(self._registration(args).callees)

    # -- wamp.subscription.* ----------------------------------------------------------------------

    def _subscription(self, args: list[Any]) -> Subscription:
        sub = self._realm.broker.subscription(_arg(args, 0, int, "subscription"))
        if sub is None:
            raise MetaError(uris.NO_SUCH_SUBSCRIPTION)
        return sub

    def _subscription_list(self, caller: Session, args: list[Any], kw: dict[str, Any]) -> Any:
        broker = self._realm.broker
        return {m: [s.id for s in broker.subscriptions(m)] for m in (EXACT, PREFIX, WILDCARD)}

    def _subscription_lookup(self, caller: Session, args: list[Any], kw: dict[str, Any]) -> Any:
        options = _arg(args, 1, dict, "options", {})
        sub = self._realm.broker.lookup(_arg(args, 0, str, "topic"), options.get("match") or EXACT)
        return sub.id if sub is not None else None

    def _subscription_match(self, caller: Session, args: list[Any], kw: dict[str, Any]) -> Any:
        subs = self._realm.broker.match(_arg(args, 0, str, "topic"))
        return [s.id for s in subs] or None

    def _subscription_get(self, caller: Session, args: list[Any], kw: dict[str, Any]) -> Any:
        return subscription_details(self._subscription(args))

    def _list_subscribers(self, caller: Session, args: list[Any], kw: dict[str, Any]) -> Any:
        return list(self._subscription(args).subscribers)

    def _count_subscribers(self, caller: Session, args: list[Any], kw: dict[str, Any]) -> int:
        return len(self._subscription(args).subscribers)

    def _get_events(self, caller: Session, args: list[Any], kw: dict[str, Any]) -> Any:
        sub = self._subscription(args)
        limit = _arg(args, 1, int, "limit", 10)
        return [stored_event(e) for e in self._realm.broker.events(sub, caller, limit)]

    # -- wamp.topic.history.* (the spec's event history) --------------------------------------

    def _topic_events(self, caller: Session, topic: str) -> list[Stored]:
        return self._realm.broker.topic_events(topic, caller)

    def _history_last(self, caller: Session, args: list[Any], kw: dict[str, Any]) -> Any:
        events = self._topic_events(caller, _arg(args, 0, str, "topic"))
        limit = _arg(args, 1, int, "limit")
        return [stored_event(e) for e in events[-limit:]] if limit > 0 else []

    def _history_since(self, caller: Session, args: list[Any], kw: dict[str, Any]) -> Any:
        events = self._topic_events(caller, _arg(args, 0, str, "topic"))
        since = _arg(args, 1, str, "timestamp")
        try:
            moment = datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError:
            raise MetaError(uris.INVALID_ARGUMENT, "timestamp must be ISO 8601") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        start = (moment - _EPOCH) // timedelta(microseconds=1)
        return [stored_event(e) for e in events if micros(e.timestamp) >= start]

    def _history_after(self, caller: Session, args: list[Any], kw: dict[str, Any]) -> Any:
        events = self._topic_events(caller, _arg(args, 0, str, "topic"))
        publication = _arg(args, 1, int, "publication")
        ids = [e.publication for e in events]
        start = ids.index(publication) + 1 if publication in ids else len(events)
        return [stored_event(e) for e in events[start:]]
