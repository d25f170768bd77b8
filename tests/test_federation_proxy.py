"""The proxy (serouter/federation/_proxy.py, _forward.py, _topics.py) over the real core, with
hand-made fakes for the name-server link and the connections to remote routers."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock

from serouter.core.router import Router
from serouter.core.session import Session
from serouter.federation import Proxy
from serouter.federation._client import FEDERATION_FEATURE
from serouter.federation._protocol import PROCEDURE, TOPIC, Entry, Key
from tests.fakes import ROLES_ADVANCED, FakePeer, connect, make_router, send

ERROR, EVENT, RESULT, INVOCATION = 8, 36, 50, 68
EB = "tcp:127.0.0.1:2"
EC = "tcp:127.0.0.1:3"
PEER_ROLES = {**ROLES_ADVANCED, "caller": {"features": {FEDERATION_FEATURE: True}}}


class FakeClient:
    """A session with a remote router: records CALLs, CANCELs and SUBSCRIBEs."""

    def __init__(self) -> None:
        self.open = True
        self.calls: list[tuple[int, str, dict[str, Any], Any, Any]] = []
        self.cancels: list[tuple[int, str]] = []
        self.handlers: dict[int, Any] = {}
        self.subscriptions: dict[int, tuple[str, dict[str, Any], Any]] = {}
        self._next = 0

    def call(self, procedure: str, options: dict[str, Any], args: Any, kwargs: Any,
             handler: Any, *, request: int | None = None) -> tuple[int, str | None]:
        if request is None:
            self._next += 1
            request = self._next
        self.calls.append((request, procedure, options, args, kwargs))
        self.handlers[request] = handler
        return request, None

    def cancel(self, request: int, mode: str) -> None:
        self.cancels.append((request, mode))

    def forget(self, request: int) -> None:
        self.handlers.pop(request, None)

    def subscribe(self, topic: str, options: dict[str, Any], on_event: Any
                  ) -> defer.Deferred[int]:
        self._next += 1
        self.subscriptions[self._next] = (topic, options, on_event)
        return defer.succeed(self._next)

    def unsubscribe(self, subscription: int) -> defer.Deferred[None]:
        del self.subscriptions[subscription]
        return defer.succeed(None)

    def event(self, publication: int, details: dict[str, Any], args: Any = None) -> None:
        for _topic, _options, on_event in list(self.subscriptions.values()):
            on_event(publication, details, args, None)


class FakePool:
    def __init__(self) -> None:
        self.clients: dict[str, FakeClient] = {}
        self.holds: dict[str, int] = {}
        self.on_lost: Any = None

    def client(self, endpoint: str) -> FakeClient:
        return self.clients.setdefault(endpoint, FakeClient())

    def acceptable(self, endpoint: str) -> bool:
        return endpoint.startswith("tcp:")

    def ready(self, endpoint: str) -> FakeClient | None:
        return self.clients.get(endpoint)

    def connect(self, endpoint: str) -> defer.Deferred[FakeClient]:
        return defer.succeed(self.client(endpoint))

    def hold(self, endpoint: str) -> None:
        self.holds[endpoint] = self.holds.get(endpoint, 0) + 1

    def release(self, endpoint: str) -> None:
        self.holds[endpoint] -= 1


class FakeLink:
    """The name server as a dict of answers; records what the proxy tells it."""

    def __init__(self) -> None:
        self.connected = True
        self.providers: dict[Key, list[dict[str, Any]]] = {}
        self.lookups: list[Key] = []
        self.announced: list[Entry] = []
        self.withdrawn: list[Key] = []
        self.unwatched: list[Key] = []
        self.on_session: Any = None
        self.on_watched: Any = None

    def provide(self, key: Key, *endpoints: str, invoke: str = "single") -> None:
        self.providers[key] = [{"endpoint": e, "uri": key.uri, "match": key.match,
                                "invoke": invoke} for e in endpoints]

    def lookup(self, key: Key, watch: bool = True) -> defer.Deferred[list[dict[str, Any]]]:
        self.lookups.append(key)
        return defer.succeed(self.providers.get(key, []))

    def announce(self, entries: list[Entry]) -> defer.Deferred[list[Any]]:
        self.announced += entries
        return defer.succeed([])

    def withdraw(self, keys: list[Key]) -> defer.Deferred[None]:
        self.withdrawn += keys
        return defer.succeed(None)

    def unwatch(self, key: Key) -> None:
        self.unwatched.append(key)


class World:
    """A router with a federated realm1, its proxy, and the fakes around it."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.router: Router = make_router(clock=self.clock)
        self.link = FakeLink()
        self.pool = FakePool()
        self.proxy = Proxy(self.router, self.router.realms["realm1"], self.link,  # type: ignore[arg-type]
                           self.pool, self.clock)  # type: ignore[arg-type]

    def client(self, roles: Any = None) -> tuple[Session, FakePeer]:
        return connect(self.router, roles=roles or ROLES_ADVANCED)

    def flush(self) -> None:
        self.clock.advance(0)


