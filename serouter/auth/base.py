"""The interface every authentication method implements, and the results it returns.

A method is an :class:`Authenticator`: given what a HELLO asked for (:class:`Request`), it
starts an :class:`Attempt` whose first step is an :class:`Accept`, a :class:`Challenge` or a
:class:`Deny`; after a challenge, the client's AUTHENTICATE goes to ``Attempt.answer``.

Nothing here does I/O, and nothing here may ever take an identity from what the client merely
claims: ``Request.details`` holds claims (an authid, a public key) that a method must prove
before it names them in an :class:`Accept`. A :class:`Deny` tells the client nothing that
would help guessing (no "unknown user" versus "wrong secret"); the difference goes in
``detail``, for the router's log only, and never a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from serouter.core import uris
from serouter.core.peer import TransportInfo

# The spec's URIs for a refused authentication (ABORT reasons), re-exported for the methods.
AUTHENTICATION_FAILED = uris.AUTHENTICATION_FAILED
NO_AUTH_METHOD = uris.NO_AUTH_METHOD

# What a client is told on every failed proof, whatever the cause.
FAILED_MESSAGE = "authentication failed"


@dataclass(frozen=True, slots=True)
class Request:
    """One HELLO's request to authenticate, with what the transport vouches for."""

    realm: str
    session: int  # the ID the session gets if admitted
    details: Mapping[str, Any]  # HELLO.Details as sent: claims, not facts
    transport: TransportInfo

    @property
    def authid(self) -> str | None:
        """The authid the client asks for (a claim); None when absent or not a string."""
        authid = self.details.get("authid")
        return authid if type(authid) is str and authid else None

    @property
    def authextra(self) -> Mapping[str, Any]:
        extra = self.details.get("authextra")
        return extra if type(extra) is dict else {}


@dataclass(frozen=True, slots=True)
class Accept:
    """The identity is proven: these values go in WELCOME and drive every later decision."""

    authid: str
    authrole: str
    authmethod: str
    authprovider: str = "static"
    extra: dict[str, Any] = field(default_factory=dict)  # WELCOME.Details.authextra


@dataclass(frozen=True, slots=True)
class Challenge:
    """Ask the client for a proof: sent as CHALLENGE, answered by AUTHENTICATE."""

    method: str
    extra: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Deny:
    """Refused: ``reason`` and ``message`` go to the client, ``detail`` to the log only."""

    reason: str = AUTHENTICATION_FAILED
    message: str = FAILED_MESSAGE
    detail: str = ""


def failed(detail: str) -> Deny:
    """A failed proof: the client learns only that it failed, the log learns why."""
    return Deny(AUTHENTICATION_FAILED, FAILED_MESSAGE, detail)


class Attempt(Protocol):
    """One authentication in progress."""

    @property
    def first(self) -> Accept | Challenge | Deny:
        """The answer to HELLO."""

    def answer(self, signature: str, extra: Mapping[str, Any]) -> Accept | Deny:
        """The verdict on AUTHENTICATE; called only if ``first`` was a Challenge."""


class Authenticator(Protocol):
    """One authentication method, configured for one realm."""

    @property
    def method(self) -> str:
        """The method's name in HELLO.Details.authmethods, e.g. "ticket"."""

    def applies(self, transport: TransportInfo) -> bool:
        """Whether this connection carries what the method needs (a certificate, peer
        credentials); methods that do not apply are skipped as if not offered."""

    def start(self, request: Request) -> Attempt:
        """Begin authenticating ``request``."""


@dataclass(frozen=True, slots=True)
class Done:
    """An attempt decided at once, without a challenge."""

    first: Accept | Deny

    def answer(self, signature: str, extra: Mapping[str, Any]) -> Accept | Deny:
        return failed("AUTHENTICATE without a challenge")
