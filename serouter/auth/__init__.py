"""WAMP authentication: one small module per method behind the interface in ``base``.

The session asks the router's :class:`AuthPolicy` for an authenticator, starts an attempt, and
sends what it answers (WELCOME, CHALLENGE or ABORT). Methods never do I/O and never take an
identity from a client's claim without proof; the TLS listener (``tls_listener``) is the one
part that touches Twisted, and only the service imports it.
"""

from serouter.auth.base import (
    AUTHENTICATION_FAILED,
    NO_AUTH_METHOD,
    Accept,
    Attempt,
    Authenticator,
    Challenge,
    Deny,
    Done,
    Request,
)
from serouter.auth.policy import AuthPolicy, ListenerAuth

__all__ = [
    "AUTHENTICATION_FAILED",
    "NO_AUTH_METHOD",
    "Accept",
    "Attempt",
    "AuthPolicy",
    "Authenticator",
    "Challenge",
    "Deny",
    "Done",
    "ListenerAuth",
    "Request",
]
