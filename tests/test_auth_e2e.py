"""Authentication end to end: Autobahn|Python clients (asyncio) against a router subprocess.

One router serves three realms: ``realm1`` (anonymous, ticket, wampcra plain and salted,
cryptosign), ``secure`` (tls: client certificates verified against a CA made here) and
``local`` (transport: the Unix peer uid from SO_PEERCRED). Every scenario runs under
``asyncio.wait_for``; every connection is closed before the scenario ends.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.auth_support import Pki
from tests.raw_clients import RawWampClient, connect_as
from tests.router_process import Listener, RouterProcess, running, use_txaio

use_txaio("asyncio")

from autobahn.asyncio.rawsocket import WampRawSocketClientFactory  # noqa: E402
from autobahn.asyncio.wamp import ApplicationSession  # noqa: E402
from autobahn.asyncio.websocket import WampWebSocketClientFactory  # noqa: E402
from autobahn.wamp.auth import compute_wcs, derive_key  # noqa: E402
from autobahn.wamp.cryptosign import CryptosignKey  # noqa: E402
from autobahn.wamp.serializer import CBORSerializer, JsonSerializer  # noqa: E402
from autobahn.wamp.types import ComponentConfig  # noqa: E402

TEST_TIMEOUT = 10.0
STEP_TIMEOUT = 5.0
TRANSPORTS = pytest.mark.parametrize("transport", ["websocket", "rawsocket"])

DAVE_KEY = CryptosignKey.from_bytes(bytes(range(32)))
EVE_KEY = CryptosignKey.from_bytes(bytes(range(32, 64)))
CAROL_SALTED = derive_key("carol-password", "carol-salt", 100, 32).decode("ascii")
NOBODY = 65534


@dataclass
class AuthListener(Listener):
    """A listener with extra TOML lines, optionally served over TLS (``ssl`` options)."""

    extra: str = ""
    ssl: str = ""

    def toml(self) -> str:
        text = super().toml()
        if self.ssl:
            endpoint = f"ssl:{self.port}:interface=127.0.0.1:{self.ssl}"
            text = text.replace(json.dumps(self.endpoint), json.dumps(endpoint))
        return text + self.extra


class AuthRouter(RouterProcess):
    """RouterProcess with realm tables written out in full."""

    def __init__(self, listeners: list[Listener], realms_toml: str) -> None:
        super().__init__(listeners, realms=())
        self.realms_toml = realms_toml

    def config_text(self) -> str:
        return super().config_text() + self.realms_toml


@dataclass
class Setup:
    router: AuthRouter
    pki: Pki
    files: Path
    socket_path: str


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    files = Path(tempfile.mkdtemp(prefix="serouter-auth-"))
    os.chmod(files, 0o755)  # a client that dropped root must reach the Unix socket
    pki = Pki()
    pki.ca.write(files, "ca")
    cert, key = pki.server().write(files, "server")
    tls = f"privateKey={key}:certKey={cert}"
    tls_ca = f'tls_ca = "{files / "ca.pem"}"\n'
    socket_path = str(files / "wamp.sock")
    listeners: list[Listener] = [
        Listener("websocket"),
        Listener("rawsocket", serializers=["cbor", "json"]),
        AuthListener("websocket", name="wss", ssl=tls, extra=tls_ca),
        AuthListener("rawsocket", name="rss", ssl=tls, extra=tls_ca),
        AuthListener("rawsocket", name="rss_optional", ssl=tls,
                     extra=tls_ca + 'tls_client_cert = "optional"\n'),
        AuthListener("rawsocket", name="unix", endpoint=f"unix:{socket_path}:mode=666",
                     extra='auth = ["transport"]\n'),
        AuthListener("rawsocket", name="quick", extra="auth_timeout = 0.5\n"),
    ]
    realms = f"""
