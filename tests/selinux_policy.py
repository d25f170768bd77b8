"""Test helpers for the SELinux object manager: a small real policy, and clients in domains.

The test policy is a tiny MLS base plus the shipped ``policy/wamp.cil`` plus a test module,
compiled with ``secilc`` (cached per variant for the whole session). Its domains:

- ``client_a_t``: joins realm1; registers and calls ``com.example.add``; subscribes and publishes
  under ``com.example.*``; calls the meta API (``wamp.*``); auditallow on ``com.audited.*``.
- ``client_b_t``: joins realm1; subscribes under ``com.example.*`` but may not publish there nor
  register anything; calls ``com.example.add`` only while the boolean ``b_may_call`` is true;
  calls under ``com.quiet.*`` are denied and dontaudit'ed.
- ``client_c_t``: may not join any realm.
- ``com.secret.*`` is at level s1: the MLS constraint keeps s0 sessions from subscribing or
  calling there although type enforcement allows it.

The router runs as ``tests.router_process.RouterProcess`` with an ``access`` mapping naming the
policy; its clients are ``tests.raw_clients.RawWampClient`` (``connect_as`` for Unix peers of
other uids).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.router_process import ROOT

WAMP_CIL = ROOT / "policy" / "wamp.cil"

BASE_CIL = """\
(handleunknown allow)
(mls true)
(class process (transition))
(classorder (process))
(sid kernel)
(sidorder (kernel))
(sidcontext kernel (system_u system_r kernel_t ((s0) (s0))))
(sensitivity s0)
(sensitivity s1)
(sensitivityorder (s0 s1))
(category c0)
(categoryorder (c0))
(sensitivitycategory s0 (c0))
(sensitivitycategory s1 (c0))
(user system_u)
(role system_r)
(userrole system_u system_r)
(userlevel system_u (s0))
(userrange system_u ((s0) (s1 (c0))))
(type kernel_t)
(roletype system_r kernel_t)
(type unlabeled_t)
(roletype system_r unlabeled_t)
"""


def module_cil(b_may_call: bool = False, with_client_b: bool = True) -> str:
    """The test module's CIL (needs BASE_CIL and wamp.cil)."""
    b = """
(type client_b_t)
(roletype system_r client_b_t)
(typeattributeset wamp_client_domain (client_b_t))
(call wamp_subscribe_uris (client_b_t example_uri_t))
(call wamp_subscribe_uris (client_b_t secret_uri_t))
(allow client_b_t quiet_t (wamp_uri (subscribe)))
(dontaudit client_b_t quiet_t (wamp_uri (call)))
(booleanif b_may_call (true (call wamp_call_uris (client_b_t example_add_t))))
""" if with_client_b else ""
    return f"""
(type client_a_t)
(type client_c_t)
(roletype system_r client_a_t)
(roletype system_r client_c_t)
(typeattributeset wamp_client_domain (client_a_t client_c_t))
(type secret_realm_t)
(type example_add_t)
(type example_uri_t)
(type audited_t)
(type quiet_t)
(type secret_uri_t)
(typeattributeset wamp_realm_type (secret_realm_t))
(typeattributeset wamp_uri_type (example_add_t example_uri_t audited_t quiet_t secret_uri_t))
(boolean b_may_call {'true' if b_may_call else 'false'})
(typeattribute joiners)
(typeattributeset joiners (and (wamp_client_domain) (not (client_c_t))))
(call wamp_join_realms (joiners wamp_realm_t))
(call wamp_register_uris (client_a_t example_add_t))
(call wamp_call_uris (client_a_t example_add_t))
(call wamp_subscribe_uris (client_a_t example_uri_t))
(call wamp_publish_uris (client_a_t example_uri_t))
(call wamp_call_uris (client_a_t wamp_meta_uri_t))
(call wamp_call_uris (client_a_t audited_t))
(auditallow client_a_t audited_t (wamp_uri (call)))
(call wamp_subscribe_uris (client_a_t secret_uri_t))
(call wamp_call_uris (client_a_t secret_uri_t))
(mlsconstrain (wamp_uri (subscribe call)) (dom l1 l2))
{b}"""


CONTEXTS = """\
# kind  pattern          context
realm   realm1           system_u:object_r:wamp_realm_t:s0
realm   secret           system_u:object_r:secret_realm_t:s0
realm   *                system_u:object_r:wamp_realm_t:s0
uri     com.example.add  system_u:object_r:example_add_t:s0
uri     com.example.*    system_u:object_r:example_uri_t:s0
uri     com.audited.*    system_u:object_r:audited_t:s0
uri     com.quiet.*      system_u:object_r:quiet_t:s0
uri     com.secret.*     system_u:object_r:secret_uri_t:s1
uri     wamp.*           system_u:object_r:wamp_meta_uri_t:s0
uri     *                system_u:object_r:wamp_uri_t:s0
"""

A = "system_u:system_r:client_a_t:s0"
A_HIGH = "system_u:system_r:client_a_t:s1"
B = "system_u:system_r:client_b_t:s0"
C = "system_u:system_r:client_c_t:s0"
UNLABELED = "system_u:object_r:unlabeled_t:s0"


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: `make test` installs it (APT_PACKAGES)")
    return path


def run_secilc(
    out: Path, sources: Sequence[str | Path], options: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """Run secilc on CIL sources (texts are written to files next to ``out``) into ``out``."""
    files: list[str] = []
    for index, source in enumerate(sources):
        if isinstance(source, Path):
            files.append(str(source))
        else:
            path = out.parent / f"{out.stem}.{index}.cil"
            path.write_text(source)
            files.append(str(path))
    return subprocess.run(
        [require_tool("secilc"), *options, "-o", str(out), "-f", os.devnull, *files],
        capture_output=True, text=True, timeout=60, check=False,
    )


def secilc(out: Path, *sources: str | Path) -> Path:
    """Compile CIL sources (texts or files) into the binary policy ``out``."""
    done = run_secilc(out, sources)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


class PolicyBuilder:
    """Compiles test policy variants into one directory, each once."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self._built: dict[str, Path] = {}

    def build(self, name: str, *sources: str | Path) -> Path:
        if name not in self._built:
            self._built[name] = secilc(self.dir / f"{name}.bin", *sources)
        return self._built[name]

    def standard(self, b_may_call: bool = False, with_client_b: bool = True) -> Path:
        name = f"test-{int(b_may_call)}-{int(with_client_b)}"
        return self.build(name, BASE_CIL, WAMP_CIL, module_cil(b_may_call, with_client_b))

    def without_classes(self) -> Path:
        """The base alone (and the one rule a policy needs): handle_unknown=allow, no wamp_*."""
        return self.build("no-classes", BASE_CIL, "(allow kernel_t self (process (transition)))")

    def contexts(self, text: str = CONTEXTS, name: str = "wamp_contexts") -> Path:
        path = self.dir / name
        path.write_text(text)
        return path


@pytest.fixture(scope="session")
def policies(tmp_path_factory: pytest.TempPathFactory) -> PolicyBuilder:
    return PolicyBuilder(tmp_path_factory.mktemp("policy"))
