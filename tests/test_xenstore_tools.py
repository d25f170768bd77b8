"""Debian's real XenStore tools (xenstore-utils: libxenstore) against the test xenstored.

Keeps the test server honest: Xen's own client library must get from it what it gets from a
real xenstored, as dom0 (``XENSTORED_PATH`` = dom0's socket) and as a guest (a domain's
socket). libxenstore wraps read, write, rm, chmod, exists and list in a transaction each, and
falls back to DIRECTORY_PART for long listings, so those paths are exercised too.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.xenstore_server import Op
from tests.xenstore_server._process import RawClient, XenstoredProcess

pytestmark = pytest.mark.skipif(
    shutil.which("xenstore-read") is None,
    reason="Debian's xenstore-utils is not installed (make test installs it)",
)
UUID1 = "0e9c2a51-8f0b-4c1e-a1d2-3b4c5d6e7f80"
TOOL_TIMEOUT = 10.0


@pytest.fixture(scope="module")
def server() -> Iterator[XenstoredProcess]:
    with XenstoredProcess({1: ("guest1", UUID1), 2: ("guest2", None)}) as process:
        yield process
    assert "Traceback" not in process.log()


def xs(server: XenstoredProcess, tool: str, *args: str, domid: int = 0
       ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [f"xenstore-{tool}", *args], env=server.env(domid), capture_output=True, text=True,
        timeout=TOOL_TIMEOUT, check=False,
    )


def ok(server: XenstoredProcess, tool: str, *args: str, domid: int = 0) -> str:
    done = xs(server, tool, *args, domid=domid)
    assert done.returncode == 0, (tool, args, domid, done.stderr)
    return done.stdout


def refused(server: XenstoredProcess, tool: str, *args: str, domid: int = 0) -> str:
    done = xs(server, tool, *args, domid=domid)
    assert done.returncode != 0, (tool, args, domid, done.stdout)
    return done.stderr


def test_write_read_list_exists_rm(server: XenstoredProcess) -> None:
    ok(server, "write", "/tools1/a", "one", "/tools1/b", "two")
    assert ok(server, "read", "/tools1/a", "/tools1/b") == "one\ntwo\n"
    assert ok(server, "list", "/tools1") == "a\nb\n"
    ok(server, "exists", "/tools1/a")
    refused(server, "exists", "/tools1/c")
    ok(server, "rm", "/tools1")
    refused(server, "read", "/tools1/a")


def test_ls_shows_values_and_permissions(server: XenstoredProcess) -> None:
    """``xenstore-ls -p`` walks the tree with DIRECTORY, READ and GET_PERMS."""
    listing = ok(server, "ls", "-p", "/local/domain/1")
    assert 'name = "guest1"' in listing and "(n0,r1)" in listing
    assert f'vm = "/vm/{UUID1}"' in listing
    assert "(n1)" in listing  # data/, the domain's own
    assert 'name = "Domain-0"' in ok(server, "ls", "/local/domain/0")


def test_guest_reads_its_home_but_not_dom0s(server: XenstoredProcess) -> None:
    assert ok(server, "read", "name", domid=1) == "guest1\n"
    assert ok(server, "read", "/local/domain/1/vm", domid=1) == f"/vm/{UUID1}\n"
    refused(server, "read", "/local/domain/0/name", domid=1)
    refused(server, "read", "/local/domain/2/name", domid=1)
    refused(server, "list", "/local/domain", domid=1)


def test_r0_readable_by_guests_writable_only_by_dom0(server: XenstoredProcess) -> None:
    ok(server, "write", "/tools2/nameserver", "tcp:127.0.0.1:9000")
    refused(server, "read", "/tools2/nameserver", domid=1)  # inherited n0
    ok(server, "chmod", "/tools2/nameserver", "r0")
    assert ok(server, "ls", "-p", "/tools2").strip().endswith("(r0)")
    assert ok(server, "read", "/tools2/nameserver", domid=1) == "tcp:127.0.0.1:9000\n"
    assert ok(server, "read", "/tools2/nameserver", domid=2) == "tcp:127.0.0.1:9000\n"
    refused(server, "write", "/tools2/nameserver", "evil", domid=1)
    refused(server, "rm", "/tools2/nameserver", domid=1)
    refused(server, "chmod", "/tools2/nameserver", "b1", domid=1)
    ok(server, "chmod", "/tools2/nameserver", "n0")
    refused(server, "read", "/tools2/nameserver", domid=1)
    assert ok(server, "read", "/tools2/nameserver") == "tcp:127.0.0.1:9000\n"


def test_guest_owns_what_it_creates_and_cannot_give_it_away(server: XenstoredProcess) -> None:
    ok(server, "write", "data/tools3", "mine", domid=1)
    assert "(n1)" in ok(server, "ls", "-p", "/local/domain/1/data")
    ok(server, "chmod", "data/tools3", "n1", "r2", domid=1)
    assert ok(server, "read", "/local/domain/1/data/tools3", domid=2) == "mine\n"
    assert "not permitted" in refused(server, "chmod", "data/tools3", "n2", domid=1)
    ok(server, "chmod", "-r", "/local/domain/1/data", "n1")  # dom0, recursively
    refused(server, "read", "/local/domain/1/data/tools3", domid=2)


def test_rm_tidy_removes_empty_parents(server: XenstoredProcess) -> None:
    ok(server, "write", "/tools4/a/b/c", "x", "/tools4/keep", "y")
    ok(server, "rm", "-t", "/tools4/a/b/c")
    assert ok(server, "list", "/tools4") == "keep\n"


def test_long_listing_goes_through_directory_part(server: XenstoredProcess) -> None:
    """Over 4096 bytes of names: libxenstore gets E2BIG and pages with DIRECTORY_PART."""
    names = [f"a-rather-long-child-name-{i:04d}" for i in range(180)]
    with RawClient(server.socket) as raw:
        for name in names:
            assert raw.call(Op.MKDIR, f"/tools5/{name}") == (Op.MKDIR, b"OK\0")
    assert ok(server, "list", "/tools5").split() == names


def watcher(server: XenstoredProcess, path: str, events: int, domid: int = 0
            ) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        ["xenstore-watch", "-n", str(events), path], env=server.env(domid),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(0.3)  # let it register (the first event proves it did)
    return process


def lines(process: subprocess.Popen[str]) -> list[str]:
    try:
        out, err = process.communicate(timeout=TOOL_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"xenstore-watch saw too few events: {out!r} {err!r}")
    assert process.returncode == 0, err
    return out.split()


def test_watch_fires_at_once_and_for_children(server: XenstoredProcess) -> None:
    watching = watcher(server, "/tools6", 4)
    ok(server, "write", "/tools6/a", "1")
    ok(server, "write", "/tools6x", "sibling, not a child")
    ok(server, "write", "/tools6/a/b", "2")
    ok(server, "rm", "/tools6/a")
    assert lines(watching) == ["/tools6", "/tools6/a", "/tools6/a/b", "/tools6/a"]


def test_guest_watch_sees_only_readable_changes(server: XenstoredProcess) -> None:
    """A guest watching the name server path hears of it once it is ``r0``, not before."""
    watching = watcher(server, "/tools7/nameserver", 2, domid=1)
    ok(server, "write", "/tools7/nameserver", "hidden while n0")
    time.sleep(0.3)
    assert watching.poll() is None, "the guest heard of a node it may not read"
    ok(server, "chmod", "/tools7/nameserver", "r0")
    assert lines(watching) == ["/tools7/nameserver"] * 2
    assert ok(server, "read", "/tools7/nameserver", domid=1) == "hidden while n0\n"


def test_tool_writes_take_part_in_conflict_detection(server: XenstoredProcess) -> None:
    """A transaction that read a node fails with EAGAIN if xenstore-write changed it."""
    ok(server, "write", "/tools8", "before")
    with RawClient(server.socket) as raw:
        _, reply = raw.call(Op.TRANSACTION_START, "")
        tx = int(reply[:-1])
        assert raw.call(Op.READ, "/tools8", tx_id=tx) == (Op.READ, b"before")
        ok(server, "write", "/tools8", "changed by the tool")
        assert raw.call(Op.TRANSACTION_END, "T", tx_id=tx) == (Op.ERROR, b"EAGAIN\0")
