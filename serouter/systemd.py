"""systemd integration without libsystemd: the notify protocol, the watchdog, and sockets
systemd passes (socket activation).

``sd_notify`` is a datagram of ``KEY=value`` lines sent to the Unix socket named by
``NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace). Nothing here blocks: the
socket is non-blocking and a full or missing socket drops the message (systemd is then not
listening, or the unit is not ``Type=notify``). The watchdog pings at half of
``WATCHDOG_USEC`` from the reactor, so a stuck reactor stops the pings and systemd restarts us.

A passed socket (``systemd:domain=UNIX:name=wamp``) must outlive its listener: a reload may
close the listener and open it again, and a Unix socket's file is systemd's, not ours.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from typing import Any

from twisted.internet import defer, fdesc, tcp, unix
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

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
        # MONOTONIC_USEC: systemd >= 253 wants it with RELOADING=1 (Type=notify-reload)
        self.notify(RELOADING=1, STATUS="reloading configuration",
                    MONOTONIC_USEC=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)

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


class _PassedUnixPort(unix.Port):
    """A Unix socket systemd passed: closing our copy leaves it listening, and its file where
    systemd put it."""

    # shutdown() would end the listening for every copy, systemd's included (tcp.Port skips it
    # for adopted sockets, unix.Port does not)
    _shouldShutdown = False

    def connectionLost(self, reason: Failure) -> None:
        # unix.Port would unlink the socket's path (it does for adopted sockets too); the
        # rest of closing is tcp.Port's
        tcp.Port.connectionLost(self, reason)  # type: ignore[no-untyped-call]


class PassedSocket:
    """A listening socket systemd passed, as a server endpoint that may listen again.

    Twisted's own systemd: endpoint closes the passed descriptor once it listened; this one
    keeps it and adopts a duplicate each time (``socket.fromfd`` duplicates), so a reload can
    close the listener and open it again on the same socket.
    """

    def __init__(self, reactor: Any, fileno: int, family: int, name: str) -> None:
        self.reactor = reactor
        self.fileno = fileno
        self.family = family
        self.name = name  # the configuration's endpoint string, for messages

    def check(self) -> None:
        """ValueError unless the descriptor is a listening stream socket of our family."""
        try:
            probe = socket.socket(fileno=os.dup(self.fileno))
        except OSError as e:
            raise ValueError(f"{self.name}: the descriptor systemd passed: {e}") from None
        with probe:
            listening = probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
            if probe.type != socket.SOCK_STREAM or not listening:
                raise ValueError(f"{self.name}: systemd passed no listening stream socket "
                                 "(ListenStream= in the .socket unit)")
            if probe.family != self.family:
                raise ValueError(f"{self.name}: systemd passed an {probe.family.name} socket, "
                                 f"not {socket.AddressFamily(self.family).name}")

    def listen(self, factory: Factory) -> defer.Deferred[IListeningPort]:
        try:
            self.check()
            fdesc.setNonBlocking(self.fileno)  # type: ignore[no-untyped-call]
            port: tcp.Port
            if self.family == socket.AF_UNIX:
                port = _PassedUnixPort._fromListeningDescriptor(  # type: ignore[no-untyped-call]
                    self.reactor, self.fileno, factory)
            else:
                port = tcp.Port._fromListeningDescriptor(  # type: ignore[no-untyped-call]
                    self.reactor, self.fileno, self.family, factory)
            port.startListening()
        except Exception:
            return defer.fail()
        return defer.succeed(port)
