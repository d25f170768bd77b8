"""``cryptosign``: the client proves it holds the Ed25519 key it names (WAMP-Cryptosign).

HELLO carries ``authextra.pubkey`` (64 hex digits); the router answers with 32 random bytes
(hex) as the challenge, and the client signs them. AUTHENTICATE carries the signature followed
by the signed message (96 bytes, hex), as the spec and Autobahn send it; the signature alone
(64 bytes) is accepted too. Verification is ``cryptography``'s Ed25519.

Which keys may log in, and as whom, is configured: each principal lists its public keys. An
unauthorized key is challenged like an authorized one and fails the same way. TLS channel
binding is not supported: a HELLO asking for it is refused rather than silently downgraded.
"""

from __future__ import annotations

import binascii
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from serouter.auth.base import AUTHENTICATION_FAILED, Accept, Challenge, Deny, Done, Request, failed
from serouter.core.peer import TransportInfo

_SIGNATURE = 64
_CHALLENGE = 32


@dataclass(frozen=True, slots=True)
class CryptosignPrincipal:
    pubkeys: tuple[str, ...]  # hex, lower case
    role: str


class Cryptosign:
    method = "cryptosign"

    def __init__(self, principals: Mapping[str, CryptosignPrincipal]) -> None:
        self._owners: dict[str, tuple[str, str]] = {}  # pubkey -> (authid, role)
        for authid, principal in principals.items():
            for key in principal.pubkeys:
                self._owners[key.lower()] = (authid, principal.role)

    def applies(self, transport: TransportInfo) -> bool:
        return True

    def start(self, request: Request) -> CryptosignAttempt | Done:
        pubkey = request.authextra.get("pubkey")
        try:
            key = bytes.fromhex(pubkey) if type(pubkey) is str else b""
        except ValueError:
            key = b""
        if len(key) != 32:
            return Done(Deny(AUTHENTICATION_FAILED, "authextra.pubkey must be 64 hex digits",
                             "no usable public key in HELLO"))
        binding = request.authextra.get("channel_binding")
        if binding is not None:
            return Done(Deny(AUTHENTICATION_FAILED, "channel binding is not supported",
                             f"channel binding {binding!r} asked for"))
        owner = self._owners.get(key.hex())
        if owner is not None and request.authid not in (None, owner[0]):
            owner = None  # the key belongs to someone else than the authid asked for
        return CryptosignAttempt(key, owner, os.urandom(_CHALLENGE))


class CryptosignAttempt:
    __slots__ = ("_challenge", "_key", "_owner", "first")

    def __init__(self, key: bytes, owner: tuple[str, str] | None, challenge: bytes) -> None:
        self._key = key
        self._owner = owner
        self._challenge = challenge
        extra = {"challenge": challenge.hex(), "channel_binding": None}
        self.first = Challenge("cryptosign", extra)

    def answer(self, signature: str, extra: Mapping[str, Any]) -> Accept | Deny:
        try:
            raw = binascii.unhexlify(signature)
        except (binascii.Error, ValueError):
            return failed("signature is not hex")
        if len(raw) == _SIGNATURE + _CHALLENGE:
            if not hmac.compare_digest(raw[_SIGNATURE:], self._challenge):
                return failed("signed message is not the challenge")
        elif len(raw) != _SIGNATURE:
            return failed(f"signature of {len(raw)} bytes")
        if self._owner is None:
            return failed("public key not authorized for this authid")
        try:
            Ed25519PublicKey.from_public_bytes(self._key).verify(raw[:_SIGNATURE], self._challenge)
        except InvalidSignature:
            return failed("bad signature")
        authid, role = self._owner
        return Accept(authid, role, "cryptosign", extra={"pubkey": self._key.hex()})
