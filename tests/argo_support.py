"""Test helpers for serouter.argo: a fake device at the syscall boundary, real fds standing in
for the device, the ABI recomputed by the C compiler, and simulated VMs in network namespaces.

- ``FakeArgoDevice``: the ``Syscalls`` of a fake ``/dev/argo_stream`` (or v4v): it answers the
  ioctls the way the Linux driver does (``open`` leaves the fd blocking, CONNECT answers
  EINPROGRESS, GETCONNECTERR holds ``-errno``, ACCEPT hands out blocking fds), records every
  call, and refuses to close an fd twice or one it never opened, so leaks and double closes
  show.
- ``PairDriver``: a ``Driver`` over socketpairs. Its listening fd is one end of a socketpair
  ("the doorbell") that turns readable when a test dials; ``accept`` hands out the server end
  of a fresh socketpair and ``dial`` gives the test the other. Real fds, a real reactor, no Xen.
- ``c_abi()``: request numbers, sizes and packed bytes computed by gcc from ``<linux/ioctl.h>``
  and struct declarations that follow the drivers' headers field by field.
- ``SimulatedNetwork``: "dom0" and guest namespaces wired the way docs/argo.md describes, torn
  down always (bounded); ``in_namespace`` runs a function in a thread inside a namespace (a
  socket made there stays there), ``NamespacedDriver`` makes the simulated client driver
  connect from a guest.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from serouter.argo import ARGO, Abi, ArgoAddress, Driver, PeerRefused
from serouter.argo._simulate import address_of

T = TypeVar("T")
STEP = 10.0  # seconds any single setup command may take


# -- a fake device at the syscall boundary ---------------------------------------------------------


@dataclass
class FakeArgoDevice:
    """``Syscalls`` of a fake stream device, following argo-module.c's behaviour."""

    abi: Abi = ARGO
    present: bool = True
    accepts: list[tuple[int, int] | int] = field(default_factory=list)  # (domain, port) or errno
    connect_errno: int = errno.EINPROGRESS  # what CONNECT fails with; 0: connected at once
    pending_error: int = 0  # GETCONNECTERR: the errno the attempt ended with (stored negated)
    fail: dict[int, int] = field(default_factory=dict)  # request -> errno it fails with
    calls: list[tuple[str, Any]] = field(default_factory=list)
    blocking: dict[int, bool] = field(default_factory=dict)
    bound: dict[int, bytes] = field(default_factory=dict)  # fd -> the BIND argument
    _fds: Iterator[int] = field(default_factory=lambda: itertools.count(100))

    @property
    def open_fds(self) -> set[int]:
        return set(self.blocking)

    def requests(self) -> list[int]:
        return [arg[1] for name, arg in self.calls if name == "ioctl"]

    def _new_fd(self) -> int:
        fd = next(self._fds)
        self.blocking[fd] = True  # the driver resets f_flags to O_RDWR: blocking
        return fd

    def open(self, path: str, flags: int) -> int:
        self.calls.append(("open", (path, flags)))
        if not self.present or path != self.abi.device:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        return self._new_fd()

    def set_blocking(self, fd: int, blocking: bool) -> None:
        self.calls.append(("set_blocking", (fd, blocking)))
        self._check(fd)
        self.blocking[fd] = blocking

    def ioctl(self, fd: int, request: int, arg: bytearray) -> int:
        self.calls.append(("ioctl", (fd, request, bytes(arg))))
        self._check(fd)
        if request in self.fail:
            code = self.fail[request]
            raise OSError(code, os.strerror(code))
        abi = self.abi
        if request == abi.BIND:
            self.bound[fd] = bytes(arg)
        elif request == abi.ACCEPT:
            return self._accept(fd, arg)
        elif request == abi.CONNECT:
            if self.connect_errno:
                raise OSError(self.connect_errno, os.strerror(self.connect_errno))
        elif request == abi.GETCONNECTERR:
            arg[:] = abi.pack_int(-self.pending_error)
            self.pending_error = 0  # read once, as the driver does
        elif request == abi.GETSOCKNAME:
            arg[:] = self.bound.get(fd, abi.pack_ring_id(1, None))
        elif request != abi.LISTEN:
            raise OSError(errno.ENOTTY, os.strerror(errno.ENOTTY))
        return 0

    def _accept(self, fd: int, arg: bytearray) -> int:
        if not self.accepts:
            if self.blocking[fd]:
                raise AssertionError("ACCEPT on a blocking fd with nobody waiting would hang")
            raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
        item = self.accepts.pop(0)
        if isinstance(item, int):
            raise OSError(item, os.strerror(item))
        arg[:] = self.abi.pack_addr(*item)
        return self._new_fd()

    def read(self, fd: int, size: int) -> bytes:
        raise AssertionError("the fake device carries no data")

    def write(self, fd: int, data: bytes | memoryview) -> int:
        raise AssertionError("the fake device carries no data")

    def close(self, fd: int) -> None:
        self.calls.append(("close", fd))
        self._check(fd)
        del self.blocking[fd]

    def _check(self, fd: int) -> None:
        if fd not in self.blocking:
            raise OSError(errno.EBADF, f"fd {fd} is not open")


