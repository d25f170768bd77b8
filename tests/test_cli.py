"""The ``serouter`` command as a user runs it: a subprocess, its exit code and what it prints."""

from __future__ import annotations

import base64
import signal
import socket
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.raw_clients import OP_CLOSE, RawWampClient, WsClient, echo_roundtrip
from tests.router_process import ROOT, Listener, RouterProcess

COMMAND_TIMEOUT = 10.0


def serouter(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m serouter ARGS`` to completion (bounded); stdout and stderr as text."""
    return subprocess.run(
        [sys.executable, "-m", "serouter", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False,
    )


# -- --version and check-config -----------------------------------------------------------------


def test_version_prints_the_package_version() -> None:
    """``serouter --version`` prints the installed package's version and exits 0."""
    done = serouter("--version")
    assert done.returncode == 0, done
    assert done.stdout.strip() == f"serouter {version('serouter')}"


def test_check_config_accepts_the_embedded_default() -> None:
    """``check-config`` without -c validates the embedded default and exits 0."""
    done = serouter("check-config")
    assert done.returncode == 0, done
    assert "<embedded default>: OK" in done.stdout


GOOD = """\
[access]
backend = "allow-all"
[[realms]]
name = "realm1"
[[listeners]]
transport = "rawsocket"
endpoint = "tcp:0:interface=127.0.0.1"
"""


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (GOOD + "max_message_size = 10\n", "listeners[0].max_message_size"),
        (GOOD + 'serialisers = ["json"]\n', "listeners[0].serialisers"),
        (GOOD.replace('"realm1"', '"Realm One"'), "realms[0].name"),
        (GOOD + 'path = "/ws"\n', "listeners[0].path"),
        ('[router]\nlog_level = "loud"\n' + GOOD, "router.log_level"),
        (GOOD.replace("transport", "transport = ", 1), "line 6"),
    ],
    ids=["too_small", "unknown_key", "bad_realm", "path_on_rawsocket", "log_level", "syntax"],
)
def test_check_config_refuses_a_bad_file(tmp_path: Path, text: str, key: str) -> None:
    """``check-config`` on a bad file exits 1 with a message naming the file and the key."""
    path = tmp_path / "bad.toml"
    path.write_text(text)
    done = serouter("check-config", "-c", str(path))
    assert done.returncode == 1, done
    message = done.stdout + done.stderr
    assert str(path) in message and key in message, message


def test_check_config_on_a_missing_file(tmp_path: Path) -> None:
    """``check-config`` on a file that does not exist exits 1 naming it."""
    path = tmp_path / "missing.toml"
    done = serouter("check-config", "-c", str(path))
    assert done.returncode == 1 and str(path) in done.stdout + done.stderr, done


def test_run_refuses_a_bad_file(tmp_path: Path) -> None:
    """``run`` with a bad file exits 1 at once, naming the file and the key, on stderr."""
    path = tmp_path / "bad.toml"
    path.write_text(GOOD + "handshake_timeout = -1\n")
    done = serouter("run", "-c", str(path))
    assert done.returncode == 1, done
    assert str(path) in done.stderr and "listeners[0].handshake_timeout" in done.stderr, done


# -- run: failing to listen -------------------------------------------------------------------


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except ConnectionRefusedError:
        return True
    return False


