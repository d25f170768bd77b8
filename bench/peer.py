"""One WAMP client session of the load generator over a plain TCP socket.

Setup and teardown (handshake, HELLO, REGISTER, SUBSCRIBE, GOODBYE) are blocking with a timeout,
so a router that does not answer fails with a message naming the step. During a measurement the
socket is non-blocking and driven by a ``selectors`` loop in ``bench.loadgen``. Never used to
check the router's conformance: it accepts what the benchmark needs and nothing else.
"""

from __future__ import annotations

import selectors
import socket
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from bench.wire import (
    BenchError,
    Codec,
    Framing,
    RawSocketFraming,
    WebSocketFraming,
    check_rawsocket_reply,
    check_websocket_response,
    rawsocket_hello,
    websocket_request,
)

HELLO, WELCOME, ABORT, GOODBYE, ERROR = 1, 2, 3, 6, 8
MESSAGE_NAMES = {
    1: "HELLO", 2: "WELCOME", 3: "ABORT", 6: "GOODBYE", 8: "ERROR", 16: "PUBLISH",
    17: "PUBLISHED", 32: "SUBSCRIBE", 33: "SUBSCRIBED", 34: "UNSUBSCRIBE", 35: "UNSUBSCRIBED",
    36: "EVENT", 48: "CALL", 50: "RESULT", 64: "REGISTER", 65: "REGISTERED", 68: "INVOCATION",
    70: "YIELD",
}  # fmt: skip
ROLES: dict[str, dict[str, Any]] = {"caller": {}, "callee": {}, "publisher": {}, "subscriber": {}}
RECV_SIZE = 1 << 18


@dataclass(frozen=True, slots=True)
class Target:
    """Where the router listens."""

    host: str
    rawsocket_port: int | None
    websocket_port: int | None
    websocket_path: str
    realm: str


def name_of(message_type: object) -> str:
    """The spec's name for a message type code, for error messages."""
    if isinstance(message_type, int):
        return MESSAGE_NAMES.get(message_type, repr(message_type))
    return repr(message_type)


def describe(peer_name: str, message: Any) -> str:
    """Say what an unexpected message from the router was, as precisely as possible."""
    if isinstance(message, list) and message and message[0] == ERROR and len(message) >= 5:
        extra = f" args={message[5]!r}" if len(message) > 5 else ""
        extra += f" kwargs={message[6]!r}" if len(message) > 6 else ""
        return (
            f"{peer_name}: router answered {name_of(message[1])} request {message[2]!r} with "
            f"ERROR {message[4]!r} details={message[3]!r}{extra}"
        )
    if isinstance(message, list) and message and message[0] in (ABORT, GOODBYE):
        return f"{peer_name}: router sent {name_of(message[0])} {message[1:]!r}"
    head = name_of(message[0]) if isinstance(message, list) and message else "?"
    return f"{peer_name}: unexpected message from the router ({head}): {message!r:.300}"


