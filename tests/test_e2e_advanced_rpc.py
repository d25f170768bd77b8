"""End to end: the Advanced Profile's RPC features, Autobahn|Python (asyncio) against the router.

Every feature runs over WebSocket and over RawSocket; serializers vary from test to test.
Autobahn|Python (26.10) cannot send some of what these features need: CALL has no ``disclose_me``,
REGISTER no ``disclose_caller``, CANCEL no ``mode`` (its cancel is the default, ``killnowait``),
and it neither sends nor takes progressive CALLs. That side of the exchange is the hand-rolled
``Peer``; the other side is Autobahn wherever it can be. An Autobahn caller that receives a
RESULT or ERROR for a call it no longer waits for raises ProtocolError and loses its session,
so a caller that still works afterwards got exactly one final answer.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallOptions, RegisterOptions

from tests.e2e_clients import (
    ABORT,
    BY_TRANSPORT,
    CALL,
    CANCEL,
    ERROR,
    FULL_ROLES,
    INTERRUPT,
    INVOCATION,
    KEEPALIVE,
    OTHER,
    RESULT,
    YIELD,
    Client,
    Peer,
    close,
    connect,
    router,
    run,
    uri,
    within,
)
from tests.router_process import RouterProcess

__all__ = ["router"]  # the module's router fixture

CANCELED = "wamp.error.canceled"


def other(transport: str) -> str:
    return OTHER[transport]


# -- progressive call results ----------------------------------------------------------------------


@BY_TRANSPORT
def test_progressive_results_arrive_before_the_final_result(
    router: RouterProcess, transport: str
) -> None:
    """Each progress the callee sends reaches the caller at once; the final result ends the call."""

    async def scenario() -> None:
        callee = await connect(router, transport, "msgpack")
        caller = await connect(router, transport, "cbor")
        procedure = uri("report")
        second_seen = asyncio.get_running_loop().create_future()
        asked: list[bool] = []

        async def report(n: int, details: Any) -> str:
            asked.append(details.progress is not None)
            for i in range(1, n + 1):
                details.progress(i, of=n)
                if i == 2:  # the caller must see chunk 2 while the call is still open
                    await within(second_seen)
            return "done"

        await callee.register(report, procedure, RegisterOptions(details_arg="details"))
        chunks: list[tuple[int, int]] = []

        def on_progress(i: int, of: int) -> None:
            chunks.append((i, of))
            if i == 2:
                second_seen.set_result(None)

        options = CallOptions(on_progress=on_progress)
        result = await within(caller.call(procedure, 3, options=options))
        assert result == "done"
        assert chunks == [(1, 3), (2, 3), (3, 3)]
        assert asked == [True]  # the callee saw receive_progress in the INVOCATION
        await close(callee, caller)

    run(scenario)


@BY_TRANSPORT
def test_progress_is_dropped_for_a_caller_that_did_not_ask(
    router: RouterProcess, transport: str
) -> None:
    """A caller without receive_progress gets only the final RESULT, whatever the callee sends."""

    async def scenario() -> None:
        callee = await Peer.open(router, transport, "json")
        caller = await Peer.open(router, other(transport), "cbor")
        procedure = uri("chatty")
        await callee.register(procedure)
        request = caller.next_request()
        caller.send([CALL, request, {}, procedure, []])
        invocation = await callee.recv()
        assert invocation[0] == INVOCATION and "receive_progress" not in invocation[3]
        callee.send([YIELD, invocation[1], {"progress": True}, ["chunk"]])
        callee.send([YIELD, invocation[1], {}, ["final"]])
        assert await caller.recv() == [RESULT, request, {}, ["final"]]
        await caller.barrier()

    run(scenario)


# -- progressive call invocations ------------------------------------------------------------------


@BY_TRANSPORT
def test_progressive_invocations_stream_to_one_invocation(
    router: RouterProcess, transport: str
) -> None:
    """Every chunk of a progressive CALL reaches the same callee under one INVOCATION request ID.

    Autobahn|Python can neither send nor take progressive CALLs: both ends are hand-rolled.
    """

    async def scenario() -> None:
        callee = await Peer.open(router, other(transport), "msgpack")
        caller = await Peer.open(router, transport, "json")
        procedure = uri("upload")
        registration = await callee.register(procedure)
        request = caller.next_request()
        caller.send([CALL, request, {"progress": True}, procedure, ["a"]])
        first = await callee.recv()
        assert first[0] == INVOCATION and first[2] == registration, first
        assert first[3] == {"progress": True} and first[4] == ["a"], first
        caller.send([CALL, request, {"progress": True}, procedure, ["b"]])
        assert await callee.recv() == [INVOCATION, first[1], registration, {"progress": True},
                                       ["b"]]
        caller.send([CALL, request, {}, procedure, ["c"]])
        last = await callee.recv()
        assert last[:2] == [INVOCATION, first[1]] and not last[3].get("progress"), last
        assert last[4] == ["c"], last
        callee.send([YIELD, first[1], {}, ["abc"]])
        assert await caller.recv() == [RESULT, request, {}, ["abc"]]
        await caller.barrier()

    run(scenario)


@BY_TRANSPORT
def test_progressive_invocation_to_autobahn_callee_is_refused(
    router: RouterProcess, transport: str
) -> None:
    """A progressive CALL to a callee that does not announce the feature gets
    feature_not_supported; the callee is never invoked."""

    async def scenario() -> None:
        callee = await connect(router, transport, "json")  # Autobahn: no progressive invocations
        caller = await Peer.open(router, transport, "cbor")
        procedure = uri("no_streams")
        invoked: list[Any] = []
        await callee.register(lambda *a: invoked.append(a), procedure)
        reply = await caller.call(procedure, ["a"], {"progress": True})
        assert reply[0] == ERROR and reply[1] == CALL
        assert reply[4] == "wamp.error.feature_not_supported", reply
        assert await callee.call(procedure, "plain") is None  # still registered, still works
        assert invoked == [("plain",)]
        await close(callee)

    run(scenario)


@BY_TRANSPORT
def test_progressive_call_without_announcing_it_aborts(
    router: RouterProcess, transport: str
) -> None:
    """A caller that sends a progressive CALL without announcing progressive_call_invocations is
    aborted with wamp.error.protocol_violation."""

    async def scenario() -> None:
        roles = {**FULL_ROLES, "caller": {"features": {"call_canceling": True}}}
        caller = await Peer.open(router, transport, "json", roles=roles)
        caller.send([CALL, caller.next_request(), {"progress": True}, uri("x"), []])
        abort = await caller.recv()
        assert abort[0] == ABORT and abort[2] == "wamp.error.protocol_violation", abort
        assert await caller.drain() == []

    run(scenario)


# -- call canceling --------------------------------------------------------------------------------


class Worker:
    """An Autobahn callee whose one procedure works until released or interrupted."""

    def __init__(self, session: Client) -> None:
        self.session = session
        loop = asyncio.get_running_loop()
        self.started: asyncio.Future[None] = loop.create_future()
        self.release: asyncio.Future[str] = loop.create_future()
        self.interrupted: asyncio.Future[None] = loop.create_future()
        self.procedure = uri("work")

    async def work(self) -> str:
        self.started.set_result(None)
        try:
            return await self.release
        except asyncio.CancelledError:  # Autobahn cancels the invocation on INTERRUPT
            self.interrupted.set_result(None)
            return "stopped early"

    async def register(self) -> Worker:
        await self.session.register(self.work, self.procedure)
        return self

    async def answered(self) -> None:
        """Let the callee's answer go out, then make sure the router has processed it."""
        await asyncio.sleep(0.05)  # Autobahn sends YIELD from the invocation's done callback
        await self.session.call("wamp.session.count")  # one round trip behind that YIELD


