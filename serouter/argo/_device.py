"""The stream device's calls, behind one small boundary that tests replace.

A ``Driver`` is what the Twisted transport needs from "the device": open a listening ring,
accept (non-blocking) with the peer's address, connect (non-blocking) and collect the result,
read, write, close. ``ArgoDriver`` speaks the Argo or v4v ioctls through a ``Syscalls`` object
(``os`` and ``fcntl`` in production; a fake in tests); ``serouter.argo._simulate`` offers the
same calls over TCP for hosts without Xen.

Two facts of the Linux driver (``argo-module.c``) shape this code:

- ``open()`` resets the file flags to ``O_RDWR``, dropping ``O_NONBLOCK``; an accepted fd is
  created blocking too. Each fd is therefore made non-blocking with ``fcntl`` after it is made.
- Errors come back as negative errno values from GETCONNECTERR (``-ECONNREFUSED``); a closed
  peer makes ``read`` fail with EPIPE rather than return end-of-file.

Nothing here touches the reactor.
"""

from __future__ import annotations

import errno
import fcntl
import os
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from twisted.internet.interfaces import IAddress
from zope.interface import implementer

from serouter.argo._abi import ARGO, Abi


@implementer(IAddress)
@dataclass(frozen=True, slots=True)
class ArgoAddress:
    """An Argo address: a domain id (None: not known, e.g. one's own ring) and a port."""

    domain: int | None
    port: int
    type: ClassVar[str] = "ARGO"

    @property
    def host(self) -> str:
        """The domain, where Twisted code expects a host (``argo:<domid>:<port>`` in logs)."""
        return "*" if self.domain is None else str(self.domain)


class PeerRefused(Exception):
    """An incoming connection was closed at once: its peer may not use this listener."""


class Syscalls(Protocol):
    """The system calls the Argo driver makes (``os``/``fcntl``-like; tests fake them)."""

    def open(self, path: str, flags: int) -> int: ...
    def ioctl(self, fd: int, request: int, arg: bytearray) -> int: ...
    def set_blocking(self, fd: int, blocking: bool) -> None: ...
    def read(self, fd: int, size: int) -> bytes: ...
    def write(self, fd: int, data: bytes | memoryview) -> int: ...
    def close(self, fd: int) -> None: ...


class OsSyscalls:
    """The real ones."""

    def open(self, path: str, flags: int) -> int:
        return os.open(path, flags)

    def ioctl(self, fd: int, request: int, arg: bytearray) -> int:
        # mutate_flag: the kernel's writes to the argument land in ``arg``; the result is the
        # ioctl's return value (ACCEPT's new fd)
        return int(fcntl.ioctl(fd, request, arg, True))

    def set_blocking(self, fd: int, blocking: bool) -> None:
        os.set_blocking(fd, blocking)

    def read(self, fd: int, size: int) -> bytes:
        return os.read(fd, size)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        return os.write(fd, data)

    def close(self, fd: int) -> None:
        os.close(fd)


class Driver(Protocol):
    """What the transport needs from a stream device."""

    @property
    def name(self) -> str:
        """For logs: "argo", "v4v", "simulated"."""

    def listen(self, port: int, partner: int | None) -> int:
        """A non-blocking listening fd on ``port``; ``partner``: the one domain that may
        connect (None: any). OSError if refused."""

    def accept(self, fd: int) -> tuple[int, ArgoAddress] | None:
        """A new non-blocking fd and its peer's address; None when none is waiting;
        PeerRefused when one came and was closed; OSError otherwise."""

    def connect(self, domain: int, port: int) -> tuple[int, bool]:
        """A non-blocking fd connecting to (domain, port), and whether that is still in
        progress (then wait for writability and ask ``connect_error``). OSError if refused."""

    def connect_error(self, fd: int) -> int:
        """The errno the connection attempt ended with; 0: connected."""

    def local_address(self, fd: int) -> ArgoAddress:
        """The address of this end."""

    def read(self, fd: int, size: int) -> bytes: ...
    def write(self, fd: int, data: bytes | memoryview) -> int: ...
    def close(self, fd: int) -> None: ...


def _check_port(port: int, abi: Abi) -> None:
    if not 0 < port <= 0xFFFFFFFF or port == abi.port_any:
        raise ValueError(f"{abi.name} port {port} is out of range")


@dataclass
class ArgoDriver:
    """The Argo (or v4v) stream device through its ioctls."""

    abi: Abi = ARGO
    sys: Syscalls = field(default_factory=OsSyscalls)
    device: str | None = None  # another path to the device node (default: the abi's)

    @property
    def name(self) -> str:
        return self.abi.name

    def _open(self) -> int:
        fd = self.sys.open(self.device or self.abi.device, os.O_RDWR | os.O_CLOEXEC)
        try:
            self.sys.set_blocking(fd, False)  # open() ignores O_NONBLOCK: see the docstring
        except BaseException:
            self.sys.close(fd)
            raise
        return fd

    def listen(self, port: int, partner: int | None) -> int:
        _check_port(port, self.abi)
        fd = self._open()
        try:
            self.sys.ioctl(fd, self.abi.BIND, bytearray(self.abi.pack_ring_id(port, partner)))
            self.sys.ioctl(fd, self.abi.LISTEN, self.abi.pack_int())
        except BaseException:
            self.sys.close(fd)
            raise
        return fd

    def accept(self, fd: int) -> tuple[int, ArgoAddress] | None:
        peer = bytearray(self.abi.addr.size)
        try:
            new = self.sys.ioctl(fd, self.abi.ACCEPT, peer)
        except BlockingIOError:
            return None
        try:
            self.sys.set_blocking(new, False)  # the driver makes accepted fds blocking
        except BaseException:
            self.sys.close(new)
            raise
        domain, port = self.abi.unpack_addr(peer)
        return new, ArgoAddress(domain, port)

    def connect(self, domain: int, port: int) -> tuple[int, bool]:
        _check_port(port, self.abi)
        fd = self._open()
        try:
            self.sys.ioctl(fd, self.abi.CONNECT, bytearray(self.abi.pack_addr(domain, port)))
        except OSError as error:
            if error.errno == errno.EINPROGRESS:
                return fd, True
            self.sys.close(fd)
            raise
        except BaseException:
            self.sys.close(fd)
            raise
        return fd, False

    def connect_error(self, fd: int) -> int:
        result = self.abi.pack_int()
        self.sys.ioctl(fd, self.abi.GETCONNECTERR, result)
        return abs(self.abi.unpack_int(result))  # the driver stores -errno

    def local_address(self, fd: int) -> ArgoAddress:
        ring_id = bytearray(self.abi.ring_id.size)
        self.sys.ioctl(fd, self.abi.GETSOCKNAME, ring_id)
        domain, port, _partner = self.abi.unpack_ring_id(ring_id)
        return ArgoAddress(None if domain == self.abi.domid_any else domain, port)

    def read(self, fd: int, size: int) -> bytes:
        return self.sys.read(fd, size)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        return self.sys.write(fd, data)

    def close(self, fd: int) -> None:
        self.sys.close(fd)