class Peer:
    """A WAMP session's socket, framing and codec; counts its own request IDs from 1."""

    def __init__(self, name: str, sock: socket.socket, framing: Framing, codec: Codec) -> None:
        self.name = name
        self.sock = sock
        self.framing = framing
        self.codec = codec
        self.session_id = 0
        self.next_request = 1
        self._queued: deque[Any] = deque()  # messages read in blocking mode, not yet consumed
        self._out = bytearray()
        self._selector: selectors.BaseSelector | None = None
        self._handler: Any = None

    # --- blocking phase (setup, teardown) ---------------------------------------------------

    def request_id(self) -> int:
        """Take the next request ID of this session."""
        request = self.next_request
        self.next_request += 1
        return request

    def request_ids(self, count: int) -> range:
        """Take the next ``count`` request IDs of this session."""
        first = self.next_request
        self.next_request = first + count
        return range(first, first + count)

    def send_now(self, *messages: list[Any]) -> None:
        """Send messages at once, blocking (setup and teardown only)."""
        frame, dumps = self.framing.frame, self.codec.dumps
        self.sock.sendall(b"".join(frame(dumps(m)) for m in messages))

    def expect(self, message_type: int, timeout: float, what: str) -> list[Any]:
        """Wait for a message of ``message_type``; anything else first is the router's fault."""
        message = self.receive(timeout, what)
        if not isinstance(message, list) or not message or message[0] != message_type:
            raise BenchError(describe(self.name, message) + f" (while waiting for {what})")
        return message

    def receive(self, timeout: float, what: str) -> Any:
        """Wait (blocking) for the next message from the router."""
        deadline = time.monotonic() + timeout
        while not self._queued:
            if self.framing.closed is not None:
                raise BenchError(
                    f"{self.name}: router sent {self.framing.closed} (waiting for {what})"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(
                    f"{self.name}: no answer from the router within {timeout} s "
                    f"(waiting for {what})"
                )
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(RECV_SIZE)
            except TimeoutError:
                continue
            except OSError as exc:
                raise BenchError(f"{self.name}: {exc} (waiting for {what})") from exc
            if not data:
                raise BenchError(f"{self.name}: router closed the connection (waiting for {what})")
            self._queued.extend(self._decode(data))
        return self._queued.popleft()

    def join(self, realm: str, timeout: float) -> None:
        """HELLO -> WELCOME."""
        self.send_now([HELLO, realm, {"roles": ROLES}])
        welcome = self.expect(WELCOME, timeout, "WELCOME")
        self.session_id = welcome[1]

    def leave(self, timeout: float) -> list[str]:
        """GOODBYE -> GOODBYE; return the names of other messages that came before the reply."""
        self.to_blocking()
        self.send_now([GOODBYE, {}, "wamp.close.close_realm"])
        late: list[str] = []
        while True:
            message = self.receive(timeout, "the GOODBYE reply")
            kind = message[0] if isinstance(message, list) and message else None
            if kind == GOODBYE:
                return late
            if kind == ABORT:
                raise BenchError(describe(self.name, message) + " (after our GOODBYE)")
            late.append(name_of(kind) if kind != ERROR else describe(self.name, message))

    def close(self) -> None:
        """Close the socket (after GOODBYE, or on error)."""
        if self._selector is not None:
            self._selector.unregister(self.sock)
            self._selector = None
        self.sock.close()

    # --- non-blocking phase (measurement) ----------------------------------------------------

    def attach(self, selector: selectors.BaseSelector, handler: Any) -> None:
        """Go non-blocking and call ``handler(mask)`` when the socket is ready."""
        self.sock.setblocking(False)
        self._selector, self._handler = selector, handler
        selector.register(self.sock, selectors.EVENT_READ, handler)

    def to_blocking(self) -> None:
        """Leave the selector loop: flush what is unsent, then block with timeouts again."""
        if self._selector is not None:
            self._selector.unregister(self.sock)
            self._selector = None
        self.sock.setblocking(True)
        if self._out:
            self.sock.sendall(self._out)
            self._out.clear()

    def take_queued(self) -> list[Any]:
        """Messages read during setup that the measurement loop must still handle."""
        queued = list(self._queued)
        self._queued.clear()
        return queued

    def read(self) -> list[Any]:
        """Read what the socket has (non-blocking); return the decoded WAMP messages."""
        try:
            data = self.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return []
        except OSError as exc:
            raise BenchError(f"{self.name}: {exc}") from exc
        if not data:
            raise BenchError(f"{self.name}: router closed the connection")
        messages = self._decode(data)
        if not messages and self.framing.closed is not None:
            raise BenchError(f"{self.name}: router sent {self.framing.closed}")
        return messages

    def write(self, data: bytes) -> None:
        """Send without blocking; keep what the socket did not take for ``flush``."""
        if self._out:
            self._out += data
            return
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise BenchError(f"{self.name}: {exc}") from exc
        if sent < len(data):
            self._out += data[sent:]
            self._want_write(True)

    def flush(self) -> None:
        """Send what ``write`` kept back (the socket became writable)."""
        try:
            sent = self.sock.send(self._out)
        except BlockingIOError:
            return
        except OSError as exc:
            raise BenchError(f"{self.name}: {exc}") from exc
        del self._out[:sent]
        if not self._out:
            self._want_write(False)

    def _want_write(self, on: bool) -> None:
        if self._selector is not None:
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if on else 0)
            self._selector.modify(self.sock, events, self._handler)

    def _decode(self, data: bytes) -> list[Any]:
        payloads = self.framing.feed(data)
        if self.framing.control_out:
            control = bytes(self.framing.control_out)
            self.framing.control_out.clear()
            if self._selector is None:
                self.sock.sendall(control)
            else:
                self.write(control)
        loads = self.codec.loads
        return [loads(p) for p in payloads]


def connect(target: Target, transport: str, codec: Codec, name: str, timeout: float) -> Peer:
    """Open a connection, do the transport's opening handshake, and return the peer (not joined)."""
    port = target.rawsocket_port if transport == "rawsocket" else target.websocket_port
    if port is None:
        raise BenchError(f"no {transport} port given for the router")
    try:
        sock = socket.create_connection((target.host, port), timeout=timeout)
    except OSError as exc:
        raise BenchError(f"{name}: cannot connect to {target.host}:{port}: {exc}") from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    framing: Framing
    try:
        if transport == "rawsocket":
            sock.sendall(rawsocket_hello(codec))
            check_rawsocket_reply(_recv_exactly(sock, 4), codec)
            framing, leftover = RawSocketFraming(), b""
        else:
            request, accept = websocket_request(target.host, port, target.websocket_path, codec)
            sock.sendall(request)
            head, leftover = _recv_head(sock)
            check_websocket_response(head, accept, codec)
            framing = WebSocketFraming(codec.ws_opcode)
    except TimeoutError as exc:
        sock.close()
        raise BenchError(f"{name}: {transport} opening handshake timed out") from exc
    except BaseException:
        sock.close()
        raise
    peer = Peer(name, sock, framing, codec)
    if leftover:
        peer._queued.extend(peer._decode(leftover))
    return peer


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise BenchError(f"router closed the connection during the handshake after {data!r}")
        data += chunk
    return data


def _recv_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise BenchError(f"router closed the connection during the upgrade: {data!r:.300}")
        data += chunk
        if len(data) > 65536:
            raise BenchError("WebSocket upgrade: response head larger than 64 KiB")
    head, _, leftover = data.partition(b"\r\n\r\n")
    return head, leftover
