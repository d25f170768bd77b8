"""``wampcra``: challenge-response over a shared secret (WAMP-CRA), salted or not.

The router sends a JSON challenge (authid, authrole, authmethod, authprovider, nonce,
timestamp, session); the client answers with base64(HMAC-SHA256(key, challenge)), where the
key is the secret itself or, for a salted principal, PBKDF2-SHA256(password, salt, iterations,
keylen) in base64, as Autobahn's ``derive_key``. The router stores that derived key, never the
password, and computes only the HMAC.

Per the spec the challenge names the principal's role, so it tells that the authid exists: an
unknown authid is refused at once with the same message as a wrong signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from serouter.auth.base import Accept, Challenge, Deny, Done, Request, failed
from serouter.core.peer import TransportInfo


@dataclass(frozen=True, slots=True)
class CraPrincipal:
    # the shared secret; for a salted principal, the derived key exactly as derive_key gives it
    secret: str = field(repr=False)
    role: str
    salt: str | None = None
    iterations: int = 1000
    keylen: int = 32


def signature(key: str, challenge: str) -> str:
    """What the client must send: base64 of HMAC-SHA256 over the challenge text."""
    digest = hmac.new(key.encode(), challenge.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


class WampCra:
    method = "wampcra"

    def __init__(
        self,
        principals: Mapping[str, CraPrincipal],
        provider: str = "static",
        now: Callable[[], float] = time.time,
    ) -> None:
        self._principals = dict(principals)
        self._provider = provider
        self._now = now

    def applies(self, transport: TransportInfo) -> bool:
        return True

    def start(self, request: Request) -> CraAttempt | Done:
        authid = request.authid
        if authid is None:
            return Done(failed("no authid in HELLO"))
        principal = self._principals.get(authid)
        if principal is None:
            return Done(failed("no such principal"))
        stamp = datetime.fromtimestamp(self._now(), UTC).isoformat(timespec="milliseconds")
        challenge = json.dumps({
            "authid": authid,
            "authrole": principal.role,
            "authmethod": self.method,
            "authprovider": self._provider,
            "nonce": secrets.token_urlsafe(32),
            "timestamp": stamp.replace("+00:00", "Z"),
            "session": request.session,
        })
        extra: dict[str, Any] = {"challenge": challenge}
        if principal.salt is not None:
            extra.update(
                salt=principal.salt, iterations=principal.iterations, keylen=principal.keylen
            )
        accept = Accept(authid, principal.role, self.method, self._provider)
        return CraAttempt(Challenge(self.method, extra), signature(principal.secret, challenge),
                          accept)


class CraAttempt:
    __slots__ = ("_accept", "_expected", "first")

    def __init__(self, first: Challenge, expected: str, accept: Accept) -> None:
        self.first = first
        self._expected = expected
        self._accept = accept

    def answer(self, signature: str, extra: Mapping[str, Any]) -> Accept | Deny:
        if not hmac.compare_digest(signature.encode(), self._expected.encode()):
            return failed("wrong signature")
        return self._accept
