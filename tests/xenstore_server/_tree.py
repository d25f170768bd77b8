"""Nodes, paths and permissions of the test xenstored, with Xen's rules.

Permissions (docs/misc/xenstore.txt, tools/xenstored/core.c ``perm_for_conn``): a node has a
list of entries ``<letter><domid>``; the first names the owner and the access of every domain
not listed after it; later entries grant one domain ``r``ead, ``w``rite, ``b``oth or ``n``one.
The owner and privileged domains (dom0) get everything, including the right to change the
permissions; only privileged domains may change the owner.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

from tests.xenstore_server._wire import PATH_MAX, XsError

NONE, READ, WRITE, OWNER = 0, 1, 2, 4
_LETTERS = {"n": NONE, "r": READ, "w": WRITE, "b": READ | WRITE}
_NAMES = {access: letter for letter, access in _LETTERS.items()}
_PATH_CHARS = frozenset(string.ascii_letters + string.digits + "-/_@")
DOMID_MAX = 0x7FEF  # DOMID_FIRST_RESERVED - 1


@dataclass(frozen=True)
class Perm:
    """One permission entry: a domain and its access bits (READ | WRITE)."""

    domid: int
    access: int

    @classmethod
    def parse(cls, text: str) -> Perm:
        """``r0``, ``b12``...; EINVAL for anything else."""
        access = _LETTERS.get(text[:1])
        if access is None or not text[1:].isdigit() or int(text[1:]) > 0xFFFF:
            raise XsError("EINVAL")
        return cls(int(text[1:]), access)

    def __str__(self) -> str:
        return f"{_NAMES[self.access]}{self.domid}"


Perms = tuple[Perm, ...]


@dataclass
class Node:
    """A node: its value, permissions, ordered child names and generation (bumped on change)."""

    value: bytes
    perms: Perms
    children: list[str] = field(default_factory=list)
    generation: int = 0

    def copy(self) -> Node:
        return Node(self.value, self.perms, list(self.children), self.generation)


def access_for(domid: int, privileged: bool, perms: Perms) -> int:
    """What ``domid`` may do with a node carrying ``perms`` (``perm_for_conn``)."""
    if privileged or perms[0].domid == domid:
        return READ | WRITE | OWNER
    for perm in perms[1:]:
        if perm.domid == domid:
            return perm.access
    return perms[0].access


def parent_of(path: str) -> str:
    """The parent path; ``/`` for top-level and special (``@...``) paths, as xenstored does."""
    cut = path.rfind("/", 1)
    return path[:cut] if cut > 0 else "/"


def basename(path: str) -> str:
    return path[path.rfind("/") + 1 :]


def is_child(path: str, ancestor: str) -> bool:
    """True if ``path`` is ``ancestor`` or below it (watch matching)."""
    if ancestor == "/":
        return True
    return path == ancestor or path.startswith(ancestor + "/")


def canonical(raw: str, domid: int, allow_special: bool = False) -> str:
    """The absolute path for ``raw`` sent by ``domid``; EINVAL if Xen would refuse it.

    Relative paths are taken below the caller's ``/local/domain/<domid>``.
    """
    if not raw or not _PATH_CHARS.issuperset(raw) or (raw[0] == "@" and not allow_special):
        raise XsError("EINVAL")
    name = raw if raw[0] in "/@" else f"/local/domain/{domid}/{raw}"
    if (name.endswith("/") and name != "/") or "//" in name or len(name) > PATH_MAX:
        raise XsError("EINVAL")
    return name


def parse_domid(text: str) -> int:
    if not text.isdigit() or int(text) > 0xFFFF:
        raise XsError("EINVAL")
    return int(text)