# -- real fds standing in for the device -----------------------------------------------------------


class PairDriver:
    """A ``Driver`` over socketpairs (AF_UNIX): real non-blocking fds for a real reactor."""

    def __init__(self) -> None:
        self.doorbells: dict[int, socket.socket] = {}  # listening fd -> the test's end
        self.waiting: dict[int, list[tuple[socket.socket, ArgoAddress]]] = {}
        self.ports: dict[int, int] = {}  # port -> listening fd
        self.refuse: set[int] = set()  # domains whose connections the "device" refuses
        self.closed: list[int] = []

    @property
    def name(self) -> str:
        return "pairs"

    def listen(self, port: int, partner: int | None) -> int:
        if port in self.ports:
            raise OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))
        ours, bell = socket.socketpair()
        ours.setblocking(False)
        fd = ours.detach()
        self.doorbells[fd] = bell
        self.waiting[fd] = []
        self.ports[port] = fd
        return fd

    def dial(self, port: int, domain: int, from_port: int = 40000) -> socket.socket:
        """A connection from ``domain`` to ``port``: the test's end (blocking)."""
        fd = self.ports[port]
        server, client = socket.socketpair()
        self.waiting[fd].append((server, ArgoAddress(domain, from_port)))
        self.doorbells[fd].send(b"!")
        return client

    def accept(self, fd: int) -> tuple[int, ArgoAddress] | None:
        try:
            os.read(fd, 1)
        except BlockingIOError:
            return None
        server, peer = self.waiting[fd].pop(0)
        if peer.domain in self.refuse:
            server.close()
            raise PeerRefused(f"domain {peer.domain} refused")
        server.setblocking(False)
        return server.detach(), peer

    def connect(self, domain: int, port: int) -> tuple[int, bool]:
        if port not in self.ports:
            raise ConnectionRefusedError(errno.ECONNREFUSED, os.strerror(errno.ECONNREFUSED))
        client = self.dial(port, 0, 41000)
        client.setblocking(False)
        return client.detach(), True

    def connect_error(self, fd: int) -> int:
        return 0

    def local_address(self, fd: int) -> ArgoAddress:
        port = next((p for p, f in self.ports.items() if f == fd), 0)
        return ArgoAddress(None, port)

    def read(self, fd: int, size: int) -> bytes:
        return os.read(fd, size)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        return os.write(fd, data)

    def close(self, fd: int) -> None:
        self.closed.append(fd)
        bell = self.doorbells.pop(fd, None)
        if bell is not None:
            bell.close()
            for server, _peer in self.waiting.pop(fd, []):
                server.close()
            self.ports = {p: f for p, f in self.ports.items() if f != fd}
        os.close(fd)