[[realms]]
name = "realm1"
auth = ["anonymous", "ticket", "wampcra", "cryptosign"]
[realms.principals.alice]
role = "user"
ticket = "alice-ticket"
[realms.principals.bob]
role = "user"
secret = "bob-secret"
[realms.principals.carol]
role = "admin"
secret = "{CAROL_SALTED}"
salt = "carol-salt"
iterations = 100
keylen = 32
[realms.principals.dave]
role = "device"
pubkeys = ["{DAVE_KEY.public_key()}"]

[[realms]]
name = "secure"
auth = ["tls"]
[realms.tls]
role = "device"
allowed_dn = ["CN=*,O=Example Corp,C=DE"]
[realms.principals.ops]
role = "admin"

[[realms]]
name = "local"
auth = ["transport"]
[realms.transport]
uid_roles = {{ "0" = "admin", "{NOBODY}" = "guest" }}
"""
    router = AuthRouter(listeners, realms)
    try:
        with running(router):
            yield Setup(router, pki, files, socket_path)
    finally:
        for path in files.iterdir():
            path.unlink()
        files.rmdir()
    output = router.output  # all of it: the router has stopped
    assert "alice-ticket" not in output and "bob-secret" not in output  # never logged


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        use_txaio("asyncio")
        await asyncio.wait_for(scenario(), TEST_TIMEOUT)

    asyncio.run(bounded())


# -- the client -------------------------------------------------------------------------------


class AuthClient(ApplicationSession):
    """Joins with the given auth options; ``outcome`` is ("joined", SessionDetails) or
    ("left", CloseDetails)."""

    def __init__(self, config: ComponentConfig, join: dict[str, Any],
                 answer: Callable[[Any], Any] | None) -> None:
        super().__init__(config)
        self.join_options = join
        self.answer = answer
        self.challenges: list[Any] = []
        loop = asyncio.get_running_loop()
        self.outcome: asyncio.Future[tuple[str, Any]] = loop.create_future()
        self.disconnected: asyncio.Future[None] = loop.create_future()

    def onConnect(self) -> None:
        self.join(self.config.realm, **self.join_options)

    def onChallenge(self, challenge: Any) -> Any:
        self.challenges.append(challenge)
        assert self.answer is not None, f"unexpected challenge {challenge}"
        return self.answer(challenge)

    def onJoin(self, details: Any) -> None:
        self.outcome.set_result(("joined", details))

    def onLeave(self, details: Any) -> Any:
        if not self.outcome.done():
            self.outcome.set_result(("left", details))
        return super().onLeave(details)

    def onDisconnect(self) -> None:
        if not self.outcome.done():
            self.outcome.set_result(("disconnected", None))
        if not self.disconnected.done():
            self.disconnected.set_result(None)
        super().onDisconnect()


async def attempt(
    setup: Setup, transport: str, realm: str = "realm1", *,
    answer: Callable[[Any], Any] | None = None, tls: ssl.SSLContext | None = None,
    sock: socket.socket | None = None, listener_name: str | None = None, **join: Any,
) -> tuple[str, Any, AuthClient]:
    """Connect, join with ``join`` (authmethods, authid, authextra), leave; the outcome."""
    loop = asyncio.get_running_loop()
    session = AuthClient(ComponentConfig(realm), join, answer)
    name = transport if tls is None else {"websocket": "wss", "rawsocket": "rss"}[transport]
    listener = setup.router.listener(listener_name or name)
    factory: Any
    if transport == "websocket":
        url = f"{'wss' if tls else 'ws'}://127.0.0.1:{listener.port}/ws"
        factory = WampWebSocketClientFactory(lambda: session, url=url,
                                             serializers=[JsonSerializer()])
    else:
        factory = WampRawSocketClientFactory(lambda: session, serializer=CBORSerializer())
    if sock is not None:
        connecting = loop.create_unix_connection(factory, sock=sock)
    else:
        connecting = loop.create_connection(factory, "127.0.0.1", listener.port, ssl=tls)
    await asyncio.wait_for(connecting, STEP_TIMEOUT)
    kind, details = await asyncio.wait_for(asyncio.shield(session.outcome), STEP_TIMEOUT)
    if kind == "joined":
        session.leave()
    await asyncio.wait_for(asyncio.shield(session.disconnected), STEP_TIMEOUT)
    return kind, details, session


def identity(details: Any) -> tuple[str, str, str, str]:
    return details.authid, details.authrole, details.authmethod, details.authprovider


FAILED = "wamp.error.authentication_failed"


def assert_failed(kind: str, details: Any, reason: str = FAILED) -> None:
    assert kind == "left", (kind, details)
    assert details.reason == reason, details


# -- ticket, wampcra, cryptosign ---------------------------------------------------------------


@TRANSPORTS
def test_anonymous_by_default(setup: Setup, transport: str) -> None:
    """A client that names no method is anonymous, as before authentication existed."""

    async def scenario() -> None:
        kind, details, _ = await attempt(setup, transport)
        assert kind == "joined"
        assert identity(details) == (f"anonymous-{details.session}", "anonymous", "anonymous",
                                     "static")

    run(scenario)


@TRANSPORTS
def test_ticket(setup: Setup, transport: str) -> None:
    """The right ticket joins as the principal; WELCOME carries authid, authrole, authmethod."""

    async def scenario() -> None:
        kind, details, client = await attempt(
            setup, transport, authmethods=["ticket"], authid="alice",
            answer=lambda challenge: "alice-ticket",
        )
        assert kind == "joined" and identity(details) == ("alice", "user", "ticket", "static")
        assert client.challenges[0].method == "ticket"

    run(scenario)


@TRANSPORTS
def test_wrong_ticket_is_aborted(setup: Setup, transport: str) -> None:
    async def scenario() -> None:
        kind, details, _ = await attempt(setup, transport, authmethods=["ticket"],
                                         authid="alice", answer=lambda challenge: "guess")
        assert_failed(kind, details)
        assert details.message == "authentication failed"

    run(scenario)


def cra(password: str, salted: bool = False) -> Callable[[Any], str]:
    def answer(challenge: Any) -> str:
        key: Any = password
        if salted:
            extra = challenge.extra
            key = derive_key(password, extra["salt"], extra["iterations"], extra["keylen"])
        return str(compute_wcs(key, challenge.extra["challenge"]).decode("ascii"))

    return answer


@TRANSPORTS
def test_wampcra_plain_and_salted(setup: Setup, transport: str) -> None:
    """wampcra with a plain secret (bob) and a salted one (carol, PBKDF2 in the client)."""

    async def scenario() -> None:
        kind, details, _ = await attempt(setup, transport, authmethods=["wampcra"],
                                         authid="bob", answer=cra("bob-secret"))
        assert kind == "joined" and identity(details) == ("bob", "user", "wampcra", "static")
        kind, details, client = await attempt(setup, transport, authmethods=["wampcra"],
                                              authid="carol", answer=cra("carol-password", True))
        assert kind == "joined" and identity(details) == ("carol", "admin", "wampcra", "static")
        assert client.challenges[0].extra["salt"] == "carol-salt"

    run(scenario)


@TRANSPORTS
def test_wampcra_wrong_secret_is_aborted(setup: Setup, transport: str) -> None:
    async def scenario() -> None:
        kind, details, _ = await attempt(setup, transport, authmethods=["wampcra"],
                                         authid="carol", answer=cra("carol-passw0rd", True))
        assert_failed(kind, details)
        kind, details, _ = await attempt(setup, transport, authmethods=["wampcra"],
                                         authid="nobody", answer=cra("x"))
        assert_failed(kind, details)

    run(scenario)


def signer(key: CryptosignKey) -> Callable[[Any], Any]:
    return key.sign_challenge


@TRANSPORTS
def test_cryptosign(setup: Setup, transport: str) -> None:
    """An authorized Ed25519 key (Autobahn's CryptosignKey) joins as its principal."""

    async def scenario() -> None:
        kind, details, _ = await attempt(
            setup, transport, authmethods=["cryptosign"], answer=signer(DAVE_KEY),
            authextra={"pubkey": DAVE_KEY.public_key(), "channel_binding": None},
        )
        assert kind == "joined"
        assert identity(details) == ("dave", "device", "cryptosign", "static")
        assert details.authextra == {"pubkey": DAVE_KEY.public_key()}

    run(scenario)


@TRANSPORTS
def test_cryptosign_unauthorized_or_forged_is_aborted(setup: Setup, transport: str) -> None:
    """A key no principal lists fails; so does claiming dave's key and signing with another."""

    async def scenario() -> None:
        kind, details, _ = await attempt(
            setup, transport, authmethods=["cryptosign"], answer=signer(EVE_KEY),
            authextra={"pubkey": EVE_KEY.public_key()},
        )
        assert_failed(kind, details)
        kind, details, _ = await attempt(
            setup, transport, authmethods=["cryptosign"], answer=signer(EVE_KEY),
            authextra={"pubkey": DAVE_KEY.public_key()},
        )
        assert_failed(kind, details)

    run(scenario)


def test_no_common_method_is_aborted(setup: Setup) -> None:
    """A method the realm does not offer (tls on realm1, or on a plain listener) is refused."""

    async def scenario() -> None:
        kind, details, _ = await attempt(setup, "websocket", authmethods=["tls", "scram"])
        assert_failed(kind, details, "wamp.error.no_auth_method")
        kind, details, _ = await attempt(setup, "rawsocket", "secure", authmethods=["tls"])
        assert_failed(kind, details, "wamp.error.no_auth_method")

    run(scenario)


def test_unanswered_challenge_is_closed_by_the_router(setup: Setup) -> None:
    """A client that never answers its CHALLENGE is aborted after auth_timeout."""
    client = RawWampClient.connect(setup.router.listener("quick"), realm=None)
    client.send([1, "realm1", {"roles": {"caller": {}}, "authmethods": ["ticket"],
                               "authid": "alice"}])
    assert client.recv() == [4, "ticket", {}]
    assert client.recv() == [3, {"message": "authentication timed out"},
                             "wamp.error.authentication_failed"]
    assert client.expect_closed() == b""
    client.close()


# -- tls --------------------------------------------------------------------------------------


def client_tls(setup: Setup, issued: Any = None, ca: Path | None = None) -> ssl.SSLContext:
    """A client TLS context trusting the test CA, presenting ``issued`` if given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(str(ca or setup.files / "ca.pem"))
    if issued is not None:
        stem = f"client-{os.urandom(4).hex()}"
        cert, key = issued.write(setup.files, stem)
        context.load_cert_chain(str(cert), str(key))
    return context


@TRANSPORTS
def test_tls_client_certificate(setup: Setup, transport: str) -> None:
    """A certificate from the CA joins as its CN; a principal of that name gets its role."""

    async def scenario() -> None:
        tls = client_tls(setup, setup.pki.client(CN="sensor-7", O="Example Corp", C="DE"))
        kind, details, _ = await attempt(setup, transport, "secure", tls=tls,
                                         authmethods=["tls"])
        assert kind == "joined" and identity(details) == ("sensor-7", "device", "tls", "static")
        assert details.authextra == {"dn": "CN=sensor-7,O=Example Corp,C=DE"}
        tls = client_tls(setup, setup.pki.client(CN="ops", O="Example Corp", C="DE"))
        kind, details, _ = await attempt(setup, transport, "secure", tls=tls,
                                         authmethods=["tls"])
        assert kind == "joined" and details.authrole == "admin"

    run(scenario)


def test_tls_dn_not_allowed_is_aborted(setup: Setup) -> None:
    """A valid certificate whose subject is not on allowed_dn is refused at the WAMP level."""

    async def scenario() -> None:
        tls = client_tls(setup, setup.pki.client(CN="sensor-7", O="Other Corp", C="DE"))
        kind, details, _ = await attempt(setup, "websocket", "secure", tls=tls,
                                         authmethods=["tls"])
        assert_failed(kind, details)

    run(scenario)


@pytest.mark.parametrize("certificate", ["none", "other-ca"])
def test_tls_without_a_valid_certificate_is_cut_off(setup: Setup, certificate: str) -> None:
    """No certificate, or one from another CA: the TLS layer refuses before any WAMP byte."""
    issued = Pki("other CA").client(CN="x", O="Example Corp", C="DE")
    tls = client_tls(setup, issued if certificate == "other-ca" else None)
    listener = setup.router.listener("rss")
    with tls.wrap_socket(listener.connect(), server_hostname="127.0.0.1") as conn:
        try:  # TLS 1.3: the server's verdict on the certificate comes with the first read
            conn.sendall(bytes((0x7F, 0xF1, 0, 0)))
            reply = conn.recv(4)
        except (ssl.SSLError, ConnectionError) as error:
            reply = str(error).encode()
    assert reply == b"" or b"alert" in reply, reply


def test_tls_optional_certificate(setup: Setup) -> None:
    """With tls_client_cert = "optional" a client without a certificate gets in by another
    method, and tls is simply not available to it."""

    async def scenario() -> None:
        opt = "rss_optional"
        kind, details, _ = await attempt(setup, "rawsocket", tls=client_tls(setup),
                                         listener_name=opt)
        assert kind == "joined" and details.authmethod == "anonymous"
        kind, details, _ = await attempt(setup, "rawsocket", "secure", tls=client_tls(setup),
                                         listener_name=opt, authmethods=["tls"])
        assert_failed(kind, details, "wamp.error.no_auth_method")
        tls = client_tls(setup, setup.pki.client(CN="s-1", O="Example Corp", C="DE"))
        kind, details, _ = await attempt(setup, "rawsocket", "secure", tls=tls,
                                         listener_name=opt, authmethods=["tls"])
        assert kind == "joined" and details.authid == "s-1"

    run(scenario)


# -- transport (SO_PEERCRED) ------------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="connecting as other uids needs root")
def test_transport_uid_from_the_kernel(setup: Setup) -> None:
    """Over a Unix socket the authid is the peer's uid as the kernel reports it: uid 0 is
    admin, uid 65534 guest, uid 1000 has no role; a claimed authid changes nothing."""
    sockets = {uid: connect_as(setup.socket_path, uid) for uid in (0, NOBODY, 1000)}

    async def scenario() -> None:
        kind, details, _ = await attempt(setup, "rawsocket", "local", sock=sockets[0],
                                         authmethods=["transport"])
        assert kind == "joined"
        assert identity(details) == ("uid:0", "admin", "transport", "kernel")
        kind, details, _ = await attempt(setup, "rawsocket", "local", sock=sockets[NOBODY],
                                         authmethods=["transport"], authid="uid:0")
        assert_failed(kind, details)  # claimed uid:0 but is 65534
        kind, details, _ = await attempt(setup, "rawsocket", "local", sock=sockets[1000],
                                         authmethods=["transport"])
        assert_failed(kind, details)
        kind, details, _ = await attempt(
            setup, "rawsocket", "local", sock=connect_as(setup.socket_path, NOBODY),
            authmethods=["transport"],
        )
        assert kind == "joined" and identity(details) == (f"uid:{NOBODY}", "guest", "transport",
                                                          "kernel")
        assert details.authextra == {"uid": NOBODY, "gid": NOBODY}

    run(scenario)


def test_transport_not_offered_over_tcp(setup: Setup) -> None:
    """TCP carries no kernel-vouched identity: the transport method does not apply."""

    async def scenario() -> None:
        kind, details, _ = await attempt(setup, "rawsocket", "local", authmethods=["transport"])
        assert_failed(kind, details, "wamp.error.no_auth_method")

    run(scenario)
