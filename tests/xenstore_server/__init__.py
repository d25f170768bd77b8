"""A xenstored for tests: the real wire protocol over Unix sockets, one socket per domain.

No real xenstored can run without Xen (see docs/xenstore.md), so tests use this one; Debian's
``xenstore-utils`` tools are driven against it to keep it honest. ``Store`` is the database
with no I/O; ``XenStoreServer`` serves it with Twisted; ``python -m tests.xenstored`` runs it
as a process, and ``XenstoredProcess`` runs that from a test.
"""

from tests.xenstore_server._process import RawClient, XenstoredProcess
from tests.xenstore_server._server import XenStoreServer
from tests.xenstore_server._store import Session, Store
from tests.xenstore_server._tree import NONE, READ, WRITE, Perm
from tests.xenstore_server._wire import HEADER, PAYLOAD_MAX, Op, XsError, packet

__all__ = [
    "HEADER", "NONE", "PAYLOAD_MAX", "READ", "WRITE", "Op", "Perm", "RawClient", "Session",
    "Store", "XenStoreServer", "XenstoredProcess", "XsError", "packet",
]
