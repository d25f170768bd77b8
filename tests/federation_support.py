"""Federated routers as real processes: a name server and routers, each "VM" with its own
XenStore domain connection (the test xenstored), for the multi-process federation tests.

``FederatedRouter`` is ``RouterProcess`` with ``[router] mode``, ``[nameserver]`` or
``[federation]``, its XenStore domain (``XENSTORED_PATH`` of that domain's socket), stable
ports across restarts (a restarted name server keeps its port unless asked otherwise), and
``kill()`` for a router that dies without a word. ``Cluster`` starts xenstored, the name server
and the routers (in parallel) and stops them all, checking each exited cleanly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from tests.router_process import ROOT, Listener, RouterProcess, free_port, toml_table
from tests.xenstore_server._process import XenstoredProcess

START_TIMEOUT = 30.0  # a generous bound: a loaded 2-core machine imports slowly
NAMESERVER_PATH = "/serouter/nameserver"
UUIDS = {
    1: "6c4a8f5e-3b1d-4d8e-9a7b-2f1e0c9d8b7a",
    2: "0b7f0c55-1d8e-4f4e-a0b9-5a4c3e2d1f10",
    3: "9d2e7c61-8a4b-4c3d-b2e1-f0a9b8c7d6e5",
}


class FederatedRouter(RouterProcess):
    """One serouter process of a federation (``mode`` "nameserver" or "router")."""

    def __init__(
        self,
        name: str,
        *,
        mode: str = "router",
        xenstore: XenstoredProcess | None = None,
        domid: int = 0,
        nameserver: str | None = None,
        access: Mapping[str, Any] | None = None,
        listeners: Sequence[Listener] | None = None,
        realms: Sequence[str] = ("realm1",),
        extra: str = "",
        log_level: str = "info",
    ) -> None:
        super().__init__(listeners or [Listener("websocket"), Listener("rawsocket")],
                         realms=realms, shutdown_timeout=3.0, log_level=log_level,
                         access=access)
        self.name = name
        self.mode = mode
        self.xenstore = xenstore
        self.domid = domid
        self.nameserver = nameserver  # static discovery; None: XenStore
        self.extra = extra
        self._addressed = False

    # -- configuration ------------------------------------------------------------------------

    def _assign_addresses(self) -> None:
        if not self._addressed:  # once: a restart keeps its ports
            super()._assign_addresses()
            self._addressed = True

    @property
    def advertise(self) -> str:
        return f"tcp:127.0.0.1:{self.port('rawsocket')}"

    def config_text(self) -> str:
        text = (f"[router]\nmode = {json.dumps(self.mode)}\n"
                f"log_level = {json.dumps(self.log_level)}\n"
                f"shutdown_timeout = {self.shutdown_timeout}\n" + toml_table("access", self.access))
        text += "".join(f"[[realms]]\nname = {json.dumps(r)}\n" for r in self.realms)
        text += "".join(listener.toml() for listener in self.listeners)
        if self.mode == "nameserver":
            publish = "xenstore" if self.xenstore is not None else "none"
            text += (f"[nameserver]\nadvertise = {json.dumps(self.advertise)}\n"
                     f"publish = {json.dumps(publish)}\n")
        else:
            text += f"[federation]\nadvertise = {json.dumps(self.advertise)}\nidle_timeout = 5\n"
            if self.nameserver is not None:
                text += f'discovery = "static"\nnameserver = {json.dumps(self.nameserver)}\n'
        return text + self.extra

    # -- lifecycle ----------------------------------------------------------------------------

    def spawn(self) -> None:
        self._assign_addresses()
        self.config_path.write_text(self.config_text())
        env = self.xenstore.env(self.domid) if self.xenstore is not None else dict(os.environ)
        command = [sys.executable, "-m", "serouter", "run", "-c", str(self.config_path)]
        self._terminated = False
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env,
            )
        self.returncode = None

    def wait_ready(self, timeout: float = START_TIMEOUT) -> FederatedRouter:
        if not self._wait_ready(timeout):
            output = self.output
            self.stop()
            raise RuntimeError(f"{self.name} did not start; its output:\n{output}")
        return self

    def restart(self, new_port: bool = False) -> None:
        """SIGTERM, wait for the exit (must be 0), and start again."""
        self.terminate()
        assert self.wait() == 0, self.output
        if new_port:
            self.listener("rawsocket").port = free_port()
            self.listener("rawsocket").endpoint = None
            self._addressed = False
        self.spawn()
        self.wait_ready()

    def kill(self) -> None:
        """SIGKILL: the router vanishes without a GOODBYE (a crashed VM)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def log_has(self, text: str) -> bool:
        return text in self.output


def wait_for(check: Any, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``check()`` (blocking) until true."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


class Cluster:
    """xenstored, a name server in dom0 publishing through XenStore, and routers in guests."""

    def __init__(self, names: Sequence[str] = ("a", "b", "c"), *, xenstore: bool = True,
                 nameserver_access: Mapping[str, Any] | None = None) -> None:
        domains = {i + 1: (f"vm-{n}", UUIDS.get(i + 1)) for i, n in enumerate(names)}
        self.xenstored = XenstoredProcess(domains) if xenstore else None
        self.nameserver = FederatedRouter("nameserver", mode="nameserver",
                                          xenstore=self.xenstored, access=nameserver_access)
        self.routers = {
            name: FederatedRouter(name, xenstore=self.xenstored, domid=i + 1,
                                  nameserver=None if xenstore else "static")
            for i, name in enumerate(names)
        }

    def __getitem__(self, name: str) -> FederatedRouter:
        return self.routers[name]

    def start(self) -> Cluster:
        try:
            if self.xenstored is not None:
                self.xenstored.start()
            self.nameserver.spawn()
            self.nameserver.wait_ready()
            for router in self.routers.values():
                if router.nameserver == "static":
                    router.nameserver = self.nameserver.advertise
                router.spawn()
            for router in self.routers.values():
                router.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def processes(self) -> list[FederatedRouter]:
        return [self.nameserver, *self.routers.values()]

    def stop(self) -> dict[str, tuple[int | None, str]]:
        """Stop everything; each router's (exit code, output)."""
        results: dict[str, tuple[int | None, str]] = {}
        for process in [*self.routers.values(), self.nameserver]:
            process.terminate()  # all at once; one SIGTERM each (a second one would kill)
        for process in [*self.routers.values(), self.nameserver]:
            output = process.output
            try:
                if process.process is not None:
                    process.wait()
                code = process.stop()
            except AssertionError as e:
                code, output = -1, str(e)
            results[process.name] = (code, output)
        if self.xenstored is not None:
            self.xenstored.stop()
        return results

    def check_stopped(self, killed: Sequence[str] = ()) -> None:
        """Stop, then each process (but those killed on purpose) exited 0 without a traceback."""
        outputs = {p.name: p for p in self.processes()}
        errors = {name: p.internal_errors() for name, p in outputs.items()}
        results = self.stop()
        for name, (code, output) in results.items():
            if name in killed:
                continue
            assert code == 0, f"{name} exited {code}:\n{output}"
            assert not errors[name], f"{name} logged internal errors:\n{output}"
