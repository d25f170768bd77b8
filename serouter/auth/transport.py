"""``transport``: the session is whoever the kernel says is at the other end of the socket.

For Unix sockets the peer's uid and gid come from SO_PEERCRED, read by the transport at
accept time: the client cannot choose them. The authid is ``uid:<n>`` (or the user name), the
role comes from a configured map by uid, then by gid, then a default; a peer with none of
them is refused. No challenge. The Argo peer domain (stamped by Xen) will be one more source
behind the same method.
"""

from __future__ import annotations

import pwd
from collections.abc import Mapping

from serouter.auth.base import Accept, Done, Request, failed
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
    ) -> None:
        self._authid_from = authid_from
        self._role = role
        self._uid_roles = dict(uid_roles or {})
        self._gid_roles = dict(gid_roles or {})

    def applies(self, transport: TransportInfo) -> bool:
        return transport.peer_uid is not None

    def start(self, request: Request) -> Done:
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

    def _authid(self, uid: int) -> str:
        if self._authid_from == "name":
            try:
                return pwd.getpwuid(uid).pw_name
            except KeyError:
                pass
        return f"uid:{uid}"
