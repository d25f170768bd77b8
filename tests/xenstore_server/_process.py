"""The test xenstored as a subprocess, and a blocking raw-wire client to poke it with.

``XenstoredProcess`` runs ``python -m tests.xenstored`` with dom0's socket and one socket per
guest domain in a fresh temporary directory (short, for the 108-byte Unix path limit), waits
for ``ready`` and stops it with SIGTERM; every wait is bounded. ``env(domid)`` is the
environment under which Xen's tools (and serouter) talk to it as that domain.

``RawClient`` sends hand-made packets with its own struct packing (not the server's, not
serouter's), keeping watch events apart from replies, so tests state the bytes they mean.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
_HEADER = struct.Struct("<IIII")


class XenstoredProcess:
    """``python -m tests.xenstored`` for domains ``domains`` (domid -> (name, uuid or None))."""

    def __init__(
        self,
        domains: Mapping[int, tuple[str, str | None]] | None = None,
        writes: Mapping[str, str] | None = None,
    ) -> None:
        self.domains = dict(domains or {})
        self.writes = dict(writes or {})
        self.dir = Path(tempfile.mkdtemp(prefix="xs", dir="/tmp"))
        self.socket = str(self.dir / "socket")
        self.process: subprocess.Popen[bytes] | None = None

    def domain_socket(self, domid: int) -> str:
        return self.socket if domid == 0 else str(self.dir / f"domain{domid}")

    def env(self, domid: int = 0) -> dict[str, str]:
        return {**os.environ, "XENSTORED_PATH": self.domain_socket(domid)}

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "tests.xenstored", "--socket", self.socket]
        for domid, (name, uuid) in self.domains.items():
            command += ["--domain-socket", f"{domid}={self.domain_socket(domid)}"]
            command += ["--domain", f"{domid}={name}" + (f":{uuid}" if uuid else "")]
        for path, value in self.writes.items():
            command += ["--write", f"{path}={value}"]
        return command

    def start(self) -> XenstoredProcess:
        with open(self.dir / "log", "wb") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=ROOT, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=log,
            )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], START_TIMEOUT)
        line = self.process.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            log_text = self.log()
            self.stop()
            raise RuntimeError(f"tests.xenstored did not start: {line!r}\n{log_text}")
        return self

    def log(self) -> str:
        """What the server wrote to stderr (tracebacks, if any)."""
        try:
            return (self.dir / "log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> int | None:
        process, self.process = self.process, None
        code = None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait(STOP_TIMEOUT)
            if process.stdout is not None:
                process.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return code

    def __enter__(self) -> XenstoredProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


class RawClient:
    """A blocking client: ``call`` returns (type, payload) of the reply to one request."""

    def __init__(self, path: str, timeout: float = 5.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.events: list[tuple[str, str]] = []
        self._buffer = b""
        self._next_id = 100

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def send(self, op: int, payload: bytes, tx_id: int = 0, req_id: int | None = None) -> int:
        if req_id is None:
            self._next_id += 1
            req_id = self._next_id
        self.sock.sendall(_HEADER.pack(op, req_id, tx_id, len(payload)) + payload)
        return req_id

    def receive(self) -> tuple[int, int, int, bytes]:
        while True:
            if len(self._buffer) >= 16:
                op, req_id, tx_id, length = _HEADER.unpack_from(self._buffer)
                if len(self._buffer) >= 16 + length:
                    payload = self._buffer[16 : 16 + length]
                    self._buffer = self._buffer[16 + length :]
                    return op, req_id, tx_id, payload
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("xenstored closed the connection")
            self._buffer += data

    def call(self, op: int, *args: bytes | str, tx_id: int = 0, raw: bytes | None = None
             ) -> tuple[int, bytes]:
        """One request with nul-terminated ``args`` (or ``raw`` payload); watch events that
        arrive first are kept in ``events``."""
        payload = raw if raw is not None else _strings(args)
        req_id = self.send(op, payload, tx_id)
        while True:
            r_op, r_id, r_tx, r_payload = self.receive()
            if r_op == 15:  # WATCH_EVENT
                self.events.append(_event(r_payload, r_id, r_tx))
                continue
            assert (r_id, r_tx) == (req_id, tx_id), (r_id, r_tx, req_id, tx_id)
            return r_op, r_payload

    def next_event(self, timeout: float = 2.0) -> tuple[str, str] | None:
        """The next watch event (kept or new), or None if none comes within ``timeout``."""
        if self.events:
            return self.events.pop(0)
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.05)
        try:
            while time.monotonic() < deadline:
                try:
                    op, r_id, r_tx, payload = self.receive()
                except TimeoutError:
                    continue
                assert op == 15, (op, payload)
                return _event(payload, r_id, r_tx)
            return None
        finally:
            self.sock.settimeout(5.0)


def _strings(args: Sequence[bytes | str]) -> bytes:
    return b"".join((a.encode() if isinstance(a, str) else a) + b"\0" for a in args)


def _event(payload: bytes, req_id: int, tx_id: int) -> tuple[str, str]:
    assert (req_id, tx_id) == (0, 0), "watch events carry request and transaction id 0"
    path, token, rest = payload.split(b"\0")
    assert rest == b""
    return path.decode(), token.decode()
