"""The Argo and v4v stream devices' ioctl interface: request numbers and packed layouts.

This is the one place that knows the drivers' binary interface. Everything is derived from
the drivers' headers, not copied as magic numbers:

- Argo: OpenXT ``linux-xen-argo``, ``argo-linux/include/linux/argo_dev.h`` (the requests,
  ``struct argo_ring_id``) and ``argo-linux/include/linux/argo.h`` (``xen_argo_addr_t``,
  ``XEN_ARGO_DOMID_ANY`` = ``DOMID_INVALID`` = 0x7FF4, ``XEN_ARGO_PORT_ANY``).
- v4v (Argo's predecessor): the same repository's ``v4v/linux/v4v_dev.h`` and
  ``v4v/include/xen/v4v.h`` (``v4v_addr_t`` and ``v4v_ring_id_t`` are packed; 6 and 8 bytes;
  ``V4V_DOMID_ANY`` = 0x7FFF).

Both headers declare every request with ``_IOW('W', nr, type)``, even those the driver writes
back to (GETPEERNAME, ACCEPT, GETCONNECTERR): the direction bits are the header's, whatever the
data flow. ``_IOW`` is Linux's generic encoding (``include/uapi/asm-generic/ioctl.h``, used by
x86 and arm, the architectures Xen runs on): direction in bits 30-31 (write = 1), the argument
size in bits 16-29, the type in bits 8-15, the number in bits 0-7. So BIND, whose argument is
the 8-byte ring id, is ``(1 << 30) | (8 << 16) | (ord('W') << 8) | 2`` = 0x40085702. The tests
recompute every number with the C compiler from ``<linux/ioctl.h>`` and struct declarations
that follow the headers, and compare.

The two interfaces differ only in these constants and layouts: the same calls, in the same
order, with the same semantics (BIND, LISTEN, non-blocking ACCEPT returning a new fd and the
peer's address, CONNECT with EINPROGRESS, GETCONNECTERR). So one transport serves both.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

# <asm-generic/ioctl.h>
_IOC_NRSHIFT: Final = 0
_IOC_TYPESHIFT: Final = 8
_IOC_SIZESHIFT: Final = 16
_IOC_DIRSHIFT: Final = 30
_IOC_SIZEMASK: Final = (1 << 14) - 1
IOC_WRITE: Final = 1
IOC_READ: Final = 2

IOCTL_TYPE: Final = ord("W")  # ARGO_TYPE and V4V_TYPE


def ioc(direction: int, kind: int, number: int, size: int) -> int:
    """``_IOC(dir, type, nr, size)``."""
    if not 0 <= size <= _IOC_SIZEMASK:
        raise ValueError(f"an ioctl argument of {size} bytes does not fit the encoding")
    return (
        (direction << _IOC_DIRSHIFT)
        | (size << _IOC_SIZESHIFT)
        | (kind << _IOC_TYPESHIFT)
        | (number << _IOC_NRSHIFT)
    )


def iow(kind: int, number: int, size: int) -> int:
    """``_IOW(type, nr, T)`` with ``size`` = ``sizeof(T)``."""
    return ioc(IOC_WRITE, kind, number, size)


# Native byte order, standard sizes, no padding: the kernel's layout on the host. Argo's structs
# have no padding to add; v4v's are declared packed.
_INT: Final = struct.Struct("=i")
_U32: Final = struct.Struct("=I")


@dataclass(frozen=True)
class Abi:
    """One driver's device and binary interface."""

    name: str
    device: str
    domid_any: int  # "any domain": BIND's own-domain field, a ring open to every partner
    port_any: int | None
    addr: struct.Struct  # the peer address of CONNECT, ACCEPT, GETPEERNAME
    addr_fields: tuple[str, ...]  # the order of (port, domain) in ``addr``, for pack/unpack
    ring_id: struct.Struct  # BIND's argument
    ring_id_fields: tuple[str, ...]  # the order of (port, domain, partner) in ``ring_id``

    # request numbers (the header's names), derived from the sizes above
    @property
    def BIND(self) -> int:
        return iow(IOCTL_TYPE, 2, self.ring_id.size)

    @property
    def GETSOCKNAME(self) -> int:
        return iow(IOCTL_TYPE, 3, self.ring_id.size)

    @property
    def GETPEERNAME(self) -> int:
        return iow(IOCTL_TYPE, 4, self.addr.size)

    @property
    def CONNECT(self) -> int:
        return iow(IOCTL_TYPE, 5, self.addr.size)

    @property
    def GETCONNECTERR(self) -> int:
        return iow(IOCTL_TYPE, 6, _INT.size)

    @property
    def LISTEN(self) -> int:  # its argument is a uint32_t the driver ignores
        return iow(IOCTL_TYPE, 7, _U32.size)

    @property
    def ACCEPT(self) -> int:
        return iow(IOCTL_TYPE, 8, self.addr.size)

    def pack_addr(self, domain: int, port: int) -> bytes:
        values = {"port": port, "domain": domain, "pad": 0}
        return self.addr.pack(*(values[f] for f in self.addr_fields))

    def unpack_addr(self, data: bytes | bytearray) -> tuple[int, int]:
        """(domain, port) of a packed address."""
        values = dict(zip(self.addr_fields, self.addr.unpack(bytes(data)), strict=True))
        return values["domain"], values["port"]

    def pack_ring_id(self, port: int, partner: int | None) -> bytes:
        """BIND's ring id: this domain (always "any": the driver fills it in), ``port``, and the
        one domain allowed to connect (None: any)."""
        values = {
            "domain": self.domid_any,
            "partner": self.domid_any if partner is None else partner,
            "port": port,
            "pad": 0,
        }
        return self.ring_id.pack(*(values[f] for f in self.ring_id_fields))

    def unpack_ring_id(self, data: bytes | bytearray) -> tuple[int, int, int]:
        """(domain, port, partner) of a packed ring id."""
        values = dict(zip(self.ring_id_fields, self.ring_id.unpack(bytes(data)), strict=True))
        return values["domain"], values["port"], values["partner"]

    @staticmethod
    def pack_int(value: int = 0) -> bytearray:
        return bytearray(_INT.pack(value))

    @staticmethod
    def unpack_int(data: bytes | bytearray) -> int:
        return int(_INT.unpack(bytes(data))[0])


