"""Who a peer domain is: the domain id Xen stamped, and what dom0's toolstack says of it.

``PeerDomain`` travels with an Argo connection from the moment it is accepted. The domain id is
the hypervisor's (or, simulated, the kernel's source address); the name and VM uuid come from
XenStore (``/local/domain/<domid>/name`` and ``/vm``), read by ``XenStoreDomains`` only where
no domain but dom0 could have written them (``serouter.xenstore.domain_info`` checks).

Labels and authids are computed synchronously when a session joins, but XenStore answers
asynchronously; so the name is looked up when the connection is accepted, before any byte of
it is read, and the connection reaches its protocol only with the answer (or with the domain
id alone once the lookup failed or timed out). The label is thereby fixed at accept time, like
a Unix peer's SO_PEERCRED at connect time.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from serouter.argo._abi import DOMID_FIRST_RESERVED, is_domid
from serouter.xenstore import XenStoreClient

log = Logger(namespace="serouter.argo")


@dataclass(frozen=True, slots=True)
class PeerDomain:
    """A peer's domain: ``domid`` from Xen; ``name`` and ``uuid`` from dom0's XenStore entries
    (None when not known or not trustworthy)."""

    domid: int
    name: str | None = None
    uuid: str | None = None


# domid -> a Deferred that always fires with a PeerDomain (never fails)
Resolver = Callable[[int], "defer.Deferred[PeerDomain]"]


def domid_only(domid: int) -> defer.Deferred[PeerDomain]:
    """The resolver with no XenStore: the domain id alone."""
    return defer.succeed(PeerDomain(domid))


@dataclass
class _Lookup:
    waiters: list[defer.Deferred[PeerDomain]] = field(default_factory=list)
    timer: IDelayedCall | None = None


class XenStoreDomains:
    """A ``Resolver`` over ``XenStoreClient.domain_info``: concurrent lookups of one domain
    share one XenStore transaction; no cache, so a renamed or re-created domain is seen at its
    next connection. A lookup that fails (absent, unreadable, writable by the domain itself,
    no xenstored) or takes longer than ``timeout`` gives the domain id alone."""

    def __init__(
        self, lookup: Callable[[int], defer.Deferred[Any]], clock: IReactorTime, timeout: float
    ) -> None:
        self._lookup = lookup
        self._clock = clock
        self._timeout = timeout
        self._pending: dict[int, _Lookup] = {}
        self._unnamed: set[int] = set()  # domains whose lookup failed (logged once each)

    def __call__(self, domid: int) -> defer.Deferred[PeerDomain]:
        waiter: defer.Deferred[PeerDomain] = defer.Deferred()
        pending = self._pending.get(domid)
        if pending is not None:
            pending.waiters.append(waiter)
            return waiter
        pending = self._pending[domid] = _Lookup([waiter])
        pending.timer = self._clock.callLater(self._timeout, self._timed_out, domid, pending)
        try:
            asked = self._lookup(domid)
        except Exception:
            asked = defer.fail()
        asked.addCallbacks(
            self._found, self._failed, callbackArgs=(domid, pending), errbackArgs=(domid, pending)
        )
        return waiter

    def _found(self, info: Any, domid: int, pending: _Lookup) -> None:
        self._unnamed.discard(domid)
        self._finish(domid, pending, PeerDomain(domid, info.name, info.uuid))

    def _failed(self, failure: Failure, domid: int, pending: _Lookup) -> None:
        # a guest may not read other domains' entries (EACCES): say so once per domain
        if domid not in self._unnamed:
            if len(self._unnamed) >= 4096:
                self._unnamed.clear()
            self._unnamed.add(domid)
            log.warn("domain {domid}: no name from XenStore ({error}): known by its id only",
                     domid=domid, error=failure.getErrorMessage() or repr(failure.value))
        self._finish(domid, pending, PeerDomain(domid))

    def _timed_out(self, domid: int, pending: _Lookup) -> None:
        pending.timer = None
        log.warn("domain {domid}: no answer from XenStore within {timeout} s: known by its id "
                 "only", domid=domid, timeout=self._timeout)
        self._finish(domid, pending, PeerDomain(domid))

    def _finish(self, domid: int, pending: _Lookup, result: PeerDomain) -> None:
        if self._pending.get(domid) is not pending:
            return  # timed out before; this late answer is for nobody
        del self._pending[domid]
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        for waiter in pending.waiters:
            waiter.callback(result)


# -- configured maps by domain ---------------------------------------------------------------
# [access.domain_labels] and [realms.transport] domain_roles are keyed "uuid:<vm uuid>",
# "name:<domain name>" or "domid:<domain id>"; the most specific key that matches wins.


def domain_key(text: str) -> str:
    """The normal form of a configured key (ValueError if it is none of the three forms)."""
    kind, _, value = text.partition(":")
    if kind == "uuid":
        try:
            return f"uuid:{uuid.UUID(value)}"
        except ValueError:
            raise ValueError(f"{text!r}: not a uuid after uuid:") from None
    if kind == "name":
        if not value or not value.isprintable():
            raise ValueError(f"{text!r}: a domain name after name: must be printable text")
        return text
    if kind == "domid":
        if not value.isdigit() or not is_domid(int(value)):
            raise ValueError(f"{text!r}: not a domain id (0..{DOMID_FIRST_RESERVED - 1}) "
                             "after domid:")
        return f"domid:{int(value)}"
    raise ValueError(f'{text!r}: write "uuid:<uuid>", "name:<domain name>" or "domid:<id>"')


def domain_keys(domid: int, name: str | None, vm_uuid: str | None) -> list[str]:
    """The keys a domain matches, most specific first: its VM uuid (stable across reboots),
    its name, its domain id (stamped by Xen, but new at every boot but dom0's)."""
    keys = [] if vm_uuid is None else [f"uuid:{vm_uuid}"]
    if name is not None:
        keys.append(f"name:{name}")
    keys.append(f"domid:{domid}")
    return keys


class DomainNaming:
    """The daemon's source of domain names: one XenStore connection, made when the first Argo
    listener asks for a resolver and stopped with the daemon; with ``xenstore`` off, domain ids
    alone.

    While xenstored is unreachable, a lookup would hold every new connection for the whole
    timeout; so once the client has had ``timeout`` seconds to connect (at start) and is not
    connected, connections go on at once with their domain id alone (logged once per outage).
    That can only take labels away: a map keyed by name or uuid no longer matches.
    """

    def __init__(self, reactor: Any, *, xenstore: bool = True, timeout: float = 5.0) -> None:
        self._reactor = reactor
        self._xenstore = xenstore
        self._timeout = timeout
        self._client: XenStoreClient | None = None
        self._lookups: XenStoreDomains | None = None
        self._grace_until = 0.0
        self._outage = False

    def resolver(self) -> Resolver:
        if not self._xenstore:
            return domid_only
        if self._lookups is None:
            self._client = XenStoreClient(self._reactor, request_timeout=self._timeout)
            self._client.startService()
            self._grace_until = self._reactor.seconds() + self._timeout
            self._lookups = XenStoreDomains(self._client.domain_info, self._reactor,
                                            self._timeout)
        return self._resolve

    def _resolve(self, domid: int) -> defer.Deferred[PeerDomain]:
        client, lookups = self._client, self._lookups
        if client is None or lookups is None:  # stopped
            return domid_only(domid)
        if client.connected or self._reactor.seconds() < self._grace_until:
            self._outage = False
            return lookups(domid)
        if not self._outage:
            self._outage = True
            log.warn("no connection to xenstored: Argo peers are known by their domain id "
                     "only until it is back")
        return domid_only(domid)

    def stop(self) -> defer.Deferred[None]:
        client, self._client, self._lookups = self._client, None, None
        if client is None:
            return defer.succeed(None)
        stopped: defer.Deferred[None] = client.stopService()
        return stopped
