"""The Argo and v4v ioctl interface: request numbers and packed layouts match the drivers'
headers, as the C compiler computes them from ``<linux/ioctl.h>`` and the headers' structs."""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import pytest

from serouter.argo import ARGO, V4V, Abi
from serouter.argo._abi import IOC_READ, IOC_WRITE, ioc, iow
from tests.argo_support import c_abi

REQUESTS = ("BIND", "GETSOCKNAME", "GETPEERNAME", "CONNECT", "GETCONNECTERR", "LISTEN", "ACCEPT")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    values = c_abi(tmp_path_factory.mktemp("abi"))
    if values is None:
        pytest.skip("no C compiler or kernel headers: the ctypes checks below still run")
    return values


@pytest.mark.parametrize("abi,prefix", [(ARGO, "ARGOIOC"), (V4V, "V4VIOC")])
def test_request_numbers_equal_the_compiled_header_macros(
    compiled: dict[str, Any], abi: Abi, prefix: str
) -> None:
    """Every request number is what ``_IOW('W', nr, type)`` gives in C."""
    for name in REQUESTS:
        assert getattr(abi, name) == compiled[prefix + name], name


def test_layouts_equal_the_compiled_structs(compiled: dict[str, Any]) -> None:
    """Sizes, field order and byte order of the packed structs are the compiler's."""
    assert ARGO.addr.size == compiled["sizeof_xen_argo_addr"] == 8
    assert ARGO.ring_id.size == compiled["sizeof_argo_ring_id"] == 8
    assert V4V.addr.size == compiled["sizeof_v4v_addr"] == 6
    assert V4V.ring_id.size == compiled["sizeof_v4v_ring_id"] == 8
    assert ARGO.pack_addr(0x0203, 0x12345678).hex() == compiled["argo_addr"]
    assert ARGO.pack_ring_id(5555, 5).hex() == compiled["argo_ring_id"]
    assert V4V.pack_addr(0x0203, 0x12345678).hex() == compiled["v4v_addr"]
    assert V4V.pack_ring_id(5555, 5).hex() == compiled["v4v_ring_id"]


class _ArgoAddr(ctypes.Structure):
    _fields_ = [("aport", ctypes.c_uint32), ("domain_id", ctypes.c_uint16),
                ("pad", ctypes.c_uint16)]


class _ArgoRingId(ctypes.Structure):
    _fields_ = [("domain_id", ctypes.c_uint16), ("partner_id", ctypes.c_uint16),
                ("aport", ctypes.c_uint32)]


class _V4vAddr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("port", ctypes.c_uint32), ("domain", ctypes.c_uint16)]


class _V4vRingId(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("addr", _V4vAddr), ("partner", ctypes.c_uint16)]


def _generic_iow(nr: int, size: int) -> int:
    """``_IOW('W', nr, size)`` written out from asm-generic/ioctl.h's shifts."""
    return (1 << 30) | (size << 16) | (ord("W") << 8) | nr


def test_requests_from_ctypes_layouts() -> None:
    """Without a compiler: the same numbers from ctypes' C layouts and the generic encoding."""
    int_size, u32 = ctypes.sizeof(ctypes.c_int), ctypes.sizeof(ctypes.c_uint32)
    for abi, addr, ring in ((ARGO, _ArgoAddr, _ArgoRingId), (V4V, _V4vAddr, _V4vRingId)):
        sizes = {"BIND": ctypes.sizeof(ring), "GETSOCKNAME": ctypes.sizeof(ring),
                 "GETPEERNAME": ctypes.sizeof(addr), "CONNECT": ctypes.sizeof(addr),
                 "GETCONNECTERR": int_size, "LISTEN": u32, "ACCEPT": ctypes.sizeof(addr)}
        numbers = {"BIND": 2, "GETSOCKNAME": 3, "GETPEERNAME": 4, "CONNECT": 5,
                   "GETCONNECTERR": 6, "LISTEN": 7, "ACCEPT": 8}
        for name in REQUESTS:
            assert getattr(abi, name) == _generic_iow(numbers[name], sizes[name]), (abi, name)
    raw = bytes(_ArgoAddr(aport=5555, domain_id=7))
    assert ARGO.unpack_addr(raw) == (7, 5555)
    v4v = _V4vRingId(addr=_V4vAddr(port=5555, domain=0x7FFF), partner=3)
    assert V4V.pack_ring_id(5555, 3) == bytes(v4v)


def test_the_numbers_measured_on_a_xen_host() -> None:
    """The values DESIGN.md records from a real x86_64 Argo driver."""
    assert (ARGO.BIND, ARGO.CONNECT, ARGO.LISTEN, ARGO.ACCEPT, ARGO.GETPEERNAME,
            ARGO.GETCONNECTERR) == (0x40085702, 0x40085705, 0x40045707, 0x40085708,
                                    0x40085704, 0x40045706)
    assert (ARGO.domid_any, ARGO.port_any) == (0x7FF4, 0xFFFFFFFF)


def test_ioc_encoding_and_limits() -> None:
    """Direction bits, the 14-bit size field, and refusal of sizes that do not fit."""
    assert iow(ord("W"), 2, 8) == ioc(IOC_WRITE, ord("W"), 2, 8) == 0x40085702
    assert ioc(IOC_READ, ord("W"), 1, 4) == 0x80045701
    with pytest.raises(ValueError):
        iow(ord("W"), 1, 1 << 14)


def test_pack_and_unpack_round_trip() -> None:
    """Addresses and ring ids survive packing; "any partner" is the driver's DOMID_ANY."""
    for abi in (ARGO, V4V):
        assert abi.unpack_addr(abi.pack_addr(3, 5555)) == (3, 5555)
        assert abi.unpack_ring_id(abi.pack_ring_id(5555, None)) == (
            abi.domid_any, 5555, abi.domid_any)
        assert abi.unpack_ring_id(abi.pack_ring_id(5555, 9)) == (abi.domid_any, 5555, 9)
        assert abi.unpack_int(abi.pack_int(-111)) == -111
    assert Path(ARGO.device).name == "argo_stream" and Path(V4V.device).name == "v4v_stream"
