"""serouter's XenStore client against the test xenstored, in one reactor (trial TestCases).

Each test gets its own server on fresh Unix sockets (dom0's, and guests 1 and 2) and closes
every client and server it made, so trial finds the reactor clean; every wait is bounded.
The last tests run a reactor in a subprocess to time its shutdown with a watch active.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.protocol import Factory, Protocol
from twisted.trial import unittest

from serouter.xenstore import (
    DomainInfo,
    DomainInfoError,
    Permission,
    XenbusEndpoint,
    XenbusTransport,
    XenStoreClient,
    XenStoreEndpoint,
    XenStoreError,
    XenStoreUnavailable,
)
from tests.xenstore_server import Perm, Store, XenStoreServer
from tests.xenstore_server._process import ROOT, XenstoredProcess

UUID1 = "6c4a8f5e-3b1d-4d8e-9a7b-2f1e0c9d8b7a"
NAMESERVER = "/serouter/nameserver"


def sleep(seconds: float) -> defer.Deferred[None]:
    return task.deferLater(reactor, seconds, lambda: None)


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await sleep(0.02)


def seeded_store() -> Store:
    store = Store()
    store.seed_domain(0, "Domain-0", None)
    store.seed_domain(1, "guest1", UUID1)
    store.seed_domain(2, "guest2", None)
    return store


class XenStoreTestCase(unittest.TestCase):
    timeout = 20

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="xs", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.store = seeded_store()
        self.server = self.serve(self.store)

    def path(self, domid: int) -> str:
        return os.path.join(self.dir, "socket" if domid == 0 else f"domain{domid}")

    def serve(self, store: Store) -> XenStoreServer:
        server = XenStoreServer(reactor, store)
        for domid in (0, 1, 2):
            server.listen(self.path(domid), domid)
        self.addCleanup(server.stop)
        return server

    def client(self, domid: int = 0, timeout: float = 5.0) -> XenStoreClient:
        endpoint = XenStoreEndpoint(reactor, {"XENSTORED_PATH": self.path(domid)})
        client = XenStoreClient(reactor, endpoint, request_timeout=timeout)
        client.startService()
        self.addCleanup(client.stopService)
        return client

    async def refused(self, name: str, work: defer.Deferred[Any]) -> XenStoreError:
        try:
            await work
        except XenStoreError as error:
            self.assertEqual(error.name, name)
            return error
        raise AssertionError(f"expected {name}")


def run(test: Callable[..., Any]) -> Callable[..., defer.Deferred[None]]:
    """An ``async def`` test method as the Deferred trial waits for."""

    def wrapper(self: XenStoreTestCase) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(test(self))

    wrapper.__name__ = test.__name__
    wrapper.__doc__ = test.__doc__
    return wrapper


class OperationsTests(XenStoreTestCase):
    @run
    async def test_read_write_mkdir_directory_rm(self) -> None:
        """The basic requests, with str or bytes values, and recursive rm."""
        xs = self.client()
        await xs.write("/c1/a", "text")
        await xs.write("/c1/b", b"\x00binary\xff")
        await xs.mkdir("/c1/c/d")
        self.assertEqual(await xs.read("/c1/a"), b"text")
        self.assertEqual(await xs.read("/c1/b"), b"\x00binary\xff")
        self.assertEqual(await xs.directory("/c1"), ["a", "b", "c"])
        await xs.rm("/c1/c")
        self.assertEqual(await xs.directory("/c1"), ["a", "b"])
        await self.refused("ENOENT", xs.read("/c1/c/d"))

    @run
    async def test_errors_carry_the_errno_name_and_path(self) -> None:
        guest = self.client(1)
        error = await self.refused("EACCES", guest.read("/local/domain/0/name"))
        self.assertEqual(error.path, "/local/domain/0/name")
        await self.refused("EINVAL", guest.read("/not/a/valid.path"))
        await self.refused("E2BIG", guest.write("data/big", b"x" * 4096))
        self.assertEqual(await guest.read("name"), b"guest1")

    @run
    async def test_long_directory_is_read_in_parts(self) -> None:
        xs = self.client()
        names = [f"a-child-with-a-long-enough-name-{i:04d}" for i in range(150)]
        for name in names:
            self.store.write(f"/c2/{name}", "")
        self.assertEqual(await xs.directory("/c2"), names)

    @run
    async def test_permissions(self) -> None:
        xs = self.client()
        await xs.write("/c3", "x")
        await xs.set_perms("/c3", ["n0", Permission("r", 1)])
        self.assertEqual(await xs.get_perms("/c3"), [Permission("n", 0), Permission("r", 1)])
        self.assertEqual(await self.client(1).read("/c3"), b"x")
        await self.refused("EACCES", self.client(2).read("/c3"))
        await self.refused("EINVAL", xs.set_perms("/c3", ["q7"]))
        await self.refused("EINVAL", xs.set_perms("/c3", []))

    @run
    async def test_get_domain_path(self) -> None:
        self.assertEqual(await self.client(1).get_domain_path(1), "/local/domain/1")


class WatchTests(XenStoreTestCase):
    @run
    async def test_watch_fires_at_once_on_changes_and_for_children(self) -> None:
        xs = self.client()
        events: list[str] = []
        watch = await xs.watch("/c4", events.append)
        await eventually(lambda: events == ["/c4"])
        await xs.write("/c4/child", "1")
        self.store.write("/c4", "2")
        await eventually(lambda: events == ["/c4", "/c4/child", "/c4"])
        await watch.cancel()
        await xs.write("/c4", "3")
        await sleep(0.1)
        self.assertEqual(events, ["/c4", "/c4/child", "/c4"])

    @run
    async def test_special_watch(self) -> None:
        events: list[str] = []
        await self.client().watch("@introduceDomain", events.append)
        self.store.introduce(9)
        await eventually(lambda: events == ["@introduceDomain"] * 2)

    @run
    async def test_watch_survives_a_xenstored_restart(self) -> None:
        """After a restart the client reconnects on its own and registers the watch again:
        xenstored fires it once at registration, and later changes arrive as before."""
        guest = self.client(1)
        events: list[str] = []
        await guest.watch("data/c5", events.append)
        await eventually(lambda: events == ["data/c5"])
        await self.server.stop()
        await eventually(lambda: not guest.connected)
        self.server = self.serve(self.store)  # the same database, as after a live update
        await eventually(lambda: events == ["data/c5"] * 2)
        self.store.write("/local/domain/1/data/c5", "after")
        await eventually(lambda: events == ["data/c5"] * 3)

    @run
    async def test_watch_times_out_without_xenstored_and_leaves_nothing(self) -> None:
        await self.server.stop()
        xs = self.client(timeout=0.3)
        events: list[str] = []
        with self.assertRaises(XenStoreUnavailable):
            await xs.watch("/c6", events.append)
        self.server = self.serve(self.store)
        await xs.write("/c6", "x")
        await sleep(0.1)
        self.assertEqual(events, [])


class ConnectionTests(XenStoreTestCase):
    @run
    async def test_requests_wait_for_a_late_xenstored(self) -> None:
        await self.server.stop()
        xs = self.client()
        reading = xs.read("/local/domain/0/name")
        await sleep(0.3)
        self.assertFalse(reading.called)
        self.server = self.serve(self.store)
        self.assertEqual(await reading, b"Domain-0")

    @run
    async def test_request_times_out(self) -> None:
        await self.server.stop()
        with self.assertRaises(XenStoreUnavailable):
            await self.client(timeout=0.2).read("/local/domain/0/name")

    @run
    async def test_stopping_fails_waiting_requests_at_once(self) -> None:
        await self.server.stop()
        xs = self.client(timeout=30)
        reading = xs.read("/x")
        await xs.stopService()
        with self.assertRaises(XenStoreUnavailable):
            await reading

    @run
    async def test_request_lost_with_its_connection_is_sent_again(self) -> None:
        """xenstored goes away with a request unanswered: the client asks the next one."""
        swallowed: list[bytes] = []

        class Forgetful(Store):
            def handle(self, s: Any, op: int, req_id: int, tx_id: int, payload: bytes) -> None:
                if payload == b"/c7\0" and not swallowed:
                    swallowed.append(payload)  # never answered
                    return
                super().handle(s, op, req_id, tx_id, payload)

        store = Forgetful()
        store.write("/c7", "answered")
        await self.server.stop()
        self.server = self.serve(store)
        xs = self.client()
        reading = xs.read("/c7")
        await eventually(lambda: bool(swallowed))
        await self.server.stop()
        self.server = self.serve(store)
        self.assertEqual(await reading, b"answered")

    @run
    async def test_xenbus_device_transport(self) -> None:
        """Through a FileDescriptor over a bare fd (a socketpair standing in for the xenbus
        device, whose other end the server serves as domain 3)."""
        self.store.seed_domain(3, "guest3", None)
        ours, theirs = socket.socketpair()
        self.server.adopt(theirs, 3)
        theirs.close()  # the reactor holds its own duplicate
        endpoint = XenbusEndpoint(reactor, "/dev/xen/xenbus", lambda path, flags: ours.detach())
        xs = XenStoreClient(reactor, endpoint, request_timeout=5)
        xs.startService()
        self.addCleanup(xs.stopService)
        self.assertEqual(await xs.read("name"), b"guest3")
        events: list[str] = []
        await xs.watch("data", events.append)
        await xs.write("data/x", "1")
        await eventually(lambda: events == ["data", "data/x"])
        await self.refused("EACCES", xs.read("/local/domain/0/name"))


class EndpointTests(unittest.TestCase):
    def test_order_of_candidates(self) -> None:
        self.assertEqual(
            XenStoreEndpoint(reactor, {}).candidates(),
            ["/var/run/xenstored/socket", "/run/xenstored/socket", "/dev/xen/xenbus"])
        self.assertEqual(
            XenStoreEndpoint(reactor, {"XENSTORED_PATH": "/x/y"}).candidates(), ["/x/y"])

    def test_environment_is_read_once(self) -> None:
        environ = {"XENSTORED_PATH": "/first"}
        endpoint = XenStoreEndpoint(reactor, environ)
        environ["XENSTORED_PATH"] = "/second"
        self.assertEqual(endpoint.candidates(), ["/first"])

    def test_first_existing_path_wins_and_a_device_gets_the_xenbus_transport(self) -> None:
        """/dev/null is a character device: it is opened as xenbus would be."""
        made: list[Protocol] = []

        class Recording(Protocol):
            def connectionMade(self) -> None:
                made.append(self)

        endpoint = XenStoreEndpoint(reactor, {}, ["/nonexistent/socket", "/dev/null"])
        connecting = endpoint.connect(Factory.forProtocol(Recording))
        self.assertTrue(connecting.called)
        self.assertIsInstance(made[0].transport, XenbusTransport)
        assert made[0].transport is not None
        made[0].transport.loseConnection()

    def test_nothing_found(self) -> None:
        failure = self.failureResultOf(
            XenStoreEndpoint(reactor, {}, ["/nonexistent/a", "/nonexistent/b"]).connect(
                Factory.forProtocol(Protocol)),
            XenStoreUnavailable)
        self.assertIn("/nonexistent/a, /nonexistent/b", str(failure.value))

    def test_regular_file_is_refused(self) -> None:
        self.failureResultOf(
            XenStoreEndpoint(reactor, {"XENSTORED_PATH": __file__}).connect(
                Factory.forProtocol(Protocol)),
            XenStoreUnavailable)


class HelperTests(XenStoreTestCase):
    @run
    async def test_publish_nameserver_then_guests_follow_it(self) -> None:
        """dom0 publishes with r0; a guest's watch_value reports None, the endpoint, each
        change and None again when it is removed; the guest cannot overwrite it."""
        dom0, guest = self.client(), self.client(1)
        seen: list[str | None] = []
        following = await guest.watch_value(NAMESERVER, seen.append)
        self.assertEqual(seen, [None])  # absent: a guest reads EACCES here, taken as None
        await dom0.publish_nameserver(NAMESERVER, "tcp:127.0.0.1:9000")
        await eventually(lambda: seen == [None, "tcp:127.0.0.1:9000"])
        self.assertEqual(await dom0.get_perms(NAMESERVER), [Permission("r", 0)])
        await self.refused("EACCES", guest.write(NAMESERVER, "tcp:evil:1"))
        await dom0.publish_nameserver(NAMESERVER, "tcp:127.0.0.1:9000")  # same: not reported
        await dom0.publish_nameserver(NAMESERVER, "tcp:127.0.0.1:9001")
        await eventually(lambda: seen[-1] == "tcp:127.0.0.1:9001")
        await dom0.remove(NAMESERVER)
        await eventually(lambda: seen[-1] is None)
        self.assertEqual(seen, [None, "tcp:127.0.0.1:9000", "tcp:127.0.0.1:9001", None])
        self.assertIsNone(following.value)
        await dom0.remove(NAMESERVER)
        await dom0.remove("/no/such/parent/either")
        await following.cancel()

    @run
    async def test_watch_value_across_a_fresh_xenstored(self) -> None:
        """A restarted xenstored that lost the value: the follower reports None."""
        self.store.write(NAMESERVER, "tcp:127.0.0.1:9000", (Perm(0, 1),))
        seen: list[str | None] = []
        await self.client(1).watch_value(NAMESERVER, seen.append)
        self.assertEqual(seen, ["tcp:127.0.0.1:9000"])
        await self.server.stop()
        self.store = seeded_store()
        self.server = self.serve(self.store)
        await eventually(lambda: seen == ["tcp:127.0.0.1:9000", None])
        self.store.write(NAMESERVER, "tcp:127.0.0.1:9002", (Perm(0, 1),))
        await eventually(lambda: seen[-1] == "tcp:127.0.0.1:9002")

    @run
    async def test_publishing_needs_dom0(self) -> None:
        await self.refused("EACCES", self.client(1).publish_nameserver(NAMESERVER, "tcp:x:1"))

    @run
    async def test_domain_info(self) -> None:
        dom0, guest = self.client(), self.client(1)
        self.assertEqual(await dom0.domain_info(1), DomainInfo("guest1", UUID1))
        self.assertEqual(await guest.domain_info(1), ("guest1", UUID1))
        self.assertEqual(await dom0.domain_info(0), DomainInfo("Domain-0", None))
        self.assertEqual(await dom0.domain_info(2), DomainInfo("guest2", None))
        await self.refused("EACCES", guest.domain_info(2))
        await self.refused("ENOENT", dom0.domain_info(42))

    @run
    async def test_domain_info_refuses_what_a_guest_could_have_written(self) -> None:
        dom0 = self.client()
        self.store.set_perms("/local/domain/2/name", (Perm(0, 0), Perm(2, 3)))
        with self.assertRaises(DomainInfoError):
            await dom0.domain_info(2)
        self.store.set_perms("/local/domain/1/vm", (Perm(1, 0),))
        with self.assertRaises(DomainInfoError):
            await dom0.domain_info(1)
        self.store.seed_domain(5, "odd", None)
        self.store.write("/local/domain/5/vm", "/vm/not-a-uuid")
        with self.assertRaises(DomainInfoError):
            await dom0.domain_info(5)

    @run
    async def test_transaction_reruns_on_conflict(self) -> None:
        dom0 = self.client()
        await dom0.write("/c8/x", "0")
        runs: list[int] = []

        async def body(tx: Any) -> bytes:
            value = await tx.read("/c8/x")
            runs.append(1)
            if len(runs) == 1:
                self.store.write("/c8/x", "changed meanwhile")
            await tx.write("/c8/y", value)
            return bytes(value)

        self.assertEqual(await dom0.transaction(body), b"changed meanwhile")
        self.assertEqual(len(runs), 2)
        self.assertEqual(await dom0.read("/c8/y"), b"changed meanwhile")

    @run
    async def test_transaction_gives_up_and_abandons(self) -> None:
        dom0 = self.client()

        async def always_conflicting(tx: Any) -> None:
            await tx.read("/local/domain/0/name")
            await tx.write("/c9/attempt", "x")
            self.store.write("/local/domain/0/name", "Domain-0")

        await self.refused("EAGAIN", dom0.transaction(always_conflicting, attempts=3))

        async def failing(tx: Any) -> None:
            await tx.write("/c9/never", "x")
            raise ValueError("body failed")

        with self.assertRaises(ValueError):
            await dom0.transaction(failing)
        await self.refused("ENOENT", dom0.read("/c9/never"))
        await self.refused("ENOENT", dom0.read("/c9/attempt"))


# -- shutdown, in a subprocess: the pyxs trap (DESIGN.md section 6) must not be ours ------------

SHUTDOWN_SCRIPT = """
import sys
from twisted.internet import reactor
from serouter.xenstore import XenStoreClient