# -- the ABI from the C compiler -------------------------------------------------------------------

# The drivers' declarations, field by field (argo-linux/include/linux/argo.h, argo_dev.h;
# v4v/include/xen/v4v.h, v4v/linux/v4v_dev.h), and the requests as the headers write them.
C_PROGRAM = r"""
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <linux/ioctl.h>

typedef uint16_t domid_t;
typedef uint32_t xen_argo_port_t;
typedef struct xen_argo_addr { xen_argo_port_t aport; domid_t domain_id; uint16_t pad; }
    xen_argo_addr_t;
struct argo_ring_id { domid_t domain_id; domid_t partner_id; xen_argo_port_t aport; };
typedef struct v4v_addr { uint32_t port; domid_t domain; } __attribute__((packed)) v4v_addr_t;
typedef struct v4v_ring_id { struct v4v_addr addr; domid_t partner; } __attribute__((packed))
    v4v_ring_id_t;

static void hex(const char *name, const void *p, size_t n) {
    const unsigned char *b = p;
    printf("\"%s\": \"", name);
    for (size_t i = 0; i < n; i++) printf("%02x", b[i]);
    printf("\",\n");
}

int main(void) {
    printf("{\n");
#define N(name, value) printf("\"%s\": %lu,\n", name, (unsigned long)(value))
    N("ARGOIOCBIND", _IOW('W', 2, struct argo_ring_id));
    N("ARGOIOCGETSOCKNAME", _IOW('W', 3, struct argo_ring_id));
    N("ARGOIOCGETPEERNAME", _IOW('W', 4, xen_argo_addr_t));
    N("ARGOIOCCONNECT", _IOW('W', 5, xen_argo_addr_t));
    N("ARGOIOCGETCONNECTERR", _IOW('W', 6, int));
    N("ARGOIOCLISTEN", _IOW('W', 7, uint32_t));
    N("ARGOIOCACCEPT", _IOW('W', 8, xen_argo_addr_t));
    N("V4VIOCBIND", _IOW('W', 2, struct v4v_ring_id));
    N("V4VIOCGETSOCKNAME", _IOW('W', 3, struct v4v_ring_id));
    N("V4VIOCGETPEERNAME", _IOW('W', 4, v4v_addr_t));
    N("V4VIOCCONNECT", _IOW('W', 5, v4v_addr_t));
    N("V4VIOCGETCONNECTERR", _IOW('W', 6, int));
    N("V4VIOCLISTEN", _IOW('W', 7, uint32_t));
    N("V4VIOCACCEPT", _IOW('W', 8, v4v_addr_t));
    N("sizeof_xen_argo_addr", sizeof(xen_argo_addr_t));
    N("sizeof_argo_ring_id", sizeof(struct argo_ring_id));
    N("sizeof_v4v_addr", sizeof(v4v_addr_t));
    N("sizeof_v4v_ring_id", sizeof(v4v_ring_id_t));
    xen_argo_addr_t a; memset(&a, 0, sizeof a);
    a.aport = 0x12345678; a.domain_id = 0x0203;
    hex("argo_addr", &a, sizeof a);
    struct argo_ring_id r; memset(&r, 0, sizeof r);
    r.domain_id = 0x7FF4; r.partner_id = 0x0005; r.aport = 5555;
    hex("argo_ring_id", &r, sizeof r);
    v4v_addr_t v; v.port = 0x12345678; v.domain = 0x0203;
    hex("v4v_addr", &v, sizeof v);
    v4v_ring_id_t vr; vr.addr.port = 5555; vr.addr.domain = 0x7FFF; vr.partner = 0x0005;
    hex("v4v_ring_id", &vr, sizeof vr);
    printf("\"end\": 0\n}\n");
    return 0;
}
"""


