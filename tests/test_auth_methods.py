"""Each authentication method on its own: good and bad proofs, no transport, no session."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from serouter.auth import AUTHENTICATION_FAILED, Accept, AuthPolicy, Challenge, Deny, Request
from serouter.auth.anonymous import Anonymous
from serouter.auth.cryptosign import Cryptosign, CryptosignPrincipal
from serouter.auth.policy import ListenerAuth
from serouter.auth.ticket import Ticket, TicketPrincipal
from serouter.auth.tls import Tls, dn_matches, split_dn
from serouter.auth.transport import PeerCredentials
from serouter.auth.wampcra import CraPrincipal, WampCra
from serouter.core.peer import TransportInfo
from tests.auth_support import Pki
from tests.router_process import use_txaio

TCP = TransportInfo("rawsocket", "json", "tcp4:127.0.0.1:5000", listener="tcp:8081")


def request(
    details: dict[str, Any] | None = None, transport: TransportInfo = TCP, session: int = 77
) -> Request:
    return Request("realm1", session, details or {}, transport)


def is_failure(verdict: object) -> bool:
    """A refusal that tells the client nothing but "authentication failed"."""
    return (isinstance(verdict, Deny) and verdict.reason == AUTHENTICATION_FAILED
            and verdict.message == "authentication failed")


# -- anonymous --------------------------------------------------------------------------------


def test_anonymous_makes_its_own_authid_and_ignores_the_claim() -> None:
    """anonymous admits at once as anonymous-<session> with the configured role."""
    attempt = Anonymous("guest").start(request({"authid": "admin"}, session=42))
    assert attempt.first == Accept("anonymous-42", "guest", "anonymous")


# -- ticket -----------------------------------------------------------------------------------

TICKETS = Ticket({"alice": TicketPrincipal("s3cret-ticket", "user")})


def test_ticket_right_ticket_is_accepted() -> None:
    """An empty ticket CHALLENGE, then the right ticket admits the principal with its role."""
    attempt = TICKETS.start(request({"authid": "alice"}))
    assert attempt.first == Challenge("ticket", {})
    assert attempt.answer("s3cret-ticket", {}) == Accept("alice", "user", "ticket")


@pytest.mark.parametrize("ticket", ["wrong", "", "s3cret-ticket ", "s3cret-ticke", "ü"])
def test_ticket_wrong_ticket_fails(ticket: str) -> None:
    """Any other ticket fails with the generic message; the log detail says why."""
    verdict = TICKETS.start(request({"authid": "alice"})).answer(ticket, {})
    assert is_failure(verdict)
    assert isinstance(verdict, Deny) and verdict.detail == "wrong ticket"


def test_ticket_unknown_authid_looks_like_a_wrong_ticket() -> None:
    """An unknown authid is challenged too and fails the same way: authids cannot be probed."""
    attempt = TICKETS.start(request({"authid": "mallory"}))
    assert attempt.first == Challenge("ticket", {})
    assert is_failure(attempt.answer("s3cret-ticket", {}))


def test_ticket_without_authid_fails_at_once() -> None:
    assert is_failure(TICKETS.start(request({})).first)


def test_ticket_secret_is_not_in_repr() -> None:
    """Principals never print their secret (logs, tracebacks)."""
    assert "s3cret" not in repr(TicketPrincipal("s3cret", "user"))


# -- wampcra ----------------------------------------------------------------------------------


def autobahn_auth() -> Any:
    use_txaio("asyncio")
    from autobahn.wamp import auth

    return auth


def cra_answer(challenge: object, password: str) -> str:
    """What Autobahn's client computes for a wampcra CHALLENGE (derive_key if salted)."""
    auth = autobahn_auth()
    assert isinstance(challenge, Challenge)
    key: Any = password
    if "salt" in challenge.extra:
        extra = challenge.extra
        key = auth.derive_key(password, extra["salt"], extra["iterations"], extra["keylen"])
    return str(auth.compute_wcs(key, challenge.extra["challenge"]).decode("ascii"))


