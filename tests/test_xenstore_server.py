"""The test xenstored's semantics, byte by byte over its Unix sockets, as Xen defines them.

One server process for the module (dom0's socket, guests 1 and 2 on their own sockets); each
test works below its own path. The client here is ``RawClient``: hand-packed headers, no code
shared with the server or with serouter. tests/test_xenstore_tools.py checks the same rules
with Debian's real xenstore-* tools.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest

from tests.xenstore_server import Op
from tests.xenstore_server._process import RawClient, XenstoredProcess

UUID1 = "6c4a8f5e-3b1d-4d8e-9a7b-2f1e0c9d8b7a"
OK = b"OK\0"


@pytest.fixture(scope="module")
def server() -> Iterator[XenstoredProcess]:
    with XenstoredProcess({1: ("guest1", UUID1), 2: ("guest2", None)}) as process:
        yield process
    assert "Traceback" not in process.log()


@pytest.fixture
def dom0(server: XenstoredProcess) -> Iterator[RawClient]:
    with RawClient(server.socket) as client:
        yield client


@pytest.fixture
def guest(server: XenstoredProcess) -> Iterator[RawClient]:
    with RawClient(server.domain_socket(1)) as client:
        yield client


def error(name: str) -> tuple[int, bytes]:
    return Op.ERROR, name.encode() + b"\0"


def events(client: RawClient, count: int) -> list[tuple[str, str]]:
    """The next ``count`` watch events, sorted (their order between watches is free)."""
    got = [client.next_event() for _ in range(count)]
    assert None not in got, got
    return sorted(e for e in got if e is not None)


def write(client: RawClient, path: str, value: str, tx_id: int = 0) -> tuple[int, bytes]:
    return client.call(Op.WRITE, raw=path.encode() + b"\0" + value.encode(), tx_id=tx_id)


# -- the tree -----------------------------------------------------------------------------------


def test_write_read_directory_and_recursive_rm(dom0: RawClient) -> None:
    """WRITE creates missing parents with empty values; RM removes a whole subtree."""
    assert write(dom0, "/t1/a/b", "value") == (Op.WRITE, OK)
    assert dom0.call(Op.READ, "/t1/a/b") == (Op.READ, b"value")
    assert dom0.call(Op.READ, "/t1/a") == (Op.READ, b"")
    assert write(dom0, "/t1/a/c", "") == (Op.WRITE, OK)
    assert dom0.call(Op.DIRECTORY, "/t1/a") == (Op.DIRECTORY, b"b\0c\0")
    assert dom0.call(Op.DIRECTORY, "/t1/a/b") == (Op.DIRECTORY, b"")
    assert dom0.call(Op.RM, "/t1/a") == (Op.RM, OK)
    assert dom0.call(Op.READ, "/t1/a/b") == error("ENOENT")
    assert dom0.call(Op.DIRECTORY, "/t1") == (Op.DIRECTORY, b"")


def test_values_are_binary(dom0: RawClient) -> None:
    """A value may hold any bytes, nuls included, and come back unchanged."""
    value = bytes(range(256))
    assert dom0.call(Op.WRITE, raw=b"/t2\0" + value) == (Op.WRITE, OK)
    assert dom0.call(Op.READ, "/t2") == (Op.READ, value)


def test_mkdir_keeps_an_existing_value(dom0: RawClient) -> None:
    assert write(dom0, "/t3", "kept") == (Op.WRITE, OK)
    assert dom0.call(Op.MKDIR, "/t3") == (Op.MKDIR, OK)
    assert dom0.call(Op.READ, "/t3") == (Op.READ, b"kept")
    assert dom0.call(Op.MKDIR, "/t3/x/y") == (Op.MKDIR, OK)
    assert dom0.call(Op.DIRECTORY, "/t3/x") == (Op.DIRECTORY, b"y\0")


def test_rm_of_absent_node_needs_its_parent(dom0: RawClient) -> None:
    """RM of an absent node is fine if its parent exists, ENOENT if not; RM / is EINVAL."""
    assert dom0.call(Op.MKDIR, "/t4") == (Op.MKDIR, OK)
    assert dom0.call(Op.RM, "/t4/absent") == (Op.RM, OK)
    assert dom0.call(Op.RM, "/t4/absent/deeper") == error("ENOENT")
    assert dom0.call(Op.RM, "/") == error("EINVAL")


@pytest.mark.parametrize("path", [
    "/bad path", "/trailing/", "//double", "/a//b", "/dotted.name", "", "@special",
    "/" + "x" * 3072,
])
def test_invalid_paths_are_einval(dom0: RawClient, path: str) -> None:
    assert dom0.call(Op.READ, path) == error("EINVAL")


def test_requests_must_be_one_terminated_string(dom0: RawClient) -> None:
    assert dom0.call(Op.READ, raw=b"/t5") == error("EINVAL")
    assert dom0.call(Op.READ, raw=b"/t5\0extra\0") == error("EINVAL")


def test_directory_too_long_is_e2big_and_directory_part_pages(dom0: RawClient) -> None:
    """Over 4096 bytes of child names: DIRECTORY says E2BIG, DIRECTORY_PART pages them."""
    names = [f"child-with-a-long-name-{i:04d}" for i in range(200)]
    for name in names:
        assert dom0.call(Op.MKDIR, f"/t6/{name}") == (Op.MKDIR, OK)
    assert dom0.call(Op.DIRECTORY, "/t6") == error("E2BIG")
    listing, offset, generation = b"", 0, None
    while True:
        op, reply = dom0.call(Op.DIRECTORY_PART, "/t6", str(offset))
        assert op == Op.DIRECTORY_PART and len(reply) <= 4096
        gen, _, part = reply.partition(b"\0")
        assert generation in (None, gen)
        generation = gen
        if part.endswith(b"\0\0") or part == b"\0":
            listing += part[:-1]
            break
        listing, offset = listing + part, offset + len(part)
    assert listing.decode().split("\0")[:-1] == names


def test_get_domain_path(dom0: RawClient, guest: RawClient) -> None:
    assert dom0.call(Op.GET_DOMAIN_PATH, "7") == (Op.GET_DOMAIN_PATH, b"/local/domain/7\0")
    assert guest.call(Op.GET_DOMAIN_PATH, "1") == (Op.GET_DOMAIN_PATH, b"/local/domain/1\0")


def test_unknown_type_is_enosys_and_oversized_payload_drops_the_client(
    server: XenstoredProcess, dom0: RawClient
) -> None:
    assert dom0.call(20, "x") == error("ENOSYS")  # 20 was XS_RESTRICT, removed from Xen
    with RawClient(server.socket) as rude:
        rude.sock.sendall(struct.pack("<IIII", Op.READ, 1, 0, 4097) + b"x" * 4097)
        with pytest.raises((ConnectionError, OSError)):
            rude.receive()
    assert dom0.call(Op.READ, "/local/domain/0/name") == (Op.READ, b"Domain-0")


# -- domains and permissions ------------------------------------------------------------------


def test_the_socket_decides_the_domain(dom0: RawClient, guest: RawClient) -> None:
    """What a guest creates is owned by the domain of its socket, and relative paths are
    taken below that domain's home."""
    assert guest.call(Op.READ, "name") == (Op.READ, b"guest1")
    assert write(guest, "data/t7", "mine") == (Op.WRITE, OK)
    assert dom0.call(Op.GET_PERMS, "/local/domain/1/data/t7") == (Op.GET_PERMS, b"n1\0")
    assert write(dom0, "/t7", "") == (Op.WRITE, OK)
    assert dom0.call(Op.GET_PERMS, "/t7") == (Op.GET_PERMS, b"n0\0")


