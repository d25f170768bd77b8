"""The ``selinux`` backend against a live SELinux kernel in enforcing mode, in a VM.

One boot (tests/kernel/run_vm.py) runs serouter with ``[access] backend = "selinux"`` in
``serouter_t`` and Autobahn|Python clients in the domains of the offline tests' policy
(tests/selinux_policy.py, loaded into the kernel here): A, A at level s1, B, C. The router's only
label source is SO_PEERSEC, and every decision comes from the kernel. The guest records what
each side saw; these tests judge it, mirroring tests/test_security_e2e.py. Skipped only where
qemu cannot run (not x86_64 Linux, or qemu missing and no root to install it).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.kernel.policy import A_HIGH, ROUTER
from tests.kernel.run_vm import TIMEOUT, Unavailable, VmRun, boot, prepare
from tests.selinux_policy import A, B, C

pytestmark = pytest.mark.timeout(TIMEOUT + 300)  # downloads and installs come first

NOT_AUTHORIZED = "wamp.error.not_authorized"
DENIED = {"error": NOT_AUTHORIZED}
OK = {"ok": True}
EXAMPLE_ADD = "system_u:object_r:example_add_t:s0"


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory) -> VmRun:
    try:
        assets = prepare()
    except Unavailable as e:
        pytest.skip(f"qemu cannot run here: {e}")
    run = boot(assets, tmp_path_factory.mktemp("kernel-job"))
    times = run.results["host_times"], run.results["times"]
    print(f"\nkernel test: {run.seconds:.1f} s for the job and the VM; host and guest times: "
          f"{json.dumps(times)}")
    return run


def seen(vm: VmRun, key: str) -> Any:
    """What the guest recorded under ``key``; a failure says why the guest did not get there."""
    observed = vm.results["seen"]
    if key not in observed:
        pytest.fail(f"the guest recorded no {key!r}; its error:\n{vm.results['error']}\n"
                    f"console:\n{vm.console[-4000:]}")
    return observed[key]


def session(vm: VmRun, name: str) -> int:
    welcome: int = seen(vm, f"join.{name}")["welcome"]
    return welcome


def test_the_guest_ran_every_step(vm: VmRun) -> None:
    """The guest test ran to its end without an error (each test below says what it saw)."""
    assert vm.results["error"] is None, vm.results["error"]


def test_runs_in_enforcing_mode_with_processes_in_their_domains(vm: VmRun) -> None:
    """The router runs in serouter_t on an enforcing kernel and follows it through the status
    page; each client agent runs in its own domain, as the kernel reports: B entered it on exec
    (runcon), the others by setcon in a forked child."""
    router = seen(vm, "router")
    assert router == {"context": ROUTER, "status_page_mapped": True, "enforce": "1"}
    for name, context in (("a", A), ("a_high", A_HIGH), ("b", B), ("c", C)):
        assert seen(vm, f"agent.{name}") == {"ready": True, "context": context}


def test_policy_without_the_classes_refuses_to_start(vm: VmRun) -> None:
    """Enforcing, with a loaded policy lacking wamp_* (handle_unknown=allow): `serouter run`
    exits 1 saying why, before its listener opens."""
    assert seen(vm, "refused") == {"exit": 1, "enforce": "1", "socket_exists": False}
    assert "cannot start: the policy lacks wamp_realm { join }" in vm.log("router-refused.log")


def test_join_is_decided_by_the_kernel(vm: VmRun) -> None:
    """A and B join realm1; C is refused with ABORT not_authorized; nobody joins 'secret'."""
    for name in ("a1", "a2", "a3", "b1", "ah"):
        assert session(vm, name) > 0
    assert seen(vm, "join.c1") == {"abort": NOT_AUTHORIZED}
    assert seen(vm, "join.a_secret") == {"abort": NOT_AUTHORIZED}


def test_labels_come_from_so_peersec(vm: VmRun) -> None:
    """All clients share uid 0 and the listener has no label: each session's label (in the
    meta API) is its process's context, which only SO_PEERSEC can have told the router."""
    for name, context in (("a1", A), ("b1", B), ("ah", A_HIGH)):
        details = seen(vm, f"details.{name}")["result"]
        assert details["session"] == session(vm, name)
        assert details["label"] == context
        assert details["transport"]["peer_uid"] == 0
    assert seen(vm, "meta.b") == DENIED  # B may not use the meta API


def test_register_and_call(vm: VmRun) -> None:
    """A registers and calls com.example.add; B may neither register nor call it, and its
    denied call never reaches the callee."""
    assert seen(vm, "register.a") == OK
    assert seen(vm, "register.b") == DENIED
    assert seen(vm, "call.a") == {"result": [2, 3]}
    assert seen(vm, "call.b") == DENIED
    assert seen(vm, "invocations.a") == {"seen": [[2, 3]]}


def test_subscribe_and_publish(vm: VmRun) -> None:
    """Both subscribe under com.example.*; A publishes there, B may not: acknowledged, ERROR;
    unacknowledged, nothing; and no event of B's goes out."""
    assert seen(vm, "subscribe.a") == OK and seen(vm, "subscribe.b") == OK
    assert seen(vm, "publish.b_ack") == DENIED
    assert seen(vm, "publish.b_quiet") == OK  # sent; the router answers nothing
    assert seen(vm, "publish.a") == OK
    assert seen(vm, "events.b") == {"seen": [["from a"]]}
    assert seen(vm, "events.a_watch") == {"seen": [["from a"]]}