def remote_call(world: World, procedure: str = "com.remote.add") -> tuple[
        Session, FakePeer, FakeClient]:
    """A caller here and the provider's fake client, with one CALL of ``procedure`` sent."""
    world.link.provide(Key(PROCEDURE, procedure), EB)
    caller, peer = world.client()
    send(caller, 48, 1, {"receive_progress": True}, procedure, [1, 2], {"k": "v"})
    return caller, peer, world.pool.clients[EB]


def test_a_call_nobody_here_takes_is_forwarded_and_answered() -> None:
    """The proxy looks the URI up, sends the CALL to the provider and relays its result."""
    world = World()
    _caller, peer, remote = remote_call(world)
    assert world.link.lookups == [Key(PROCEDURE, "com.remote.add")]
    assert remote.calls == [(1, "com.remote.add", {"receive_progress": True}, [1, 2], {"k": "v"})]
    remote.handlers[1].on_result({"progress": True}, ["half"], None)
    remote.handlers[1].on_result({}, [3], {"sum": True})
    assert peer.wire() == [[RESULT, 1, {"progress": True}, ["half"]],
                           [RESULT, 1, {}, [3], {"sum": True}]]


def test_errors_keep_their_payload() -> None:
    world = World()
    _caller, peer, remote = remote_call(world)
    remote.handlers[1].on_error({}, "com.example.error.bad", ["why"], {"code": 7})
    assert peer.wire() == [[ERROR, 48, 1, {}, "com.example.error.bad", ["why"], {"code": 7}]]


def test_routes_are_cached_until_the_name_server_says_otherwise() -> None:
    """A second call needs no lookup; a notice drops the route."""
    world = World()
    caller, _peer, remote = remote_call(world)
    send(caller, 48, 2, {}, "com.remote.add", [])
    assert len(world.link.lookups) == 1 and len(remote.calls) == 2
    world.link.on_watched([Key(PROCEDURE, "com.remote.add")])
    send(caller, 48, 3, {}, "com.remote.add", [])
    assert len(world.link.lookups) == 2


def test_unknown_procedures_fail_fast() -> None:
    """Nobody provides it, or the name server is away: no_such_procedure at once."""
    world = World()
    caller, peer = world.client()
    send(caller, 48, 1, {}, "com.nobody", [])
    assert peer.wire()[0][:5] == [ERROR, 48, 1, {}, "wamp.error.no_such_procedure"]
    world.link.connected = False
    send(caller, 48, 2, {}, "com.nobody.else", [])
    assert peer.wire()[0][:5] == [ERROR, 48, 2, {}, "wamp.error.no_such_procedure"]
    assert world.link.lookups == [Key(PROCEDURE, "com.nobody")]


def test_a_local_callee_wins() -> None:
    world = World()
    callee, callee_peer = world.client()
    send(callee, 64, 1, {}, "com.local.add")
    callee_peer.wire()
    caller, _peer = world.client()
    send(caller, 48, 1, {}, "com.local.add", [])
    assert callee_peer.wire()[0][0] == INVOCATION and not world.link.lookups


def test_cancel_kill_goes_to_the_provider() -> None:
    """kill: CANCEL there, and the provider's answer is the caller's one answer."""
    world = World()
    caller, peer, remote = remote_call(world)
    send(caller, 49, 1, {"mode": "kill"})
    assert remote.cancels == [(1, "kill")]
    remote.handlers[1].on_error({}, "wamp.error.canceled", None, None)
    assert peer.wire() == [[ERROR, 48, 1, {}, "wamp.error.canceled"]]


def test_cancel_killnowait_answers_at_once() -> None:
    world = World()
    caller, peer, remote = remote_call(world)
    send(caller, 49, 1, {"mode": "killnowait"})
    assert peer.wire() == [[ERROR, 48, 1, {}, "wamp.error.canceled"]]
    assert remote.cancels == [(1, "killnowait")] and 1 not in remote.handlers


def test_timeout_cancels_at_the_provider() -> None:
    world = World()
    world.link.provide(Key(PROCEDURE, "com.slow"), EB)
    caller, peer = world.client()
    send(caller, 48, 1, {"timeout": 500}, "com.slow", [])
    world.clock.advance(0.5)
    assert peer.wire()[0][:5] == [ERROR, 48, 1, {}, "wamp.error.timeout"]
    assert world.pool.clients[EB].cancels == [(1, "killnowait")]


