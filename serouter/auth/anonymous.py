"""``anonymous``: admit anyone under one configured role, proving nothing.

The authid is made here (``anonymous-<session>``): an authid the client asks for is ignored,
since nothing backs it.
"""

from __future__ import annotations

from serouter.auth.base import Accept, Done, Request
from serouter.core.peer import TransportInfo


class Anonymous:
    method = "anonymous"

    def __init__(self, role: str = "anonymous") -> None:
        self.role = role

    def applies(self, transport: TransportInfo) -> bool:
        return True

    def start(self, request: Request) -> Done:
        return Done(Accept(f"anonymous-{request.session}", self.role, self.method))
