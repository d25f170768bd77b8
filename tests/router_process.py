"""The router as a real subprocess for end-to-end tests.

``RouterProcess`` writes a TOML config with free loopback ports (or Unix sockets in a temp
dir), runs ``python -m serouter run -c FILE``, waits until every listener accepts connections
and stops the router with SIGTERM, keeping its exit code and its log. Every wait is bounded.
``router_fixture`` makes a pytest fixture of it, ``running`` a context for fixtures with their
own router class; trial TestCases call ``start`` and ``stop_cleanly`` from their set-up and
tear-down. The [access] table is a mapping (allow-all unless given), so the SELinux tests run
the same process with a policy. The hand-rolled wire clients that talk to it are in
``tests.raw_clients``.
"""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

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
    label: str | None = None  # the security context of every peer on this listener
    endpoint: str | None = None
    port: int = 0  # set at start for TCP listeners
    unix_path: str = ""  # set at start for "unix:" listeners

    def __post_init__(self) -> None:
        self.name = self.name or self.transport

    def assign_address(self) -> None:
        """A free loopback port for a TCP listener (a new one each time); a Unix listener's
        path from its endpoint."""
        if self.endpoint is None or self.port:
            self.port = free_port()
            self.endpoint = self.tcp_endpoint()
        elif self.endpoint.startswith("unix:"):
            self.unix_path = self.endpoint.split(":")[1]

    def tcp_endpoint(self) -> str:
        """The endpoint string of a TCP listener on ``self.port``."""
        return f"tcp:{self.port}:interface=127.0.0.1"

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
        if self.label is not None:
            lines.append(f"label = {json.dumps(self.label)}")
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


def toml_table(name: str, table: Mapping[str, Any]) -> str:
    """``[name]`` with ``table``'s keys; a value that is a mapping itself becomes the subtable
    ``[name.key]`` (``{"uid_labels": {1001: A}}`` is ``[access.uid_labels]``)."""
    text = f"[{name}]\n"
    subtables = ""
    for key, value in table.items():
        if isinstance(value, Mapping):
            subtables += toml_table(f"{name}.{toml_key(key)}", value)
        else:
            text += f"{toml_key(key)} = {json.dumps(value)}\n"
    return text + subtables


def toml_key(key: object) -> str:
    text = str(key)
    return text if text and all(c.isalnum() or c in "_-" for c in text) else json.dumps(text)


class RouterProcess:
    """A serouter subprocess: ``start()`` returns once every listener accepts connections."""

    def __init__(
        self,
        listeners: Sequence[Listener] | None = None,
        realms: Sequence[str] = ("realm1",),
        shutdown_timeout: float = 3.0,
        log_level: str = "info",
        access: Mapping[str, Any] | None = None,
    ) -> None:
        self.listeners = list(listeners) if listeners is not None else default_listeners()
        self.realms = tuple(realms)
        self.shutdown_timeout = shutdown_timeout
        self.log_level = log_level
        # a file must name its access backend; most of these tests are about the protocol
        self.access = dict(access) if access is not None else {"backend": "allow-all"}
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
            listener.assign_address()

    def config_text(self) -> str:
        realms = "".join(f"[[realms]]\nname = {json.dumps(r)}\n" for r in self.realms)
        return (
            f"[router]\nlog_level = {json.dumps(self.log_level)}\n"
            f"shutdown_timeout = {self.shutdown_timeout}\n"
            + toml_table("access", self.access)
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

    def sighup(self, expect: str, timeout: float = 10.0) -> None:
        """Send SIGHUP and wait until the log shows ``expect`` once more than before."""
        before = self.output.count(expect)
        assert self.process is not None
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while self.output.count(expect) <= before:
            assert time.monotonic() < deadline, f"no {expect!r} after SIGHUP:\n{self.output}"
            time.sleep(0.05)

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
