"""Inside the test VM: serouter with the ``selinux`` backend against the live kernel's policy.

``guest_init.sh`` runs this as init's child, in ``kernel_t``, with the host's root mounted
read-only and the job directory (written by ``run_vm``: the compiled policies, the contexts
file, job.json) mounted read-write. It loads the policies into the kernel through
``/sys/fs/selinux``, starts ``python -m serouter run`` in ``serouter_t`` with ``runcon``, and
Autobahn|Python agents (``guest_agent``) in the client domains (``Agent``), drives them, and
writes down what each side saw in ``results.json``: the host's test
(tests/test_kernel_selinux.py) judges it. Nothing here asserts; a step that cannot be taken
ends the run with its traceback in the results.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn

SELINUXFS = Path("/sys/fs/selinux")
RUN = Path("/run/serouter-test")
SOCKET = RUN / "wamp.sock"
START = 150.0  # seconds a Python process may take to import and start (emulated CPU)
STEP = 30.0  # seconds one agent command may take
NOTICED = "SELinux policy or mode changed"


def uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def say(text: str) -> None:
    print(f"guest: {uptime():7.2f} {text}", flush=True)


# -- the kernel's SELinux interface ------------------------------------------------------------


def load_policy(path: Path) -> None:
    """What load_policy(8) does: the binary policy written to selinuxfs in one write."""
    data = path.read_bytes()
    with open(SELINUXFS / "load", "wb", buffering=0) as file:
        file.write(data)


def setenforce(enforcing: bool) -> None:
    (SELINUXFS / "enforce").write_text("1" if enforcing else "0")


def set_boolean(name: str, value: bool) -> None:
    """What setsebool(8) does without -P: set the pending value, then commit."""
    (SELINUXFS / "booleans" / name).write_text("1" if value else "0")
    (SELINUXFS / "commit_pending_bools").write_text("1")


def context_of(pid: int | str) -> str:
    return Path(f"/proc/{pid}/attr/current").read_bytes().rstrip(b"\0\n").decode()


# -- processes in domains ----------------------------------------------------------------------


class LineReader:
    """Lines from a pipe, each wait bounded."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""

    def line(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise TimeoutError(f"no answer within {timeout} s")
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise EOFError("the process closed its output")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()


class Forked:
    """What the driver needs of ``subprocess.Popen``, for a child it forked itself."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        while (code := self.poll()) is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"agent {self.pid}", timeout or 0)
            time.sleep(0.05)
        return code

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)


class Agent:
    """``guest_agent`` in one domain: Autobahn sessions driven by JSON lines over two pipes.

    A domain is entered either way a process can: ``spawn`` execs the agent with ``runcon``
    (a domain transition on exec, ``setexeccon``), ``fork`` forks this process, which has
    imported Autobahn already, and the child calls ``setcon`` (a dynamic transition): one
    Autobahn import for several agents, which under an emulated CPU saves many seconds.
    """

    def __init__(self, name: str, process: subprocess.Popen[bytes] | Forked, to_agent: int,
                 from_agent: int) -> None:
        self.name = name
        self.process = process
        self.to_agent = to_agent
        self.reader = LineReader(from_agent)

    @classmethod
    def spawn(cls, job: Path, name: str, context: str) -> Agent:
        commands, replies = os.pipe(), os.pipe()
        # nice: the routers' starts are the critical path; the agents import Autobahn meanwhile
        with open(job / f"agent-{name}.log", "wb") as log:
            process = subprocess.Popen(
                ["nice", "-n", "10", "runcon", context,
                 sys.executable, "-m", "tests.kernel.guest_agent", str(SOCKET)],
                stdin=commands[0], stdout=replies[1], stderr=log,
            )
        os.close(commands[0])
        os.close(replies[1])
        return cls(name, process, commands[1], replies[0])

    @classmethod
    def fork(cls, job: Path, name: str, context: str) -> Agent:
        from tests.kernel import guest_agent  # Autobahn, once, before the first fork

        commands, replies = os.pipe(), os.pipe()
        with open(job / f"agent-{name}.log", "wb") as log:
            pid = os.fork()
            if pid == 0:
                _agent_child(guest_agent.main, context, commands[0], replies[1], log.fileno())
        os.close(commands[0])
        os.close(replies[1])
        return cls(name, Forked(pid), commands[1], replies[0])

    def ready(self) -> dict[str, Any]:
        hello: dict[str, Any] = json.loads(self.reader.line(START))
        return hello

    def ask(self, op: str, name: str, **arguments: Any) -> dict[str, Any]:
        command = {"op": op, "name": name, **arguments}
        os.write(self.to_agent, json.dumps(command).encode() + b"\n")
        reply: dict[str, Any] = json.loads(self.reader.line(STEP))
        if "exception" in reply:
            raise RuntimeError(f"agent {self.name}: {command}: {reply['exception']}")
        return reply

    def close(self) -> None:
        """End of input: the agent exits (``wait`` for it)."""
        if self.to_agent >= 0:
            os.close(self.to_agent)
            self.to_agent = -1

    def wait(self) -> None:
        self.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _agent_child(
    main: Callable[[str], Coroutine[Any, Any, None]], context: str, commands: int, replies: int,
    log: int,
) -> NoReturn:
    """In the forked child: the pipes as stdin and stdout, nothing else of the parent's, then
    setcon(3) into ``context`` and the agent's loop."""
    code = 1
    try:
        for fd, target in ((commands, 0), (replies, 1), (log, 2)):
            os.dup2(fd, target)
        os.closerange(3, 65536)
        sys.stdin, sys.stdout = os.fdopen(0, "r"), os.fdopen(1, "w")
        os.nice(10)
        Path("/proc/self/attr/current").write_text(context)
        asyncio.run(main(str(SOCKET)))
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


class Router:
    """``python -m serouter run -c FILE`` in serouter_t, its log in the job directory."""

    def __init__(self, job: Path, config: Path, context: str, log_name: str) -> None:
        self.log_path = job / log_name
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                ["runcon", context, sys.executable, "-m", "serouter", "run", "-c", str(config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START
        while "serouter ready" not in self.log:
            if self.process.poll() is not None:
                raise RuntimeError(f"the router exited {self.process.returncode}:\n{self.log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the router did not start:\n{self.log}")
            time.sleep(0.2)

    def noticed(self) -> int:
        """How many times the router logged that the kernel's policy or mode changed."""
        return self.log.count(NOTICED)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def router_config(job: Path, contexts: str) -> Path:
    """No listener label and no uid map: SO_PEERSEC is the only source of session labels."""
    RUN.mkdir(parents=True, exist_ok=True)
    config = RUN / "serouter.toml"
    config.write_text(f"""\
[router]
shutdown_timeout = 2.0
[access]
backend = "selinux"
contexts = "{job / contexts}"
[[realms]]
name = "realm1"
[[realms]]
name = "secret"
[[listeners]]
transport = "rawsocket"
endpoint = "unix:{SOCKET}:mode=666"
serializers = ["json"]
""")
    return config


# -- the scenario ------------------------------------------------------------------------------


class Run:
    """One pass through everything the host checks; ``seen`` is what goes into results.json."""

    def __init__(self, job: Path, spec: dict[str, Any]) -> None:
        self.job = job
        self.spec = spec
        self.seen: dict[str, Any] = {}
        self.times: dict[str, float] = {"started": uptime()}
        self.agents: dict[str, Agent] = {}
        self.router: Router | None = None

    def policy(self, variant: str) -> Path:
        return self.job / str(self.spec["policies"][variant])

    def mark(self, phase: str) -> None:
        self.times[phase] = uptime()
        say(phase)

    def see(self, key: str, value: Any) -> Any:
        self.seen[key] = value
        return value

    def run(self) -> None:
        domains = self.spec["domains"]
        config = router_config(self.job, self.spec["policies"]["contexts"])
        self.refusal(config, domains)
        load_policy(self.policy("standard"))
        self.mark("standard policy loaded")
        self.router = router = Router(self.job, config, domains["router"], "router.log")
        router.wait_ready()
        self.mark("router ready")
        self.see("router_pid", router.process.pid)
        self.see("router", {
            "context": context_of(router.process.pid),
            "status_page_mapped": "/sys/fs/selinux/status" in Path(
                f"/proc/{router.process.pid}/maps").read_text(),
            "enforce": (SELINUXFS / "enforce").read_text().strip(),
        })
        for name, agent in self.agents.items():
            hello = agent.ready()
            self.times[f"agent {name} ready"] = hello.pop("uptime")
            self.see(f"agent.{name}", hello)
        self.mark("agents ready")
        self.joins()
        self.labels()
        self.rpc()
        self.pubsub()
        self.mls_and_audit()
        self.mark("decisions done")
        self.boolean()
        self.reload()
        self.permissive()
        self.mark("changes done")
        for agent in self.agents.values():
            agent.close()
        for agent in self.agents.values():
            agent.wait()
        self.see("router_exit", router.stop())
        self.mark("router stopped")

    def refusal(self, config: Path, domains: dict[str, str]) -> None:
        """Enforcing, a policy without the wamp classes: `serouter run` must refuse to start.
        The agents start meanwhile (they need a while to import Autobahn)."""
        load_policy(self.policy("no_classes"))
        setenforce(True)
        self.mark("policy without classes loaded, enforcing")
        refused = Router(self.job, config, domains["router"], "router-refused.log")
        self.agents["b"] = Agent.spawn(self.job, "b", domains["b"])
        for name in ("a", "a_high", "c"):
            self.agents[name] = Agent.fork(self.job, name, domains[name])
        deadline = time.monotonic() + START
        while refused.process.poll() is None and time.monotonic() < deadline:
            if "serouter ready" in refused.log:
                break  # it did not refuse: stop it, the results will say so
            time.sleep(0.2)
        code = refused.stop()
        self.see("refused", {"exit": code, "enforce": (SELINUXFS / "enforce").read_text().strip(),
                             "socket_exists": SOCKET.exists()})
        self.mark("refusal seen")

    def joins(self) -> None:
        a, a_high, b, c = (self.agents[n] for n in ("a", "a_high", "b", "c"))
        self.see("join.a1", a.ask("join", "a1", realm="realm1"))
        self.see("join.a2", a.ask("join", "a2", realm="realm1"))
        self.see("join.a3", a.ask("join", "a3", realm="realm1"))
        self.see("join.b1", b.ask("join", "b1", realm="realm1"))
        self.see("join.ah", a_high.ask("join", "ah", realm="realm1"))
        self.see("join.c1", c.ask("join", "c1", realm="realm1"))
        self.see("join.a_secret", a.ask("join", "as", realm="secret"))

    def labels(self) -> None:
        a, b = self.agents["a"], self.agents["b"]
        for name in ("a1", "b1", "ah"):
            session = self.seen[f"join.{name}"]["welcome"]
            self.see(f"details.{name}", a.ask("call", "a1", uri="wamp.session.get",
                                              args=[session]))
        self.see("meta.b", b.ask("call", "b1", uri="wamp.session.count"))

    def rpc(self) -> None:
        a, b = self.agents["a"], self.agents["b"]
        self.see("register.a", a.ask("register", "a1", uri="com.example.add"))
        self.see("register.b", b.ask("register", "b1", uri="com.example.add2"))
        self.see("call.a", a.ask("call", "a2", uri="com.example.add", args=[2, 3]))
        self.see("call.b", b.ask("call", "b1", uri="com.example.add", args=[1, 1]))
        self.see("invocations.a", a.ask("invocations", "a1", count=2, within=1.0))

    def pubsub(self) -> None:
        a, b = self.agents["a"], self.agents["b"]
        topic = "com.example.news"
        self.see("subscribe.a", a.ask("subscribe", "a1", uri=topic))
        self.see("subscribe.a_watch", a.ask("subscribe", "a3", uri=topic))
        self.see("subscribe.b", b.ask("subscribe", "b1", uri=topic))
        self.see("publish.b_ack", b.ask("publish", "b1", uri=topic, args=["from b"],
                                        acknowledge=True))
        self.see("publish.b_quiet", b.ask("publish", "b1", uri=topic, args=["from b, quietly"],
                                          acknowledge=False))
        time.sleep(1.0)  # the quiet publish is in the router before A's
        self.see("publish.a", a.ask("publish", "a2", uri=topic, args=["from a"],
                                    acknowledge=True))
        self.see("events.b", b.ask("events", "b1", count=1, within=10.0))
        self.see("events.a_watch", a.ask("events", "a3", count=2, within=1.0))

    def mls_and_audit(self) -> None:
        a, a_high, b = self.agents["a"], self.agents["a_high"], self.agents["b"]
        self.see("subscribe.secret_s0", a.ask("subscribe", "a1", uri="com.secret.x"))
        self.see("subscribe.secret_s1", a_high.ask("subscribe", "ah", uri="com.secret.x"))
        self.see("call.audited", a.ask("call", "a1", uri="com.audited.x"))
        self.see("call.quiet", b.ask("call", "b1", uri="com.quiet.x"))

    def boolean(self) -> None:
        """b_may_call through /sys/fs/selinux/booleans: B's next call follows it."""
        assert self.router is not None
        b = self.agents["b"]
        before = self.router.noticed()
        set_boolean("b_may_call", True)
        self.see("boolean.on.call", b.ask("call", "b1", uri="com.example.add", args=[7]))
        on = self.router.noticed()
        set_boolean("b_may_call", False)
        self.see("boolean.off.call", b.ask("call", "b1", uri="com.example.add", args=[8]))
        self.see("boolean.noticed", [before, on, self.router.noticed()])

    def reload(self) -> None:
        """A policy load where B may publish and C is a permissive domain, then the standard
        policy again."""
        assert self.router is not None
        a, b, c = self.agents["a"], self.agents["b"], self.agents["c"]
        before = self.router.noticed()
        load_policy(self.policy("changed"))
        self.see("reload.changed.publish", b.ask(
            "publish", "b1", uri="com.example.news", args=["b after reload"], acknowledge=True))
        self.see("reload.changed.events", a.ask("events", "a3", count=2, within=10.0))
        self.see("reload.changed.join_c", c.ask("join", "c2", realm="realm1"))
        changed = self.router.noticed()
        load_policy(self.policy("standard"))
        self.see("reload.standard.publish", b.ask(
            "publish", "b1", uri="com.example.news", args=["b again"], acknowledge=True))
        self.see("reload.standard.join_c", c.ask("join", "c3", realm="realm1"))
        self.see("reload.noticed", [before, changed, self.router.noticed()])
        self.see("reload.router_pid", self.router.process.pid)

    def permissive(self) -> None:
        """setenforce 0: B's denied registrations are allowed, the denial logged once."""
        assert self.router is not None
        b = self.agents["b"]
        before = self.router.noticed()
        setenforce(False)
        self.see("permissive.register1", b.ask("register", "b1", uri="com.example.b.one"))
        self.see("permissive.register2", b.ask("register", "b1", uri="com.example.b.two"))
        permissive = self.router.noticed()
        setenforce(True)
        self.see("enforcing.register3", b.ask("register", "b1", uri="com.example.b.three"))
        self.see("permissive.noticed", [before, permissive, self.router.noticed()])

    def close(self) -> None:
        for agent in self.agents.values():
            if agent.process.poll() is None:
                agent.process.kill()
                agent.process.wait()
        if self.router is not None and self.router.process.poll() is None:
            self.router.process.kill()


def main(job: Path) -> int:
    spec = json.loads((job / "job.json").read_text())
    run = Run(job, spec)
    error = None
    try:
        run.run()
    except Exception:
        error = traceback.format_exc()
        say(f"failed:\n{error}")
    finally:
        run.close()
    dmesg = subprocess.run(["dmesg"], capture_output=True, text=True, check=False).stdout
    (job / "dmesg.log").write_text(dmesg)
    results = {"seen": run.seen, "times": run.times, "error": error,
               "kernel": os.uname().release}
    (job / "results.json").write_text(json.dumps(results, indent=1))
    say("results written")
    return 0 if error is None else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