client = XenStoreClient(reactor, request_timeout=60)
client.startService()
events = []

def stop():
    print("stopping", len(events), flush=True)
    reactor.stop()  # the client is never stopped: nothing may wait for it

def go():
    watching = client.watch("/serouter/nameserver", events.append)
    if sys.argv[1] == "silent":
        client.read("/local/domain/0/name")  # never answered either
        reactor.callLater(0.5, stop)
    else:
        watching.addCallback(lambda _: reactor.callLater(0.2, stop))

reactor.callWhenRunning(go)
reactor.run()
"""


def time_shutdown(mode: str, xenstored_path: str) -> tuple[str, float]:
    """Run the script; the first line it prints, and seconds from that line to its exit."""
    process = subprocess.Popen(
        [sys.executable, "-c", SHUTDOWN_SCRIPT, mode], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, env={**os.environ, "XENSTORED_PATH": xenstored_path},
    )
    assert process.stdout is not None
    try:
        line = process.stdout.readline().decode().strip()
        stopping = time.monotonic()
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
    return line, time.monotonic() - stopping


def test_reactor_stops_at_once_with_an_active_watch() -> None:
    with XenstoredProcess() as server:
        line, seconds = time_shutdown("watch", server.socket)
    assert line == "stopping 1", line  # the watch was registered and had fired
    assert seconds < 2.0, f"shutdown took {seconds:.1f}s"


def test_reactor_stops_at_once_while_xenstored_is_silent() -> None:
    """A xenstored that accepts and never answers: watch and read pending, no hang."""
    directory = tempfile.mkdtemp(prefix="xs", dir="/tmp")
    path = os.path.join(directory, "silent")
    try:
        with socket.socket(socket.AF_UNIX) as silent:
            silent.bind(path)
            silent.listen(8)
            line, seconds = time_shutdown("silent", path)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    assert line == "stopping 0", line
    assert seconds < 2.0, f"shutdown took {seconds:.1f}s"
