"""The policies the test VM loads into a live SELinux kernel, compiled on the host with secilc.

The offline tests' policy (``tests/selinux_policy.py``: the shipped ``policy/wamp.cil``, the
client domains A, B and C, the boolean ``b_may_call``, auditallow, dontaudit, an MLS
constraint) sits here on a base a kernel accepts:

- the kernel identifies initial SIDs by position, so the base declares the full standard
  ``sidorder`` (27 SIDs), each with a context;
- the kernel refuses a policy without a ``process`` class; ``handleunknown allow`` keeps every
  other kernel class out of the way (files, sockets, the ``security`` class the router needs to
  ask for decisions), so the only rules that matter are the ``wamp_*`` ones and the
  ``process { transition dyntransition }`` from ``kernel_t`` (where an initramfs starts
  everything) into the test domains, which ``runcon`` and ``setcon`` ask for.

Variants: ``standard``; ``changed`` (B may publish under ``com.example.*``, and ``client_c_t`` is
a permissive domain);
``no_classes`` (the same domains, no ``wamp_*`` classes: the router must refuse to start).
"""

from __future__ import annotations

from pathlib import Path

from tests.selinux_policy import CONTEXTS, WAMP_CIL, A, B, C, module_cil, run_secilc

ROUTER = "system_u:system_r:serouter_t:s0"
A_HIGH = "system_u:system_r:client_a_t:s1"
DOMAINS = {"router": ROUTER, "a": A, "a_high": A_HIGH, "b": B, "c": C}

# The kernel's initial SIDs, in the kernel's order (security/selinux/include/
# initial_sid_to_string.h): position is identity, names are for people.
INITIAL_SIDS = (
    "kernel", "security", "unlabeled", "fs", "file", "file_labels", "init", "any_socket", "port",
    "netif", "netmsg", "node", "igmp_packet", "icmp_socket", "tcp_socket", "sysctl_modprobe",
    "sysctl", "sysctl_fs", "sysctl_kernel", "sysctl_net", "sysctl_net_unix", "sysctl_vm",
    "sysctl_dev", "kmod", "policy", "scmp_packet", "devnull",
)


def kernel_base_cil() -> str:
    """A tiny MLS base the kernel loads (the names the test module expects: system_u,
    system_r, s0, s1, c0, kernel_t, unlabeled_t)."""
    sids = "".join(f"(sid {name})\n" for name in INITIAL_SIDS)
    contexts = "".join(
        f"(sidcontext {name} (system_u object_r unlabeled_t ((s0) (s0))))\n"
        for name in INITIAL_SIDS[1:]
    )
    return f"""\
(handleunknown allow)
(mls true)
(class process (transition dyntransition))
(classorder (process))
{sids}(sidorder ({' '.join(INITIAL_SIDS)}))
(sidcontext kernel (system_u system_r kernel_t ((s0) (s1 (c0)))))
{contexts}(sensitivity s0)
(sensitivity s1)
(sensitivityorder (s0 s1))
(category c0)
(categoryorder (c0))
(sensitivitycategory s0 (c0))
(sensitivitycategory s1 (c0))
(user system_u)
(role object_r)
(role system_r)
(userrole system_u system_r)
(userlevel system_u (s0))
(userrange system_u ((s0) (s1 (c0))))
(type kernel_t)
(roletype system_r kernel_t)
(type unlabeled_t)
(roletype system_r unlabeled_t)
"""


# The router's domain, and the ways from kernel_t into every test domain: on exec (runcon,
# setexeccon) and at once (setcon, in a forked child).
DOMAINS_CIL = """
(type serouter_t)
(roletype system_r serouter_t)
(typeattribute kernel_test_domain)
(typeattributeset kernel_test_domain (serouter_t client_a_t client_b_t client_c_t))
(allow kernel_t kernel_test_domain (process (transition dyntransition)))
"""

# What module_cil() declares, for the policy without the wamp classes.
CLIENT_TYPES_CIL = "".join(
    f"(type {t})\n(roletype system_r {t})\n" for t in ("client_a_t", "client_b_t", "client_c_t")
)

# B may publish under com.example.*; C becomes a permissive domain (its denials are allowed)
CHANGED_RULE_CIL = """
(call wamp_publish_uris (client_b_t example_uri_t))
(typepermissive client_c_t)
"""


def secilc(out: Path, *sources: str | Path) -> Path:
    """Compile CIL texts and files into the binary policy ``out`` (version 33, MLS)."""
    done = run_secilc(out, sources, ("-c", "33", "-M", "true"))
    if done.returncode != 0:
        raise RuntimeError(f"secilc {out.name}: {done.stdout}{done.stderr}")
    return out


def build_policies(directory: Path) -> dict[str, str]:
    """Compile every variant and write the contexts file into ``directory``; their file names."""
    base = kernel_base_cil()
    standard = (base, WAMP_CIL, module_cil(), DOMAINS_CIL)
    secilc(directory / "standard.bin", *standard)
    secilc(directory / "changed.bin", *standard, CHANGED_RULE_CIL)
    secilc(directory / "no_classes.bin", base, CLIENT_TYPES_CIL, DOMAINS_CIL)
    (directory / "wamp_contexts").write_text(CONTEXTS)
    return {"standard": "standard.bin", "changed": "changed.bin",
            "no_classes": "no_classes.bin", "contexts": "wamp_contexts"}