def test_a_provider_gone_ends_its_calls_at_once() -> None:
    world = World()
    _caller, peer, remote = remote_call(world)
    remote.handlers[1].on_lost()
    assert peer.wire()[0][:5] == [ERROR, 48, 1, {}, "wamp.error.canceled"]


def test_a_stale_route_is_looked_up_again_once() -> None:
    """A provider answering no_such_procedure never ran the call: ask again and resend."""
    world = World()
    _caller, peer, remote = remote_call(world)
    world.link.provide(Key(PROCEDURE, "com.remote.add"), EC)
    remote.handlers[1].on_error({}, "wamp.error.no_such_procedure", None, None)
    other = world.pool.clients[EC]
    assert [c[1] for c in other.calls] == ["com.remote.add"]
    other.handlers[1].on_error({}, "wamp.error.no_such_procedure", None, None)
    assert peer.wire()[0][4] == "wamp.error.no_such_procedure"


def test_disclosed_callers_are_disclosed_there_too() -> None:
    world = World()
    world.link.provide(Key(PROCEDURE, "com.who"), EB)
    caller, _peer = world.client()
    send(caller, 48, 1, {"disclose_me": True}, "com.who", [])
    options = world.pool.clients[EB].calls[0][2]
    assert options == {"disclose_me": True, "x_serouter_caller": {
        "session": caller.id, "authid": caller.authid, "authrole": caller.authrole}}


def test_progressive_invocations_keep_one_request() -> None:
    world = World()
    world.link.provide(Key(PROCEDURE, "com.upload"), EB)
    caller, _peer = world.client()
    send(caller, 48, 1, {"progress": True}, "com.upload", ["a"])
    send(caller, 48, 1, {"progress": True}, "com.upload", ["b"])
    send(caller, 48, 1, {}, "com.upload", ["c"])
    calls = world.pool.clients[EB].calls
    assert [(c[0], c[2].get("progress"), c[3]) for c in calls] == [
        (1, True, ["a"]), (1, True, ["b"]), (1, None, ["c"])]


def test_calls_from_other_proxies_are_never_forwarded() -> None:
    """Another router's proxy calling a URI nobody here provides: no_such_procedure, no hop."""
    world = World()
    world.link.provide(Key(PROCEDURE, "com.elsewhere"), EC)
    peer_session, peer = world.client(PEER_ROLES)
    send(peer_session, 48, 1, {}, "com.elsewhere", [])
    assert peer.wire()[0][4] == "wamp.error.no_such_procedure"
    assert not world.link.lookups


def test_forwarded_callers_reach_local_callees_as_disclosed() -> None:
    """The calling router's disclosure replaces its proxy's identity in the callee's details."""
    world = World()
    callee, callee_peer = world.client()
    send(callee, 64, 1, {}, "com.local")
    callee_peer.wire()
    peer_session, _peer = world.client(PEER_ROLES)
    forwarded = {"session": 77, "authid": "alice", "authrole": "user"}
    send(peer_session, 48, 1, {"disclose_me": True, "x_serouter_caller": forwarded},
         "com.local", [])
    details = callee_peer.wire()[0][3]
    assert (details["caller"], details["caller_authid"], details["caller_authrole"]) == (
        77, "alice", "user")


def test_registrations_are_announced_and_withdrawn() -> None:
    world = World()
    callee, _peer = world.client()
    send(callee, 64, 1, {"match": "prefix", "invoke": "roundrobin"}, "com.svc.")
    world.flush()
    assert world.link.announced == [Entry(Key(PROCEDURE, "com.svc.", "prefix"), "roundrobin")]
    world.router.close_session(callee)
    world.flush()
    assert world.link.withdrawn == [Key(PROCEDURE, "com.svc.", "prefix")]


def test_changes_within_one_turn_are_netted() -> None:
    world = World()
    callee, peer = world.client()
    send(callee, 64, 1, {}, "com.brief")
    registration = peer.wire()[0][2]
    send(callee, 66, 2, registration)
    world.flush()
    assert world.link.announced == [] and world.link.withdrawn == [Key(PROCEDURE, "com.brief")]


def test_topics_are_announced_once_published_and_withdrawn_with_the_last_publisher() -> None:
    world = World()
    first, _ = world.client()
    second, _ = world.client()
    send(first, 16, 1, {}, "com.t", [])
    send(second, 16, 1, {}, "com.t", [])
    send(first, 16, 2, {}, "com.t", [])
    world.flush()
    assert world.link.announced == [Entry(Key(TOPIC, "com.t"))]
    world.router.close_session(first)
    world.flush()
    assert world.link.withdrawn == []
    world.router.close_session(second)
    world.flush()
    assert world.link.withdrawn == [Key(TOPIC, "com.t")]