def test_libxl_layout_is_seeded(dom0: RawClient) -> None:
    """--domain writes what libxl writes: name, domid, vm -> /vm/<uuid>, dom0-owned."""
    assert dom0.call(Op.READ, "/local/domain/1/vm") == (Op.READ, f"/vm/{UUID1}".encode())
    assert dom0.call(Op.READ, f"/vm/{UUID1}/name") == (Op.READ, b"guest1")
    assert dom0.call(Op.GET_PERMS, "/local/domain/1/name") == (Op.GET_PERMS, b"n0\0r1\0")
    assert dom0.call(Op.READ, "/local/domain/0/name") == (Op.READ, b"Domain-0")


def test_guest_cannot_read_dom0s_home_nor_list_domains(guest: RawClient) -> None:
    assert guest.call(Op.READ, "/local/domain/0/name") == error("EACCES")
    assert guest.call(Op.DIRECTORY, "/local/domain") == error("EACCES")
    assert guest.call(Op.READ, "/local/domain/2/name") == error("EACCES")


def test_absent_node_under_unreadable_parent_reads_eacces(guest: RawClient) -> None:
    """A guest may not even learn that a node is absent where it may not look."""
    assert guest.call(Op.READ, "/local/domain/0/absent") == error("EACCES")
    assert guest.call(Op.READ, "/no/such/path") == error("EACCES")
    assert guest.call(Op.READ, "data/absent") == error("ENOENT")


