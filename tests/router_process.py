"""The router as a real subprocess for end-to-end tests, and a hand-rolled RawSocket client.

``RouterProcess`` writes a TOML config with free loopback ports (or Unix sockets in a temp
dir), runs ``python -m serouter run -c FILE``, waits until every listener accepts connections
and stops the router with SIGTERM, keeping its exit code and its log. Every wait is bounded.
``router_fixture`` makes a pytest fixture of it, ``running`` a context for fixtures with their
own router class; trial TestCases call ``start`` and ``stop_cleanly`` from their set-up and
tear-down.

``RawWampClient`` and ``WsClient`` speak WAMP over RawSocket and WebSocket with blocking
sockets and hand-made frames, so tests can send exactly the bytes they mean, and still have
healthy sessions to prove the router keeps serving.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import cbor2
import msgpack
import pytest

ROOT = Path(__file__).resolve().parent.parent
SERIALIZERS = ("json", "msgpack", "cbor")
START_TIMEOUT = 30.0  # a generous bound: a loaded 2-core machine imports slowly
STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picked it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Listener:
    """One [[listeners]] table; ``endpoint`` None means TCP on a free loopback port."""

    transport: str
    name: str = ""
    serializers: Sequence[str] = SERIALIZERS
    path: str = "/ws"
    max_message_size: int | None = None
    handshake_timeout: float | None = None
    endpoint: str | None = None
    port: int = 0  # set at start for TCP listeners
    unix_path: str = ""  # set at start for "unix:" listeners

    def __post_init__(self) -> None:
        self.name = self.name or self.transport

    def toml(self) -> str:
        assert self.endpoint is not None
        lines = [
            "[[listeners]]",
            f"transport = {json.dumps(self.transport)}",
            f"endpoint = {json.dumps(self.endpoint)}",
            f"serializers = {json.dumps(list(self.serializers))}",
        ]
        if self.transport == "websocket":
            lines.append(f"path = {json.dumps(self.path)}")
        if self.max_message_size is not None:
            lines.append(f"max_message_size = {self.max_message_size}")
        if self.handshake_timeout is not None:
            lines.append(f"handshake_timeout = {self.handshake_timeout}")
        return "\n".join(lines) + "\n"

    def connect(self, timeout: float = 5.0) -> socket.socket:
        """A blocking socket connected to this listener, with ``timeout`` set."""
        if self.unix_path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(self.unix_path)
        else:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        sock.settimeout(timeout)
        return sock


def default_listeners() -> list[Listener]:
    return [Listener("websocket"), Listener("rawsocket")]


class RouterProcess:
    """A serouter subprocess: ``start()`` returns once every listener accepts connections."""

    def __init__(
        self,
        listeners: Sequence[Listener] | None = None,
        realms: Sequence[str] = ("realm1",),
        shutdown_timeout: float = 3.0,
        log_level: str = "info",
    ) -> None:
        self.listeners = list(listeners) if listeners is not None else default_listeners()
        self.realms = tuple(realms)
        self.shutdown_timeout = shutdown_timeout
        self.log_level = log_level
        self._tmp = tempfile.TemporaryDirectory(prefix="serouter-e2e-")
        self.dir = Path(self._tmp.name)
        self.config_path = self.dir / "serouter.toml"
        self.log_path = self.dir / "router.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        self._final_output: str | None = None
        self._terminated = False  # SIGTERM sent to the current process (once is enough)

    # -- configuration --------------------------------------------------------------------

    def _assign_addresses(self) -> None:
        for listener in self.listeners:
            if listener.endpoint is None or listener.port:
                listener.port = free_port()
                listener.endpoint = f"tcp:{listener.port}:interface=127.0.0.1"
            elif listener.endpoint.startswith("unix:"):
                listener.unix_path = listener.endpoint.split(":")[1]

    def config_text(self) -> str:
        realms = "".join(f"[[realms]]\nname = {json.dumps(r)}\n" for r in self.realms)
        return (
            f"[router]\nlog_level = {json.dumps(self.log_level)}\n"
            f"shutdown_timeout = {self.shutdown_timeout}\n"
            # a file must name its access backend; these tests are about the protocol
            '[access]\nbackend = "allow-all"\n'
            + realms
            + "".join(listener.toml() for listener in self.listeners)
        )

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> RouterProcess:
        """Run the router; retry with new ports if one was taken meanwhile (bounded)."""
        for _attempt in range(3):
            self.spawn()
            if self._wait_ready(timeout):
                return self
            if "in use" not in self.output:
                break
        output = self.output
        self.stop()
        raise RuntimeError(f"serouter did not start within {timeout} s; its output:\n{output}")

    def spawn(self) -> None:
        """Write the config and run the router, without waiting for anything."""
        self._assign_addresses()
        self.config_path.write_text(self.config_text())
        self._terminated = False
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "serouter", "run", "-c", str(self.config_path)],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.returncode = None

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        pending = list(self.listeners)
        while pending and time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                self.returncode = self.process.returncode
                return False
            try:
                pending[0].connect(timeout=0.5).close()
            except OSError:
                time.sleep(0.02)
            else:
                pending.pop(0)
        return not pending

    def terminate(self) -> None:
        """Send SIGTERM (the orderly shutdown); ``wait`` collects the exit code."""
        if self.process is not None and self.process.poll() is None and not self._terminated:
            self._terminated = True
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """The exit code, waiting at most ``timeout`` seconds, then killing the process."""
        assert self.process is not None
        try:
            self.returncode = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise AssertionError(
                f"serouter did not exit within {timeout} s of SIGTERM; killed. Output:\n"
                + self.output
            ) from None
        return self.returncode

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, then wait (bounded); returns the exit code (None if never started)."""
        if self.process is None:
            return None
        if self._final_output is not None:  # stopped already
            return self.returncode
        self.terminate()
        try:
            return self.wait(timeout)
        finally:
            self._final_output = self.output
            self._tmp.cleanup()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def output(self) -> str:
        """Everything the router printed so far (stdout and stderr)."""
        if self._final_output is not None:
            return self._final_output
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def internal_errors(self) -> list[str]:
        """Log lines that show a bug of the router rather than a peer's fault."""
        markers = ("Traceback", "Unhandled", "internal error", "#critical]")
        return [line for line in self.output.splitlines() if any(m in line for m in markers)]

    def __enter__(self) -> RouterProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses ------------------------------------------------------------------------

    def listener(self, name: str) -> Listener:
        for listener in self.listeners:
            if listener.name == name:
                return listener
        raise KeyError(name)

    def port(self, name: str) -> int:
        return self.listener(name).port

    def url(self, name: str) -> str:
        """ws://127.0.0.1:P/path or rs://127.0.0.1:P for a TCP listener."""
        listener = self.listener(name)
        if listener.transport == "websocket":
            return f"ws://127.0.0.1:{listener.port}{listener.path}"
        return f"rs://127.0.0.1:{listener.port}"


