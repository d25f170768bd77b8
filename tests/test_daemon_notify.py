"""The daemon as systemd runs it: the notify protocol in order, the watchdog, reload and stop
notices, sockets passed by systemd (socket activation), and the shutdown bound."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from serouter.config import ConfigError, parse_config
from tests.daemon_support import HEAD, Daemon, rawsocket, realms, tcp_listener, unix_listener
from tests.raw_clients import RawWampClient, echo_roundtrip
from tests.router_process import ROOT, free_port

pytestmark = pytest.mark.timeout(60)


def test_ready_watchdog_reload_stopping_in_order(tmp_path: Path) -> None:
    """READY=1 (with STATUS and MAINPID) comes once the listener accepts, WATCHDOG=1 follows
    at half of WATCHDOG_USEC, SIGHUP gives RELOADING=1 then READY=1 with the session still
    served, and SIGTERM gives GOODBYE to the session, STOPPING=1 and exit 0, nothing after."""
    port = free_port()
    config = HEAD + realms("realm1") + rawsocket(f"tcp:{port}:interface=127.0.0.1")
    daemon = Daemon(tmp_path, config, watchdog_usec=400_000)
    with daemon:
        ready = daemon.start()
        assert ready["READY"] == "1" and ready["MAINPID"] == str(daemon.pid), ready
        assert ready["STATUS"] == "0 sessions in 1 realms, 1 listeners", ready
        assert all("WATCHDOG" not in n for n in daemon.notify.received[:-1])
        listener = tcp_listener(port)
        callee = RawWampClient.connect(listener)  # READY meant: accepting
        caller = RawWampClient.connect(listener)
        callee.register("com.example.echo")
        pings = [daemon.notify.next() for _ in range(3)]
        assert pings == [{"WATCHDOG": "1"}] * 3, pings

        reloading, *rest = daemon.reload()
        assert reloading["RELOADING"] == "1" and "MONOTONIC_USEC" in reloading, reloading
        assert rest[-1]["READY"] == "1" and rest[-1]["STATUS"].startswith("2 sessions"), rest
        echo_roundtrip(caller, callee, "com.example.echo")  # nothing was dropped

        daemon.signal(signal.SIGTERM)
        for client in (callee, caller):
            assert client.recv() == [6, {}, "wamp.close.system_shutdown"]
            client.send([6, {}, "wamp.close.goodbye_and_out"])
        assert any("STOPPING" in n for n in daemon.notify.until("STOPPING"))
        assert daemon.wait() == 0, daemon.output
        daemon.notify.sock.settimeout(0.3)
        with pytest.raises(TimeoutError):  # no watchdog ping once stopping
            daemon.notify.next(0.5)


def test_sigterm_exits_0_within_the_shutdown_timeout(tmp_path: Path) -> None:
    """A session that never answers GOODBYE holds the exit for shutdown_timeout (2 s) at most:
    it is closed and the daemon exits 0."""
    port = free_port()
    with Daemon(tmp_path, HEAD + realms("realm1") + rawsocket(f"tcp:{port}:interface=127.0.0.1")
                ) as daemon:
        daemon.start()
        mute = RawWampClient.connect(tcp_listener(port))
        started = time.monotonic()
        daemon.signal(signal.SIGTERM)
        assert mute.recv() == [6, {}, "wamp.close.system_shutdown"]
        assert daemon.wait() == 0, daemon.output
        assert 1.5 < time.monotonic() - started < 5.0
        assert "1 closed without reply" in daemon.output


# -- socket activation ----------------------------------------------------------------------------


def listening_unix(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(16)
    return sock


def listening_tcp() -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock, sock.getsockname()[1]


def test_listeners_from_systemd_sockets(tmp_path: Path) -> None:
    """Sockets passed as systemd passes them serve as listeners, by name and by index, next to
    one of the configuration's own; a client that connected before the daemon ran is served."""
    unix, (tcp, port) = listening_unix(tmp_path / "wamp.sock"), listening_tcp()
    early = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    early.connect(str(tmp_path / "wamp.sock"))  # queued by the kernel: nobody accepts yet
    own = free_port()
    config = (HEAD + realms("realm1") + rawsocket("systemd:domain=UNIX:name=wamp")
              + rawsocket("systemd:domain=INET:index=1")
              + rawsocket(f"tcp:{own}:interface=127.0.0.1"))
    with Daemon(tmp_path, config, sockets=[("wamp", unix), ("web", tcp)]) as daemon:
        ready = daemon.start()
        assert ready["STATUS"].endswith("3 listeners"), ready
        unix.close()  # the daemon has its own copies
        tcp.close()
        first = RawWampClient(early, "json")
        first.handshake()
        first.join()
        clients = [first, RawWampClient.connect(unix_listener(tmp_path / "wamp.sock")),
                   RawWampClient.connect(tcp_listener(port), "msgpack"),
                   RawWampClient.connect(tcp_listener(own), "cbor")]
        clients[0].register("com.example.activated")
        for caller in clients[1:]:
            echo_roundtrip(caller, clients[0], "com.example.activated")
        assert daemon.stop() == 0, daemon.output
    assert "listening: rawsocket on systemd:domain=UNIX:name=wamp" in daemon.output
    assert (tmp_path / "wamp.sock").exists()  # systemd's file: the router never removes it