def test_wampcra_challenge_carries_what_the_spec_asks() -> None:
    """The challenge is JSON naming authid, role, method, provider, nonce, timestamp, session."""
    cra = WampCra({"bob": CraPrincipal("pw", "user")}, now=lambda: 1_700_000_000.25)
    first = cra.start(request({"authid": "bob"}, session=99)).first
    assert isinstance(first, Challenge) and first.method == "wampcra"
    assert set(first.extra) == {"challenge"}
    fields = json.loads(first.extra["challenge"])
    assert fields["authid"] == "bob" and fields["authrole"] == "user"
    assert fields["authmethod"] == "wampcra" and fields["authprovider"] == "static"
    assert fields["session"] == 99 and len(fields["nonce"]) >= 32
    assert fields["timestamp"] == "2023-11-14T22:13:20.250Z"


def test_wampcra_right_secret_is_accepted_wrong_is_not() -> None:
    """Autobahn's compute_wcs with the shared secret passes; another secret fails."""
    cra = WampCra({"bob": CraPrincipal("bob-secret", "user")})
    attempt = cra.start(request({"authid": "bob"}))
    assert attempt.answer(cra_answer(attempt.first, "bob-secret"), {}) == Accept(
        "bob", "user", "wampcra"
    )
    attempt = cra.start(request({"authid": "bob"}))
    assert is_failure(attempt.answer(cra_answer(attempt.first, "not-bob"), {}))


def test_wampcra_salted_secret() -> None:
    """A salted principal stores derive_key's result; the challenge carries the PBKDF2
    parameters and the client's derive_key + compute_wcs passes."""
    auth = autobahn_auth()
    derived = auth.derive_key("carol-password", "pepper", 100, 16).decode("ascii")
    cra = WampCra({"carol": CraPrincipal(derived, "admin", "pepper", 100, 16)})
    attempt = cra.start(request({"authid": "carol"}))
    assert isinstance(attempt.first, Challenge)
    assert {k: attempt.first.extra[k] for k in ("salt", "iterations", "keylen")} == {
        "salt": "pepper", "iterations": 100, "keylen": 16,
    }
    assert attempt.answer(cra_answer(attempt.first, "carol-password"), {}) == Accept(
        "carol", "admin", "wampcra"
    )
    attempt = cra.start(request({"authid": "carol"}))
    assert is_failure(attempt.answer(cra_answer(attempt.first, "carol-passwort"), {}))


def test_wampcra_signature_does_not_replay() -> None:
    """Every challenge has a fresh nonce: an answer to one fails for the next."""
    cra = WampCra({"bob": CraPrincipal("bob-secret", "user")})
    old = cra.start(request({"authid": "bob"}))
    signature = cra_answer(old.first, "bob-secret")
    assert is_failure(cra.start(request({"authid": "bob"})).answer(signature, {}))


def test_wampcra_unknown_or_missing_authid_fails_at_once() -> None:
    cra = WampCra({"bob": CraPrincipal("bob-secret", "user")})
    assert is_failure(cra.start(request({"authid": "eve"})).first)
    assert is_failure(cra.start(request({})).first)


# -- cryptosign -------------------------------------------------------------------------------


def new_key() -> tuple[Ed25519PrivateKey, str]:
    private = Ed25519PrivateKey.generate()
    return private, private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def cryptosign_hello(pubkey: str, **more: Any) -> Request:
    return request({"authextra": {"pubkey": pubkey, "channel_binding": None}, **more})


