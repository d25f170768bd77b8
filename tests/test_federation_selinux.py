"""End to end: the name server enforces an SELinux policy (the policy-file backend and a real
compiled policy) on what each router may announce and look up.

Each router reaches the name server on its own listener, labeled with its VM's domain (the
transport decides the label, as Argo's hypervisor-stamped domain will): vm_a_t may announce and
look up everything under com.fed.*; vm_b_t may announce com.fed.* but not com.fed.secret.*;
vm_c_t may announce but never look up. The routers themselves run allow-all: the decisions
here are the name server's.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from autobahn.wamp.exception import ApplicationError

from serouter.core.access import Action
from serouter.security import _manager
from tests.e2e_clients import close, connect, run, uri, within
from tests.federation_support import FederatedRouter, wait_for
from tests.router_process import Listener
from tests.selinux_policy import BASE_CIL, WAMP_CIL, PolicyBuilder, policies
from tests.test_federation_e2e import NO_SUCH_PROCEDURE, eventually

__all__ = ["policies"]
pytestmark = pytest.mark.timeout(90)

VMS = ("a", "b", "c")
MODULE = """
(type ns_uri_t)
(type fed_uri_t)
(type fed_secret_t)
(typeattributeset wamp_uri_type (ns_uri_t fed_uri_t fed_secret_t))
""" + "".join(f"""
(type vm_{vm}_t)
(roletype system_r vm_{vm}_t)
(typeattributeset wamp_client_domain (vm_{vm}_t))
(call wamp_join_realms (vm_{vm}_t wamp_realm_t))
(call wamp_call_uris (vm_{vm}_t ns_uri_t))
(call wamp_subscribe_uris (vm_{vm}_t ns_uri_t))
""" for vm in VMS) + """
(call wamp_announce_uris (vm_a_t fed_uri_t))
(call wamp_announce_uris (vm_a_t fed_secret_t))
(call wamp_announce_uris (vm_b_t fed_uri_t))
(call wamp_lookup_uris (vm_b_t fed_secret_t))
(allow vm_c_t fed_uri_t (wamp_uri (announce)))
(allow vm_c_t fed_secret_t (wamp_uri (announce)))
"""
CONTEXTS = """\
realm   *                system_u:object_r:wamp_realm_t:s0
uri     serouter.ns.*    system_u:object_r:ns_uri_t:s0
uri     com.fed.secret.* system_u:object_r:fed_secret_t:s0
uri     com.fed.*        system_u:object_r:fed_uri_t:s0
uri     wamp.*           system_u:object_r:wamp_meta_uri_t:s0
uri     *                system_u:object_r:wamp_uri_t:s0
"""
# The policy backends map announce and lookup to wamp_uri permissions like every other action.
assert _manager.PERMISSIONS[Action.ANNOUNCE] == ("wamp_uri", "announce")
assert _manager.PERMISSIONS[Action.LOOKUP] == ("wamp_uri", "lookup")


def label(vm: str) -> str:
    return f"system_u:system_r:vm_{vm}_t:s0"


@pytest.fixture(scope="module")
def routers(policies: PolicyBuilder) -> Iterator[dict[str, FederatedRouter]]:
    policy = policies.build("federation", BASE_CIL, WAMP_CIL, MODULE)
    contexts = policies.contexts(CONTEXTS, name="federation_contexts")
    nameserver = FederatedRouter(
        "nameserver", mode="nameserver",
        listeners=[Listener("rawsocket", label=label("a")),
                   *(Listener("rawsocket", name=f"vm-{vm}", label=label(vm)) for vm in VMS)],
        access={"backend": "policy-file", "policy": str(policy), "contexts": str(contexts)},
    )
    started: dict[str, FederatedRouter] = {"nameserver": nameserver}
    try:
        nameserver.spawn()
        nameserver.wait_ready()
        for vm in VMS:
            endpoint = f"tcp:127.0.0.1:{nameserver.port(f'vm-{vm}')}"
            started[vm] = FederatedRouter(vm, nameserver=endpoint)
            started[vm].spawn()
        for vm in VMS:
            started[vm].wait_ready()
        wait_for(lambda: all(started[vm].log_has("joined the name server") for vm in VMS),
                 what="routers joined the name server")
        yield started
    finally:
        outputs = {name: (r.output, r.internal_errors()) for name, r in started.items()}
        for router in started.values():
            router.terminate()
        codes = {name: r.stop() for name, r in started.items()}
    for name, code in codes.items():
        assert code == 0, f"{name} exited {code}:\n{outputs[name][0]}"
        assert not outputs[name][1], f"{name}: internal errors:\n{outputs[name][0]}"


def test_announce_is_enforced(routers: dict[str, FederatedRouter]) -> None:
    """B may announce com.fed.* but not com.fed.secret.*: A reaches the one, not the other."""

    async def scenario() -> None:
        callee = await connect(routers["b"], "websocket", "json")
        caller = await connect(routers["a"], "websocket", "json")
        open_, secret = uri("open").replace("com.example", "com.fed"), \
            uri("x").replace("com.example", "com.fed.secret")
        await callee.register(lambda: "open", open_)
        await callee.register(lambda: "secret", secret)
        assert await eventually(lambda: caller.call(open_)) == "open"
        with pytest.raises(ApplicationError) as raised:
            await within(caller.call(secret))
        assert raised.value.error == NO_SUCH_PROCEDURE
        await close(callee, caller)

    run(scenario, timeout=30)
    nameserver, b = routers["nameserver"], routers["b"]
    wait_for(lambda: "denied  { announce }" in nameserver.output, what="the AVC denial")
    denial = next(line for line in nameserver.output.splitlines()
                  if "denied  { announce }" in line)
    assert "uri=com.fed.secret." in denial and "scontext=" + label("b") in denial
    assert b.log_has("refused to hold procedure com.fed.secret.")


def test_lookup_is_enforced(routers: dict[str, FederatedRouter]) -> None:
    """C may not look anything up: its callers cannot reach B's procedure, which A can; yet C
    may announce, so A reaches C's procedure."""

    async def scenario() -> None:
        on_b = await connect(routers["b"], "websocket", "json")
        on_c = await connect(routers["c"], "websocket", "json")
        from_a = await connect(routers["a"], "rawsocket", "json")
        from_c = await connect(routers["c"], "rawsocket", "json")
        at_b, at_c = uri("b").replace("com.example", "com.fed"), \
            uri("c").replace("com.example", "com.fed")
        await on_b.register(lambda: "b", at_b)
        await on_c.register(lambda: "c", at_c)
        assert await eventually(lambda: from_a.call(at_b)) == "b"
        assert await eventually(lambda: from_a.call(at_c)) == "c"
        with pytest.raises(ApplicationError) as raised:
            await within(from_c.call(at_b))
        assert raised.value.error == NO_SUCH_PROCEDURE
        await close(on_b, on_c, from_a, from_c)

    run(scenario, timeout=30)
    nameserver = routers["nameserver"]
    wait_for(lambda: "denied  { lookup }" in nameserver.output, what="the AVC denial")
    denial = next(line for line in nameserver.output.splitlines()
                  if "denied  { lookup }" in line)
    assert "scontext=" + label("c") in denial
    assert routers["c"].log_has("the name server refused the lookup")
