"""Federation: routers in many VMs that behave as one router to every client.

- Name-server mode (``[router] mode = "nameserver"``, dom0): every realm hosts the name
  service (``serouter.ns.*``), where routers announce what they provide and look up who
  provides what; its endpoint is published in XenStore.
- Router mode with ``[federation]``: a proxy per realm, one trusted internal session that
  announces this router's registrations and published topics, forwards calls no local callee
  takes straight to the providing router, and re-publishes remote topics locally.

``for_config`` builds what the configuration asks for; docs/federation.md is the protocol.
"""

from serouter.federation._client import WampClient, WampError, open_session
from serouter.federation._index import NameIndex
from serouter.federation._nameserver import NameServer, NameService
from serouter.federation._protocol import Entry, Key
from serouter.federation._proxy import Proxy
from serouter.federation._service import Federation, NameServerService, for_config

__all__ = [
    "Entry",
    "Federation",
    "Key",
    "NameIndex",
    "NameServer",
    "NameServerService",
    "NameService",
    "Proxy",
    "WampClient",
    "WampError",
    "for_config",
    "open_session",
]
