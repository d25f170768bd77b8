"""What federation and domain labeling need from XenStore, on top of the client.

- ``publish_nameserver``: dom0 writes the name server's endpoint with permissions ``r0`` (dom0
  owns it, every other domain may read, none may write), in one transaction so a guest never
  sees the value with the parent's permissions (``n0``: unreadable to guests).
- ``watch_value``: follows one value across changes, removals and reconnections.
- ``domain_info``: a domain's name and VM uuid, as the toolstack wrote them; refused when the
  domain itself (or anyone but dom0) could have written them, since labels derive from them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, NamedTuple

from twisted.internet import defer
from twisted.logger import Logger

from serouter.xenstore._errors import XenStoreError, XenStoreUnavailable
from serouter.xenstore._wire import Permission

if TYPE_CHECKING:
    from serouter.xenstore._client import Transaction, Watch, XenStoreClient

log = Logger(namespace="serouter.xenstore")
EVERYONE_READS_DOM0_WRITES: Final = (Permission("r", 0),)


async def publish_nameserver(client: XenStoreClient, path: str, endpoint: str) -> None:
    async def body(tx: Transaction) -> None:
        await tx.write(path, endpoint)
        await tx.set_perms(path, EVERYONE_READS_DOM0_WRITES)

    await client.transaction(body)


async def remove(client: XenStoreClient, path: str) -> None:
    """``rm``, also fine when the parent is gone too."""
    try:
        await client.rm(path)
    except XenStoreError as error:
        if error.name != "ENOENT":
            raise


class _Unset:
    pass


_UNSET: Final = _Unset()
ValueCallback = Callable[[str | None], object]


class ValueWatch:
    """Follows the text at one path: ``on_change(value)`` with the value, or None when absent
    or unreadable to us, first at once, then whenever it differs from the last one reported.

    Every watch event (including the one xenstored fires after each reconnection) leads to one
    read; events during a read lead to one more read after it, so the last value is never lost.
    """

    def __init__(self, client: XenStoreClient, path: str, on_change: ValueCallback) -> None:
        self._client = client
        self.path = path
        self._on_change = on_change
        self._last: str | _Unset | None = _UNSET
        self._busy = self._again = self._stopped = False
        self._watch: Watch | None = None
        self.first: defer.Deferred[None] = defer.Deferred()

    @property
    def value(self) -> str | None:
        """The value last reported (None before the first report)."""
        return None if isinstance(self._last, _Unset) else self._last

    def event(self, _path: str) -> None:
        if self._stopped:
            return
        if self._busy:
            self._again = True
            return
        self._busy = True
        defer.Deferred.fromCoroutine(self._refresh())

    async def _refresh(self) -> None:
        try:
            self._again = True
            while self._again and not self._stopped:
                self._again = False
                value = await self._current()
                if not isinstance(value, _Skip):
                    self._report(value)
        except Exception:
            log.failure("following {path} in XenStore failed", path=self.path)
        finally:
            self._busy = False

    async def _current(self) -> str | _Skip | None:
        try:
            raw = await self._client.read(self.path)
        except XenStoreError as error:
            if error.name in ("ENOENT", "EACCES"):  # a guest reads EACCES for what is absent
                return None
            log.error("cannot read {path}: {error}", path=self.path, error=error)
            return _SKIP
        except XenStoreUnavailable:
            return _SKIP  # the watch fires again once reconnected
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            log.warn("{path} holds no UTF-8 text; taken as absent", path=self.path)
            return None

    def _report(self, value: str | None) -> None:
        if self._stopped or value == self._last:
            return
        self._last = value
        try:
            self._on_change(value)
        except Exception:
            log.failure("a watch_value callback for {path} failed", path=self.path)
        if not self.first.called:
            self.first.callback(None)

    def cancel(self) -> defer.Deferred[None]:
        self._stopped = True
        watch, self._watch = self._watch, None
        return watch.cancel() if watch is not None else defer.succeed(None)


class _Skip:
    pass


_SKIP: Final = _Skip()


async def watch_value(
    client: XenStoreClient, path: str, on_change: ValueCallback, timeout: float
) -> ValueWatch:
    """A ``ValueWatch``, once it has reported the current value (or failed within timeout)."""
    follower = ValueWatch(client, path, on_change)
    follower._watch = await client.watch(path, follower.event)
    first = follower.first.addTimeout(timeout, client.reactor)
    try:
        await first
    except defer.TimeoutError as error:
        await follower.cancel()
        raise XenStoreUnavailable(f"could not read {path} within {timeout}s") from error
    return follower


class DomainInfo(NamedTuple):
    """What the toolstack says of a domain: its name and its VM's uuid (None if not given)."""

    name: str
    uuid: str | None


class DomainInfoError(Exception):
    """A domain's entries exist but cannot be trusted or understood."""


async def domain_info(client: XenStoreClient, domid: int) -> DomainInfo:
    """``/local/domain/<domid>/name`` and the uuid from ``.../vm`` (``/vm/<uuid>``), read in
    one transaction; XenStoreError (ENOENT, EACCES) when absent or not ours to read."""
    home = f"/local/domain/{domid}"

    async def body(tx: Transaction) -> tuple[bytes, bytes | None, list[list[Permission]]]:
        name = await tx.read(f"{home}/name")
        perms = [await tx.get_perms(f"{home}/name")]
        try:
            vm: bytes | None = await tx.read(f"{home}/vm")
        except XenStoreError as error:
            if error.name != "ENOENT":
                raise
            return name, None, perms
        return name, vm, [*perms, await tx.get_perms(f"{home}/vm")]

    name, vm, perms = await client.transaction(body)
    if not all(_only_dom0_writes(node_perms) for node_perms in perms):
        raise DomainInfoError(f"{home}: name or vm writable by a domain other than dom0")
    try:
        return DomainInfo(name.decode("utf-8"), None if vm is None else _vm_uuid(vm))
    except ValueError as error:
        raise DomainInfoError(f"{home}: {error}") from error


def _only_dom0_writes(perms: list[Permission]) -> bool:
    """True if a node with ``perms`` is dom0's and no other domain may write it (the first
    entry is the owner's and sets the access of every domain not listed after it)."""
    owner, listed = perms[0], perms[1:]
    if owner.domid != 0 or owner.writable:
        return False
    return not any(p.writable and p.domid != 0 for p in listed)


def _vm_uuid(vm: bytes) -> str:
    text = vm.decode("ascii")
    if not text.startswith("/vm/"):
        raise ValueError(f"vm is {text!r}, not /vm/<uuid>")
    return str(uuid.UUID(text[4:]))
