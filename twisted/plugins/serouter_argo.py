"""Twisted endpoint string parsers for ``argo:`` (serouter.argo): found by ``twisted.plugin``.

This file is installed as ``twisted/plugins/serouter_argo.py`` (pyproject.toml lists the
``twisted.plugins`` namespace package), so ``serverFromString(reactor, "argo:port=5555")`` and
``clientFromString(reactor, "argo:domain=0:port=5555")`` work in any program. An editable
install is not on ``sys.path``; ``serouter.argo.register_endpoint_plugins()`` covers that case.
"""

from serouter.argo._endpoints import ArgoClientParser, ArgoServerParser

argo_server = ArgoServerParser()
argo_client = ArgoClientParser()
