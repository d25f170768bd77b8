"""Test helpers for the SELinux object manager: a small real policy, and clients in domains.

The test policy is a tiny MLS base plus the shipped ``policy/wamp.cil`` plus a test module,
compiled with ``secilc`` (cached per variant for the whole session). Its domains:

- ``client_a_t``: joins realm1; registers and calls ``com.example.add``; subscribes and publishes
  under ``com.example.*``; calls the meta API (``wamp.*``); auditallow on ``com.audited.*``.
- ``client_b_t``: joins realm1; subscribes under ``com.example.*`` but may not publish there nor
  register anything; calls ``com.example.add`` only while the boolean ``b_may_call`` is true;
  calls under ``com.quiet.*`` are denied and dontaudit'ed.
- ``client_c_t``: may not join any realm.
- ``com.secret.*`` is at level s1: the MLS constraint keeps s0 sessions from subscribing or
  calling there although type enforcement allows it.

Also here: a router subprocess with an [access] section, a blocking RawSocket/JSON client, and
a Unix socket connected from another uid (a forked child connects, the kernel records its
credentials, the socket comes back to the test over SCM_RIGHTS).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.raw_clients import recv_exactly

ROOT = Path(__file__).resolve().parent.parent
WAMP_CIL = ROOT / "policy" / "wamp.cil"
STEP = 5.0  # seconds any single socket operation may take

BASE_CIL = """\
(handleunknown allow)
(mls true)
(class process (transition))
(classorder (process))
(sid kernel)
(sidorder (kernel))
(sidcontext kernel (system_u system_r kernel_t ((s0) (s0))))
(sensitivity s0)
(sensitivity s1)
(sensitivityorder (s0 s1))
(category c0)
(categoryorder (c0))
(sensitivitycategory s0 (c0))
(sensitivitycategory s1 (c0))
(user system_u)
(role system_r)
(userrole system_u system_r)
(userlevel system_u (s0))
(userrange system_u ((s0) (s1 (c0))))
(type kernel_t)
(roletype system_r kernel_t)
(type unlabeled_t)
(roletype system_r unlabeled_t)
"""


def module_cil(b_may_call: bool = False, with_client_b: bool = True) -> str:
    """The test module's CIL (needs BASE_CIL and wamp.cil)."""
    b = """
(type client_b_t)
(roletype system_r client_b_t)
(typeattributeset wamp_client_domain (client_b_t))
(call wamp_subscribe_uris (client_b_t example_uri_t))
(call wamp_subscribe_uris (client_b_t secret_uri_t))
(allow client_b_t quiet_t (wamp_uri (subscribe)))
(dontaudit client_b_t quiet_t (wamp_uri (call)))
(booleanif b_may_call (true (call wamp_call_uris (client_b_t example_add_t))))
""" if with_client_b else ""
    return f"""
(type client_a_t)
(type client_c_t)
(roletype system_r client_a_t)
(roletype system_r client_c_t)
(typeattributeset wamp_client_domain (client_a_t client_c_t))
(type secret_realm_t)
(type example_add_t)
(type example_uri_t)
(type audited_t)
(type quiet_t)
(type secret_uri_t)
(typeattributeset wamp_realm_type (secret_realm_t))
(typeattributeset wamp_uri_type (example_add_t example_uri_t audited_t quiet_t secret_uri_t))
(boolean b_may_call {'true' if b_may_call else 'false'})
(typeattribute joiners)
(typeattributeset joiners (and (wamp_client_domain) (not (client_c_t))))
(call wamp_join_realms (joiners wamp_realm_t))
(call wamp_register_uris (client_a_t example_add_t))
(call wamp_call_uris (client_a_t example_add_t))
(call wamp_subscribe_uris (client_a_t example_uri_t))
(call wamp_publish_uris (client_a_t example_uri_t))
(call wamp_call_uris (client_a_t wamp_meta_uri_t))
(call wamp_call_uris (client_a_t audited_t))
(auditallow client_a_t audited_t (wamp_uri (call)))
(call wamp_subscribe_uris (client_a_t secret_uri_t))
(call wamp_call_uris (client_a_t secret_uri_t))
(mlsconstrain (wamp_uri (subscribe call)) (dom l1 l2))
{b}"""