def test_r0_lets_guests_read_but_not_write(dom0: RawClient, guest: RawClient) -> None:
    """``r0``: owned by dom0, every other domain reads; ``n0``: nobody else even reads."""
    assert write(dom0, "/t8/nameserver", "tcp:127.0.0.1:9000") == (Op.WRITE, OK)
    assert guest.call(Op.READ, "/t8/nameserver") == error("EACCES")  # inherited n0
    assert dom0.call(Op.SET_PERMS, "/t8/nameserver", "r0") == (Op.SET_PERMS, OK)
    assert guest.call(Op.READ, "/t8/nameserver") == (Op.READ, b"tcp:127.0.0.1:9000")
    assert write(guest, "/t8/nameserver", "evil") == error("EACCES")
    assert guest.call(Op.RM, "/t8/nameserver") == error("EACCES")
    assert guest.call(Op.SET_PERMS, "/t8/nameserver", "b1") == error("EACCES")
    assert dom0.call(Op.SET_PERMS, "/t8/nameserver", "n0") == (Op.SET_PERMS, OK)
    assert guest.call(Op.READ, "/t8/nameserver") == error("EACCES")


def test_acl_entries_grant_one_domain(dom0: RawClient, server: XenstoredProcess) -> None:
    """Later entries override the default for one domain: ``n0 b1`` lets 1 write, not 2."""
    assert write(dom0, "/t9/shared", "x") == (Op.WRITE, OK)
    assert dom0.call(Op.SET_PERMS, "/t9", "n0", "b1") == (Op.SET_PERMS, OK)
    assert dom0.call(Op.SET_PERMS, "/t9/shared", "n0", "b1", "r2") == (Op.SET_PERMS, OK)
    with RawClient(server.domain_socket(1)) as one, RawClient(server.domain_socket(2)) as two:
        assert write(one, "/t9/shared", "from 1") == (Op.WRITE, OK)
        assert two.call(Op.READ, "/t9/shared") == (Op.READ, b"from 1")
        assert write(two, "/t9/shared", "from 2") == error("EACCES")
        assert write(one, "/t9/new", "created by 1") == (Op.WRITE, OK)
    # New nodes inherit the parent's permissions; an unprivileged creator becomes the owner.
    assert dom0.call(Op.GET_PERMS, "/t9/new") == (Op.GET_PERMS, b"n1\0b1\0")
    assert write(dom0, "/t9/by-dom0", "") == (Op.WRITE, OK)
    assert dom0.call(Op.GET_PERMS, "/t9/by-dom0") == (Op.GET_PERMS, b"n0\0b1\0")