async def worker(router: RouterProcess, transport: str, serializer: str) -> Worker:
    return await Worker(await connect(router, transport, serializer)).register()


@BY_TRANSPORT
def test_cancel_skip_answers_at_once_and_leaves_the_callee_alone(
    router: RouterProcess, transport: str
) -> None:
    """CANCEL skip: the caller gets canceled at once, the callee no INTERRUPT, and the callee's
    late answer is dropped."""

    async def scenario() -> None:
        callee = await worker(router, transport, "json")
        caller = await Peer.open(router, other(transport), "msgpack")
        request = caller.next_request()
        caller.send([CALL, request, {}, callee.procedure, []])
        await within(callee.started)
        caller.send([CANCEL, request, {"mode": "skip"}])
        assert await caller.recv() == [ERROR, CALL, request, {}, CANCELED]
        # an INTERRUPT would have been sent before that ERROR: one callee round trip later it
        # would have arrived
        await within(callee.session.call("wamp.session.count"))
        assert not callee.interrupted.done()
        callee.release.set_result("finished anyway")
        await callee.answered()
        await caller.barrier()  # the late RESULT never came
        await close(callee.session)

    run(scenario)


@BY_TRANSPORT
def test_cancel_kill_waits_for_the_interrupted_callee(
    router: RouterProcess, transport: str
) -> None:
    """CANCEL kill: the callee is interrupted and its answer is the caller's one final answer."""

    async def scenario() -> None:
        callee = await worker(router, transport, "cbor")
        caller = await Peer.open(router, transport, "cbor")
        request = caller.next_request()
        caller.send([CALL, request, {}, callee.procedure, []])
        await within(callee.started)
        caller.send([CANCEL, request, {"mode": "kill"}])
        await within(callee.interrupted)
        assert await caller.recv() == [RESULT, request, {}, ["stopped early"]]
        await caller.barrier()
        await close(callee.session)

    run(scenario)