def test_reload_reopens_and_readds_a_systemd_socket(tmp_path: Path) -> None:
    """A reload that changes a passed socket's listener reopens it on the same socket, one that
    removes it stops accepting there, one that adds it back listens again: the socket systemd
    passed stays open in the daemon throughout, and no session is dropped."""
    unix = listening_unix(tmp_path / "wamp.sock")
    head = HEAD + realms("realm1")
    passed = rawsocket("systemd:domain=UNIX:name=wamp")
    own = free_port()
    mine = rawsocket(f"tcp:{own}:interface=127.0.0.1")
    with Daemon(tmp_path, head + passed + mine, sockets=[("wamp", unix)]) as daemon:
        daemon.start()
        unix.close()
        callee = RawWampClient.connect(unix_listener(tmp_path / "wamp.sock"))
        callee.register("com.example.kept")
        for config in (head + passed + "max_message_size = 65536\n" + mine,  # reopened
                       head + mine,                                          # removed
                       head + passed + mine):                                # added back
            daemon.reload(config)
            assert "reload refused" not in daemon.output, daemon.output
            caller = RawWampClient.connect(tcp_listener(own))
            echo_roundtrip(caller, callee, "com.example.kept")
        late = RawWampClient.connect(unix_listener(tmp_path / "wamp.sock"))
        echo_roundtrip(late, callee, "com.example.kept")
        assert daemon.stop() == 0, daemon.output
    assert "1 reopened" in daemon.output and "1 removed" in daemon.output


def test_a_passed_socket_of_another_family_refuses_the_start(tmp_path: Path) -> None:
    """A listener saying INET for the Unix socket systemd passed: exit 1, saying so."""
    unix = listening_unix(tmp_path / "wamp.sock")
    with Daemon(tmp_path, HEAD + realms("realm1") + rawsocket("systemd:domain=INET:index=0"),
                sockets=[("wamp", unix)]) as daemon:
        daemon.spawn()
        assert daemon.wait() == 1
        assert "systemd passed an AF_UNIX socket, not AF_INET" in daemon.output, daemon.output


def test_a_socket_systemd_did_not_pass_refuses_the_start(tmp_path: Path) -> None:
    """A listener naming a systemd socket that was not passed: exit 1 with the reason, on
    stderr and in STATUS=, and no READY=1."""
    with Daemon(tmp_path, HEAD + realms("realm1") + rawsocket("systemd:domain=UNIX:index=0")
                ) as daemon:
        daemon.spawn()
        assert daemon.wait() == 1
        assert "cannot start: systemd:domain=UNIX:index=0: systemd passed no such socket" in (
            daemon.output)
        status = daemon.notify.until("STATUS")[-1]
        assert status["STATUS"].startswith("cannot start: ") and "READY" not in status


def test_check_config_takes_a_systemd_socket_without_systemd(tmp_path: Path) -> None:
    """check-config accepts a systemd: listener where no socket was passed (the socket is
    looked for when the daemon starts)."""
    path = tmp_path / "c.toml"
    path.write_text(HEAD + realms("realm1") + rawsocket("systemd:domain=UNIX:index=0")
                    + rawsocket("systemd:domain=INET6:name=wamp-ws"))
    done = subprocess.run([sys.executable, "-m", "serouter", "check-config", "-c", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done


@pytest.mark.parametrize(("endpoint", "reason"), [
    ("systemd:domain=UNIX", "exactly one of them"),
    ("systemd:domain=UNIX:index=0:name=w", "exactly one of them"),
    ("systemd:domain=NETLINK:index=0", 'domain= one of "UNIX", "INET", "INET6"'),
    ("systemd:domain=UNIX:index=first", "index= must be a number"),
    ("systemd:domain=UNIX:name=", "name= is empty"),
    ("systemd:UNIX:0", "nothing else"),
])
def test_a_malformed_systemd_socket_is_refused(endpoint: str, reason: str) -> None:
    """A systemd: listener of the wrong form is refused at load, saying what is wrong."""
    with pytest.raises(ConfigError) as refused:
        parse_config(tomllib.loads(HEAD + realms("realm1") + rawsocket(endpoint)), "c.toml")
    assert refused.value.path == "listeners[0].endpoint" and reason in refused.value.reason
