"""The authentication keys of the configuration, and the policy built from them."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from serouter.auth.configure import policy_from_config
from serouter.auth.tls_listener import client_certificate_options
from serouter.config import ConfigError, PrincipalConfig, parse_config
from serouter.core.peer import TransportInfo
from tests.auth_support import Pki

SOURCE = "serouter.toml"
KEY = "ab" * 32
BASE: dict[str, Any] = {
    "realms": [{"name": "realm1"}],
    "listeners": [{"transport": "rawsocket", "endpoint": "tcp:9001"}],
}


def with_realm(**keys: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data["realms"][0].update(keys)
    return data


def with_listener(**keys: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data["listeners"][0].update(keys)
    return data


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, SOURCE)
    return str(caught.value)


def test_default_offers_anonymous_only() -> None:
    """With no auth keys a realm offers anonymous, as serouter always did."""
    realm = parse_config(copy.deepcopy(BASE), SOURCE).realms[0]
    assert realm.auth == ("anonymous",) and realm.all_principals() == {}
    assert realm.anonymous.role == "anonymous"


def test_principals_are_read_and_keep_secrets_out_of_repr() -> None:
    config = parse_config(with_realm(
        auth=["ticket", "wampcra", "cryptosign"],
        principals={
            "alice": {"role": "user", "ticket": "t-secret"},
            "carol": {"role": "admin", "secret": "derived==", "salt": "s", "iterations": 10,
                      "keylen": 16},
            "dave": {"role": "device", "pubkeys": [KEY.upper()]},
        },
    ), SOURCE)
    principals = config.realms[0].all_principals()
    assert principals["carol"] == PrincipalConfig("admin", None, "derived==", "s", 10, 16)
    assert principals["dave"].pubkeys == (KEY,)  # lower case
    assert "t-secret" not in repr(config) and "derived==" not in repr(config)


def test_a_bad_secret_is_not_echoed() -> None:
    """A malformed secret's message does not print the value."""
    bad = {"a": {"role": "r", "ticket": 12345}}
    message = error_of(with_realm(auth=["ticket"], principals=bad))
    assert message == (f"{SOURCE}: realms[0].principals.a.ticket: must be a non-empty string "
                       "(the value is a secret: not shown)")
    assert "12345" not in message


@pytest.mark.parametrize(("realm", "expected"), [
    ({"auth": ["kerberos"]}, 'realms[0].auth[0]: must be one of "anonymous", "ticket"'),
    ({"auth": []}, "realms[0].auth: must be a non-empty array"),
    ({"auth": ["ticket", "ticket"]}, 'realms[0].auth[1]: "ticket" is listed twice'),
    ({"auth": ["ticket"]}, "realms[0].auth: offers ticket, but no principal has a ticket"),
    ({"auth": ["cryptosign"], "principals": {"d": {"role": "r", "pubkeys": ["abc"]}}},
     'realms[0].principals.d.pubkeys[0]: must be 64 hex digits (32 bytes), got "abc"'),
    ({"principals": {"c": {"role": "r", "salt": "s"}}},
     "realms[0].principals.c.secret: a salt needs the derived key in secret"),
    ({"principals": {"c": {"role": "r", "secret": "x", "iterations": 5}}},
     "realms[0].principals.c.iterations: only a salted secret has iterations"),
    ({"principals": {"c": {"ticket": "x"}}}, "realms[0].principals.c.role: missing"),
    ({"auth": ["cryptosign"], "principals": {"a": {"role": "r", "pubkeys": [KEY]},
                                             "b": {"role": "r", "pubkeys": [KEY]}}},
     'realms[0]: "b" and "a" share a public key'),
    ({"tls": {"role": "x"}}, "realms[0].tls: configures tls, but auth does not offer it"),
    ({"auth": ["transport"]}, "realms[0].transport: admits no peer"),
    ({"auth": ["transport"], "transport": {"uid_roles": {"no-such-user-here": "x"}}},
     'realms[0].transport.uid_roles.no-such-user-here: no user named "no-such-user-here"'),
    ({"auth": ["tls"], "tls": {"role": "device"}},
     'realms[0].auth: offers "tls", but no listener has tls_ca'),
    ({"principals_file": "/nonexistent/p.toml"},
     'realms[0].principals_file: cannot read "/nonexistent/p.toml"'),
])
def test_bad_auth_keys_are_refused(realm: dict[str, Any], expected: str) -> None:
    assert error_of(with_realm(**realm)).startswith(f"{SOURCE}: {expected}")


def test_principals_file_json_and_toml(tmp_path: Path) -> None:
    """principals_file holds a principals table in JSON or TOML; it merges with inline ones."""
    as_json = tmp_path / "p.json"
    as_json.write_text(json.dumps({"principals": {"bob": {"role": "user", "secret": "b"}}}))
    as_toml = tmp_path / "p.toml"
    as_toml.write_text('[principals.dave]\nrole = "device"\npubkeys = ["' + KEY + '"]\n')
    for path, authid in ((as_json, "bob"), (as_toml, "dave")):
        config = parse_config(with_realm(
            auth=["ticket", "wampcra", "cryptosign"] if authid == "dave" else ["ticket", "wampcra"],
            principals_file=str(path),
            principals={"alice": {"role": "user", "ticket": "t"}, "x": {"role": "r",
                                                                       "secret": "s"}},
        ), SOURCE)
        assert set(config.realms[0].all_principals()) == {"alice", "x", authid}


