"""``transport``: the session is whoever the kernel says is at the other end of the socket.

For Unix sockets the peer's uid and gid come from SO_PEERCRED, read by the transport at
accept time: the client cannot choose them. The authid is ``uid:<n>`` (or the user name), the
role comes from a configured map by uid, then by gid, then a default; a peer with none of
them is refused. No challenge.

For Argo connections the peer is a domain: its id stamped by Xen, its name and VM uuid from
dom0's XenStore (serouter.argo). The authid is ``domain:<name>`` (``domid:<n>`` when the name
is not known), the role comes from a map keyed ``uuid:``, ``name:`` or ``domid:`` (the most
specific match), then the default.
"""

from __future__ import annotations

import pwd
from collections.abc import Mapping

from serouter.argo._domains import domain_keys
from serouter.auth.base import Accept, Deny, Done, Request, failed
from serouter.core.peer import TransportInfo


class PeerCredentials:
    method = "transport"

    def __init__(
        self,
        *,
        authid_from: str = "uid",
        role: str | None = None,
        uid_roles: Mapping[int, str] | None = None,
        gid_roles: Mapping[int, str] | None = None,
        domain_roles: Mapping[str, str] | None = None,
    ) -> None:
        self._authid_from = authid_from
        self._role = role
        self._uid_roles = dict(uid_roles or {})
        self._gid_roles = dict(gid_roles or {})
        self._domain_roles = dict(domain_roles or {})  # keys: serouter.argo.domain_key

    def applies(self, transport: TransportInfo) -> bool:
        return transport.peer_uid is not None or transport.peer_domain is not None

    def start(self, request: Request) -> Done:
        if request.transport.peer_domain is not None:
            return Done(self._domain(request))
        uid, gid = request.transport.peer_uid, request.transport.peer_gid
        assert uid is not None  # applies() said so
        authid = self._authid(uid)
        if request.authid not in (None, authid):
            return Done(failed(f"asked for authid {request.authid!r}, the peer is {authid!r}"))
        role = self._uid_roles.get(uid)
        if role is None and gid is not None:
            role = self._gid_roles.get(gid)
        role = role or self._role
        if role is None:
            return Done(failed(f"uid {uid} gid {gid} has no role"))
        extra = {"uid": uid, "gid": gid}
        return Done(Accept(authid, role, self.method, "kernel", extra))

    def _domain(self, request: Request) -> Accept | Deny:
        t = request.transport
        domid, name, vm = t.peer_domain, t.peer_domain_name, t.peer_domain_uuid
        assert domid is not None  # start() said so
        authid = f"domain:{name}" if name is not None else f"domid:{domid}"
        if request.authid not in (None, authid):
            return failed(f"asked for authid {request.authid!r}, the peer is {authid!r}")
        keys = domain_keys(domid, name, vm)
        role = next((self._domain_roles[k] for k in keys if k in self._domain_roles), self._role)
        if role is None:
            return failed(f"domain {domid} ({', '.join(keys)}) has no role")
        extra: dict[str, object] = {"domid": domid}
        if name is not None:
            extra["domain"] = name
        if vm is not None:
            extra["uuid"] = vm
        return Accept(authid, role, self.method, "xen", extra)

    def _authid(self, uid: int) -> str:
        if self._authid_from == "name":
            try:
                return pwd.getpwuid(uid).pw_name
            except KeyError:
                pass
        return f"uid:{uid}"