def test_cryptosign_with_autobahn_key() -> None:
    """A key made and used by Autobahn's CryptosignKey (PyNaCl) passes: 96-byte answer."""
    use_txaio("asyncio")
    from autobahn.wamp.cryptosign import CryptosignKey
    from autobahn.wamp.types import Challenge as AbChallenge

    key = CryptosignKey.from_bytes(bytes(range(32)))
    cs = Cryptosign({"dave": CryptosignPrincipal((key.public_key(),), "device")})
    attempt = cs.start(cryptosign_hello(key.public_key()))
    first = attempt.first
    assert isinstance(first, Challenge) and len(first.extra["challenge"]) == 64
    assert first.extra["channel_binding"] is None

    async def sign() -> str:
        return str(await key.sign_challenge(AbChallenge(first.method, first.extra)))

    signature = asyncio.run(sign())
    assert len(signature) == 192
    verdict = attempt.answer(signature, {})
    assert verdict == Accept("dave", "device", "cryptosign", extra={"pubkey": key.public_key()})


def test_cryptosign_spec_test_vector() -> None:
    """The spec's first test vector (no channel binding) verifies."""
    private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(
        "4d57d97a68f555696620a6d849c0ce582568518d729eb753dc7c732de2804510"))
    pubkey = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    cs = Cryptosign({"v": CryptosignPrincipal((pubkey,), "r")})
    attempt = cs.start(cryptosign_hello(pubkey))
    attempt._challenge = b"\xff" * 32  # type: ignore[union-attr]  # the vector's challenge
    signature = (
        "b32675b221f08593213737bef8240e7c15228b07028e19595294678c90d11c0cae80a357331bfc5cc9fb71"
        "081464e6e75013517c2cf067ad566a6b7b728e5d03" + "ff" * 32
    )
    assert isinstance(attempt.answer(signature, {}), Accept)


def test_cryptosign_signature_alone_is_accepted() -> None:
    """64 bytes (the signature without the message) are accepted too."""
    private, pubkey = new_key()
    attempt = Cryptosign({"d": CryptosignPrincipal((pubkey,), "r")}).start(cryptosign_hello(pubkey))
    assert isinstance(attempt.first, Challenge)
    challenge = bytes.fromhex(attempt.first.extra["challenge"])
    assert isinstance(attempt.answer(private.sign(challenge).hex(), {}), Accept)


def test_cryptosign_bad_proofs_fail() -> None:
    """Another key's signature, a signature of something else, garbage: all fail."""
    private, pubkey = new_key()
    other, _ = new_key()
    cs = Cryptosign({"d": CryptosignPrincipal((pubkey,), "r")})

    def answer_with(make: Any) -> Any:
        attempt = cs.start(cryptosign_hello(pubkey))
        assert isinstance(attempt.first, Challenge)
        return attempt.answer(make(bytes.fromhex(attempt.first.extra["challenge"])), {})

    assert is_failure(answer_with(lambda c: (other.sign(c) + c).hex()))
    assert is_failure(answer_with(lambda c: (private.sign(b"x" * 32) + b"x" * 32).hex()))
    assert is_failure(answer_with(lambda c: (private.sign(c) + b"x" * 32).hex()))
    assert is_failure(answer_with(lambda c: "zz" * 96))
    assert is_failure(answer_with(lambda c: private.sign(c).hex()[:-2]))
    assert is_failure(answer_with(lambda c: "é"))


def test_cryptosign_unauthorized_key_is_challenged_then_fails() -> None:
    """A key no principal lists gets a challenge like any other and fails even when signed."""
    private, pubkey = new_key()
    _, listed = new_key()
    attempt = Cryptosign({"d": CryptosignPrincipal((listed,), "r")}).start(cryptosign_hello(pubkey))
    assert isinstance(attempt.first, Challenge)
    challenge = bytes.fromhex(attempt.first.extra["challenge"])
    assert is_failure(attempt.answer((private.sign(challenge) + challenge).hex(), {}))