def test_only_dom0_changes_owners(guest: RawClient, dom0: RawClient) -> None:
    assert write(guest, "data/t10", "") == (Op.WRITE, OK)
    assert guest.call(Op.SET_PERMS, "data/t10", "n1", "r2") == (Op.SET_PERMS, OK)
    assert guest.call(Op.SET_PERMS, "data/t10", "n2") == error("EPERM")
    assert dom0.call(Op.SET_PERMS, "/local/domain/1/data/t10", "n2") == (Op.SET_PERMS, OK)
    assert guest.call(Op.READ, "data/t10") == error("EACCES")


@pytest.mark.parametrize("perms", [["x0"], ["r"], ["r0", "q1"], []])
def test_bad_permissions_are_einval(dom0: RawClient, perms: list[str]) -> None:
    assert dom0.call(Op.SET_PERMS, "/local/domain/0", *perms) == error("EINVAL")


def test_guests_may_not_use_privileged_requests(guest: RawClient) -> None:
    assert guest.call(Op.INTRODUCE, "5", "0", "0") == error("EACCES")
    assert guest.call(Op.RELEASE, "2") == error("EACCES")
    assert guest.call(Op.IS_DOMAIN_INTRODUCED, "2") == error("EACCES")


# -- watches --------------------------------------------------------------------------------------


def test_watch_fires_once_at_once_then_on_changes_below(dom0: RawClient) -> None:
    assert dom0.call(Op.WATCH, "/t11", "tok") == (Op.WATCH, OK)
    assert dom0.next_event() == ("/t11", "tok")
    assert dom0.next_event(0.2) is None
    assert write(dom0, "/t11/child/grandchild", "1") == (Op.WRITE, OK)
    assert dom0.next_event() == ("/t11/child/grandchild", "tok")
    assert write(dom0, "/t11x", "") == (Op.WRITE, OK)  # a sibling with a common prefix
    assert dom0.call(Op.SET_PERMS, "/t11/child", "r0") == (Op.SET_PERMS, OK)
    assert dom0.next_event() == ("/t11/child", "tok")
    assert dom0.call(Op.UNWATCH, "/t11", "tok") == (Op.UNWATCH, OK)
    assert write(dom0, "/t11/child", "2") == (Op.WRITE, OK)
    assert dom0.next_event(0.2) is None


def test_watch_errors(dom0: RawClient) -> None:
    assert dom0.call(Op.WATCH, "/t12", "tok") == (Op.WATCH, OK)
    assert dom0.call(Op.WATCH, "/t12", "tok") == error("EEXIST")
    assert dom0.call(Op.UNWATCH, "/t12", "other") == error("ENOENT")
    assert dom0.call(Op.WATCH, "/t12/", "tok") == error("EINVAL")
    assert dom0.call(Op.WATCH, "/t12") == error("EINVAL")


def test_rm_fires_for_the_removed_node_and_watched_descendants(dom0: RawClient) -> None:
    assert write(dom0, "/t13/a/b", "") == (Op.WRITE, OK)
    assert dom0.call(Op.WATCH, "/t13", "top") == (Op.WATCH, OK)
    assert dom0.call(Op.WATCH, "/t13/a/b", "deep") == (Op.WATCH, OK)
    assert events(dom0, 2) == [("/t13", "top"), ("/t13/a/b", "deep")]
    assert dom0.call(Op.RM, "/t13/a") == (Op.RM, OK)
    assert events(dom0, 2) == [("/t13/a", "top"), ("/t13/a/b", "deep")]
    assert dom0.next_event(0.2) is None


def test_relative_watch_gets_relative_events(guest: RawClient) -> None:
    assert guest.call(Op.WATCH, "data/t14", "rel") == (Op.WATCH, OK)
    assert guest.next_event() == ("data/t14", "rel")
    assert write(guest, "data/t14/x", "1") == (Op.WRITE, OK)
    assert guest.next_event() == ("data/t14/x", "rel")