@BY_TRANSPORT
def test_cancel_killnowait_answers_at_once_and_interrupts(
    router: RouterProcess, transport: str
) -> None:
    """CANCEL killnowait: the caller gets canceled at once, the callee is interrupted, and the
    callee's answer is dropped."""

    async def scenario() -> None:
        callee = await worker(router, other(transport), "msgpack")
        caller = await Peer.open(router, transport, "json")
        request = caller.next_request()
        caller.send([CALL, request, {}, callee.procedure, []])
        await within(callee.started)
        caller.send([CANCEL, request, {"mode": "killnowait"}])
        assert await caller.recv() == [ERROR, CALL, request, {}, CANCELED]
        await within(callee.interrupted)
        await callee.answered()
        await caller.barrier()  # the interrupted callee's RESULT never came
        await close(callee.session)

    run(scenario)


@BY_TRANSPORT
def test_autobahn_cancel_interrupts_the_callee(router: RouterProcess, transport: str) -> None:
    """An Autobahn caller cancelling its call's future interrupts the Autobahn callee, and the
    caller's session survives the router's answer."""

    async def scenario() -> None:
        callee = await worker(router, transport, "json")
        caller = await connect(router, transport, "msgpack")
        call = asyncio.ensure_future(caller.call(callee.procedure))
        await within(callee.started)
        call.cancel()
        await within(callee.interrupted)
        await callee.answered()
        assert await within(caller.call("wamp.session.count")) >= 2
        assert caller.is_attached()
        await close(callee.session, caller)

    run(scenario)


@BY_TRANSPORT
def test_caller_that_leaves_interrupts_its_calls(router: RouterProcess, transport: str) -> None:
    """When a caller's connection drops with a call in flight, the callee is interrupted, and
    its answer, with nowhere to go, is dropped."""

    async def scenario() -> None:
        callee = await worker(router, transport, "msgpack")
        caller = await connect(router, other(transport), "json")
        call = asyncio.ensure_future(caller.call(callee.procedure))
        await within(callee.started)
        caller.abort()
        await within(callee.interrupted)
        await callee.answered()
        assert callee.session.is_attached()
        await within(asyncio.gather(call, return_exceptions=True))
        await close(callee.session)

    run(scenario)


@BY_TRANSPORT
def test_kill_on_a_callee_without_call_canceling_behaves_as_skip(
    router: RouterProcess, transport: str
) -> None:
    """A callee that does not announce call_canceling gets no INTERRUPT; kill then answers the
    caller at once with canceled."""

    async def scenario() -> None:
        roles = {**FULL_ROLES, "callee": {"features": {"progressive_call_results": True}}}
        callee = await Peer.open(router, transport, "json", roles=roles)
        caller = await Peer.open(router, other(transport), "cbor")
        procedure = uri("uninterruptible")
        await callee.register(procedure)
        request = caller.next_request()
        caller.send([CALL, request, {}, procedure, []])
        invocation = await callee.recv()
        caller.send([CANCEL, request, {"mode": "kill"}])
        assert await caller.recv() == [ERROR, CALL, request, {}, CANCELED]
        await callee.barrier()  # no INTERRUPT came before the barrier's RESULT
        callee.send([YIELD, invocation[1], {}, ["late"]])
        await callee.barrier()
        await caller.barrier()

    run(scenario)


