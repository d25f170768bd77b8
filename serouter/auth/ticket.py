"""``ticket``: the client sends a shared secret (a ticket) in AUTHENTICATE.

The ticket travels in the clear inside the WAMP connection: offer this method on TLS or local
listeners only. An unknown authid is challenged like a known one and fails the same way, so
the exchange does not tell which authids exist.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from serouter.auth.base import Accept, Challenge, Deny, Done, Request, failed
from serouter.core.peer import TransportInfo


@dataclass(frozen=True, slots=True)
class TicketPrincipal:
    ticket: str = field(repr=False)
    role: str


class Ticket:
    method = "ticket"

    def __init__(self, principals: Mapping[str, TicketPrincipal]) -> None:
        self._principals = dict(principals)

    def applies(self, transport: TransportInfo) -> bool:
        return True

    def start(self, request: Request) -> TicketAttempt | Done:
        authid = request.authid
        if authid is None:
            return Done(failed("no authid in HELLO"))
        return TicketAttempt(authid, self._principals.get(authid))


class TicketAttempt:
    __slots__ = ("authid", "first", "principal")

    def __init__(self, authid: str, principal: TicketPrincipal | None) -> None:
        self.authid = authid
        self.principal = principal
        self.first = Challenge("ticket", {})

    def answer(self, signature: str, extra: Mapping[str, Any]) -> Accept | Deny:
        # compare against something even for an unknown authid: the time taken tells nothing
        expected = self.principal.ticket if self.principal else os.urandom(16).hex()
        match = hmac.compare_digest(signature.encode(), expected.encode())
        if self.principal is None:
            return failed("no such principal")
        if not match:
            return failed("wrong ticket")
        return Accept(self.authid, self.principal.role, "ticket")