Scope = Literal["session", "package", "module", "class", "function"]


def stop_cleanly(router: RouterProcess, timeout: float = STOP_TIMEOUT) -> None:
    """Stop ``router``; it must exit 0 and have logged no internal errors."""
    output, errors = router.output, router.internal_errors()
    code = router.stop(timeout)
    assert code == 0, f"serouter exited {code}; output:\n{output}"
    assert not errors, "serouter logged internal errors:\n" + "\n".join(errors)


AnyRouter = TypeVar("AnyRouter", bound=RouterProcess)


@contextmanager
def running(router: AnyRouter, stop_timeout: float = STOP_TIMEOUT) -> Iterator[AnyRouter]:
    """Start ``router`` for the block; after it, ``stop_cleanly`` (a failing block just stops)."""
    router.start()
    try:
        yield router
    except BaseException:
        router.stop(stop_timeout)
        raise
    stop_cleanly(router, stop_timeout)


def router_fixture(scope: Scope = "module", **options: Any) -> Any:
    """A pytest fixture running one router for ``scope``; at teardown it must exit 0, cleanly."""

    @pytest.fixture(scope=scope)
    def fixture() -> Iterator[RouterProcess]:
        with running(RouterProcess(**options)) as router:
            yield router

    return fixture


def use_txaio(framework: str) -> None:
    """Point txaio (and so Autobahn) at "asyncio" or "twisted", even if the other was chosen.

    txaio refuses a second framework in one process because Autobahn's own test suite runs once
    per framework; here one pytest run holds both end-to-end modules, each test runs under one
    framework at a time, and Autobahn looks txaio's functions up at call time. So forget the
    earlier choice (txaio's only record of it) and choose again.
    """
    import txaio

    txaio._explicit_framework = None
    if framework == "asyncio":
        txaio.use_asyncio()
    else:
        txaio.use_twisted()