# -- call timeout ----------------------------------------------------------------------------------


@BY_TRANSPORT
def test_call_timeout_fails_the_call_and_interrupts_the_callee(
    router: RouterProcess, transport: str
) -> None:
    """CALL.Options.timeout (ms): the caller gets wamp.error.timeout after it and the callee an
    INTERRUPT killnowait with reason timeout; the late answer is dropped.

    Autobahn's CallOptions(timeout=...) is documented in seconds, yet it puts the number on the
    wire unchanged and sets no timer of its own: 300 here is 300 ms to the router.
    """

    async def scenario() -> None:
        callee = await Peer.open(router, transport, "msgpack")
        caller = await connect(router, other(transport), "json")
        procedure = uri("slow")
        await callee.register(procedure)
        started = time.monotonic()
        call = asyncio.ensure_future(caller.call(procedure, options=CallOptions(timeout=300)))
        invocation = await callee.recv()
        assert invocation[0] == INVOCATION
        with pytest.raises(ApplicationError) as raised:
            await within(call)
        elapsed = time.monotonic() - started
        assert raised.value.error == "wamp.error.timeout"
        assert 0.25 <= elapsed < 2.0, elapsed
        assert await callee.recv() == [
            INTERRUPT, invocation[1], {"mode": "killnowait", "reason": "wamp.error.timeout"}
        ]
        callee.send([YIELD, invocation[1], {}, ["too late"]])
        await callee.barrier()
        assert await within(caller.call("wamp.session.count")) >= 2  # no stray RESULT came
        await close(caller)

    run(scenario)


@BY_TRANSPORT
def test_call_timeout_cancels_an_autobahn_invocation(
    router: RouterProcess, transport: str
) -> None:
    """An Autobahn callee's invocation is cancelled when the router times the call out."""

    async def scenario() -> None:
        callee = await worker(router, transport, "cbor")
        caller = await connect(router, transport, "cbor")
        with pytest.raises(ApplicationError) as raised:
            await within(caller.call(callee.procedure, options=CallOptions(timeout=200)))
        assert raised.value.error == "wamp.error.timeout"
        await within(callee.interrupted)
        await callee.answered()
        assert await within(caller.call("wamp.session.count")) >= 2
        await close(callee.session, caller)

    run(scenario)


# -- caller identification -------------------------------------------------------------------------


def who(details: Any) -> list[Any]:
    return [details.caller, details.caller_authid, details.caller_authrole]


@BY_TRANSPORT
def test_disclose_me_reveals_the_caller(router: RouterProcess, transport: str) -> None:
    """With disclose_me the callee sees caller, caller_authid and caller_authrole; without, none."""

    async def scenario() -> None:
        callee = await connect(router, transport, "json")
        caller = await Peer.open(router, other(transport), "msgpack")
        procedure = uri("whoami")
        await callee.register(who, procedure,
                              RegisterOptions(details=True))
        reply = await caller.call(procedure, options={"disclose_me": True})
        assert reply[3] == [[caller.id, f"anonymous-{caller.id}", "anonymous"]], reply
        reply = await caller.call(procedure)
        assert reply[3] == [[None, None, None]], reply
        await close(callee)

    run(scenario)


@BY_TRANSPORT
def test_disclose_caller_on_register_reveals_every_caller(
    router: RouterProcess, transport: str
) -> None:
    """A registration made with disclose_caller sees the identity of callers that did not ask."""

    async def scenario() -> None:
        callee = await Peer.open(router, transport, "cbor")
        caller = await connect(router, other(transport), "json", authid="alice")
        procedure = uri("audited")
        await callee.register(procedure, {"disclose_caller": True})
        call = asyncio.ensure_future(caller.call(procedure))
        invocation = await callee.recv()
        assert invocation[3] == {"caller": caller.id, "caller_authid": "alice",
                                 "caller_authrole": "user"}, invocation
        callee.send([YIELD, invocation[1], {}, ["ok"]])
        assert await within(call) == "ok"
        await close(caller)

    run(scenario)


