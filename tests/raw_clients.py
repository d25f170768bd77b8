"""Hand-rolled RawSocket and WebSocket clients for tests that need to send what real client
libraries never send.

``RawWampClient`` and ``WsClient`` speak WAMP over RawSocket and WebSocket with blocking
sockets and hand-made frames, so tests can send exactly the bytes they mean, and still have
healthy sessions to prove the router keeps serving. ``recv_exactly``, ``read_until_closed``,
``frame_header``, ``mask`` and ``upgrade_request`` are the pieces, for tests that go lower still;
``connect_as`` connects to a Unix socket as another uid (the peer credentials the router sees).
"""

from __future__ import annotations

import base64
import json
import os
import socket
from collections.abc import Callable
from typing import Any

import cbor2
import msgpack

from tests.router_process import Listener

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


def connect_as(path: str, uid: int, timeout: float = 5.0) -> socket.socket:
    """A Unix stream socket connected to ``path`` by a child process running as ``uid``:
    the router's SO_PEERCRED then says ``uid``, as the kernel recorded it at connect().
    The socket comes back over SCM_RIGHTS, blocking with ``timeout``; needs root."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    parent.settimeout(timeout)
    pid = os.fork()
    if pid == 0:  # the child: become uid, connect, hand the socket over, exit
        code = 1
        try:
            parent.close()
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(path)
            socket.send_fds(child, [b"s"], [sock.fileno()])
            code = 0
        finally:
            os._exit(code)
    child.close()
    try:
        _msg, fds, _flags, _addr = socket.recv_fds(parent, 1, 1)
    finally:
        parent.close()
        _pid, status = os.waitpid(pid, 0)
    assert fds and os.waitstatus_to_exitcode(status) == 0, "the child could not connect"
    sock = socket.socket(fileno=fds[0])
    sock.settimeout(timeout)
    return sock


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

    def hello(self, realm: str = "realm1") -> list[Any]:
        """HELLO; the reply, WELCOME (its session id kept) or ABORT."""
        self.send([1, realm, {"roles": ROLES}])
        reply = self.recv()
        if reply[0] == 2:
            self.session_id = reply[1]
        return reply

    def join(self, realm: str = "realm1") -> None:
        welcome = self.hello(realm)
        assert welcome[0] == 2, welcome

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

    def ask(self, message_type: int, *fields: Any) -> list[Any]:
        """A request (``message_type``, the next request id, ``fields``); the reply as received,
        ERROR included."""
        return self.request_reply([message_type, self.next_request(), *fields])

    def register(self, procedure: str) -> int:
        reply = self.ask(64, {}, procedure)
        assert reply[0] == 65, reply
        return int(reply[2])

    def subscribe(self, topic: str, options: dict[str, Any] | None = None) -> int:
        reply = self.ask(32, options or {}, topic)
        assert reply[0] == 33, reply
        return int(reply[2])

    def call(self, procedure: str, args: list[Any] | None = None) -> list[Any]:
        """CALL; the reply, RESULT or ERROR."""
        return self.ask(48, {}, procedure, args or [])

    def publish(self, topic: str, args: list[Any] | None = None, *,
                acknowledge: bool = False) -> None:
        """PUBLISH; an acknowledged one's PUBLISHED or ERROR is for ``recv``."""
        self.send([16, self.next_request(), {"acknowledge": acknowledge}, topic, args or []])

    def nothing_within(self, seconds: float = 0.3) -> bool:
        """True if the router sends nothing for ``seconds``."""
        timeout = self.sock.gettimeout()
        self.sock.settimeout(seconds)
        try:
            self.sock.recv(1, socket.MSG_PEEK)
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(timeout)
        return False

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
