"""``argo:`` endpoint strings: Argo is one more Twisted endpoint, for listeners and federation.

Server: ``argo:port=5555`` (or ``argo:5555``), options ``partner=<domid>`` (only that domain
may connect), ``driver=v4v`` (the legacy v4v device), ``simulate=1`` (TCP on the simulated
network, see ``_simulate``). Client: ``argo:domain=0:port=5555`` (or ``argo:0:5555``), options
``timeout=<seconds>`` (default 30), ``driver``, ``simulate``. Parsing never opens the device,
so configuration checks can parse against a ``MemoryReactor``.

The parsers are found by Twisted through ``twisted/plugins/serouter_argo.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IReactorCore,
    IStreamClientEndpoint,
    IStreamClientEndpointStringParserWithReactor,
    IStreamServerEndpoint,
    IStreamServerEndpointStringParser,
)
from twisted.plugin import IPlugin
from zope.interface import implementer

from serouter.argo._abi import ABIS, is_domid
from serouter.argo._device import ArgoDriver, Driver
from serouter.argo._domains import Resolver, domid_only
from serouter.argo._simulate import SimulatedDriver
from serouter.argo._transport import ArgoPort, connect

PREFIX = "argo"
_TRUE = ("1", "yes", "true", "on")
_FALSE = ("0", "no", "false", "off")


@implementer(IStreamServerEndpoint)
class ArgoServerEndpoint:
    """Listens on an Argo port. ``resolver`` names the peer domains (the service sets it to
    XenStore's; by default a connection knows its peer's domain id only)."""

    def __init__(
        self,
        reactor: Any,
        port: int,
        *,
        partner: int | None = None,
        driver: Driver | None = None,
        resolver: Resolver = domid_only,
    ) -> None:
        self.reactor = reactor
        self.port = port
        self.partner = partner
        self.driver: Driver = driver if driver is not None else ArgoDriver()
        self.resolver = resolver

    def listen(self, protocolFactory: IProtocolFactory) -> defer.Deferred[IListeningPort]:
        port = ArgoPort(self.reactor, self.driver, self.port, protocolFactory,
                        partner=self.partner, resolver=self.resolver)
        try:
            port.startListening()
        except Exception:
            return defer.fail()
        return defer.succeed(port)


@implementer(IStreamClientEndpoint)
class ArgoClientEndpoint:
    """Connects to an Argo port of a domain."""

    def __init__(
        self,
        reactor: Any,
        domain: int,
        port: int,
        *,
        timeout: float = 30.0,
        driver: Driver | None = None,
    ) -> None:
        self.reactor = reactor
        self.domain = domain
        self.port = port
        self.timeout = timeout
        self.driver: Driver = driver if driver is not None else ArgoDriver()

    def connect(self, protocolFactory: IProtocolFactory) -> defer.Deferred[IProtocol]:
        return connect(self.reactor, self.driver, protocolFactory, domain=self.domain,
                       port=self.port, timeout=self.timeout)


# -- endpoint strings ------------------------------------------------------------------------


def _flag(name: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ValueError(f"argo: {name} must be 1 or 0, got {value!r}")


def _number(name: str, value: str, low: int, high: int) -> int:
    if not value.isdigit() or not low <= int(value) <= high:
        raise ValueError(f"argo: {name} must be a number in {low}..{high}, got {value!r}")
    return int(value)


def _domid(name: str, value: str) -> int:
    domid = _number(name, value, 0, 0xFFFF)
    if not is_domid(domid):
        raise ValueError(f"argo: {name} {domid} is one of Xen's reserved domain ids")
    return domid


def _options(
    kind: str, positional: tuple[str, ...], args: tuple[str, ...], kwargs: Mapping[str, str],
    allowed: tuple[str, ...],
) -> dict[str, str]:
    """Positional fields (in ``positional`` order) and key=value fields, as one dict."""
    if len(args) > len(positional):
        raise ValueError(f"argo {kind}: too many positional fields {list(args)} (write "
                         f"{', '.join(f'{p}=...' for p in positional)})")
    options = dict(zip(positional, args, strict=False))
    for key, value in kwargs.items():
        if key not in allowed:
            raise ValueError(f"argo {kind}: unknown option {key!r}; allowed: {', '.join(allowed)}")
        if key in options:
            raise ValueError(f"argo {kind}: {key} given twice")
        options[key] = value
    return options


def _driver(options: Mapping[str, str]) -> Driver:
    simulate = _flag("simulate", options.get("simulate", "0"))
    name = options.get("driver", "argo")
    if name not in ABIS:
        raise ValueError(f"argo: driver must be one of {', '.join(ABIS)}, got {name!r}")
    if simulate:
        if "driver" in options:
            raise ValueError("argo: simulate replaces the device: remove driver")
        return SimulatedDriver()
    return ArgoDriver(ABIS[name])


def _port(options: Mapping[str, str], driver: Driver) -> int:
    if "port" not in options:
        raise ValueError("argo: port is required")
    high = 0xFFFF if isinstance(driver, SimulatedDriver) else 0xFFFFFFFE
    return _number("port", options["port"], 1, high)


def parse_server(reactor: Any, *args: str, **kwargs: str) -> ArgoServerEndpoint:
    """``argo:port=5555[:partner=D][:driver=v4v][:simulate=1]``."""
    options = _options("server", ("port",), args, kwargs,
                       ("port", "partner", "driver", "simulate"))
    driver = _driver(options)
    partner = _domid("partner", options["partner"]) if "partner" in options else None
    return ArgoServerEndpoint(reactor, _port(options, driver), partner=partner, driver=driver)


def parse_client(reactor: Any, *args: str, **kwargs: str) -> ArgoClientEndpoint:
    """``argo:domain=0:port=5555[:timeout=30][:driver=v4v][:simulate=1]``."""
    options = _options("client", ("domain", "port"), args, kwargs,
                       ("domain", "port", "timeout", "driver", "simulate"))
    driver = _driver(options)
    if "domain" not in options:
        raise ValueError("argo: domain is required (the domain id to connect to)")
    domain = _domid("domain", options["domain"])
    timeout = 30.0
    if "timeout" in options:
        try:
            timeout = float(options["timeout"])
        except ValueError:
            timeout = -1.0
        if not 0 < timeout <= 3600:
            raise ValueError(f"argo: timeout must be seconds in (0, 3600], got "
                             f"{options['timeout']!r}")
    return ArgoClientEndpoint(reactor, domain, _port(options, driver), timeout=timeout,
                              driver=driver)


@implementer(IPlugin, IStreamServerEndpointStringParser)
class ArgoServerParser:
    prefix = PREFIX

    def parseStreamServer(
        self, reactor: IReactorCore, *args: object, **kwargs: object
    ) -> IStreamServerEndpoint:
        return parse_server(reactor, *map(str, args), **{k: str(v) for k, v in kwargs.items()})


@implementer(IPlugin, IStreamClientEndpointStringParserWithReactor)
class ArgoClientParser:
    prefix = PREFIX

    def parseStreamClient(
        self, reactor: IReactorCore, *args: object, **kwargs: object
    ) -> IStreamClientEndpoint:
        return parse_client(reactor, *map(str, args), **{k: str(v) for k, v in kwargs.items()})