@BY_TRANSPORT
def test_realm_forcing_disclosure_reveals_every_caller(
    router: RouterProcess, transport: str
) -> None:
    """In a realm with disclose_caller = "force" every INVOCATION names its caller."""

    async def scenario() -> None:
        callee = await connect(router, transport, "msgpack", realm="forced")
        caller = await connect(router, other(transport), "cbor", realm="forced")
        procedure = uri("forced")
        await callee.register(who, procedure,
                              RegisterOptions(details=True))
        assert await within(caller.call(procedure)) == [
            caller.id, f"anonymous-{caller.id}", "anonymous"]
        await close(callee, caller)

    run(scenario)


@BY_TRANSPORT
def test_realm_forbidding_disclosure_refuses_disclose_me(
    router: RouterProcess, transport: str
) -> None:
    """In a realm with disclose_caller = "forbid" disclose_me gets
    wamp.error.option_disallowed.disclose_me and disclose_caller reveals nothing."""

    async def scenario() -> None:
        callee = await Peer.open(router, transport, "json", realm="forbidden")
        caller = await Peer.open(router, other(transport), "json", realm="forbidden")
        autobahn_caller = await connect(router, transport, "cbor", realm="forbidden")
        procedure = uri("secretive")
        await callee.register(procedure, {"disclose_caller": True})
        reply = await caller.call(procedure, options={"disclose_me": True})
        assert reply[0] == ERROR and reply[4] == "wamp.error.option_disallowed.disclose_me", reply
        call = asyncio.ensure_future(autobahn_caller.call(procedure))
        invocation = await callee.recv()
        assert not {"caller", "caller_authid", "caller_authrole"} & set(invocation[3]), invocation
        callee.send([YIELD, invocation[1], {}, ["anonymous answer"]])
        assert await within(call) == "anonymous answer"
        await close(autobahn_caller)

    run(scenario)


# -- pattern-based registrations -------------------------------------------------------------------


@BY_TRANSPORT
def test_pattern_registrations_follow_precedence(router: RouterProcess, transport: str) -> None:
    """A call goes to the exact registration, else the longest prefix, else the most specific
    wildcard; the callee gets the called URI in details.procedure."""

    async def scenario() -> None:
        callee = await connect(router, transport, "cbor")
        caller = await connect(router, other(transport), "msgpack")
        base = uri("app")
        patterns = {
            "exact": (f"{base}.users.get", "exact"),
            "prefix": (f"{base}.users", "prefix"),
            "longer prefix": (f"{base}.users.admin", "prefix"),
            "wildcard": (f"{base}..get", "wildcard"),
            "narrower wildcard": (f"{base}.items.", "wildcard"),
        }
        for tag, (pattern, match) in patterns.items():
            def endpoint(details: Any, tag: str = tag) -> list[Any]:
                return [tag, details.procedure]

            await callee.register(endpoint, pattern, RegisterOptions(match=match, details=True))
        expected = {
            f"{base}.users.get": "exact",
            f"{base}.users.list": "prefix",
            f"{base}.usersettings": "prefix",  # a prefix is a string prefix
            f"{base}.users.admin.get": "longer prefix",
            f"{base}.orders.get": "wildcard",
            f"{base}.items.get": "narrower wildcard",
        }
        for procedure, tag in expected.items():
            assert await within(caller.call(procedure)) == [tag, procedure], procedure
        with pytest.raises(ApplicationError) as raised:
            await within(caller.call(f"{base}.orders.put"))
        assert raised.value.error == "wamp.error.no_such_procedure"
        await close(callee, caller)

    run(scenario)


# -- shared registrations --------------------------------------------------------------------------


