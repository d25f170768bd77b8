"""``tls``: the session is who its TLS client certificate says.

The TLS layer has already verified the certificate against the listener's CA (listeners with
``tls_ca`` only; no other listener asks for one). Here: the subject must match one of the
allowed distinguished names, if any are configured, as libvirt's ``tls_allowed_dn_list`` does;
the authid is the subject's common name or its whole DN; the role is the principal's of that
authid, else the configured default.

DNs are written as RFC 4514 renders them (``CN=alice,O=Example,C=DE``: most specific first,
as ``openssl x509 -noout -subject -nameopt RFC2253`` prints). A pattern is compared attribute
by attribute, each with shell globs (``CN=*,O=Example,C=DE``), so a ``*`` never spans a comma
into the next attribute and a crafted common name cannot impersonate a whole DN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase

from cryptography import x509
from cryptography.x509.oid import NameOID

from serouter.auth.base import Accept, Done, Request, failed
from serouter.core.peer import TransportInfo


def split_dn(dn: str) -> list[str]:
    """A DN string's attributes, split at the commas not escaped with a backslash."""
    parts, current, chars = [], "", iter(dn)
    for char in chars:
        if char == "\\":
            current += char + next(chars, "")
        elif char == ",":
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def dn_matches(dn: str, pattern: str) -> bool:
    """Whether ``dn`` matches ``pattern``: as many attributes, each matching its glob."""
    names, globs = split_dn(dn), split_dn(pattern)
    return len(names) == len(globs) and all(map(fnmatchcase, names, globs))


class Tls:
    method = "tls"

    def __init__(
        self,
        *,
        authid_from: str = "cn",
        allowed_dn: Sequence[str] = (),
        role: str | None = None,
        roles: Mapping[str, str] | None = None,
    ) -> None:
        """``roles``: authid -> role of the configured principals; ``role`` for the rest."""
        self._authid_from = authid_from
        self._allowed = tuple(allowed_dn)
        self._role = role
        self._roles = dict(roles or {})

    def applies(self, transport: TransportInfo) -> bool:
        return transport.peer_certificate is not None

    def start(self, request: Request) -> Done:
        assert request.transport.peer_certificate is not None  # applies() said so
        subject = x509.load_der_x509_certificate(request.transport.peer_certificate).subject
        dn = subject.rfc4514_string()
        if self._allowed and not any(dn_matches(dn, p) for p in self._allowed):
            return Done(failed(f"subject {dn!r} is not in allowed_dn"))
        if self._authid_from == "dn":
            authid = dn
        else:
            names = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            if len(names) != 1 or not isinstance(names[0].value, str) or not names[0].value:
                return Done(failed(f"subject {dn!r} has no single common name"))
            authid = names[0].value
        if request.authid not in (None, authid):
            return Done(failed(f"asked for authid {request.authid!r}, certificate is {authid!r}"))
        role = self._roles.get(authid, self._role)
        if role is None:
            return Done(failed(f"certificate {authid!r} is no principal and tls has no role"))
        return Done(Accept(authid, role, self.method, extra={"dn": dn}))