# -- a hand-rolled WAMP client over RawSocket ---------------------------------------------------

RAWSOCKET_IDS = {"json": 1, "msgpack": 2, "cbor": 3}
CODECS: dict[str, tuple[Callable[[Any], bytes], Callable[[bytes], Any]]] = {
    "json": (lambda obj: json.dumps(obj).encode(), json.loads),
    "msgpack": (lambda obj: msgpack.packb(obj, use_bin_type=True), msgpack.unpackb),
    "cbor": (cbor2.dumps, cbor2.loads),
}
ROLES: dict[str, dict[str, Any]] = {"caller": {}, "callee": {}, "publisher": {}, "subscriber": {}}


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    """``n`` bytes from ``sock``; raises EOFError if the peer closes first."""
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"connection closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def read_until_closed(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    """Everything the peer sends until it closes; socket.timeout if it never does."""
    data = b""
    while len(data) < limit:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"peer sent over {limit} bytes without closing")


class RawWampClient:
    """A blocking WAMP client over RawSocket: raw frames in, raw frames out."""

    def __init__(self, sock: socket.socket, serializer: str = "json") -> None:
        self.sock = sock
        self.serializer = serializer
        self.dumps, self.loads = CODECS[serializer]
        self.request = 0
        self.session_id = 0

    @classmethod
    def connect(
        cls, listener: Listener, serializer: str = "json", realm: str | None = "realm1",
        timeout: float = 5.0,
    ) -> RawWampClient:
        """Connect, do the RawSocket handshake and, unless ``realm`` is None, join it."""
        client = cls(listener.connect(timeout), serializer)
        client.handshake()
        if realm is not None:
            client.join(realm)
        return client

    def handshake(self, max_exp: int = 15) -> bytes:
        self.sock.sendall(bytes((0x7F, max_exp << 4 | RAWSOCKET_IDS[self.serializer], 0, 0)))
        reply = recv_exactly(self.sock, 4)
        assert reply[0] == 0x7F and reply[1] & 0x0F == RAWSOCKET_IDS[self.serializer], reply
        return reply

    def join(self, realm: str = "realm1") -> None:
        self.send([1, realm, {"roles": ROLES}])
        welcome = self.recv()
        assert welcome[0] == 2, welcome
        self.session_id = welcome[1]

    def next_request(self) -> int:
        self.request += 1
        return self.request

    def send_frame(self, payload: bytes, frame_type: int = 0) -> None:
        self.sock.sendall(bytes((frame_type,)) + len(payload).to_bytes(3, "big") + payload)

    def send(self, message: list[Any]) -> None:
        self.send_frame(self.dumps(message))

    def recv(self) -> list[Any]:
        """The next WAMP message (the router's keepalive pings are answered); EOFError if the
        router closed."""
        while True:
            header = recv_exactly(self.sock, 4)
            payload = recv_exactly(self.sock, int.from_bytes(header[1:], "big"))
            if header[0] == 0:
                return self.loads(payload)  # type: ignore[no-any-return]
            if header[0] == 1:
                self.send_frame(payload, frame_type=2)

    def request_reply(self, message: list[Any]) -> list[Any]:
        self.send(message)
        return self.recv()

    def register(self, procedure: str) -> int:
        reply = self.request_reply([64, self.next_request(), {}, procedure])
        assert reply[0] == 65, reply
        return int(reply[2])

    def subscribe(self, topic: str) -> int:
        reply = self.request_reply([32, self.next_request(), {}, topic])
        assert reply[0] == 33, reply
        return int(reply[2])

    def expect_closed(self, within: float = 2.0) -> bytes:
        """Whatever the router sends before closing; fails if it keeps the connection open."""
        self.sock.settimeout(within)
        try:
            return read_until_closed(self.sock)
        except TimeoutError:
            raise AssertionError("the router did not close the connection") from None

    def close(self) -> None:
        self.sock.close()


def echo_roundtrip(caller: RawWampClient, callee: RawWampClient, procedure: str) -> None:
    """``caller`` calls ``procedure`` that ``callee`` registered; the callee echoes by hand."""
    request = caller.next_request()
    caller.send([48, request, {}, procedure, ["ping", request]])
    invocation = callee.recv()
    assert invocation[0] == 68 and invocation[4] == ["ping", request], invocation
    callee.send([70, invocation[1], {}, invocation[4]])
    assert caller.recv() == [50, request, {}, ["ping", request]]


# -- a hand-rolled WAMP client over WebSocket --------------------------------------------------

OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def mask(payload: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def frame_header(opcode: int, length: int, *, fin: bool = True, masked: bool = True) -> bytes:
    first = bytes(((0x80 if fin else 0) | opcode,))
    bit = 0x80 if masked else 0
    if length < 126:
        return first + bytes((bit | length,))
    if length < 1 << 16:
        return first + bytes((bit | 126,)) + length.to_bytes(2, "big")
    return first + bytes((bit | 127,)) + length.to_bytes(8, "big")


def upgrade_request(
    port: int, path: str = "/ws", protocols: str | None = "wamp.2.json",
    upgrade: bool = True,
) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    if upgrade:
        key = base64.b64encode(os.urandom(16)).decode()
        lines += ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                  "Sec-WebSocket-Version: 13"]
    if protocols is not None:
        lines.append(f"Sec-WebSocket-Protocol: {protocols}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class WsClient:
    """A blocking WAMP-over-WebSocket client that writes its frames by hand."""

    def __init__(self, sock: socket.socket, subprotocol: str) -> None:
        self.sock = sock
        self.subprotocol = subprotocol
        self.dumps, self.loads = CODECS[subprotocol.removeprefix("wamp.2.")]
        self.binary = subprotocol != "wamp.2.json"  # text frames for JSON, else binary
        self.buf = b""
        self.request = 0

    @classmethod
    def open(
        cls, listener: Listener, subprotocol: str = "wamp.2.json", realm: str | None = "realm1"
    ) -> WsClient:
        client = cls(listener.connect(), subprotocol)
        client.sock.sendall(upgrade_request(listener.port, listener.path, subprotocol))
        while b"\r\n\r\n" not in client.buf:
            client.buf += client._recv_some()
        head, _, client.buf = client.buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
        assert f"Sec-WebSocket-Protocol: {subprotocol}".encode() in head, head
        if realm is not None:
            client.send([1, realm, {"roles": ROLES}])
            welcome = client.recv()
            assert welcome[0] == 2, welcome
        return client

    def _recv_some(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("the router closed the connection")
        return chunk

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            self.buf += self._recv_some()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send_frame(
        self, opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True
    ) -> None:
        header = frame_header(opcode, len(payload), fin=fin, masked=masked)
        if masked:
            key = os.urandom(4)
            self.sock.sendall(header + key + mask(payload, key))
        else:
            self.sock.sendall(header + payload)

    def recv_frame(self) -> tuple[int, bytes]:
        b0, b1 = self._read(2)
        assert not b1 & 0x80, "a server must not mask its frames"
        length = b1 & 0x7F
        if length == 126:
            length = int.from_bytes(self._read(2), "big")
        elif length == 127:
            length = int.from_bytes(self._read(8), "big")
        return b0 & 0x0F, self._read(length)

    def send(self, message: list[Any]) -> None:
        self.send_frame(OP_BINARY if self.binary else OP_TEXT, self.dumps(message))

    def recv(self) -> list[Any]:
        """The next WAMP message, in a frame of the subprotocol's type (the router's keepalive
        pings are answered)."""
        opcode, payload = self.recv_frame()
        while opcode in (OP_PING, OP_PONG):
            if opcode == OP_PING:
                self.send_frame(OP_PONG, payload)
            opcode, payload = self.recv_frame()
        assert opcode == (OP_BINARY if self.binary else OP_TEXT), (opcode, payload)
        return self.loads(payload)  # type: ignore[no-any-return]

    def next_request(self) -> int:
        self.request += 1
        return self.request

    def expect_close(self, code: int) -> str:
        """The next frame closes with ``code``, then the TCP connection ends; the reason."""
        opcode, payload = self.recv_frame()
        assert opcode == OP_CLOSE, (opcode, payload)
        assert int.from_bytes(payload[:2], "big") == code, payload
        assert self.expect_closed() == b""
        return payload[2:].decode()

    def expect_closed(self, within: float = 2.0) -> bytes:
        """What is left before the router closes; fails if it keeps the connection open."""
        self.sock.settimeout(within)
        try:
            rest = self.buf + read_until_closed(self.sock)
        except TimeoutError:
            raise AssertionError("the router did not close the connection") from None
        self.buf = b""
        return rest

    def close(self) -> None:
        self.sock.close()
