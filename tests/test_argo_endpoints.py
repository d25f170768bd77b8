"""``argo:`` endpoint strings: Twisted finds the parsers as a plugin, options are checked, the
simulated network's address convention, and what listening does on a host without Argo."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from twisted.internet import error
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor

from serouter.argo import (
    ARGO,
    V4V,
    ArgoClientEndpoint,
    ArgoDriver,
    ArgoServerEndpoint,
    PeerRefused,
    SimulatedDriver,
    register_endpoint_plugins,
)
from serouter.argo._simulate import address_of, domain_of
from tests.router_process import ROOT

register_endpoint_plugins()


def server(description: str) -> Any:
    return serverFromString(MemoryReactor(), description)  # type: ignore[no-untyped-call]


def client(description: str) -> Any:
    return clientFromString(MemoryReactor(), description)  # type: ignore[no-untyped-call]


def test_server_strings() -> None:
    """Port by name or position; partner; the v4v driver; the simulation."""
    plain = server("argo:port=5555")
    assert isinstance(plain, ArgoServerEndpoint)
    assert (plain.port, plain.partner) == (5555, None)
    assert isinstance(plain.driver, ArgoDriver) and plain.driver.abi is ARGO
    legacy = server("argo:5556:partner=3:driver=v4v")
    assert (legacy.port, legacy.partner, legacy.driver.abi) == (5556, 3, V4V)
    assert isinstance(server("argo:port=5555:simulate=1").driver, SimulatedDriver)
    assert isinstance(server("argo:port=5555:simulate=no").driver, ArgoDriver)


def test_client_strings() -> None:
    plain = client("argo:domain=0:port=5555")
    assert isinstance(plain, ArgoClientEndpoint)
    assert (plain.domain, plain.port, plain.timeout) == (0, 5555, 30.0)
    positional = client("argo:7:5555:timeout=2.5:simulate=1")
    assert (positional.domain, positional.timeout) == (7, 2.5)
    assert isinstance(positional.driver, SimulatedDriver)


@pytest.mark.parametrize("description,message", [
    ("argo:partner=3", "port is required"),
    ("argo:port=0", "port must be a number in 1.."),
    ("argo:port=4294967295", "port must be a number in 1.."),
    ("argo:port=-1", "port must be"),
    ("argo:port=70000:simulate=1", "1..65535"),
    ("argo:port=5555:partner=32753", "reserved domain ids"),
    ("argo:port=5555:partner=x", "partner must be a number"),
    ("argo:port=5555:driver=v5v", "driver must be one of argo, v4v"),
    ("argo:port=5555:simulate=maybe", "simulate must be 1 or 0"),
    ("argo:port=5555:simulate=1:driver=v4v", "simulate replaces the device"),
    ("argo:port=5555:interface=1.2.3.4", "unknown option 'interface'"),
    ("argo:5555:6666", "too many positional fields"),
    ("argo:5555:port=5555", "port given twice"),
])
def test_server_strings_refused(description: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        server(description)


@pytest.mark.parametrize("description,message", [
    ("argo:port=5555", "domain is required"),
    ("argo:domain=0", "port is required"),
    ("argo:domain=32767:port=1", "reserved domain ids"),
    ("argo:domain=0:port=1:timeout=0", "timeout must be seconds"),
    ("argo:domain=0:port=1:timeout=soon", "timeout must be seconds"),
    ("argo:domain=0:port=1:partner=2", "unknown option 'partner'"),
])
def test_client_strings_refused(description: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        client(description)


def test_twisted_finds_the_plugin_from_the_source_tree_layout() -> None:
    """In a fresh interpreter with the checkout on sys.path (as from an installed wheel, whose
    twisted/plugins/serouter_argo.py sits on sys.path the same way), plain Twisted resolves
    argo: strings with no help from serouter; from elsewhere, register_endpoint_plugins()
    (the editable-install case) is enough."""
    probe = ("from twisted.internet.endpoints import serverFromString, clientFromString\n"
             "from twisted.internet.testing import MemoryReactor\n"
             "{setup}"
             "print(type(serverFromString(MemoryReactor(), 'argo:port=1')).__name__,"
             " type(clientFromString(MemoryReactor(), 'argo:domain=0:port=1')).__name__)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    plain = subprocess.run([sys.executable, "-c", probe.format(setup="")], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=60, check=False)
    assert plain.stdout.split() == ["ArgoServerEndpoint", "ArgoClientEndpoint"], plain.stderr
    setup = "import serouter.argo; serouter.argo.register_endpoint_plugins()\n"
    elsewhere = subprocess.run([sys.executable, "-c", probe.format(setup=setup)], cwd="/",
                               capture_output=True, text=True, timeout=60, check=False)
    assert elsewhere.stdout.split() == ["ArgoServerEndpoint", "ArgoClientEndpoint"], (
        elsewhere.stderr)


def test_register_is_idempotent() -> None:
    from twisted import plugins

    before = list(plugins.__path__)
    register_endpoint_plugins()
    register_endpoint_plugins()
    assert list(plugins.__path__) == before


def test_listening_without_the_device_fails_with_the_reason() -> None:
    """On a host without /dev/argo_stream, listening fails (CannotListenError naming the
    device's absence); nothing is left open."""
    if os.path.exists(ARGO.device):
        pytest.skip("this host has an Argo device")
    from twisted.internet import reactor

    endpoint = serverFromString(reactor, "argo:port=5555")  # type: ignore[no-untyped-call]
    failures: list[Any] = []
    endpoint.listen(Factory.forProtocol(Protocol)).addErrback(failures.append)
    assert failures[0].check(error.CannotListenError)
    assert "No such file or directory" in str(failures[0].value)


def test_simulated_addresses_follow_libargo() -> None:
    """Domain D is 1.0.(D >> 8).(D & 255); only addresses of 1.0.0.0/16 below the reserved
    domain ids stand for a domain."""
    assert address_of(0) == "1.0.0.0" and address_of(1) == "1.0.0.1"
    assert address_of(258) == "1.0.1.2" and domain_of("1.0.1.2") == 258
    assert all(domain_of(address_of(d)) == d for d in (0, 1, 255, 256, 0x7FEF))
    for host in ("127.0.0.1", "1.1.0.1", "1.0.127.240", "1.0.255.255", "::1", "dom0"):
        assert domain_of(host) is None, host
    with pytest.raises(ValueError):
        address_of(0x7FF0)


def test_simulated_listener_admits_only_the_simulated_network() -> None:
    """Both ends must be simulated addresses, and the partner, if any, the peer's domain."""
    admitted = SimulatedDriver._admitted
    assert admitted("1.0.0.2", 4000, "1.0.0.0", None) == 2
    assert admitted("1.0.0.2", 4000, "1.0.0.1", 2) == 2
    for args in (("1.0.0.2", 1, "192.168.1.5", None), ("10.0.0.2", 1, "1.0.0.0", None),
                 ("1.0.0.2", 1, "1.0.0.0", 3), ("1.0.255.255", 1, "1.0.0.0", None)):
        with pytest.raises(PeerRefused):
            admitted(*args)
