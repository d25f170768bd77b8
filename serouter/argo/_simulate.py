"""Argo simulated over TCP, for hosts without Xen: one network namespace per simulated domain.

libargo's LD_PRELOAD interposer maps domain D to the IPv4 address ``1.0.(D >> 8).(D & 255)``
and an Argo port to the TCP port of the same number. ``SimulatedDriver`` follows that
convention, so the property that matters holds as with Xen: the peer's domain id comes from
something the kernel vouches for (the TCP source address of an accepted connection, in a
network namespace the host set up), never from anything the peer says.

What the host must arrange (docs/argo.md; ``tests/argo_support.py`` does it for the tests): one
network namespace per simulated domain, each guest's address on its own veth link, ``/32``
routes, and ``rp_filter = 1`` in the namespace of a listener, so that a guest cannot borrow
another guest's address (a packet whose source does not route back over the link it came in on
is dropped by the kernel).

A listener binds every address of its namespace and accepts a connection only if both ends are
in ``1.0.0.0/16`` (the simulated network) and the peer's address maps to a real domain id;
anything else is closed at once. ``partner`` is enforced here, where Xen would enforce it.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from typing import Final

from serouter.argo._abi import is_domid
from serouter.argo._device import ArgoAddress, PeerRefused

NETWORK: Final = ipaddress.IPv4Network("1.0.0.0/16")
BACKLOG: Final = 128


def address_of(domain: int) -> str:
    """The simulated IPv4 address of ``domain`` (libargo: ``1.0.(D >> 8).(D & 255)``)."""
    if not is_domid(domain):
        raise ValueError(f"{domain} is not a domain id")
    return str(NETWORK.network_address + domain)


def domain_of(host: str) -> int | None:
    """The domain a simulated address stands for, or None if it stands for none."""
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        return None
    if address not in NETWORK:
        return None
    domain = int(address) - int(NETWORK.network_address)
    return domain if is_domid(domain) else None


def _check_port(port: int) -> None:
    if not 0 < port <= 0xFFFF:
        raise ValueError(f"simulated Argo port {port} is out of range 1..65535 (TCP's)")


class SimulatedDriver:
    """The ``Driver`` calls over TCP sockets on the simulated network."""

    def __init__(self) -> None:
        self._partners: dict[int, int | None] = {}  # listening fd -> its partner

    @property
    def name(self) -> str:
        return "simulated"

    def listen(self, port: int, partner: int | None) -> int:
        _check_port(port)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("0.0.0.0", port))
            sock.listen(BACKLOG)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._partners[sock.fileno()] = partner
        return sock.detach()

    def accept(self, fd: int) -> tuple[int, ArgoAddress] | None:
        listener = socket.socket(fileno=fd)
        try:
            try:
                conn, (host, port) = listener.accept()
            except BlockingIOError:
                return None
        finally:
            listener.detach()  # the fd stays the port's
        try:
            domain = self._admitted(host, port, conn.getsockname()[0], self._partners.get(fd))
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except BaseException:
            conn.close()
            raise
        return conn.detach(), ArgoAddress(domain, port)

    @staticmethod
    def _admitted(host: str, port: int, local: str, partner: int | None) -> int:
        """The peer's domain; PeerRefused if it may not connect."""
        domain = domain_of(host)
        if domain is None or domain_of(local) is None:
            raise PeerRefused(f"{host}:{port} to {local}: not the simulated Argo network")
        if partner is not None and domain != partner:
            raise PeerRefused(f"domain {domain} is not this listener's partner {partner}")
        return domain

    def connect(self, domain: int, port: int) -> tuple[int, bool]:
        _check_port(port)
        target = address_of(domain)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            code = sock.connect_ex((target, port))
        except BaseException:
            sock.close()
            raise
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            raise OSError(code, os.strerror(code), f"{target}:{port}")
        return sock.detach(), code == errno.EINPROGRESS

    def connect_error(self, fd: int) -> int:
        sock = socket.socket(fileno=fd)
        try:
            return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        finally:
            sock.detach()

    def local_address(self, fd: int) -> ArgoAddress:
        sock = socket.socket(fileno=fd)
        try:
            host, port = sock.getsockname()[:2]
        finally:
            sock.detach()
        return ArgoAddress(domain_of(host), port)

    def read(self, fd: int, size: int) -> bytes:
        return os.read(fd, size)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        return os.write(fd, data)

    def close(self, fd: int) -> None:
        self._partners.pop(fd, None)
        os.close(fd)

    def __repr__(self) -> str:
        return "SimulatedDriver()"