def test_guest_is_told_only_of_what_it_may_read(dom0: RawClient, guest: RawClient) -> None:
    """Events for an unreadable node (under an unreadable parent) never reach a guest; the
    change of permissions that makes it readable does."""
    assert guest.call(Op.WATCH, "/t15/nameserver", "ns") == (Op.WATCH, OK)
    assert guest.next_event() == ("/t15/nameserver", "ns")
    assert write(dom0, "/t15/nameserver", "tcp:127.0.0.1:9000") == (Op.WRITE, OK)
    assert guest.next_event(0.3) is None
    assert dom0.call(Op.SET_PERMS, "/t15/nameserver", "r0") == (Op.SET_PERMS, OK)
    assert guest.next_event() == ("/t15/nameserver", "ns")
    assert write(dom0, "/t15/nameserver", "tcp:127.0.0.1:9001") == (Op.WRITE, OK)
    assert guest.next_event() == ("/t15/nameserver", "ns")
    assert dom0.call(Op.RM, "/t15") == (Op.RM, OK)
    assert guest.next_event() == ("/t15/nameserver", "ns")


def test_events_go_out_before_the_reply_that_caused_them(dom0: RawClient) -> None:
    """As in xenstored, a client watching its own write gets the event before the ack."""
    assert dom0.call(Op.WATCH, "/t16", "self") == (Op.WATCH, OK)
    assert dom0.next_event() == ("/t16", "self")
    assert write(dom0, "/t16", "x") == (Op.WRITE, OK)
    assert dom0.events == [("/t16", "self")]


def test_introduce_and_release_fire_special_watches(
    server: XenstoredProcess, dom0: RawClient, guest: RawClient
) -> None:
    """``@introduceDomain``/``@releaseDomain`` reach dom0, not guests (their nodes are n0)."""
    assert dom0.call(Op.WATCH, "@introduceDomain", "in") == (Op.WATCH, OK)
    assert dom0.call(Op.WATCH, "@releaseDomain", "out") == (Op.WATCH, OK)
    assert guest.call(Op.WATCH, "@introduceDomain", "in") == (Op.WATCH, OK)
    assert guest.next_event() == ("@introduceDomain", "in")
    assert events(dom0, 2) == [("@introduceDomain", "in"), ("@releaseDomain", "out")]
    assert dom0.call(Op.IS_DOMAIN_INTRODUCED, "9") == (Op.IS_DOMAIN_INTRODUCED, b"F\0")
    assert dom0.call(Op.INTRODUCE, "9", "1234", "5") == (Op.INTRODUCE, OK)
    assert dom0.next_event() == ("@introduceDomain", "in")
    assert dom0.call(Op.IS_DOMAIN_INTRODUCED, "9") == (Op.IS_DOMAIN_INTRODUCED, b"T\0")
    assert dom0.call(Op.RELEASE, "9") == (Op.RELEASE, OK)
    assert dom0.next_event() == ("@releaseDomain", "out")
    assert dom0.call(Op.RELEASE, "9") == error("ENOENT")
    assert guest.next_event(0.2) is None


def test_release_closes_the_domains_connections() -> None:
    with XenstoredProcess({3: ("doomed", None)}) as server:
        with RawClient(server.socket) as dom0, RawClient(server.domain_socket(3)) as doomed:
            assert doomed.call(Op.READ, "name") == (Op.READ, b"doomed")
            assert dom0.call(Op.RELEASE, "3") == (Op.RELEASE, OK)
            with pytest.raises(ConnectionError):
                doomed.receive()


# -- transactions ---------------------------------------------------------------------------------


def start(client: RawClient) -> int:
    op, reply = client.call(Op.TRANSACTION_START, "")
    assert op == Op.TRANSACTION_START and reply.endswith(b"\0"), (op, reply)
    return int(reply[:-1])


def test_transaction_commits_atomically_with_events_at_commit(dom0: RawClient) -> None:
    assert dom0.call(Op.WATCH, "/t17", "tx") == (Op.WATCH, OK)
    assert dom0.next_event() == ("/t17", "tx")
    tx = start(dom0)
    assert write(dom0, "/t17/a", "1", tx) == (Op.WRITE, OK)
    assert dom0.call(Op.READ, "/t17/a", tx_id=tx) == (Op.READ, b"1")
    assert dom0.call(Op.READ, "/t17/a") == error("ENOENT")
    assert dom0.next_event(0.2) is None
    assert dom0.call(Op.TRANSACTION_END, "T", tx_id=tx) == (Op.TRANSACTION_END, OK)
    assert dom0.next_event() == ("/t17/a", "tx")
    assert dom0.call(Op.READ, "/t17/a") == (Op.READ, b"1")


