"""Plumbing for the hardening tests and the soak run: a router subprocess with limits in its
configuration, its memory from /proc, and clients that misbehave on purpose.

``LimitedRouter`` is a ``RouterProcess`` whose listeners and realms take any extra TOML keys
(``max_queued_bytes``, ``ping_interval``, ``max_connections``...) and whose listeners may bind
another address than 127.0.0.1 (a veth for the half-open TCP test). ``rss_kib`` reads a
process's resident set; ``RssSampler`` samples it in a thread (the peak of a flood).
``raise_fd_limit`` lifts this process's RLIMIT_NOFILE to its hard limit, which a router
spawned afterwards inherits.
"""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.raw_clients import ROLES, RawWampClient
from tests.router_process import Listener, RouterProcess


def _toml_value(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


@dataclass
class LimitedListener(Listener):
    """A listener with extra keys (``options``), on ``host`` (default 127.0.0.1)."""

    options: Mapping[str, Any] = field(default_factory=dict)
    host: str = "127.0.0.1"
    # Twisted listens with a backlog of 50: bursts of connections past it have SYNs dropped
    # and retried a second later. The tests open connections in bursts.
    backlog: int = 1024

    def tcp_endpoint(self) -> str:
        return f"tcp:{self.port}:interface={self.host}:backlog={self.backlog}"

    def toml(self) -> str:
        extra = "".join(f"{k} = {_toml_value(v)}\n" for k, v in self.options.items())
        return super().toml() + extra

    def connect(self, timeout: float = 5.0) -> socket.socket:
        if self.unix_path:
            return super().connect(timeout)
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        sock.settimeout(timeout)
        return sock


class LimitedRouter(RouterProcess):
    """A router subprocess whose realms carry extra keys (``realm_options``)."""

    def __init__(
        self,
        listeners: Sequence[Listener],
        realms: Sequence[str] = ("realm1",),
        realm_options: Mapping[str, Any] | None = None,
        extra_toml: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(listeners, realms=(), **kwargs)
        self.realm_names = tuple(realms)
        self.realm_options = dict(realm_options or {})
        self.extra_toml = extra_toml

    def config_text(self) -> str:
        extra = "".join(f"{k} = {_toml_value(v)}\n" for k, v in self.realm_options.items())
        realms = "".join(f"[[realms]]\nname = {json.dumps(r)}\n{extra}" for r in self.realm_names)
        return super().config_text() + realms + self.extra_toml

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def count(self, text: str) -> int:
        """How many lines of the router's log contain ``text``."""
        return sum(text in line for line in self.output.splitlines())


def rss_kib(pid: int) -> int:
    """VmRSS of process ``pid`` in KiB (/proc/<pid>/status)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


class RssSampler:
    """Samples a process's RSS every ``interval`` seconds in a thread; ``peak`` in KiB."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(rss_kib(self.pid))
            except (OSError, RuntimeError):
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    @property
    def peak(self) -> int:
        return max(self.samples, default=0)


def settle_rss(router: LimitedRouter, seconds: float = 0.6) -> int:
    """The router's RSS once it has been quiet for a moment (KiB)."""
    time.sleep(seconds)
    return router.rss_kib()


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards ``wanted`` (children inherit it);
    returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(max(soft, wanted), hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


@contextmanager
def fd_limit(wanted: int) -> Iterator[int]:
    """``raise_fd_limit`` for a while, then back."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        yield raise_fd_limit(wanted)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


def joined(listener: Listener, serializer: str = "json", realm: str = "realm1",
           rcvbuf: int | None = None) -> RawWampClient:
    """A RawSocket client that joined ``realm``; ``rcvbuf`` shrinks its receive buffer
    (set before connecting, so the window the router sees is small too)."""
    if rcvbuf is None:
        return RawWampClient.connect(listener, serializer, realm)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(5)
    sock.connect((getattr(listener, "host", "127.0.0.1"), listener.port))
    client = RawWampClient(sock, serializer)
    client.handshake()
    client.join(realm)
    return client


def meta_subscribe(client: RawWampClient, *topics: str) -> dict[int, str]:
    """Subscribe ``client`` to meta topics; subscription ID -> topic."""
    return {client.subscribe(topic): topic for topic in topics}


def hello_frame(realm: str = "realm1") -> bytes:
    """A RawSocket handshake (JSON, 16 MiB) and HELLO in one write: what a minimal client
    sends to join."""
    hello = json.dumps([1, realm, {"roles": ROLES}]).encode()
    return b"\x7f\xf1\x00\x00" + len(hello).to_bytes(4, "big") + hello


# -- a client in its own process, to be killed ----------------------------------------------------

# Standard library only, so it starts in a few tens of milliseconds. It joins over RawSocket or
# WebSocket (JSON), registers or subscribes, prints "ready <session id>", then answers the
# router's pings (RawSocket and WebSocket) and ignores everything else, until killed.
CLIENT_SCRIPT = r'''
import base64, json, os, socket, sys
host, port, transport, role, uri = sys.argv[1:6]
sock = socket.create_connection((host, int(port)), timeout=10)
buf = b""
def read(n):
    global buf
    while len(buf) < n:
        chunk = sock.recv(65536)
        if not chunk:
            sys.exit(0)
        buf += chunk
    out, buf = buf[:n], buf[n:]
    return out
def send(message, opcode=0x1, raw=None):
    data = raw if raw is not None else json.dumps(message).encode()
    if transport == "rawsocket":
        sock.sendall(bytes((0 if raw is None else 2,)) + len(data).to_bytes(3, "big") + data)
        return
    head = bytes((0x80 | opcode,))
    n = len(data)
    head += bytes((0x80 | n,)) if n < 126 else bytes((0xFE,)) + n.to_bytes(2, "big")
    key = os.urandom(4)
    sock.sendall(head + key + bytes(b ^ key[i % 4] for i, b in enumerate(data)))
def frame():
    if transport == "rawsocket":
        head = read(4)
        return head[0], read(int.from_bytes(head[1:], "big"))
    b0, b1 = read(2)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(read(2), "big")
    elif n == 127:
        n = int.from_bytes(read(8), "big")
    return b0 & 0x0F, read(n)
def message():
    while True:
        kind, body = frame()
        if (transport, kind) in (("rawsocket", 0), ("websocket", 1)):
            return json.loads(body)
        if (transport, kind) == ("rawsocket", 1):
            send(None, raw=body)
        elif (transport, kind) == ("websocket", 9):
            send(None, opcode=0xA, raw=body)
if transport == "rawsocket":
    sock.sendall(b"\x7f\xf1\x00\x00")
    read(4)
else:
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                  "Sec-WebSocket-Protocol: wamp.2.json\r\n\r\n").encode())
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    buf = buf.split(b"\r\n\r\n", 1)[1]
roles = {"callee": {}, "subscriber": {}, "caller": {}, "publisher": {}}
send([1, "realm1", {"roles": roles}])
welcome = message()
send([64 if role == "callee" else 32, 1, {}, uri])
reply = message()
assert reply[0] in (65, 33), reply
sock.settimeout(None)
print("ready", welcome[1], flush=True)
while True:
    message()
'''


def spawn_client(host: str, port: int, transport: str, role: str, uri: str, *,
                 prefix: Sequence[str] = ()) -> tuple[Any, int]:
    """Start CLIENT_SCRIPT (``prefix``: e.g. ``ip netns exec NS``); returns (process, its
    session ID) once it is ready."""
    process = subprocess.Popen(
        [*prefix, sys.executable, "-c", CLIENT_SCRIPT, host, str(port), transport, role, uri],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("ready "):
        process.kill()
        _, err = process.communicate(timeout=5)
        raise RuntimeError(f"client did not get ready: {line!r} {err}")
    return process, int(line.split()[1])