def c_abi(directory: Path) -> dict[str, Any] | None:
    """What gcc computes for the headers' requests and layouts; None without a C compiler."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None or not Path("/usr/include/linux/ioctl.h").exists():
        return None
    source, program = directory / "abi.c", directory / "abi"
    source.write_text(C_PROGRAM)
    subprocess.run([compiler, "-std=c11", "-Wall", "-Werror", "-o", str(program), str(source)],
                   check=True, capture_output=True, timeout=60)
    done = subprocess.run([str(program)], check=True, capture_output=True, text=True, timeout=10)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


# -- simulated VMs in network namespaces -----------------------------------------------------------

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_names = itertools.count(1)


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=STEP,
                          check=check)


def namespaces_unavailable() -> str | None:
    """Why network namespaces cannot be made here, or None if they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the ip tool (iproute2) is not installed"
    probe = f"srprobe{os.getpid()}"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


def _enter(namespace: str) -> None:
    """This thread joins ``namespace`` (setns affects the calling thread only)."""
    with open(f"/var/run/netns/{namespace}") as handle:
        if _libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"setns {namespace}: {os.strerror(code)}")


def in_namespace(namespace: str, work: Callable[[], T]) -> T:
    """``work()`` in a thread that entered ``namespace`` (sockets made there stay there)."""
    result: list[Any] = []

    def run() -> None:
        try:
            _enter(namespace)
            result.append((True, work()))
        except BaseException as e:
            result.append((False, e))

    thread = threading.Thread(target=run, name=f"netns-{namespace}", daemon=True)
    thread.start()
    thread.join(STEP)
    if not result:
        raise TimeoutError(f"work in namespace {namespace} did not finish within {STEP} s")
    ok, value = result[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


class SimulatedNetwork:
    """Namespaces "dom0" and one per guest domain, as docs/argo.md sets them up:

    dom0 holds 1.0.0.0 on its loopback, one veth link per guest with a /32 route to the
    guest's address, forwarding on (guests reach each other through dom0) and rp_filter = 1
    (a packet whose source address does not route back over the link it came in on is
    dropped: no guest can borrow another's address). Each guest holds 1.0.x.y (its domain id)
    on its end of the link, with a route to 1.0.0.0 and the rest of 1.0.0.0/16 through it.
    """

    def __init__(self, guests: Sequence[int]) -> None:
        self.prefix = f"sr{os.getpid() % 100000}n{next(_names)}"
        self.guests = list(guests)
        self.dom0 = f"{self.prefix}d0"
        self.made: list[str] = []

    def namespace(self, domid: int) -> str:
        return self.dom0 if domid == 0 else f"{self.prefix}d{domid}"

    def __enter__(self) -> SimulatedNetwork:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _sysctl(self, namespace: str, key: str, value: str) -> None:
        subprocess.run(["ip", "netns", "exec", namespace, "sh", "-c",
                        f"echo {value} > /proc/sys/{key.replace('.', '/')}"],
                       check=True, capture_output=True, timeout=STEP)

    def _build(self) -> None:
        ip("netns", "add", self.dom0)
        self.made.append(self.dom0)
        d0 = self.dom0
        ip("-n", d0, "link", "set", "lo", "up")
        ip("-n", d0, "addr", "add", f"{address_of(0)}/32", "dev", "lo")
        for key in ("net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter",
                    "net.ipv4.ip_forward"):
            self._sysctl(d0, key, "1")
        for domid in self.guests:
            guest = self.namespace(domid)
            ip("netns", "add", guest)
            self.made.append(guest)
            link = f"{self.prefix}v{domid}"[-15:]
            ip("link", "add", link, "netns", d0, "type", "veth", "peer", "name", "eth0",
               "netns", guest)
            ip("-n", d0, "link", "set", link, "up")
            ip("-n", d0, "route", "add", f"{address_of(domid)}/32", "dev", link)
            ip("-n", guest, "link", "set", "lo", "up")
            ip("-n", guest, "addr", "add", f"{address_of(domid)}/32", "dev", "eth0")
            ip("-n", guest, "link", "set", "eth0", "up")
            ip("-n", guest, "route", "add", f"{address_of(0)}/32", "dev", "eth0")
            ip("-n", guest, "route", "add", "1.0.0.0/16", "via", address_of(0), "dev", "eth0")

    def close(self) -> None:
        """Delete every namespace made (their links go with them); bounded, never raises."""
        for namespace in reversed(self.made):
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                ip("netns", "del", namespace, check=False)
        self.made.clear()

    def exec_prefix(self, domid: int) -> list[str]:
        return ["ip", "netns", "exec", self.namespace(domid)]


class NamespacedDriver:
    """A ``Driver`` whose connections start from a namespace (a simulated guest); every other
    call goes to ``inner`` as is (the fd works from any thread once made)."""

    def __init__(self, inner: Driver, namespace: str) -> None:
        self.inner = inner
        self.namespace = namespace

    @property
    def name(self) -> str:
        return self.inner.name

    def connect(self, domain: int, port: int) -> tuple[int, bool]:
        return in_namespace(self.namespace, lambda: self.inner.connect(domain, port))

    def listen(self, port: int, partner: int | None) -> int:
        return in_namespace(self.namespace, lambda: self.inner.listen(port, partner))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def temporary_directory(prefix: str) -> Path:
    """A fresh directory others may enter (Unix sockets in it)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


# -- a client in a simulated guest -----------------------------------------------------------------

DIRECT_TIMEOUT = 20.0


def direct_client(endpoint: str, realm: str, procedure: str, args: Sequence[Any]) -> int:
    """Join ``realm`` through the client endpoint string ``endpoint`` with a real Autobahn
    client, call ``procedure``, print one JSON line: {"result": ...}, {"abort": reason} or
    {"error": ...}. Run in a guest's network namespace (``python -m tests.argo_support``)."""
    from tests.router_process import use_txaio

    use_txaio("twisted")
    from autobahn.twisted.rawsocket import WampRawSocketClientFactory
    from autobahn.twisted.wamp import ApplicationSession
    from autobahn.wamp.exception import ApplicationError
    from autobahn.wamp.serializer import JsonSerializer
    from autobahn.wamp.types import ComponentConfig
    from twisted.internet import reactor
    from twisted.internet.endpoints import clientFromString

    from serouter.argo import register_endpoint_plugins

    register_endpoint_plugins()
    outcome: dict[str, Any] = {}

    class Session(ApplicationSession):  # type: ignore[misc]
        async def onJoin(self, details: Any) -> None:
            outcome["session"] = details.session
            try:
                call_args = [details.session if a == "$session" else a for a in args]
                outcome["result"] = await self.call(procedure, *call_args)
            except ApplicationError as e:
                outcome["error"] = e.error
            self.leave()

        def onLeave(self, details: Any) -> None:
            if "session" not in outcome:
                outcome["abort"] = details.reason
            super().onLeave(details)

        def onDisconnect(self) -> None:
            if reactor.running:
                reactor.stop()

    def failed(failure: Any) -> None:
        outcome["error"] = failure.getErrorMessage()
        reactor.stop()

    factory = WampRawSocketClientFactory(lambda: Session(ComponentConfig(realm)),
                                         serializer=JsonSerializer())
    clientFromString(reactor, endpoint).connect(factory).addErrback(failed)
    reactor.callLater(DIRECT_TIMEOUT, reactor.stop)
    reactor.run()
    print(json.dumps(outcome), flush=True)
    return 0


if __name__ == "__main__":
    import sys

    # python -m tests.argo_support ENDPOINT REALM PROCEDURE [JSON-ARG...]
    sys.exit(direct_client(sys.argv[1], sys.argv[2], sys.argv[3],
                           [json.loads(a) for a in sys.argv[4:]]))
