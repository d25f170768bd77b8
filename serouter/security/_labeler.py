"""Session labels, only from what the kernel vouches for or the router itself established.

Sources, the first that gives a label wins:

1. ``[access.authid_labels]``, then ``[access.authrole_labels]``: only for a session the router
   authenticated (authmethod other than "anonymous"); a name a client merely claims is never
   looked up.
2. ``[access.uid_labels]``: the Unix peer's uid from SO_PEERCRED.
3. ``[access.domain_labels]``: the Argo peer's domain, by VM uuid, then name (both from dom0's
   XenStore entries for the domain id), then the domain id Xen stamped (serouter.argo).
4. The Unix peer's SELinux context from SO_PEERSEC, trusted only when SELinux is enabled (on
   an AppArmor host the same option returns an AppArmor label).
5. The listener's configured ``label``.

A label that is not valid in the loaded policy does not fall through to a weaker source: the
session gets the ``unlabeled`` context, as does a session no source labels. HELLO details are
never an input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from twisted.logger import Logger

from serouter.argo._domains import domain_keys
from serouter.core.peer import TransportInfo

log = Logger(namespace="serouter.security.labels")

ANONYMOUS = "anonymous"


class SessionLabeler:
    """The router's ``Labeler``: TransportInfo + the router's own identity -> a context."""

    def __init__(
        self,
        *,
        unlabeled: str,
        valid: Callable[[str], bool],
        trust_peer_context: bool,
        uid_labels: Mapping[int, str] | None = None,
        authid_labels: Mapping[str, str] | None = None,
        authrole_labels: Mapping[str, str] | None = None,
        domain_labels: Mapping[str, str] | None = None,
    ) -> None:
        self.unlabeled = unlabeled
        self.valid = valid
        self.trust_peer_context = trust_peer_context
        self.uid_labels = dict(uid_labels or {})
        self.authid_labels = dict(authid_labels or {})
        self.authrole_labels = dict(authrole_labels or {})
        self.domain_labels = dict(domain_labels or {})  # keys: serouter.argo.domain_key

    def __call__(
        self, transport: TransportInfo, authid: str, authrole: str, authmethod: str = ANONYMOUS
    ) -> str:
        """The session's label. ``authmethod`` is how the router authenticated the session;
        the router passes it once authentication exists (until then: anonymous)."""
        for source, context in self._sources(transport, authid, authrole, authmethod):
            if self.valid(context):
                return context
            log.warn("session from {peer}: label {context} from {source} is not valid in the "
                     "loaded policy: unlabeled", peer=transport.peer, context=context,
                     source=source)
            return self.unlabeled
        return self.unlabeled

    def _sources(
        self, transport: TransportInfo, authid: str, authrole: str, authmethod: str
    ) -> Iterator[tuple[str, str]]:
        if authmethod != ANONYMOUS:
            if authid in self.authid_labels:
                yield f"authid {authid!r}", self.authid_labels[authid]
            if authrole in self.authrole_labels:
                yield f"authrole {authrole!r}", self.authrole_labels[authrole]
        uid = transport.peer_uid
        if uid is not None and uid in self.uid_labels:
            yield f"uid {uid}", self.uid_labels[uid]
        domid = transport.peer_domain
        if domid is not None and self.domain_labels:
            for key in domain_keys(domid, transport.peer_domain_name, transport.peer_domain_uuid):
                if key in self.domain_labels:
                    yield f"domain {domid} ({key})", self.domain_labels[key]
                    break
        if self.trust_peer_context and transport.peer_context:
            yield "the peer's SELinux context", transport.peer_context
        if transport.listener_label:
            yield f"listener {transport.listener}", transport.listener_label
