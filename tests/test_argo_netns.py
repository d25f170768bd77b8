"""The whole multi-VM picture, simulated: a name server in "dom0" and routers in two guest
"VMs", each in its own network namespace, federated over Argo (``simulate=1``: TCP on the
1.0.x.y addresses libargo's interposer uses), discovered through the test xenstored, with a
compiled SELinux policy that lets one guest do what it denies the other.

Who is who comes only from the kernel (the source address of each connection, in namespaces
wired so no guest can use another's address) and from dom0's XenStore entries for that domain
id; never from anything a guest says:

- guest1 (domain 1, "guest1"): its router's proxy may announce and look up com.example.* at
  the name server (labeled ``guest_a_t`` by name).
- guest2 (domain 2, "guest2", labeled ``guest_b_t`` by VM uuid at the name server, by domain
  id at guest1's router, since a guest may not read other domains' XenStore entries): may look
  up but not announce; calling into guest1's router, it may call com.example.* but not
  com.example.private.*.
- guest3 (domain 3, in XenStore but in no map): unlabeled, may not even join.

Skips only where network namespaces cannot be made (not root, no ip tool). Every namespace,
process and socket is removed at the end, whatever happened (bounded waits);
``SEROUTER_KEEP_LOGS=1`` keeps the routers' logs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.argo_support import (
    SimulatedNetwork,
    in_namespace,
    ip,
    namespaces_unavailable,
    temporary_directory,
)
from tests.daemon_support import unix_listener
from tests.raw_clients import RawWampClient
from tests.router_process import ROOT
from tests.selinux_policy import BASE_CIL, WAMP_CIL, PolicyBuilder, policies
from tests.xenstore_server._process import XenstoredProcess

__all__ = ["policies"]
pytestmark = pytest.mark.timeout(180)

PORT = 5555
UUID1 = "6c4a8f5e-3b1d-4d8e-9a7b-2f1e0c9d8b7a"
UUID2 = "0b7f0c55-1d8e-4f4e-a0b9-5a4c3e2d1f10"
GUEST_A = "system_u:system_r:guest_a_t:s0"
GUEST_B = "system_u:system_r:guest_b_t:s0"
LOCAL = "system_u:system_r:local_t:s0"
NOT_AUTHORIZED = "wamp.error.not_authorized"
NO_SUCH_PROCEDURE = "wamp.error.no_such_procedure"
ERROR, RESULT, INVOCATION, YIELD, CALL = 8, 50, 68, 70, 48
START_TIMEOUT = 20.0

MODULE = """
(type guest_a_t)
(type guest_b_t)
(type local_t)
(roletype system_r guest_a_t)
(roletype system_r guest_b_t)
(roletype system_r local_t)
(typeattributeset wamp_client_domain (guest_a_t guest_b_t local_t))
(type ns_uri_t)
(type example_uri_t)
(type private_uri_t)
(typeattributeset wamp_uri_type (ns_uri_t example_uri_t private_uri_t))
(call wamp_join_realms (guest_a_t wamp_realm_t))
(call wamp_join_realms (guest_b_t wamp_realm_t))
(call wamp_join_realms (local_t wamp_realm_t))
(call wamp_call_uris (guest_a_t ns_uri_t))
(call wamp_subscribe_uris (guest_a_t ns_uri_t))
(call wamp_call_uris (guest_b_t ns_uri_t))
(call wamp_subscribe_uris (guest_b_t ns_uri_t))
(call wamp_announce_uris (guest_a_t example_uri_t))
(call wamp_announce_uris (guest_a_t private_uri_t))
(call wamp_lookup_uris (guest_b_t example_uri_t))
(call wamp_lookup_uris (guest_b_t private_uri_t))
(call wamp_call_uris (guest_a_t wamp_meta_uri_t))
(call wamp_call_uris (guest_b_t example_uri_t))
(call wamp_register_uris (local_t example_uri_t))
(call wamp_register_uris (local_t private_uri_t))
(call wamp_call_uris (local_t example_uri_t))
(call wamp_call_uris (local_t private_uri_t))
"""
CONTEXTS = """\
realm   *                      system_u:object_r:wamp_realm_t:s0
uri     serouter.ns.*          system_u:object_r:ns_uri_t:s0
uri     com.example.private.*  system_u:object_r:private_uri_t:s0
uri     com.example.*          system_u:object_r:example_uri_t:s0
uri     wamp.*                 system_u:object_r:wamp_meta_uri_t:s0
uri     *                      system_u:object_r:wamp_uri_t:s0
"""


@dataclass
class VmRouter:
    """``serouter run`` inside a simulated VM's namespace, as domain ``domid`` of XenStore."""

    name: str
    domid: int
    config: str
    network: SimulatedNetwork
    xenstored: XenstoredProcess
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.directory / f"{self.name}.log"

    def spawn(self) -> None:
        path = self.directory / f"{self.name}.toml"
        path.write_text(self.config)
        command = [*self.network.exec_prefix(self.domid), sys.executable, "-m", "serouter",
                   "run", "-c", str(path)]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT,
                                            env=self.xenstored.env(self.domid))

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for(self, text: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert self.process is not None
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no {text!r}; output:\n{self.output}")
            time.sleep(0.05)

    def stop(self) -> int | None:
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            return process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
            return None


@dataclass
class World:
    network: SimulatedNetwork
    nameserver: VmRouter
    guests: dict[int, VmRouter]
    directory: Path

    def local(self, domid: int) -> RawWampClient:
        """A client of guest ``domid``'s router on its local Unix socket (labeled local_t on
        guest1), joined to realm1."""
        return RawWampClient.connect(unix_listener(self.directory / f"guest{domid}.sock"))

    def direct(self, domid: int, procedure: str, *args: Any) -> dict[str, Any]:
        """A real Autobahn client in guest ``domid``'s namespace, through serouter's simulated
        Argo client endpoint to the name server: call ``procedure`` in realm1."""
        done = subprocess.run(
            [*self.network.exec_prefix(domid), sys.executable, "-m", "tests.argo_support",
             f"argo:domain=0:port={PORT}:simulate=1", "realm1", procedure,
             *(json.dumps(a) for a in args)],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )
        lines = done.stdout.strip().splitlines()
        assert lines, done.stderr
        return json.loads(lines[-1])  # type: ignore[no-any-return]


def _configs(policy: Path, contexts: Path, directory: Path) -> dict[int, str]:
    access = (f'[access]\nbackend = "policy-file"\npolicy = {json.dumps(str(policy))}\n'
              f"contexts = {json.dumps(str(contexts))}\n")
    head = '[router]\nshutdown_timeout = 2.0\nlog_level = "info"\n'
    realm = '[[realms]]\nname = "realm1"\n'
    argo = (f'[[listeners]]\ntransport = "rawsocket"\n'
            f'endpoint = "argo:port={PORT}:simulate=1"\n')
    nameserver = (
        head.replace("[router]\n", '[router]\nmode = "nameserver"\n') + access
        + f'[access.domain_labels]\n"name:guest1" = "{GUEST_A}"\n"uuid:{UUID2}" = "{GUEST_B}"\n'
        + realm + argo
        + f'[nameserver]\nadvertise = "argo:domain=0:port={PORT}:simulate=1"\n'
        + 'publish = "xenstore"\n'
    )
    configs = {0: nameserver}
    for domid in (1, 2):
        unix = (f'[[listeners]]\ntransport = "rawsocket"\nendpoint = '
                f'"unix:{directory}/guest{domid}.sock:mode=666"\n')
        if domid == 1:  # enforces: guest2's proxy is labeled by its domain id (a guest may
            # not read other domains' names in XenStore, so only domid: keys work in guests)
            text = (head + access + f'[access.domain_labels]\n"domid:2" = "{GUEST_B}"\n'
                    + realm + argo + unix + f'label = "{LOCAL}"\n')
        else:
            text = head + '[access]\nbackend = "allow-all"\n' + realm + argo + unix
        configs[domid] = text + (
            f'[federation]\nadvertise = "argo:domain={domid}:port={PORT}:simulate=1"\n'
            "idle_timeout = 10\n")
    return configs


@pytest.fixture(scope="module")
def world(policies: PolicyBuilder) -> Iterator[World]:
    reason = namespaces_unavailable()
    if reason is not None:
        pytest.skip(reason)
    policy = policies.build("argo", BASE_CIL, WAMP_CIL, MODULE)
    contexts = policies.contexts(CONTEXTS, name="argo_contexts")
    directory = temporary_directory("serouter-argo-")
    xenstored = XenstoredProcess({1: ("guest1", UUID1), 2: ("guest2", UUID2),
                                  3: ("guest3", None)})
    routers: list[VmRouter] = []
    try:
        with SimulatedNetwork([1, 2, 3]) as network:
            xenstored.start()
            configs = _configs(policy, contexts, directory)
            made = {domid: VmRouter("nameserver" if domid == 0 else f"guest{domid}", domid,
                                    text, network, xenstored, directory)
                    for domid, text in configs.items()}
            routers.extend(made.values())
            made[0].spawn()
            made[0].wait_for("serouter ready")
            for domid in (1, 2):
                made[domid].spawn()
            for domid in (1, 2):
                made[domid].wait_for("joined the name server")
            yield World(network, made[0], {1: made[1], 2: made[2]}, directory)
            outputs = {r.name: r.output for r in routers}
            codes = {r.name: r.stop() for r in routers}
            for name, code in codes.items():
                assert code == 0, f"{name} exited {code}:\n{outputs[name]}"
                assert "Traceback" not in outputs[name], outputs[name]
    finally:
        for router in routers:
            router.stop()
        xenstored.stop()
        if os.environ.get("SEROUTER_KEEP_LOGS"):  # for debugging: the routers' logs stay
            print(f"logs kept in {directory}")
        else:
            subprocess.run(["rm", "-rf", str(directory)], check=False, timeout=10)


def eventually_result(client: RawWampClient, callee: RawWampClient | None, procedure: str,
                      args: list[Any], seconds: float = 15.0) -> list[Any]:
    """CALL until it is not no_such_procedure (the announcement travels meanwhile); a callee
    given answers its INVOCATION by echoing the arguments."""
    deadline = time.monotonic() + seconds
    while True:
        client.send([CALL, client.next_request(), {}, procedure, args])
        if callee is not None and not callee.nothing_within(1.0):
            invocation = callee.recv()
            assert invocation[0] == INVOCATION, invocation
            callee.send([YIELD, invocation[1], {}, invocation[4]])
        reply = client.recv()
        if not (reply[0] == ERROR and reply[4] == NO_SUCH_PROCEDURE) or (
                time.monotonic() > deadline):
            return reply
        time.sleep(0.2)


def test_name_server_labels_a_guest_by_its_domain(world: World) -> None:
    """A real Autobahn client in guest1, through the simulated Argo client endpoint: the name
    server's meta API shows the session's domain (id from the source address, name and uuid
    from XenStore) and the label the domain map gives it."""
    outcome = world.direct(1, "wamp.session.get", "$session")
    details = outcome["result"]
    assert details["label"] == GUEST_A, outcome
    transport = details["transport"]
    assert (transport["peer_domain"], transport["peer_domain_name"],
            transport["peer_domain_uuid"]) == (1, "guest1", UUID1)
    assert transport["peer"].startswith("argo:1:")


def test_policy_decides_by_domain_at_the_name_server(world: World) -> None:
    """guest2 (guest_b_t, by uuid) may not call the meta API; guest3, whom no map names, is
    unlabeled and may not join at all."""
    outcome = world.direct(2, "wamp.session.count")
    assert "session" in outcome and outcome.get("error") == NOT_AUTHORIZED, outcome
    assert world.direct(3, "wamp.session.count") == {"abort": NOT_AUTHORIZED}
    assert "scontext=system_u:object_r:unlabeled_t:s0" in world.nameserver.output


def test_federated_call_from_guest2_is_labeled_by_guest1s_router(world: World) -> None:
    """guest1 registers com.example.add (its proxy may announce it); a caller on guest2 reaches
    it over Argo; guest1's router labels guest2's proxy by domain (guest_b_t), which may call
    com.example.* but not com.example.private.*."""
    callee, caller = world.local(1), world.local(2)
    callee.register("com.example.add")  # asserts REGISTERED
    callee.register("com.example.private.key")
    reply = eventually_result(caller, callee, "com.example.add", [2, 3])
    assert reply[0] == RESULT and reply[3] == [2, 3], reply
    reply = eventually_result(caller, callee, "com.example.private.key", [])
    assert reply[0] == ERROR and reply[4] == NOT_AUTHORIZED, reply
    assert callee.nothing_within(0.3)
    denial = [line for line in world.guests[1].output.splitlines()
              if "denied  { call }" in line and "com.example.private.key" in line]
    assert denial and f"scontext={GUEST_B}" in denial[0], world.guests[1].output[-3000:]
    callee.close()
    caller.close()


def test_guest2_may_not_announce(world: World) -> None:
    """guest2's registration is refused by the name server (guest_b_t has no announce): a
    caller on guest1 never reaches it, and the denial is audited with guest2's label."""
    callee, caller = world.local(2), world.local(1)
    callee.register("com.example.other")  # asserts REGISTERED
    deadline = time.monotonic() + 15
    while "denied  { announce }" not in world.nameserver.output:
        assert time.monotonic() < deadline, world.nameserver.output[-3000:]
        time.sleep(0.1)
    denial = next(line for line in world.nameserver.output.splitlines()
                  if "denied  { announce }" in line)
    assert "uri=com.example.other" in denial and f"scontext={GUEST_B}" in denial
    caller.send([CALL, caller.next_request(), {}, "com.example.other", []])
    reply = caller.recv()
    assert reply[0] == ERROR and reply[4] == NO_SUCH_PROCEDURE, reply
    callee.close()
    caller.close()


def test_a_guest_cannot_borrow_another_guests_address(world: World) -> None:
    """guest3 gives itself guest1's address and connects from it: the kernel in dom0 drops the
    packets (rp_filter; the answer would route to guest1 anyway), so no session appears as
    domain 1 from guest3."""
    network = world.network
    guest3 = network.namespace(3)
    ip("-n", guest3, "addr", "add", "1.0.0.1/32", "dev", "eth0")
    try:
        def spoof() -> None:
            with socket.socket() as sock:
                sock.bind(("1.0.0.1", 0))
                sock.settimeout(1.5)
                sock.connect(("1.0.0.0", PORT))

        with pytest.raises(OSError):
            in_namespace(guest3, spoof)
    finally:
        ip("-n", guest3, "addr", "del", "1.0.0.1/32", "dev", "eth0", check=False)


def test_only_simulated_addresses_are_served(world: World) -> None:
    """A connection that does not come over the simulated network (dom0's own loopback) is
    closed at once, before any byte is read."""
    def from_loopback() -> bytes:
        with socket.create_connection(("127.0.0.1", PORT), timeout=5) as sock:
            try:
                sock.sendall(bytes((0x7F, 0xF1, 0, 0)))
                return sock.recv(4)
            except ConnectionResetError:  # closed unread, so the kernel answered with RST
                return b""

    assert in_namespace(world.network.dom0, from_loopback) == b""
    # the log line may reach the file a moment after the peer saw the close
    world.nameserver.wait_for("not the simulated Argo network", timeout=10)


def test_namespaces_are_isolated(world: World) -> None:
    """Each guest sees only its own address (the simulated VM boundary)."""
    for domid in (1, 2):
        shown = ip("-n", world.network.namespace(domid), "-4", "addr", "show", "dev", "eth0")
        assert f"1.0.0.{domid}/32" in shown.stdout
    assert os.path.exists(f"/var/run/netns/{world.network.dom0}")
