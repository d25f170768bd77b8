"""Argo (Xen's inter-domain transport) for serouter: endpoints, transport, domain identity.

``argo:port=5555`` listens and ``argo:domain=0:port=5555`` connects, like any Twisted endpoint
string; RawSocket and WebSocket run over it unchanged. Each accepted connection knows its
peer's domain id, stamped by Xen, and the name and VM uuid dom0's XenStore gives that domain
(``PeerDomain``), from which the session's label and transport-derived authid are made. A
simulation over TCP in network namespaces stands in where there is no Xen (``simulate=1``).
See docs/argo.md. This package never trusts anything a peer says about itself.

Modules: ``_abi`` (ioctl numbers and layouts), ``_device`` (the device calls), ``_simulate``
(the same calls over TCP), ``_transport`` (the Twisted FileDescriptors), ``_domains`` (domain
id -> name and uuid), ``_endpoints`` (endpoint strings).
"""

from __future__ import annotations

import importlib
import os

from serouter.argo._abi import ABIS, ARGO, V4V, Abi
from serouter.argo._device import ArgoAddress, ArgoDriver, Driver, OsSyscalls, PeerRefused
from serouter.argo._domains import (
    DomainNaming,
    PeerDomain,
    Resolver,
    XenStoreDomains,
    domain_key,
    domain_keys,
    domid_only,
)
from serouter.argo._endpoints import (
    ArgoClientEndpoint,
    ArgoClientParser,
    ArgoServerEndpoint,
    ArgoServerParser,
    parse_client,
    parse_server,
)
from serouter.argo._simulate import SimulatedDriver
from serouter.argo._transport import ArgoConnection, ArgoPort, connect

__all__ = [
    "ABIS",
    "ARGO",
    "V4V",
    "Abi",
    "ArgoAddress",
    "ArgoClientEndpoint",
    "ArgoClientParser",
    "ArgoConnection",
    "ArgoDriver",
    "ArgoPort",
    "ArgoServerEndpoint",
    "ArgoServerParser",
    "DomainNaming",
    "Driver",
    "OsSyscalls",
    "PeerDomain",
    "PeerRefused",
    "Resolver",
    "SimulatedDriver",
    "XenStoreDomains",
    "connect",
    "domain_key",
    "domain_keys",
    "domid_only",
    "parse_client",
    "parse_server",
    "register_endpoint_plugins",
]

_PLUGINS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "twisted",
                        "plugins")


def register_endpoint_plugins() -> None:
    """Make sure Twisted finds the ``argo:`` parsers (idempotent).

    An installed wheel puts ``twisted/plugins/serouter_argo.py`` on ``sys.path`` and this does
    nothing; an editable install maps only the ``serouter`` package, so the source tree's
    ``twisted/plugins`` is added to Twisted's plugin path here.
    """
    # by name: with the source tree's twisted/plugins next to it, linters take a plain import
    # of twisted.plugins for one of this project's modules
    twisted_plugins = importlib.import_module("twisted.plugins")
    path = os.path.abspath(_PLUGINS)
    if os.path.isfile(os.path.join(path, "serouter_argo.py")) and path not in [
        os.path.abspath(p) for p in twisted_plugins.__path__
    ]:
        twisted_plugins.__path__.append(path)
