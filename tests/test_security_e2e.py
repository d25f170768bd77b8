"""End to end: ``serouter run`` with the policy-file backend and a real compiled policy; clients
in different domains (listeners with different labels, Unix peers with different uids) over
real sockets. Every action is allowed or denied exactly as the policy says."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.raw_clients import RawWampClient, connect_as
from tests.router_process import Listener, RouterProcess, running
from tests.selinux_policy import A, B, C, PolicyBuilder, policies

__all__ = ["policies"]

pytestmark = pytest.mark.timeout(90)

NOT_AUTHORIZED = "wamp.error.not_authorized"
FAILED = "wamp.error.authorization_failed"
WELCOME, ABORT, ERROR, PUBLISHED, EVENT, RESULT, INVOCATION = 2, 3, 8, 17, 36, 50, 68
PUBLISH, SUBSCRIBE, CALL, REGISTER = 16, 32, 48, 64


def labeled(name: str, context: str) -> Listener:
    """A RawSocket/JSON listener on loopback whose peers all have ``context``."""
    return Listener("rawsocket", name=name, serializers=["json"], label=context)


def policy_router(policies: PolicyBuilder, enforcing: bool = True, **flags: bool) -> RouterProcess:
    """A router whose policy file is a copy in its own directory (tests replace it)."""
    router = RouterProcess([], realms=("realm1", "secret"), shutdown_timeout=2.0)
    router.dir.chmod(0o755)  # other uids connect to the Unix socket in it
    unix = f"unix:{router.dir / 'unix.sock'}:mode=666"
    router.listeners = [labeled("a", A), labeled("b", B), labeled("c", C),
                        Listener("rawsocket", name="unix", serializers=["json"], endpoint=unix)]
    policy = router.dir / "policy.bin"
    shutil.copyfile(policies.standard(**flags), policy)
    contexts = router.dir / "wamp_contexts"
    shutil.copyfile(policies.contexts(), contexts)
    router.access = {"backend": "policy-file", "policy": str(policy), "enforcing": enforcing,
                     "contexts": str(contexts), "uid_labels": {1001: A, 1002: B}}
    return router


def joined(router: RouterProcess, name: str) -> RawWampClient:
    return RawWampClient.connect(router.listener(name))


def unjoined(router: RouterProcess, name: str) -> RawWampClient:
    """Connected, RawSocket handshake done, no HELLO yet."""
    return RawWampClient.connect(router.listener(name), realm=None)


def refused(reply: list[Any], request_type: int) -> bool:
    """The router's ERROR for a denial: not_authorized, and nothing else said."""
    assert reply[:2] == [ERROR, request_type] and len(reply) == 5, reply
    return reply[3] == {} and reply[4] == NOT_AUTHORIZED


@pytest.fixture(scope="module")
def router(policies: PolicyBuilder) -> Iterator[RouterProcess]:
    with running(policy_router(policies)) as router:
        yield router


def test_join_is_decided_by_the_realm_context(router: RouterProcess) -> None:
    """A and B may join realm1; C is refused with ABORT not_authorized and no detail; nobody
    may join 'secret' (its own context, no rule)."""
    assert joined(router, "a").session_id and joined(router, "b").session_id
    assert unjoined(router, "c").hello() == [ABORT, {}, NOT_AUTHORIZED]
    assert unjoined(router, "a").hello("secret") == [ABORT, {}, NOT_AUTHORIZED]


def test_register_and_call(router: RouterProcess) -> None:
    """A registers and calls com.example.add; B may neither register nor call it."""
    callee, caller, other = joined(router, "a"), joined(router, "a"), joined(router, "b")
    callee.register("com.example.add")  # asserts REGISTERED
    assert refused(other.ask(REGISTER, {}, "com.example.add2"), REGISTER)
    caller.send([CALL, caller.next_request(), {}, "com.example.add", [2, 3]])
    invocation = callee.recv()
    assert invocation[0] == INVOCATION and invocation[4] == [2, 3]
    callee.send([70, invocation[1], {}, [5]])
    assert caller.recv() == [RESULT, caller.request, {}, [5]]
    assert refused(other.call("com.example.add", [1, 1]), CALL)
    assert callee.nothing_within(0.3)  # no INVOCATION for the denied call
    callee.close()


def test_subscribe_and_publish(router: RouterProcess) -> None:
    """Both subscribe under com.example.*; A publishes there, B may not: an acknowledged
    denied PUBLISH gets ERROR, an unacknowledged one nothing, and no EVENT goes out."""
    a, b = joined(router, "a"), joined(router, "b")
    a.subscribe("com.example.news")  # asserts SUBSCRIBED
    b.subscribe("com.example.news")
    b.publish("com.example.news", acknowledge=True, args=["from b"])
    assert refused(b.recv(), PUBLISH)
    b.publish("com.example.news", acknowledge=False, args=["from b, quietly"])
    assert b.nothing_within(0.3) and a.nothing_within(0.1)
    a.publish("com.example.news", acknowledge=True, args=["from a"])
    assert a.recv()[0] == PUBLISHED  # a publisher is excluded from its own events
    event = b.recv()
    assert event[0] == EVENT and event[4] == ["from a"]


def test_patterns_and_mls(router: RouterProcess) -> None:
    """A prefix subscription is checked on the pattern as written (com.example. is in
    com.example.*); the MLS constraint keeps an s0 session off the s1 topics."""
    a, b = joined(router, "a"), joined(router, "b")
    a.subscribe("com.example.", {"match": "prefix"})  # asserts SUBSCRIBED
    assert refused(b.ask(REGISTER, {"match": "prefix"}, "com.example."), REGISTER)
    assert refused(a.ask(SUBSCRIBE, {}, "com.secret.x"), SUBSCRIBE)
    assert refused(b.ask(SUBSCRIBE, {}, "com.secret.x"), SUBSCRIBE)