def test_transaction_conflict_is_eagain(dom0: RawClient, server: XenstoredProcess) -> None:
    assert write(dom0, "/t18/x", "0") == (Op.WRITE, OK)
    tx = start(dom0)
    assert dom0.call(Op.READ, "/t18/x", tx_id=tx) == (Op.READ, b"0")
    assert write(dom0, "/t18/y", "1", tx) == (Op.WRITE, OK)
    with RawClient(server.socket) as other:
        assert write(other, "/t18/x", "changed") == (Op.WRITE, OK)
    assert dom0.call(Op.TRANSACTION_END, "T", tx_id=tx) == error("EAGAIN")
    assert dom0.call(Op.READ, "/t18/y") == error("ENOENT")
    assert dom0.call(Op.TRANSACTION_END, "T", tx_id=tx) == error("ENOENT")  # it is gone


def test_unrelated_changes_do_not_conflict(dom0: RawClient) -> None:
    assert write(dom0, "/t19/mine", "0") == (Op.WRITE, OK)
    assert write(dom0, "/t19/theirs", "0") == (Op.WRITE, OK)
    tx = start(dom0)
    assert write(dom0, "/t19/mine", "1", tx) == (Op.WRITE, OK)
    assert write(dom0, "/t19/theirs", "1") == (Op.WRITE, OK)
    assert dom0.call(Op.TRANSACTION_END, "T", tx_id=tx) == (Op.TRANSACTION_END, OK)
    assert dom0.call(Op.READ, "/t19/mine") == (Op.READ, b"1")


def test_abandoned_transaction_changes_nothing(dom0: RawClient) -> None:
    tx = start(dom0)
    assert write(dom0, "/t20", "x", tx) == (Op.WRITE, OK)
    assert dom0.call(Op.TRANSACTION_END, "F", tx_id=tx) == (Op.TRANSACTION_END, OK)
    assert dom0.call(Op.READ, "/t20") == error("ENOENT")


def test_transaction_errors(dom0: RawClient) -> None:
    assert dom0.call(Op.READ, "/local", tx_id=999) == error("ENOENT")
    assert dom0.call(Op.TRANSACTION_END, "T") == error("ENOENT")
    tx = start(dom0)
    assert dom0.call(Op.TRANSACTION_START, "", tx_id=tx) == error("EBUSY")
    assert dom0.call(Op.TRANSACTION_END, "maybe", tx_id=tx) == error("EINVAL")
    assert dom0.call(Op.TRANSACTION_END, "F", tx_id=tx) == (Op.TRANSACTION_END, OK)


def test_transactions_keep_permissions(guest: RawClient, dom0: RawClient) -> None:
    assert write(dom0, "/t21", "dom0's") == (Op.WRITE, OK)
    tx = start(guest)
    assert write(guest, "/t21", "guest's", tx) == error("EACCES")
    assert guest.call(Op.TRANSACTION_END, "T", tx_id=tx) == (Op.TRANSACTION_END, OK)
    assert dom0.call(Op.READ, "/t21") == (Op.READ, b"dom0's")


def test_connections_are_independent(server: XenstoredProcess) -> None:
    """Transaction ids and watches belong to their connection; a closed one leaves nothing."""
    with RawClient(server.socket) as first:
        tx = start(first)
        assert first.call(Op.WATCH, "/t22", "gone") == (Op.WATCH, OK)
    with RawClient(server.socket) as second:
        assert second.call(Op.TRANSACTION_END, "T", tx_id=tx) == error("ENOENT")
        assert write(second, "/t22", "x") == (Op.WRITE, OK)
        assert second.next_event(0.2) is None