async def callees(
    router: RouterProcess, transport: str, procedure: str, invoke: str, n: int = 3,
) -> list[Client]:
    """``n`` Autobahn callees on alternating transports sharing ``procedure``; each answers its
    index."""
    sessions = []
    for index in range(n):
        session = await connect(router, transport if index % 2 == 0 else other(transport),
                                ("json", "msgpack", "cbor")[index % 3])
        await session.register(lambda index=index: index, procedure,
                                RegisterOptions(invoke=invoke))
        sessions.append(session)
    return sessions


@BY_TRANSPORT
def test_roundrobin_spreads_calls_in_registration_order(
    router: RouterProcess, transport: str
) -> None:
    """invoke=roundrobin cycles through the callees in the order they registered."""

    async def scenario() -> None:
        procedure = uri("spread")
        shared = await callees(router, transport, procedure, "roundrobin")
        caller = await connect(router, transport, "json")
        answers = [await within(caller.call(procedure)) for _ in range(6)]
        assert answers == [0, 1, 2, 0, 1, 2]
        await close(*shared, caller)

    run(scenario)


@BY_TRANSPORT
def test_random_spreads_calls_over_the_callees(router: RouterProcess, transport: str) -> None:
    """invoke=random answers every call from one of the callees, not always the same one."""

    async def scenario() -> None:
        procedure = uri("dice")
        shared = await callees(router, transport, procedure, "random")
        caller = await connect(router, other(transport), "cbor")
        answers = Counter([await within(caller.call(procedure)) for _ in range(30)])
        assert set(answers) <= {0, 1, 2} and len(answers) >= 2, answers  # 3 * 3**-30 to fail
        await close(*shared, caller)

    run(scenario)


@pytest.mark.parametrize("transport", ["websocket", "rawsocket"])
@pytest.mark.parametrize(("invoke", "active", "standby"), [("first", 0, 1), ("last", 2, 1)])
def test_hot_standby_takes_over_when_the_active_callee_leaves(
    router: RouterProcess, transport: str, invoke: str, active: int, standby: int
) -> None:
    """invoke=first (last) sends every call to the earliest (latest) callee; when it leaves, the
    next one in line takes over."""

    async def scenario() -> None:
        procedure = uri(f"standby_{invoke}")
        shared = await callees(router, transport, procedure, invoke)
        caller = await connect(router, transport, "msgpack")
        assert [await within(caller.call(procedure)) for _ in range(3)] == [active] * 3
        await close(shared[active])
        assert [await within(caller.call(procedure)) for _ in range(3)] == [standby] * 3
        await close(*[s for i, s in enumerate(shared) if i != active], caller)

    run(scenario)


@BY_TRANSPORT
def test_shared_registration_policy_conflicts_are_refused(
    router: RouterProcess, transport: str
) -> None:
    """Another invocation policy than the first registration's gets
    procedure_exists_with_different_invocation_policy; a second single one
    procedure_already_exists."""

    async def scenario() -> None:
        shared_procedure, single_procedure = uri("shared"), uri("single")
        first = await connect(router, transport, "json")
        second = await connect(router, other(transport), "cbor")
        await first.register(lambda: 1, shared_procedure, RegisterOptions(invoke="roundrobin"))
        await first.register(lambda: 1, single_procedure)
        for invoke in ("random", "single", "first"):
            with pytest.raises(ApplicationError) as raised:
                await within(second.register(lambda: 2, shared_procedure,
                                             RegisterOptions(invoke=invoke)))
            expected = "wamp.error.procedure_exists_with_different_invocation_policy"
            assert raised.value.error == expected, invoke
        with pytest.raises(ApplicationError) as raised:
            await within(second.register(lambda: 2, single_procedure))
        assert raised.value.error == "wamp.error.procedure_already_exists"
        await within(second.register(lambda: 2, shared_procedure,
                                     RegisterOptions(invoke="roundrobin")))
        assert {await within(second.call(shared_procedure)) for _ in range(2)} == {1, 2}
        await close(first, second)

    run(scenario)


# -- a callee that goes away -----------------------------------------------------------------------


