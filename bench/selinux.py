"""The bench's SELinux variant: a real compiled policy, so every action pays for its check.

``python -m bench --selinux`` compiles a tiny MLS base plus the shipped ``policy/wamp.cil``
plus a module allowing the bench's domain what its scenarios do, and runs the router with the
``policy-file`` backend in enforcing mode, its listeners labeling sessions ``bench_client_t``.
Compare its router CPU per operation with the default run (``allow-all``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from bench.wire import BenchError

ROOT = Path(__file__).resolve().parent.parent
LABEL = "system_u:system_r:bench_client_t:s0"

BASE_CIL = """\
(handleunknown allow)
(mls true)
(class process (transition))
(classorder (process))
(sid kernel)
(sidorder (kernel))
(sidcontext kernel (system_u system_r kernel_t ((s0) (s0))))
(sensitivity s0)
(sensitivityorder (s0))
(category c0)
(categoryorder (c0))
(sensitivitycategory s0 (c0))
(user system_u)
(role system_r)
(role object_r)
(userrole system_u system_r)
(userrole system_u object_r)
(userlevel system_u (s0))
(userrange system_u ((s0) (s0 (c0))))
(type kernel_t)
(roletype system_r kernel_t)
(type unlabeled_t)
(roletype system_r unlabeled_t)
"""

MODULE_CIL = """\
(type bench_client_t)
(roletype system_r bench_client_t)
(typeattributeset wamp_client_domain (bench_client_t))
(type bench_uri_t)
(typeattributeset wamp_uri_type (bench_uri_t))
(call wamp_join_realms (bench_client_t wamp_realm_t))
(call wamp_register_uris (bench_client_t bench_uri_t))
(call wamp_call_uris (bench_client_t bench_uri_t))
(call wamp_subscribe_uris (bench_client_t bench_uri_t))
(call wamp_publish_uris (bench_client_t bench_uri_t))
"""

CONTEXTS = """\
realm   *        system_u:object_r:wamp_realm_t:s0
uri     bench.*  system_u:object_r:bench_uri_t:s0
uri     *        system_u:object_r:wamp_uri_t:s0
"""


def access_section(directory: Path) -> str:
    """Compile the policy into ``directory``; the [access] table that uses it."""
    secilc = shutil.which("secilc")
    if secilc is None:
        raise BenchError("--selinux needs secilc (make test installs it: apt-get install secilc)")
    sources = []
    for name, text in (("base.cil", BASE_CIL), ("bench.cil", MODULE_CIL)):
        (directory / name).write_text(text)
        sources.append(str(directory / name))
    policy = directory / "policy.bin"
    done = subprocess.run(
        [secilc, "-o", str(policy), "-f", "/dev/null", sources[0],
         str(ROOT / "policy" / "wamp.cil"), sources[1]],
        capture_output=True, text=True, timeout=120, check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"secilc failed: {done.stdout}{done.stderr}")
    contexts = directory / "wamp_contexts"
    contexts.write_text(CONTEXTS)
    return (
        f'[access]\nbackend = "policy-file"\npolicy = "{policy}"\nenforcing = true\n'
        f'contexts = "{contexts}"\n'
    )