def test_run_with_a_port_in_use_exits_with_a_message() -> None:
    """A listener on a port already in use makes ``run`` exit non-zero, saying why, with no
    listener left open."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        router = RouterProcess([
            Listener("websocket"),  # listens first, and must be closed again
            Listener("rawsocket", endpoint=f"tcp:{taken}:interface=127.0.0.1"),
        ])
        router.spawn()
        try:
            code = router.wait(COMMAND_TIMEOUT)
        finally:
            output = router.output
            router.stop()
        assert code != 0, output
        assert "cannot start" in output and "in use" in output, output
        assert str(taken) in output, output
        assert refused(router.port("websocket")), "the first listener is still open"


# -- run: shutdown ---------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_says_goodbye_to_every_session(signum: int) -> None:
    """On SIGTERM or SIGINT each established session gets GOODBYE system_shutdown and, once
    they answered, the router exits 0 well within the shutdown timeout."""
    router = RouterProcess(
        [Listener("rawsocket"), Listener("websocket")], shutdown_timeout=5.0
    ).start()
    try:
        listener = router.listener("rawsocket")
        callee = RawWampClient.connect(listener, "json")
        caller = RawWampClient.connect(listener, "msgpack")
        callee.register("com.example.shutdown")
        echo_roundtrip(caller, callee, "com.example.shutdown")
        browser = WsClient.open(router.listener("websocket"), "wamp.2.json")
        started = time.monotonic()
        assert router.process is not None
        router.process.send_signal(signum)
        for client in (callee, caller, browser):
            assert client.recv() == [6, {}, "wamp.close.system_shutdown"]
            client.send([6, {}, "wamp.close.goodbye_and_out"])
        for raw in (callee, caller):
            assert raw.expect_closed() == b""
        assert browser.recv_frame() == (OP_CLOSE, (1000).to_bytes(2, "big"))
        assert browser.expect_closed() == b""
        assert router.wait(COMMAND_TIMEOUT) == 0, router.output
        assert time.monotonic() - started < 4.0  # not the 5 s shutdown_timeout
        assert "3 sessions told goodbye, 0 closed without reply" in router.output
    finally:
        router.stop()


def test_shutdown_closes_sessions_that_never_answer() -> None:
    """A session that ignores the GOODBYE is closed after shutdown_timeout; the exit is 0."""
    router = RouterProcess([Listener("rawsocket")], shutdown_timeout=1.0).start()
    try:
        listener = router.listener("rawsocket")
        mute = RawWampClient.connect(listener, "cbor")
        polite = RawWampClient.connect(listener, "json")
        unjoined = RawWampClient.connect(listener, "json", realm=None)
        started = time.monotonic()
        router.terminate()
        assert mute.recv() == [6, {}, "wamp.close.system_shutdown"]
        assert polite.recv() == [6, {}, "wamp.close.system_shutdown"]
        polite.send([6, {}, "wamp.close.goodbye_and_out"])
        assert polite.expect_closed() == b""
        assert unjoined.expect_closed() == b""  # no session to say goodbye to
        assert mute.expect_closed() == b""
        assert router.wait(COMMAND_TIMEOUT) == 0, router.output
        assert 0.8 <= time.monotonic() - started < 4.0
        assert "1 closed without reply" in router.output, router.output
    finally:
        router.stop()


# -- run: a Unix socket listener ----------------------------------------------------------------


def test_unix_socket_listener_serves_rawsocket(tmp_path: Path) -> None:
    """A RawSocket listener on a Unix socket serves sessions like a TCP one."""
    path = tmp_path / "r.sock"
    router = RouterProcess([Listener("rawsocket", endpoint=f"unix:{path}")]).start()
    try:
        listener = router.listener("rawsocket")
        callee = RawWampClient.connect(listener, "msgpack")
        caller = RawWampClient.connect(listener, "cbor")
        callee.register("com.example.over_unix")
        echo_roundtrip(caller, callee, "com.example.over_unix")
        subscriber = RawWampClient.connect(listener, "json")
        subscription = subscriber.subscribe("com.example.unix_news")
        caller.send([16, 7, {"acknowledge": True}, "com.example.unix_news", [b"\x00bin"]])
        event = subscriber.recv()
        # JSON carries bytes as a string: NUL, then base64 (WAMP's binary convention)
        assert event[:2] == [36, subscription], event
        assert event[4] == ["\x00" + base64.b64encode(b"\x00bin").decode()], event
        assert caller.recv()[:2] == [17, 7]
        for client in (callee, caller, subscriber):
            client.close()
        assert router.stop() == 0
    finally:
        router.stop()