def test_principals_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[principals.bob]\nrole = "user"\nticket = 5\n')
    message = error_of(with_realm(principals_file=str(path)))
    assert message == (f'{SOURCE}: realms[0].principals_file: in "{path}": principals.bob.'
                       "ticket: must be a non-empty string (the value is a secret: not shown)")
    path.write_text('[principals.bob]\nrole = "user"\nticket = "unterminated\n')
    assert "not JSON or TOML" in error_of(with_realm(principals_file=str(path)))
    path.write_text('[users.bob]\nrole = "user"\n')
    assert "must hold exactly one table, principals" in error_of(
        with_realm(principals_file=str(path)))
    path.write_text('[principals.alice]\nrole = "user"\nticket = "t"\n')
    assert '"alice" is also in principals' in error_of(with_realm(
        principals_file=str(path), principals={"alice": {"role": "r"}}))


def test_id_roles_take_numbers_and_names() -> None:
    """uid_roles/gid_roles keys are numbers or names, resolved when the file is loaded."""
    realm = parse_config(with_realm(auth=["transport"], transport={
        "uid_roles": {"root": "admin", "1000": "user"}, "gid_roles": {"0": "wheel"},
    }), SOURCE).realms[0]
    assert realm.transport.uid_roles == {0: "admin", 1000: "user"}
    assert realm.transport.gid_roles == {0: "wheel"}


def write_pki(directory: Path) -> dict[str, str]:
    pki = Pki()
    cert, key = pki.server().write(directory, "server")
    ca = directory / "ca.pem"
    pki.ca.write(directory, "ca")
    return {"cert": str(cert), "key": str(key), "ca": str(ca)}


def test_listener_auth_keys(tmp_path: Path) -> None:
    """tls_ca needs an ssl: endpoint and a readable CA; tls needs tls_ca."""
    files = write_pki(tmp_path)
    ssl = f"ssl:0:interface=127.0.0.1:privateKey={files['key']}:certKey={files['cert']}"
    data = with_listener(endpoint=ssl, tls_ca=files["ca"], auth=["tls"], auth_timeout=3)
    data["realms"][0].update(auth=["tls", "anonymous"], tls={"role": "device"})
    listener = parse_config(data, SOURCE).listeners[0]
    assert listener.tls_ca == files["ca"] and listener.auth == ("tls",)
    assert listener.auth_timeout == 3.0 and listener.tls_client_cert == "required"
    assert client_certificate_options(listener).requireCertificate
    assert error_of(with_listener(tls_ca=files["ca"])).endswith(
        'listeners[0].tls_ca: needs an ssl: endpoint, not "tcp:"')
    assert error_of(with_listener(auth=["tls"])).endswith(
        'listeners[0].auth: "tls" needs tls_ca, the CA that verifies client certificates')
    assert error_of(with_listener(tls_client_cert="optional")).endswith(
        "listeners[0].tls_client_cert: only a listener with tls_ca asks for certificates")
    assert "holds no PEM certificates" in error_of(with_listener(endpoint=ssl,
                                                                 tls_ca=files["key"]))


def test_policy_from_config(tmp_path: Path) -> None:
    """Each realm gets one authenticator per offered method; listeners narrow them, and only
    a listener with tls_ca takes certificates."""
    files = write_pki(tmp_path)
    ssl = f"ssl:0:interface=127.0.0.1:privateKey={files['key']}:certKey={files['cert']}"
    data = {
        "realms": [
            {"name": "realm1", "auth": ["anonymous", "ticket", "tls"], "tls": {"role": "dev"},
             "principals": {"alice": {"role": "user", "ticket": "t"}}},
            {"name": "plain"},
        ],
        "listeners": [
            {"transport": "rawsocket", "endpoint": "tcp:9001", "auth": ["ticket"],
             "auth_timeout": 2},
            {"transport": "rawsocket", "endpoint": "tcp:9002"},
            {"transport": "websocket", "endpoint": ssl, "tls_ca": files["ca"]},
        ],
    }
    policy = policy_from_config(parse_config(data, SOURCE))
    a_cert = Pki().client(CN="x").der

    def chosen(realm: str, listener: str, methods: list[str], cert: bytes | None = None) -> Any:
        transport = TransportInfo("rawsocket", "json", "p", listener=listener,
                                  peer_certificate=cert)
        authenticator = policy.choose(realm, transport, methods)
        return authenticator and authenticator.method

    assert chosen("realm1", "tcp:9001", ["anonymous", "ticket"]) == "ticket"
    assert chosen("realm1", "tcp:9002", ["tls", "anonymous"], a_cert) == "anonymous"
    assert chosen("realm1", ssl, ["tls", "anonymous"], a_cert) == "tls"
    assert chosen("plain", ssl, ["ticket", "anonymous"]) == "anonymous"
    assert policy.timeout("tcp:9001") == 2.0 and policy.timeout("tcp:9002") == 10.0