CONTEXTS = """\
# kind  pattern          context
realm   realm1           system_u:object_r:wamp_realm_t:s0
realm   secret           system_u:object_r:secret_realm_t:s0
realm   *                system_u:object_r:wamp_realm_t:s0
uri     com.example.add  system_u:object_r:example_add_t:s0
uri     com.example.*    system_u:object_r:example_uri_t:s0
uri     com.audited.*    system_u:object_r:audited_t:s0
uri     com.quiet.*      system_u:object_r:quiet_t:s0
uri     com.secret.*     system_u:object_r:secret_uri_t:s1
uri     wamp.*           system_u:object_r:wamp_meta_uri_t:s0
uri     *                system_u:object_r:wamp_uri_t:s0
"""

A = "system_u:system_r:client_a_t:s0"
A_HIGH = "system_u:system_r:client_a_t:s1"
B = "system_u:system_r:client_b_t:s0"
C = "system_u:system_r:client_c_t:s0"
UNLABELED = "system_u:object_r:unlabeled_t:s0"


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: `make test` installs it (APT_PACKAGES)")
    return path


def run_secilc(
    out: Path, sources: Sequence[str | Path], options: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """Run secilc on CIL sources (texts are written to files next to ``out``) into ``out``."""
    files: list[str] = []
    for index, source in enumerate(sources):
        if isinstance(source, Path):
            files.append(str(source))
        else:
            path = out.parent / f"{out.stem}.{index}.cil"
            path.write_text(source)
            files.append(str(path))
    return subprocess.run(
        [require_tool("secilc"), *options, "-o", str(out), "-f", os.devnull, *files],
        capture_output=True, text=True, timeout=60, check=False,
    )


def secilc(out: Path, *sources: str | Path) -> Path:
    """Compile CIL sources (texts or files) into the binary policy ``out``."""
    done = run_secilc(out, sources)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


class PolicyBuilder:
    """Compiles test policy variants into one directory, each once."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self._built: dict[str, Path] = {}

    def build(self, name: str, *sources: str | Path) -> Path:
        if name not in self._built:
            self._built[name] = secilc(self.dir / f"{name}.bin", *sources)
        return self._built[name]

    def standard(self, b_may_call: bool = False, with_client_b: bool = True) -> Path:
        name = f"test-{int(b_may_call)}-{int(with_client_b)}"
        return self.build(name, BASE_CIL, WAMP_CIL, module_cil(b_may_call, with_client_b))

    def without_classes(self) -> Path:
        """The base alone (and the one rule a policy needs): handle_unknown=allow, no wamp_*."""
        return self.build("no-classes", BASE_CIL, "(allow kernel_t self (process (transition)))")

    def contexts(self, text: str = CONTEXTS, name: str = "wamp_contexts") -> Path:
        path = self.dir / name
        path.write_text(text)
        return path


@pytest.fixture(scope="session")
def policies(tmp_path_factory: pytest.TempPathFactory) -> PolicyBuilder:
    return PolicyBuilder(tmp_path_factory.mktemp("policy"))


# -- a blocking WAMP client over RawSocket/JSON -------------------------------------------------

ROLES: dict[str, Any] = {"caller": {}, "callee": {}, "publisher": {}, "subscriber": {}}


class Client:
    """WAMP over RawSocket with JSON, one blocking socket; every wait bounded by STEP."""

    def __init__(self, sock: socket.socket) -> None:
        sock.settimeout(STEP)
        self.sock = sock
        self.request = 0
        self.session = 0
        sock.sendall(bytes((0x7F, 0xF1, 0, 0)))  # max length 2**24, JSON
        reply = recv_exactly(sock, 4)
        assert reply[0] == 0x7F and reply[1] & 0x0F == 1, reply

    def send(self, message: list[Any]) -> None:
        payload = json.dumps(message).encode()
        self.sock.sendall(b"\x00" + len(payload).to_bytes(3, "big") + payload)

    def recv(self) -> list[Any]:
        while True:
            header = recv_exactly(self.sock, 4)
            payload = recv_exactly(self.sock, int.from_bytes(header[1:], "big"))
            if header[0] == 0:
                return json.loads(payload)  # type: ignore[no-any-return]

    def nothing_within(self, seconds: float = 0.3) -> bool:
        """True if the router sends nothing for ``seconds``."""
        self.sock.settimeout(seconds)
        try:
            self.sock.recv(1, socket.MSG_PEEK)
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(STEP)
        return False

    def hello(self, realm: str = "realm1") -> list[Any]:
        """HELLO; WELCOME or ABORT as received."""
        self.send([1, realm, {"roles": ROLES}])
        reply = self.recv()
        if reply[0] == 2:
            self.session = reply[1]
        return reply

    def next(self) -> int:
        self.request += 1
        return self.request

    def ask(self, message: list[Any]) -> list[Any]:
        self.send(message)
        return self.recv()

    def register(self, procedure: str, options: dict[str, Any] | None = None) -> list[Any]:
        return self.ask([64, self.next(), options or {}, procedure])

    def subscribe(self, topic: str, options: dict[str, Any] | None = None) -> list[Any]:
        return self.ask([32, self.next(), options or {}, topic])

    def call(self, procedure: str, args: list[Any] | None = None) -> list[Any]:
        return self.ask([48, self.next(), {}, procedure, args or []])

    def publish(self, topic: str, acknowledge: bool, args: list[Any] | None = None) -> None:
        self.send([16, self.next(), {"acknowledge": acknowledge}, topic, args or []])

    def close(self) -> None:
        self.sock.close()


def connect_as(path: str, uid: int) -> socket.socket:
    """A Unix stream socket connected to ``path`` by a child process running as ``uid``:
    the router's SO_PEERCRED then says ``uid``, as the kernel recorded it at connect()."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    parent.settimeout(STEP)
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
    return socket.socket(fileno=fds[0])


# -- the router as a subprocess -------------------------------------------------------------------


@dataclass
class Listener:
    """A [[listeners]] table: RawSocket over TCP on loopback, or over a Unix socket."""

    name: str
    label: str | None = None
    unix: bool = False
    port: int = 0
    path: str = ""

    def toml(self, directory: Path) -> str:
        if self.unix:
            self.path = str(directory / f"{self.name}.sock")
            endpoint = f"unix:{self.path}:mode=666"
        else:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self.port = probe.getsockname()[1]
            endpoint = f"tcp:{self.port}:interface=127.0.0.1"
        lines = ["[[listeners]]", 'transport = "rawsocket"', f"endpoint = {json.dumps(endpoint)}",
                 'serializers = ["json"]']
        if self.label:
            lines.append(f"label = {json.dumps(self.label)}")
        return "\n".join(lines) + "\n"

    def connect(self) -> socket.socket:
        if self.unix:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(STEP)
            sock.connect(self.path)
            return sock
        return socket.create_connection(("127.0.0.1", self.port), timeout=STEP)


@dataclass
class RouterProcess:
    """``python -m serouter run -c FILE`` with an [access] section; stopped with SIGTERM."""

    access: dict[str, Any]
    listeners: Sequence[Listener]
    uid_labels: dict[int, str] = field(default_factory=dict)
    realms: Sequence[str] = ("realm1", "secret")
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="serouter-se-")))
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.directory.chmod(0o755)  # other uids connect to the Unix sockets in it
        self.config = self.directory / "serouter.toml"
        self.log = self.directory / "router.log"

    def config_text(self) -> str:
        access = "".join(f"{key} = {json.dumps(value)}\n" for key, value in self.access.items())
        text = f"[router]\nshutdown_timeout = 2.0\n[access]\n{access}"
        if self.uid_labels:
            text += "[access.uid_labels]\n" + "".join(
                f'"{uid}" = {json.dumps(label)}\n' for uid, label in self.uid_labels.items()
            )
        text += "".join(f"[[realms]]\nname = {json.dumps(r)}\n" for r in self.realms)
        return text + "".join(listener.toml(self.directory) for listener in self.listeners)

    def spawn(self) -> None:
        self.config.write_text(self.config_text())
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "serouter", "run", "-c", str(self.config)],
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )

    def start(self, timeout: float = 30.0) -> RouterProcess:
        self.spawn()
        deadline = time.monotonic() + timeout
        pending = list(self.listeners)
        while pending:
            assert self.process is not None
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the router did not start:\n{self.output}")
            try:
                pending[0].connect().close()
                pending.pop(0)
            except OSError:
                time.sleep(0.05)
        return self

    def wait_exit(self, timeout: float = 15.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

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
    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.directory, ignore_errors=True)
        return self.process.returncode

    def __enter__(self) -> RouterProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def running(router: RouterProcess) -> Iterator[RouterProcess]:
    """Start, hand over, stop; the router must then exit 0 without a traceback."""
    router.start()
    try:
        yield router
    finally:
        output = router.output
        code = router.stop()
    assert code == 0, output
    assert "Traceback" not in output, output
