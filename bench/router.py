"""Start (or attach to) the router under test, pinned to its own core, and read its CPU time.

Never sends the router anything itself: the sessions of ``bench.loadgen`` do.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import selinux as bench_selinux
from bench.procstat import process_cpu_seconds
from bench.selinux import LABEL
from bench.wire import BenchError

CONFIG_TEMPLATE = """\
[router]
log_level = "warn"

{access}
[[realms]]
name = "{realm}"

[[listeners]]
transport = "websocket"
endpoint = "tcp:{ws_port}:interface={host}"
path = "{ws_path}"
serializers = ["{serializer}"]
{label}
[[listeners]]
transport = "rawsocket"
endpoint = "tcp:{rs_port}:interface={host}"
serializers = ["{serializer}"]
{label}"""
ALLOW_ALL = '[access]\nbackend = "allow-all"\n'

DEFAULT_COMMAND = "{python} -m serouter run -c {config}"


def free_port(host: str) -> int:
    """A TCP port nobody listens on right now (the router binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def pin(pid: int, cpu: int | None) -> None:
    """Pin ``pid`` (0: this process) to one CPU, if the machine has it."""
    if cpu is not None and cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(pid, {cpu})


def pin_threads(pid: int, cpu: int | None) -> None:
    """Pin every thread of process ``pid`` (threads started later inherit the affinity)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        pin(int(tid), cpu)


def wait_listening(host: str, ports: list[int], timeout: float, alive: Router | None) -> None:
    """Wait until every port accepts a TCP connection, or fail (also if the router exits)."""
    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            try:
                with socket.create_connection((host, port), timeout=1):
                    break
            except OSError:
                pass
            if alive is not None:
                alive.check()
            if time.monotonic() > deadline:
                raise BenchError(f"the router did not listen on {host}:{port} within {timeout} s")
            time.sleep(0.05)


@dataclass
class Router:
    """The router under test: a child process we started, or a process we attached to."""

    pid: int
    host: str
    rawsocket_port: int
    websocket_port: int
    command: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    _tmpdir: tempfile.TemporaryDirectory[str] | None = None

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    def check(self) -> None:
        """Fail with the end of the router's log if the child process has exited."""
        if self.process is not None and self.process.poll() is not None:
            raise BenchError(
                f"the router exited with status {self.process.returncode}\n" + self.log_tail()
            )

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(f"  router| {line}" for line in text[-lines:])

    def log_problems(self) -> list[str]:
        """Lines in the router's log that look like errors (tracebacks, failures)."""
        if self.log_path is None or not self.log_path.exists():
            return []
        words = ("traceback", "error", "exception", "unhandled", "critical")
        text = self.log_path.read_text(errors="replace").splitlines()
        return [line for line in text if any(w in line.lower() for w in words)]

    def stop(self) -> None:
        """Terminate a router we started (SIGTERM, then SIGKILL after 10 s)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None


def start_router(
    command: str | None,
    *,
    host: str,
    serializer: str,
    realm: str,
    ws_path: str,
    cpu: int | None,
    selinux: bool = False,
) -> Router:
    """Write a config with free ports, start the router pinned to ``cpu``, wait for its ports.

    With ``selinux``, the router decides every action with a compiled policy (bench.selinux).
    """
    tmp = tempfile.TemporaryDirectory(prefix="serouter-bench-")
    rs_port, ws_port = free_port(host), free_port(host)
    config = Path(tmp.name) / "router.toml"
    access, label = ALLOW_ALL, ""
    if selinux:
        access, label = bench_selinux.access_section(Path(tmp.name)), f'label = "{LABEL}"\n'
    config.write_text(
        CONFIG_TEMPLATE.format(
            access=access,
            label=label,
            realm=realm,
            host=host,
            ws_port=ws_port,
            rs_port=rs_port,
            ws_path=ws_path,
            serializer=serializer,
        )
    )
    argv = shlex.split(
        (command or DEFAULT_COMMAND).format(
            python=shlex.quote(sys.executable),
            config=shlex.quote(str(config)),
            rs_port=rs_port,
            ws_port=ws_port,
            host=host,
            realm=realm,
        )
    )
    log_path = Path(tmp.name) / "router.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    router = Router(process.pid, host, rs_port, ws_port, argv, process, log_path, tmp)
    try:
        pin_threads(process.pid, cpu)  # Popen returns after exec: the router has no threads yet
        wait_listening(host, [rs_port, ws_port], 30.0, router)
        pin_threads(process.pid, cpu)
    except BaseException:
        router.stop()
        raise
    return router