def test_cryptosign_authid_must_own_the_key() -> None:
    """Asking for another principal's authid with one's own key fails; the owner's passes."""
    private, pubkey = new_key()
    _, other_key = new_key()
    cs = Cryptosign({"d": CryptosignPrincipal((pubkey,), "r"),
                     "e": CryptosignPrincipal((other_key,), "admin")})
    for authid, ok in (("e", False), ("d", True)):
        attempt = cs.start(cryptosign_hello(pubkey, authid=authid))
        assert isinstance(attempt.first, Challenge)
        challenge = bytes.fromhex(attempt.first.extra["challenge"])
        verdict = attempt.answer((private.sign(challenge) + challenge).hex(), {})
        assert isinstance(verdict, Accept) is ok, verdict


def test_cryptosign_refuses_channel_binding_and_bad_pubkeys() -> None:
    """A channel binding cannot be honoured: refused, not downgraded. A pubkey must be
    32 bytes of hex."""
    _, pubkey = new_key()
    cs = Cryptosign({"d": CryptosignPrincipal((pubkey,), "r")})
    bound = cs.start(request({"authextra": {"pubkey": pubkey, "channel_binding": "tls-unique"}}))
    assert isinstance(bound.first, Deny) and "channel binding" in bound.first.message
    for bad in (None, 5, "", "ab" * 31, "zz" * 32, pubkey + "00"):
        first = cs.start(request({"authextra": {"pubkey": bad}})).first
        assert isinstance(first, Deny), bad


# -- tls --------------------------------------------------------------------------------------

PKI = Pki()


def with_certificate(der: bytes | None) -> TransportInfo:
    return TransportInfo("websocket", "json", "tcp4:127.0.0.1:1", secure=True,
                         peer_certificate=der)


ALICE = PKI.client(CN="alice", O="Example Corp", C="DE").der


def test_tls_applies_only_with_a_certificate() -> None:
    assert Tls(role="r").applies(with_certificate(ALICE))
    assert not Tls(role="r").applies(with_certificate(None))
    assert not Tls(role="r").applies(TCP)


def test_tls_authid_from_cn_or_dn_and_role() -> None:
    """The authid is the CN (or the RFC 4514 DN); the role is the principal's, else the
    default."""
    verdict = Tls(role="device").start(request(transport=with_certificate(ALICE))).first
    assert verdict == Accept("alice", "device", "tls",
                             extra={"dn": "CN=alice,O=Example Corp,C=DE"})
    alice = request(transport=with_certificate(ALICE))
    verdict = Tls(roles={"alice": "admin"}).start(alice).first
    assert isinstance(verdict, Accept) and verdict.authrole == "admin"
    verdict = Tls(authid_from="dn", role="r").start(alice).first
    assert isinstance(verdict, Accept) and verdict.authid == "CN=alice,O=Example Corp,C=DE"


def test_tls_without_role_or_principal_fails() -> None:
    alice = request(transport=with_certificate(ALICE))
    assert is_failure(Tls(roles={"bob": "x"}).start(alice).first)


def test_tls_claimed_authid_must_match() -> None:
    tls = Tls(role="r")
    transport = with_certificate(ALICE)
    assert is_failure(tls.start(request({"authid": "bob"}, transport)).first)
    assert isinstance(tls.start(request({"authid": "alice"}, transport)).first, Accept)


def test_tls_allowed_dn_globs() -> None:
    """Only subjects matching an allowed DN pattern are admitted, as libvirt's list."""
    tls = Tls(role="r", allowed_dn=["CN=*,O=Example Corp,C=DE", "CN=ops-?,O=Other,C=FR"])
    admitted = [
        PKI.client(CN="alice", O="Example Corp", C="DE"),
        PKI.client(CN="ops-1", O="Other", C="FR"),
    ]
    refused = [
        PKI.client(CN="alice", O="Example Corp", C="US"),
        PKI.client(CN="ops-12", O="Other", C="FR"),
        PKI.client(CN="alice", OU="x", O="Example Corp", C="DE"),
        # a common name crafted to look like the rest of an allowed DN
        PKI.client(CN="x,O=Example Corp,C=DE", O="Evil", C="DE"),
    ]
    for issued in admitted:
        assert isinstance(tls.start(request(transport=with_certificate(issued.der))).first, Accept)
    for issued in refused:
        assert is_failure(tls.start(request(transport=with_certificate(issued.der))).first)


