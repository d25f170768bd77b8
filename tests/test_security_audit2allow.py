"""Denial records are what admins' tools read: audit2allow turns them into a module that, loaded
with the policy, allows what was denied."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from serouter.core.access import Action, Subject
from serouter.security._manager import ObjectManager
from serouter.security._servers import PolicyFileServer
from tests.selinux_policy import (
    BASE_CIL,
    UNLABELED,
    WAMP_CIL,
    B,
    PolicyBuilder,
    module_cil,
    policies,
    require_tool,
    secilc,
)

__all__ = ["policies"]

PP_TO_CIL = "/usr/libexec/selinux/hll/pp"  # semodule's own converter (policycoreutils)
ACTIONS = [(Action.CALL, "com.example.add"), (Action.PUBLISH, "com.example.news"),
           (Action.REGISTER, "com.example.add")]


def decide(policy: Path, contexts: Path) -> tuple[list[bool], list[str]]:
    """B's decisions on ACTIONS under ``policy``, and the denial records."""
    lines: list[str] = []
    manager = ObjectManager(PolicyFileServer(str(policy), True), str(contexts),
                            unlabeled=UNLABELED, audit=lambda line, denied: lines.append(line))
    try:
        manager.start()
        subject = Subject(99, "anonymous-99", "anonymous", B)
        decisions = [manager.check(subject, action, "realm1", uri) for action, uri in ACTIONS]
    finally:
        assert isinstance(manager.server, PolicyFileServer)
        manager.server.close()
    return decisions, lines


def test_audit2allow_module_allows_what_was_denied(policies: PolicyBuilder,
                                                   tmp_path: Path) -> None:
    """B is denied call, publish, register; audit2allow -p POLICY -i LOG -M makes a module of
    the records (one as libaudit sends USER_AVC, the others as logged); with it compiled in,
    B may do all three."""
    audit2allow = require_tool("audit2allow")
    if not Path(PP_TO_CIL).exists():
        pytest.fail(f"{PP_TO_CIL} is missing: install policycoreutils")
    policy, contexts = policies.standard(), policies.contexts()
    decisions, lines = decide(policy, contexts)
    assert decisions == [False, False, False] and len(lines) == 3
    log = tmp_path / "audit.log"
    log.write_text(
        "type=USER_AVC msg=audit(1700000000.123:42): pid=1 uid=0 auid=4294967295 "
        f"ses=4294967295 msg='{lines[0]} exe=\"/usr/bin/python3\" hostname=? addr=? "
        "terminal=?'\n" + "\n".join(lines[1:]) + "\n"
    )
    done = subprocess.run([audit2allow, "-p", str(policy), "-i", str(log), "-M", "localwamp"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    te = (tmp_path / "localwamp.te").read_text()
    assert "allow client_b_t example_add_t:wamp_uri call;" in te, te
    assert "allow client_b_t example_add_t:wamp_uri register;" in te, te
    assert "allow client_b_t example_uri_t:wamp_uri publish;" in te, te
    assert "boolean 'b_may_call'" in te, te  # audit2why read the policy given with -p
    cil = tmp_path / "localwamp.cil"
    subprocess.run([PP_TO_CIL, str(tmp_path / "localwamp.pp"), str(cil)], check=True, timeout=60)
    # semodule's base declares cil_gen_require; this test base does not
    loaded = secilc(tmp_path / "with-local.bin", BASE_CIL, WAMP_CIL, module_cil(),
                    "(typeattribute cil_gen_require)", cil)
    decisions, lines = decide(loaded, contexts)
    assert decisions == [True, True, True] and lines == []
    shutil.rmtree(tmp_path / "tmp", ignore_errors=True)
