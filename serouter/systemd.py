"""systemd integration without libsystemd: the notify protocol and the watchdog.

``sd_notify`` is a datagram of ``KEY=value`` lines sent to the Unix socket named by
``NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace). Nothing here blocks: the
socket is non-blocking and a full or missing socket drops the message (systemd is then not
listening, or the unit is not ``Type=notify``). The watchdog pings at half of
``WATCHDOG_USEC`` from the reactor, so a stuck reactor stops the pings and systemd restarts us.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

log = Logger(namespace="serouter.systemd")


class Notifier:
    """Sends state changes to systemd; a no-op when not started by systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]
        self._address = address
        self._socket: socket.socket | None = None
        self._watchdog_usec = _watchdog_usec(env)
        self._watchdog: LoopingCall | None = None

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, **fields: str | int) -> bool:
        """Send e.g. ``notify(READY=1, STATUS="...")``; True if the datagram went out."""
        if not self._address:
            return False
        message = "\n".join(f"{k}={v}" for k, v in fields.items()).encode()
        try:
            if self._socket is None:
                kind = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                self._socket = socket.socket(socket.AF_UNIX, kind)
                self._socket.setblocking(False)
            self._socket.sendto(message, self._address)
        except OSError as e:
            log.debug("sd_notify failed: {error}", error=str(e))
            return False
        return True

    def ready(self, status: str) -> None:
        self.notify(READY=1, STATUS=status, MAINPID=os.getpid())

    def status(self, status: str) -> None:
        self.notify(STATUS=status)

    def reloading(self) -> None:
        self.notify(RELOADING=1, STATUS="reloading configuration")

    def stopping(self) -> None:
        self.notify(STOPPING=1, STATUS="stopping")
        self.stop_watchdog()

    def start_watchdog(self, clock: Any) -> None:
        """Ping WATCHDOG=1 at half the interval systemd asked for (if it asked)."""
        if self._watchdog_usec and self.enabled and self._watchdog is None:
            self._watchdog = LoopingCall(self.notify, WATCHDOG=1)
            self._watchdog.clock = clock
            self._watchdog.start(self._watchdog_usec / 2_000_000, now=True)

    def stop_watchdog(self) -> None:
        if self._watchdog is not None and self._watchdog.running:
            self._watchdog.stop()
        self._watchdog = None

    def close(self) -> None:
        self.stop_watchdog()
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _watchdog_usec(env: Mapping[str, str]) -> int:
    """WATCHDOG_USEC, if it is meant for this process (WATCHDOG_PID absent or ours)."""
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
        pid = int(env.get("WATCHDOG_PID", "0") or 0)
    except ValueError:
        return 0
    return usec if usec > 0 and pid in (0, os.getpid()) else 0