def test_other_proxies_publications_are_not_announced() -> None:
    world = World()
    peer_session, _ = world.client(PEER_ROLES)
    send(peer_session, 16, 1, {}, "com.t", [])
    world.flush()
    assert world.link.announced == []


def test_a_remote_topic_is_subscribed_once_and_reference_counted() -> None:
    world = World()
    key = Key(TOPIC, "com.news")
    world.link.provide(key, EB)
    one, one_peer = world.client()
    two, _ = world.client()
    send(one, 32, 1, {}, "com.news")
    send(two, 32, 1, {}, "com.news")
    remote = world.pool.clients[EB]
    assert [s[0] for s in remote.subscriptions.values()] == ["com.news"]
    assert world.pool.holds[EB] == 1
    remote.event(900, {}, ["hello"])
    assert [m[4] for m in one_peer.wire() if m[0] == EVENT] == [["hello"]]
    world.router.close_session(one)
    assert remote.subscriptions
    world.router.close_session(two)
    assert not remote.subscriptions and world.pool.holds[EB] == 0
    assert world.link.unwatched == [key]


def test_remote_events_are_republished_once_and_only_where_they_belong() -> None:
    """One event per publication even through two subscriptions; nothing outside the
    pattern, nothing under wamp., nothing to other proxies' sessions."""
    world = World()
    world.link.provide(Key(TOPIC, "com.a.", "prefix"), EB)
    world.link.provide(Key(TOPIC, "com.a.x"), EB)
    local, local_peer = world.client()
    other_proxy, other_peer = world.client(PEER_ROLES)
    send(local, 32, 1, {"match": "prefix"}, "com.a.")
    send(local, 32, 2, {}, "com.a.x")
    send(other_proxy, 32, 1, {}, "com.a.x")
    local_peer.wire()
    other_peer.wire()
    remote = world.pool.clients[EB]
    assert len(remote.subscriptions) == 2
    for _topic, options, on_event in list(remote.subscriptions.values()):
        details = {"topic": "com.a.x"} if options.get("match") else {}
        on_event(5, details, ["once"], None)
    events = [m for m in local_peer.wire() if m[0] == EVENT]
    assert len(events) == 2 and all(m[4] == ["once"] for m in events)  # two subscriptions here
    assert other_peer.wire() == []
    prefix_handler = next(h for _t, o, h in remote.subscriptions.values() if o)
    prefix_handler(6, {"topic": "org.evil"}, ["no"], None)
    prefix_handler(7, {"topic": "wamp.session.on_join"}, ["no"], None)
    prefix_handler(8, {}, ["no"], None)
    assert local_peer.wire() == []


def test_new_name_server_session_resyncs() -> None:
    """Everything is announced again, routes are forgotten, topics resolved again."""
    world = World()
    callee, _ = world.client()
    send(callee, 64, 1, {}, "com.svc")
    send(callee, 16, 2, {}, "com.t", [])
    subscriber, _ = world.client()
    send(subscriber, 32, 1, {}, "com.remote.t")
    world.flush()
    world.link.announced.clear()
    world.link.lookups.clear()
    world.link.on_session()
    assert sorted(e.key.uri for e in world.link.announced) == ["com.svc", "com.t"]
    assert world.link.lookups == [Key(TOPIC, "com.remote.t")]


def test_a_lost_router_is_resolved_again() -> None:
    world = World()
    key = Key(TOPIC, "com.news")
    world.link.provide(key, EB)
    subscriber, _ = world.client()
    send(subscriber, 32, 1, {}, "com.news")
    world.link.provide(key, EC)
    world.pool.on_lost(EB)
    assert [s[0] for s in world.pool.clients[EC].subscriptions.values()] == ["com.news"]


def test_closing_the_proxy_restores_the_realm() -> None:
    world = World()
    world.link.provide(Key(PROCEDURE, "com.remote"), EB)
    caller, peer = world.client()
    send(caller, 48, 1, {}, "com.remote", [])
    world.proxy.close()
    assert peer.wire()[0][4] == "wamp.error.canceled"
    send(caller, 48, 2, {}, "com.remote", [])
    assert peer.wire()[0][4] == "wamp.error.no_such_procedure"
    realm = world.router.realms["realm1"]
    assert "call" not in vars(realm.dealer) and "publish" not in vars(realm.broker)