def test_mls_constraint_and_audit_rules(vm: VmRun) -> None:
    """The MLS constraint keeps client_a_t:s0 off the s1 topic and lets client_a_t:s1 on;
    auditallow logs a grant; dontaudit keeps a denial out of the log."""
    assert seen(vm, "subscribe.secret_s0") == DENIED
    assert seen(vm, "subscribe.secret_s1") == OK
    assert seen(vm, "call.audited") == {"error": "wamp.error.no_such_procedure"}
    log = vm.log("router.log")
    assert "avc:  granted  { call } for  uri=com.audited.x realm=realm1" in log
    assert seen(vm, "call.quiet") == DENIED
    assert "com.quiet.x" not in log


def test_boolean_changes_the_next_decision(vm: VmRun) -> None:
    """b_may_call set and committed through /sys/fs/selinux: B's next call goes through; unset:
    denied again. The router noticed each commit (status page) and flushed its decisions."""
    assert seen(vm, "boolean.on.call") == {"result": [7]}
    assert seen(vm, "boolean.off.call") == DENIED
    before, on, off = seen(vm, "boolean.noticed")
    assert before < on < off


def test_policy_reload_changes_the_next_decision(vm: VmRun) -> None:
    """A policy load with one rule more lets B publish (and A receive it) without a restart of
    the router; loading the standard policy again denies it again."""
    assert seen(vm, "reload.changed.publish") == OK
    assert seen(vm, "reload.changed.events") == {"seen": [["from a"], ["b after reload"]]}
    assert seen(vm, "reload.standard.publish") == DENIED
    before, changed, standard = seen(vm, "reload.noticed")
    assert before < changed < standard
    assert seen(vm, "reload.router_pid") == seen(vm, "router_pid")


def test_permissive_domain_is_allowed_and_logged(vm: VmRun) -> None:
    """With client_c_t a permissive domain (typepermissive; the kernel flags the decision), C
    may join, the denial logged with permissive=1; without it, C is refused again."""
    assert seen(vm, "reload.standard.join_c") == {"abort": NOT_AUTHORIZED}
    c2 = seen(vm, "reload.changed.join_c")["welcome"]
    assert re.search(rf"avc:  denied  \{{ join \}} for  realm=realm1 session={c2} "
                     rf"scontext={re.escape(C)} .* permissive=1", vm.log("router.log"))


def test_permissive_mode_allows_and_logs_once(vm: VmRun) -> None:
    """After setenforce 0, B's denied registrations are allowed and the denial logged once
    with permissive=1; after setenforce 1, denied again."""
    assert seen(vm, "permissive.register1") == OK
    assert seen(vm, "permissive.register2") == OK
    assert seen(vm, "enforcing.register3") == DENIED
    before, permissive, enforcing = seen(vm, "permissive.noticed")
    assert before < permissive < enforcing
    log = vm.log("router.log")
    permissive_lines = re.findall(r"avc:  denied  \{ register \} for  uri=(\S+) .*permissive=1",
                                  log)
    assert permissive_lines == ["com.example.b.one"]
    assert re.search(r"avc:  denied  \{ register \} for  uri=com\.example\.b\.three .*"
                     r"permissive=0", log)


def test_avc_records_are_in_the_standard_form(vm: VmRun) -> None:
    """B's denied call is an AVC record in the kernel's form, in the router log and, as USER_AVC
    (1107) sent from serouter_t, in the kernel's audit output; every record the kernel printed
    is one the router logged."""
    b1 = session(vm, "b1")
    record = (rf"avc:  denied  \{{ call \}} for  uri=com\.example\.add realm=realm1 "
              rf"session={b1} scontext={re.escape(B)} tcontext={re.escape(EXAMPLE_ADD)} "
              rf"tclass=wamp_uri permissive=0")
    log, dmesg = vm.log("router.log"), vm.log("dmesg.log")
    assert re.search(record, log), log[-3000:]
    audit = re.compile(rf"type=1107 audit\([\d.:]+\): pid=\d+ uid=0 .*"
                       rf"subj={re.escape(ROUTER)} msg='(avc:  .*) exe=")
    records = audit.findall(dmesg)
    assert any(re.fullmatch(record, r) for r in records), dmesg[-3000:]
    assert all(r in log for r in records)


def test_router_log_is_clean(vm: VmRun) -> None:
    """The router stopped with exit 0; every line of its log is a log event and none is a
    traceback. libselinux's notes on policy loads and mode changes (on stderr by default, with
    no newline) are not in it: the router logs those events itself."""
    assert seen(vm, "router_exit") == 0
    log = vm.log("router.log")
    assert "Traceback" not in log
    assert "op=load_policy" not in log and "op=setenforce" not in log
    stamp = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} \[")
    strays = [line for line in log.splitlines() if line and not stamp.match(line)]
    assert not strays, strays