# xen_argo_addr_t { uint32_t aport; domid_t domain_id; uint16_t pad; }
# struct argo_ring_id { domid_t domain_id; domid_t partner_id; xen_argo_port_t aport; }
ARGO: Final = Abi(
    name="argo",
    device="/dev/argo_stream",
    domid_any=0x7FF4,  # XEN_ARGO_DOMID_ANY = DOMID_INVALID
    port_any=0xFFFFFFFF,  # XEN_ARGO_PORT_ANY
    addr=struct.Struct("=IHH"),
    addr_fields=("port", "domain", "pad"),
    ring_id=struct.Struct("=HHI"),
    ring_id_fields=("domain", "partner", "port"),
)

# v4v_addr_t { uint32_t port; domid_t domain; } packed
# v4v_ring_id_t { v4v_addr_t addr; domid_t partner; } packed
V4V: Final = Abi(
    name="v4v",
    device="/dev/v4v_stream",
    domid_any=0x7FFF,  # V4V_DOMID_ANY = V4V_DOMID_NONE = V4V_DOMID_INVALID
    port_any=None,  # v4v has V4V_PORT_NONE (0) only
    addr=struct.Struct("=IH"),
    addr_fields=("port", "domain"),
    ring_id=struct.Struct("=IHH"),
    ring_id_fields=("port", "domain", "partner"),
)

ABIS: Final = {abi.name: abi for abi in (ARGO, V4V)}

# Domain ids from DOMID_FIRST_RESERVED (0x7FF0) up are Xen's special values (DOMID_SELF,
# DOMID_IO, DOMID_XEN, DOMID_COW, DOMID_INVALID, DOMID_IDLE): never a peer.
DOMID_FIRST_RESERVED: Final = 0x7FF0


def is_domid(value: int) -> bool:
    """A domain id a real domain can have."""
    return 0 <= value < DOMID_FIRST_RESERVED
