"""XenStore for serouter: a native Twisted client, and what federation and labeling need.

``XenStoreClient(reactor)`` is a service: once started it finds xenstored (``XENSTORED_PATH``,
dom0's socket, or ``/dev/xen/xenbus`` in a guest), stays connected, and re-registers its
watches after every reconnection. Every request returns a Deferred; refusals fail with
:class:`XenStoreError` (``.name`` is the errno name), silence with :class:`XenStoreUnavailable`.
Helpers: ``publish_nameserver``, ``remove``, ``watch_value``, ``domain_info``. See
docs/xenstore.md. Nothing here blocks or starts a thread: shutting down never waits on
xenstored.
"""

from serouter.xenstore._client import Transaction, Watch, XenStoreClient
from serouter.xenstore._endpoints import (
    DEFAULT_PATHS,
    XenbusEndpoint,
    XenbusTransport,
    XenStoreEndpoint,
)
from serouter.xenstore._errors import XenStoreError, XenStoreProtocolError, XenStoreUnavailable
from serouter.xenstore._helpers import DomainInfo, DomainInfoError, ValueWatch
from serouter.xenstore._protocol import XenStoreProtocol
from serouter.xenstore._wire import PAYLOAD_MAX, Op, Permission, is_valid_path

__all__ = [
    "DEFAULT_PATHS",
    "PAYLOAD_MAX",
    "DomainInfo",
    "DomainInfoError",
    "Op",
    "Permission",
    "Transaction",
    "ValueWatch",
    "Watch",
    "XenStoreClient",
    "XenStoreEndpoint",
    "XenStoreError",
    "XenStoreProtocol",
    "XenStoreProtocolError",
    "XenStoreUnavailable",
    "XenbusEndpoint",
    "XenbusTransport",
    "is_valid_path",
]
