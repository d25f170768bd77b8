"""The shipped policy against Debian's reference policy: the daemon's module builds with the
refpolicy devel Makefile, installs with wamp.cil into a copy of the policy store (offline), and
the resulting policy answers as a client module written with serouter.if says."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from serouter.core.access import Action, Subject
from serouter.security._manager import ObjectManager
from serouter.security._servers import PolicyFileServer
from tests.router_process import ROOT
from tests.selinux_policy import WAMP_CIL, require_tool

pytestmark = pytest.mark.timeout(300)

STORE = Path("/var/lib/selinux/default")
DEVEL = Path("/usr/share/selinux/devel/Makefile")

CLIENT_TE = """\
policy_module(sertestclient, 1.0)
gen_require(`
	type wamp_uri_t;
')
type sertestclient_t;
type sertestclient_exec_t;
init_daemon_domain(sertestclient_t, sertestclient_exec_t)
serouter_client(sertestclient_t)
type sertest_uri_t;
serouter_uri_type(sertest_uri_t)
serouter_use_uris(sertestclient_t, sertest_uri_t)
serouter_subscribe_uris(sertestclient_t, wamp_uri_t)
"""
CLIENT = "system_u:system_r:sertestclient_t:s0"
DAEMON = "system_u:system_r:serouter_t:s0"
CONTEXTS = """\
realm * system_u:object_r:wamp_realm_t:s0
uri com.test.* system_u:object_r:sertest_uri_t:s0
uri wamp.* system_u:object_r:wamp_meta_uri_t:s0
uri * system_u:object_r:wamp_uri_t:s0
"""


def run(*argv: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                          timeout=240, check=False)
    assert done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The refpolicy store copied to a root of its own, with wamp.cil, serouter.pp and a
    client module installed by semodule; the path of the policy it built."""
    for needed in (STORE, DEVEL):
        if not needed.exists():
            pytest.fail(f"{needed} is missing: `make test` installs selinux-policy-default "
                        "and selinux-policy-dev")
    if not os.access(STORE / "active", os.R_OK | os.X_OK):
        pytest.skip("the policy store is readable by root only (CI runs `make test` as root)")
    semodule = require_tool("semodule")
    build = tmp_path_factory.mktemp("build")
    run("make", "-C", ROOT / "policy", f"BUILD={build}")  # what `make policy` does
    (build / "sertestclient.te").write_text(CLIENT_TE)
    (build / "sertestclient.fc").write_text("")
    run("make", "-f", DEVEL, "sertestclient.pp", cwd=build)  # finds serouter.if beside it
    root = tmp_path_factory.mktemp("root")
    shutil.copytree(STORE, root / "var/lib/selinux/default", symlinks=True)
    shutil.copytree("/etc/selinux", root / "etc/selinux", symlinks=True)
    run(semodule, "-p", root, "-s", "default", "-n", "-i", WAMP_CIL, build / "serouter.pp",
        build / "sertestclient.pp")
    listed = run(semodule, "-p", root, "-s", "default", "-l")
    assert {"wamp", "serouter", "sertestclient"} <= set(listed.split()), listed
    return next((root / "etc/selinux/default/policy").glob("policy.*"))


@pytest.fixture
def manager(installed: Path, tmp_path: Path) -> Iterator[ObjectManager]:
    contexts = tmp_path / "wamp_contexts"
    contexts.write_text(CONTEXTS)
    server = PolicyFileServer(str(installed), True)
    manager = ObjectManager(server, str(contexts), unlabeled="system_u:object_r:unlabeled_t:s0",
                            audit=lambda line, denied: None)
    try:
        manager.start()
        yield manager
    finally:
        server.close()


@pytest.mark.parametrize(
    ("label", "action", "name", "expected"),
    [
        (CLIENT, Action.JOIN, "realm1", True),  # serouter_client: wamp_realm_t
        (CLIENT, Action.CALL, "com.test.op", True),  # serouter_use_uris
        (CLIENT, Action.SUBSCRIBE, "com.test.news", True),
        (CLIENT, Action.REGISTER, "com.test.op", False),
        (CLIENT, Action.PUBLISH, "com.test.news", False),
        (CLIENT, Action.SUBSCRIBE, "org.other", True),  # wamp_uri_t
        (CLIENT, Action.CALL, "org.other", False),
        (CLIENT, Action.CALL, "wamp.session.count", False),
        (DAEMON, Action.JOIN, "realm1", False),  # the router's own domain is no client
        ("system_u:system_r:unconfined_t:s0", Action.JOIN, "realm1", False),
    ],
)
def test_installed_policy_answers_as_written(
    manager: ObjectManager, label: str, action: Action, name: str, expected: bool
) -> None:
    """With Debian's refpolicy (handle_unknown=allow) plus the shipped modules, decisions are
    the client module's rules, and nothing more."""
    realm = name if action is Action.JOIN else "realm1"
    assert manager.check(Subject(1, "x", "anonymous", label), action, realm, name) is expected


def test_daemon_domain_and_client_connect(installed: Path) -> None:
    """serouter_t may ask the kernel for decisions and send audit records; a client may
    connect to its Unix sockets."""
    sesearch = require_tool("sesearch")
    rules = run(sesearch, "-A", "-s", "serouter_t", "-c", "security", installed)
    assert "compute_av" in rules, rules
    rules = run(sesearch, "-A", "-s", "serouter_t", "-c", "netlink_audit_socket", installed)
    assert "nlmsg_relay" in rules, rules
    rules = run(sesearch, "-A", "-s", "sertestclient_t", "-t", "serouter_t", "-c",
                "unix_stream_socket", installed)
    assert "connectto" in rules, rules