@BY_TRANSPORT
def test_killed_callee_fails_its_calls_and_the_standby_takes_over(
    router: RouterProcess, transport: str
) -> None:
    """When a callee's transport is aborted, each call it had in flight fails at once with
    wamp.error.canceled, and new calls go to the remaining callee."""

    async def scenario() -> None:
        procedure = uri("fragile")
        loop = asyncio.get_running_loop()
        doomed = await connect(router, transport, "msgpack")
        invoked: list[int] = []
        both: asyncio.Future[None] = loop.create_future()

        def hangs(n: int) -> asyncio.Future[int]:
            invoked.append(n)
            if len(invoked) == 2:
                both.set_result(None)
            return loop.create_future()

        await doomed.register(hangs, procedure, RegisterOptions(invoke="first"))
        spare = await connect(router, other(transport), "json")
        await spare.register(lambda n: -n, procedure, RegisterOptions(invoke="first"))
        callers = [await connect(router, t, "cbor") for t in (transport, other(transport))]
        calls = [asyncio.ensure_future(c.call(procedure, n)) for n, c in enumerate(callers, 1)]
        await within(both)
        doomed.abort()
        for outcome in await within(asyncio.gather(*calls, return_exceptions=True)):
            assert isinstance(outcome, ApplicationError), outcome
            assert outcome.error == CANCELED
        assert await within(callers[0].call(procedure, 3)) == -3
        await close(spare, *callers)

    run(scenario)


# -- keepalive -------------------------------------------------------------------------------------


def test_autobahn_client_answers_keepalive_pings_and_stays(router: RouterProcess) -> None:
    """On a WebSocket listener that pings every 0.5 s, an idle Autobahn client stays joined and
    its registration keeps answering. (Autobahn|Python's RawSocket clients cannot answer a
    RawSocket ping, which is why RawSocket keepalive is off by default; see the next test.)"""
    transport = "websocket"

    async def scenario() -> None:
        callee = await connect(router, transport, "json", listener=f"{transport}_ping")
        procedure = uri("idle")
        await callee.register(lambda: "still here", procedure)
        await asyncio.sleep(4 * KEEPALIVE)  # several ping rounds with nothing else going on
        caller = await connect(router, transport, "json")
        assert callee.is_attached(), "the router closed an Autobahn client that was pinged"
        assert await within(caller.call(procedure)) == "still here"
        await close(callee, caller)

    run(scenario)


def test_rawsocket_peer_that_answers_pings_stays(router: RouterProcess) -> None:
    """A RawSocket peer that answers each PING with a PONG, as the spec requires, stays joined
    on a pinging listener across several ping rounds."""

    async def scenario() -> None:
        peer = await Peer.open(router, "rawsocket", "json", listener="rawsocket_ping")
        procedure = uri("answering")
        await peer.register(procedure)
        with pytest.raises(TimeoutError):  # reading answers the pings; no WAMP message comes
            await peer.recv(4 * KEEPALIVE)
        await peer.barrier()  # answers come back: the connection is alive
        assert peer.pings >= 2
        observer = await connect(router, "websocket", "msgpack")
        assert isinstance(await within(observer.call("wamp.registration.lookup", procedure)), int)
        await close(observer)

    run(scenario)


@BY_TRANSPORT
def test_silent_peer_is_closed_and_its_registration_removed(
    router: RouterProcess, transport: str
) -> None:
    """A peer that answers no ping and sends nothing is closed after ping_timeout; its
    registration vanishes and a call waiting on it fails with canceled."""

    async def scenario() -> None:
        silent = await Peer.open(router, transport, "json", listener=f"{transport}_ping")
        silent.answer_pings = False
        procedure = uri("silent")
        await silent.register(procedure)
        observer = await connect(router, other(transport), "msgpack")
        registration = await within(observer.call("wamp.registration.lookup", procedure))
        assert isinstance(registration, int)
        started = time.monotonic()
        call = asyncio.ensure_future(observer.call(procedure))
        received = await silent.drain(timeout=4 * KEEPALIVE)
        elapsed = time.monotonic() - started
        assert [m[0] for m in received] == [INVOCATION], received
        assert silent.pings >= 1
        assert elapsed < 3 * KEEPALIVE, elapsed
        with pytest.raises(ApplicationError) as raised:
            await within(call)
        assert raised.value.error == CANCELED
        assert await within(observer.call("wamp.registration.lookup", procedure)) is None
        await close(observer)

    run(scenario)
