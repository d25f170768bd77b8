"""The sd_notify protocol and the watchdog, against a socket the test listens on."""

import os
import socket
from pathlib import Path

from twisted.internet.task import Clock

from serouter.systemd import Notifier


def listener(tmp_path: Path) -> tuple[socket.socket, str]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(2)
    return sock, path


def test_ready_status_and_stopping_reach_the_socket(tmp_path: Path) -> None:
    """READY=1 with STATUS and MAINPID, then STOPPING=1, arrive as datagrams."""
    sock, path = listener(tmp_path)
    n = Notifier({"NOTIFY_SOCKET": path})
    n.ready("2 listeners")
    n.stopping()
    first = sock.recv(4096).decode().split("\n")
    assert first == ["READY=1", "STATUS=2 listeners", f"MAINPID={os.getpid()}"]
    assert sock.recv(4096).decode().startswith("STOPPING=1")


def test_abstract_socket_address(tmp_path: Path) -> None:
    """An @name NOTIFY_SOCKET is the abstract socket \\0name."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"serouter-test-{os.getpid()}"
    sock.bind("\0" + name)
    sock.settimeout(2)
    assert Notifier({"NOTIFY_SOCKET": "@" + name}).notify(STATUS="x")
    assert sock.recv(100) == b"STATUS=x"


def test_watchdog_pings_at_half_the_interval(tmp_path: Path) -> None:
    """With WATCHDOG_USEC=2s, WATCHDOG=1 goes out at once and then every second."""
    sock, path = listener(tmp_path)
    clock = Clock()
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
    n.start_watchdog(clock)
    clock.advance(1)
    clock.advance(1)
    assert [sock.recv(100) for _ in range(3)] == [b"WATCHDOG=1"] * 3
    n.stopping()
    assert clock.getDelayedCalls() == []


def test_watchdog_for_another_pid_is_ignored(tmp_path: Path) -> None:
    """WATCHDOG_PID naming another process means the watchdog is not ours."""
    _, path = listener(tmp_path)
    clock = Clock()
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"})
    n.start_watchdog(clock)
    assert clock.getDelayedCalls() == []


def test_without_systemd_nothing_happens() -> None:
    """No NOTIFY_SOCKET: notify is a no-op."""
    n = Notifier({})
    assert not n.enabled and not n.notify(READY=1)
