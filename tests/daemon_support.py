"""``serouter run`` as systemd starts it: a NOTIFY_SOCKET the test listens on, sockets passed
the way systemd passes them (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES), signals for reload and
stop, and a configuration file the test rewrites between reloads.

systemd checks LISTEN_PID against the pid it execs; so does Twisted. The test cannot know the
daemon's pid before it exists, so a two-line launcher (``_AS_SYSTEMD``) moves the passed sockets
to fds 3, 4, ..., sets LISTEN_PID to its own pid and execs the daemon in the same process, as
``systemd-socket-activate`` does.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tests.router_process import ROOT, Listener

STEP = 30.0  # seconds any single wait may take (a loaded 2-core machine imports slowly)

_AS_SYSTEMD = r"""
import fcntl, os, sys
fds = [int(fd) for fd in sys.argv[1].split(",") if fd]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]  # out of the way of 3, 4, ...
for target, fd in enumerate(high, 3):
    os.dup2(fd, target)
    os.close(fd)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS=str(len(fds)))
if sys.argv[2]:
    os.environ["LISTEN_FDNAMES"] = sys.argv[2]
os.execv(sys.executable, [sys.executable, *sys.argv[3:]])
"""

_names = itertools.count()

# A configuration every test can start from: one realm, a rawsocket listener added by the test.
HEAD = """\
[router]
shutdown_timeout = 2.0
[access]
backend = "allow-all"
"""


def rawsocket(endpoint: str) -> str:
    return f'[[listeners]]\ntransport = "rawsocket"\nendpoint = "{endpoint}"\n'


def realms(*names: str) -> str:
    return "".join(f'[[realms]]\nname = "{name}"\n' for name in names)


def tcp_listener(port: int) -> Listener:
    listener = Listener("rawsocket", endpoint=f"tcp:{port}:interface=127.0.0.1")
    listener.port = port
    return listener


def unix_listener(path: Path) -> Listener:
    listener = Listener("rawsocket", endpoint=f"unix:{path}")
    listener.unix_path = str(path)
    return listener


class NotifySocket:
    """The datagram socket systemd would listen on (abstract namespace: no path length)."""

    def __init__(self) -> None:
        self.name = f"@serouter-test-{os.getpid()}-{next(_names)}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name[1:])
        self.received: list[dict[str, str]] = []

    def next(self, timeout: float = STEP) -> dict[str, str]:
        """The next notice, as its KEY=value lines."""
        self.sock.settimeout(timeout)
        data = self.sock.recv(4096).decode()
        notice = dict(line.split("=", 1) for line in data.split("\n") if line)
        self.received.append(notice)
        return notice

    def until(self, key: str, timeout: float = STEP) -> list[dict[str, str]]:
        """Notices up to and including the first with ``key``."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, str]] = []
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {key} within {timeout} s; got {seen}"
            notice = self.next(remaining)
            seen.append(notice)
            if key in notice:
                return seen

    def close(self) -> None:
        self.sock.close()


class Daemon:
    """One ``serouter run -c FILE`` subprocess."""

    def __init__(
        self,
        directory: Path,
        config: str,
        *,
        watchdog_usec: int | None = None,
        sockets: Sequence[tuple[str, socket.socket]] = (),
        args: Sequence[str] = (),
    ) -> None:
        """``sockets``: (name, listening socket) passed as systemd passes them."""
        self.directory = directory
        self.config = directory / "serouter.toml"
        self.config.write_text(config)
        self.log = directory / "router.log"
        self.notify = NotifySocket()
        self.watchdog_usec = watchdog_usec
        self.sockets = list(sockets)
        self.args = list(args)
        self.process: subprocess.Popen[bytes] | None = None

    def spawn(self) -> Daemon:
        env = dict(os.environ, NOTIFY_SOCKET=self.notify.name)
        env.pop("LISTEN_FDS", None)
        env.pop("LISTEN_PID", None)
        if self.watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(self.watchdog_usec)
        command = ["-m", "serouter", "run", "-c", str(self.config), *self.args]
        fds = [s.fileno() for _, s in self.sockets]
        if fds:
            names = ":".join(name for name, _ in self.sockets)
            argv = [sys.executable, "-c", _AS_SYSTEMD, ",".join(map(str, fds)), names, *command]
        else:
            argv = [sys.executable, *command]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, pass_fds=fds,
            )
        return self

    def start(self) -> dict[str, str]:
        """Spawn and wait for READY=1; the READY notice."""
        self.spawn()
        try:
            return self.notify.until("READY")[-1]
        except (AssertionError, TimeoutError):
            raise AssertionError(f"no READY=1; the daemon said:\n{self.output}") from None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def reload(self, config: str | None = None) -> list[dict[str, str]]:
        """Rewrite the configuration (if given), SIGHUP, and wait for RELOADING=1 then READY=1;
        the notices from RELOADING on."""
        if config is not None:
            self.config.write_text(config)
        self.signal(signal.SIGHUP)
        seen = self.notify.until("RELOADING")
        return [seen[-1], *self.notify.until("READY")]

    def wait(self, timeout: float = STEP) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise AssertionError(
                f"serouter did not exit within {timeout} s:\n{self.output}") from None

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> int | None:
        """SIGTERM and the exit code (None if it never ran); always cleans up."""
        code = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            code = self.wait()
        self.notify.close()
        return code

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