def test_meta_procedures_are_uris_like_any_other(router: RouterProcess) -> None:
    """wamp.* is wamp_meta_uri_t: A may call the meta API, B may not."""
    a, b = joined(router, "a"), joined(router, "b")
    reply = a.call("wamp.session.count")
    assert reply[0] == RESULT and reply[3][0] >= 2, reply
    assert refused(b.call("wamp.session.count"), CALL)


@pytest.mark.skipif(os.geteuid() != 0, reason="connecting as other uids needs root")
def test_unix_peers_are_labeled_by_uid(router: RouterProcess) -> None:
    """On the Unix socket (no listener label) uid 1001 acts as A, uid 1002 as B, and root,
    which no map names, is unlabeled and may not even join."""
    path = router.listener("unix").unix_path
    a = RawWampClient(connect_as(path, 1001))
    a.handshake()
    assert a.hello()[0] == WELCOME
    assert a.call("wamp.session.count")[0] == RESULT
    a.subscribe("com.example.unix")  # asserts SUBSCRIBED
    b = RawWampClient(connect_as(path, 1002))
    b.handshake()
    assert b.hello()[0] == WELCOME
    assert refused(b.call("wamp.session.count"), CALL)
    assert refused(b.ask(REGISTER, {}, "com.example.add"), REGISTER)
    assert unjoined(router, "unix").hello() == [ABORT, {}, NOT_AUTHORIZED]


def test_denials_are_audited_with_the_session(router: RouterProcess) -> None:
    """Every denial is an AVC record in the router log naming URI, realm, session, contexts."""
    b = joined(router, "b")
    assert refused(b.call("com.example.add"), CALL)
    pattern = (r"avc:  denied  \{ call \} for  uri=com\.example\.add realm=realm1 "
               rf"session={b.session_id} scontext={re.escape(B)} "
               r"tcontext=system_u:object_r:example_add_t:s0 tclass=wamp_uri permissive=0")
    assert re.search(pattern, router.output), router.output[-3000:]


def test_permissive_router_allows_and_logs_once(policies: PolicyBuilder) -> None:
    """enforcing = false: B's denied publish goes through, and is logged once."""
    with running(policy_router(policies, enforcing=False)) as router:
        a, b = joined(router, "a"), joined(router, "b")
        a.subscribe("com.example.news")  # asserts SUBSCRIBED
        for n in range(3):
            b.publish("com.example.news", acknowledge=True, args=[n])
            assert b.recv()[0] == PUBLISHED
            assert a.recv()[4] == [n]
        assert router.output.count("avc:  denied  { publish }") == 1
        assert "permissive=1" in router.output


def test_sighup_reloads_booleans_and_refuses_a_bad_policy(policies: PolicyBuilder) -> None:
    """A policy with b_may_call true and SIGHUP: B may call, without a restart. A corrupt
    policy and SIGHUP: refused and logged, B still may call."""
    with running(policy_router(policies)) as router:
        callee, b = joined(router, "a"), joined(router, "b")
        callee.register("com.example.add")  # asserts REGISTERED
        assert refused(b.call("com.example.add"), CALL)
        policy = Path(router.access["policy"])
        shutil.copyfile(policies.standard(b_may_call=True), policy)
        router.sighup("reloaded:")
        b.send([CALL, b.next_request(), {}, "com.example.add", [1]])
        invocation = callee.recv()
        callee.send([70, invocation[1], {}, [1]])
        assert b.recv()[0] == RESULT
        policy.write_bytes(b"\x8c\xff\x7c\xf9garbage")
        router.sighup("reload refused")
        b.send([CALL, b.next_request(), {}, "com.example.add", [2]])
        callee.send([70, callee.recv()[1], {}, [2]])
        assert b.recv()[0] == RESULT


def test_check_that_cannot_be_made_is_authorization_failed(policies: PolicyBuilder) -> None:
    """After a reload to a policy without client_b_t, B's live session cannot be decided on:
    ERROR authorization_failed (details only in the log); a new B session is unlabeled and
    may not join."""
    with running(policy_router(policies)) as router:
        b = joined(router, "b")
        shutil.copyfile(policies.standard(with_client_b=False), router.access["policy"])
        router.sighup("reloaded:")
        reply = b.call("com.example.add")
        assert reply[:2] == [ERROR, CALL] and reply[3:] == [{}, FAILED], reply
        assert "access check failed" in router.output and "client_b_t:s0 is not valid" in (
            router.output)
        assert unjoined(router, "b").hello() == [ABORT, {}, NOT_AUTHORIZED]


def test_policy_without_the_classes_refuses_to_start(policies: PolicyBuilder) -> None:
    """A policy lacking wamp_* (handle_unknown=allow) makes `serouter run` exit 1 saying why,
    before any listener opens."""
    router = policy_router(policies)
    shutil.copyfile(policies.without_classes(), router.access["policy"])
    router.dir.joinpath("wamp_contexts").write_text(
        "uri * system_u:object_r:kernel_t:s0\nrealm * system_u:object_r:kernel_t:s0\n")
    router.spawn()
    try:
        assert router.wait(15.0) == 1
        assert "cannot start: the policy lacks wamp_realm { join }" in router.output
        with pytest.raises(OSError):
            router.listener("a").connect()
    finally:
        router.stop()