def test_dn_split_and_match_respect_escapes() -> None:
    assert split_dn(r"CN=a\,b,O=c") == [r"CN=a\,b", "O=c"]
    assert dn_matches(r"CN=a\,b,O=c", "CN=*,O=c")
    assert not dn_matches(r"CN=x\,O=c,O=d", "CN=*,O=c")


def test_tls_certificate_without_common_name_fails_for_cn() -> None:
    der = PKI.client(O="No Name", C="DE").der
    assert is_failure(Tls(role="r").start(request(transport=with_certificate(der))).first)
    dn = Tls(role="r", authid_from="dn").start(request(transport=with_certificate(der))).first
    assert isinstance(dn, Accept) and dn.authid == "O=No Name,C=DE"


# -- transport (SO_PEERCRED) ------------------------------------------------------------------


def unix(uid: int | None, gid: int | None = None) -> TransportInfo:
    return TransportInfo("rawsocket", "json", "unix", listener="unix:/run/x.sock",
                         peer_uid=uid, peer_gid=gid, peer_pid=1234)


def test_transport_authid_and_roles_from_peer_credentials() -> None:
    """authid uid:<n>; the role by uid, else by gid, else the default."""
    creds = PeerCredentials(role="local", uid_roles={0: "admin"}, gid_roles={100: "users"})
    assert creds.start(request(transport=unix(0, 0))).first == Accept(
        "uid:0", "admin", "transport", "kernel", {"uid": 0, "gid": 0}
    )
    verdict = creds.start(request(transport=unix(1000, 100))).first
    assert isinstance(verdict, Accept) and verdict.authrole == "users"
    verdict = creds.start(request(transport=unix(1001, 1001))).first
    assert isinstance(verdict, Accept) and verdict.authrole == "local"


def test_transport_without_role_fails_and_tcp_does_not_apply() -> None:
    creds = PeerCredentials(uid_roles={0: "admin"})
    assert is_failure(creds.start(request(transport=unix(1000, 1000))).first)
    assert not creds.applies(TCP)
    assert creds.applies(unix(5, 5))


def test_transport_authid_by_name_and_claims() -> None:
    """authid may be the user name (uid:<n> if it has none); a claimed authid must match."""
    creds = PeerCredentials(authid_from="name", role="r")
    verdict = creds.start(request(transport=unix(0, 0))).first
    assert isinstance(verdict, Accept) and verdict.authid == "root"
    verdict = creds.start(request(transport=unix(4_000_000, 1))).first
    assert isinstance(verdict, Accept) and verdict.authid == "uid:4000000"
    assert is_failure(creds.start(request({"authid": "admin"}, unix(0, 0))).first)


# -- policy -----------------------------------------------------------------------------------


def test_policy_follows_client_preference_within_what_is_offered() -> None:
    """The first of the client's methods that realm and listener offer and the connection
    carries wins."""
    anonymous, tls = Anonymous(), Tls(role="r")
    policy = AuthPolicy(
        {"realm1": [anonymous, TICKETS, tls]},
        {"tcp:8081": ListenerAuth(frozenset({"anonymous", "tls"}))},
    )
    assert policy.choose("realm1", TCP, ["ticket", "anonymous"]) is anonymous  # listener
    assert policy.choose("realm1", TCP, ["tls", "anonymous"]) is anonymous  # no certificate
    assert policy.choose("realm1", with_certificate(ALICE), ["tls", "anonymous"]) is tls
    assert policy.choose("realm1", with_certificate(ALICE), ["ticket"]) is TICKETS
    assert policy.choose("realm1", TCP, ["wampcra"]) is None
    assert policy.choose("other", TCP, ["anonymous"]).method == "anonymous"  # type: ignore[union-attr]
    assert policy.timeout("tcp:8081") == 10.0
