"""The [access] table and listener labels in the configuration, checked at load time."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from serouter.config import (
    DEFAULT_CONFIG_TOML,
    AccessConfig,
    ConfigError,
    load_config,
    parse_config,
)

SOURCE = "serouter.toml"
BASE: dict[str, Any] = {
    "realms": [{"name": "realm1"}],
    "listeners": [{"transport": "rawsocket", "endpoint": "tcp:9001"}],
}
CONTEXT = "system_u:system_r:svc_a_t:s0"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    policy, contexts = tmp_path / "policy.33", tmp_path / "wamp_contexts"
    policy.write_bytes(b"x")
    contexts.write_text("uri * system_u:object_r:wamp_uri_t:s0\n")
    return {"policy": str(policy), "contexts": str(contexts)}


def with_access(access: dict[str, Any] | None, **listener: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    if access is not None:
        data["access"] = access
    data["listeners"][0].update(listener)
    return data


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, SOURCE, require_access=True)
    return str(caught.value)


def test_policy_file_backend_with_every_key(files: dict[str, str]) -> None:
    """Every key of the issue's example is accepted and typed."""
    access = {
        "backend": "policy-file", **files, "enforcing": False,
        "unlabeled": "system_u:system_r:unlabeled_t:s0", "allow_unknown_classes": True,
        "uid_labels": {"1001": CONTEXT}, "authid_labels": {"alice": CONTEXT},
        "authrole_labels": {"admin": CONTEXT},
    }
    config = parse_config(with_access(access, label=CONTEXT), SOURCE, require_access=True)
    assert config.access == AccessConfig(
        backend="policy-file", policy=files["policy"], enforcing=False,
        contexts=files["contexts"], unlabeled="system_u:system_r:unlabeled_t:s0",
        allow_unknown_classes=True, uid_labels={1001: CONTEXT},
        authid_labels={"alice": CONTEXT}, authrole_labels={"admin": CONTEXT},
    )
    assert config.listeners[0].label == CONTEXT


def test_a_file_must_name_its_backend(tmp_path: Path) -> None:
    """A configuration file without [access] is refused; the embedded default is allow-all."""
    path = tmp_path / "serouter.toml"
    path.write_text('[[realms]]\nname = "realm1"\n[[listeners]]\ntransport = "rawsocket"\n'
                    'endpoint = "tcp:0:interface=127.0.0.1"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert caught.value.path == "access" and "must name its access backend" in str(caught.value)
    assert load_config(None).access.backend == "allow-all"
    assert '[access]\nbackend = "allow-all"' in DEFAULT_CONFIG_TOML


def test_the_embedded_default_saved_as_a_file_loads(tmp_path: Path) -> None:
    """DEFAULT_CONFIG_TOML names its backend, so a copy of it is a valid file."""
    path = tmp_path / "serouter.toml"
    path.write_text(DEFAULT_CONFIG_TOML)
    assert load_config(str(path)).access == load_config(None).access


@pytest.mark.parametrize(
    ("access", "path", "reason"),
    [
        ({}, "access.backend", "missing; name the backend"),
        ({"backend": "selinux-ish"}, "access.backend", "must be one of"),
        ({"backend": "policy-file", "contexts": "C"}, "access.policy", "needs a compiled"),
        ({"backend": "policy-file", "policy": "P"}, "access.contexts", "needs a contexts file"),
        ({"backend": "selinux"}, "access.contexts", "needs a contexts file"),
        ({"backend": "selinux", "contexts": "C", "policy": "P"}, "access.policy",
         'only the "policy-file" backend has policy'),
        ({"backend": "allow-all", "enforcing": False}, "access.enforcing",
         'only the "policy-file" backend'),
        ({"backend": "policy-file", "policy": "/nonexistent/policy.33", "contexts": "C"},
         "access.policy", "does not exist"),
        ({"backend": "policy-file", "policy": "P", "contexts": "C", "enforcing": "yes"},
         "access.enforcing", "must be true or false"),
        ({"backend": "allow-all", "unlabeled": "unlabeled_t"}, "access.unlabeled",
         "must be an SELinux context"),
        ({"backend": "allow-all", "uid_labels": {"alice": CONTEXT}}, 'access.uid_labels."alice"',
         "must be a uid"),
        ({"backend": "allow-all", "uid_labels": {"1001": "x y"}}, 'access.uid_labels."1001"',
         "must be an SELinux context"),
        ({"backend": "allow-all", "authid_labels": []}, "access.authid_labels",
         "must be a table"),
        ({"backend": "allow-all", "allow_unknown": True}, "access.allow_unknown",
         "unknown key (did you mean"),
    ],
)
def test_bad_access_tables(files: dict[str, str], access: dict[str, Any], path: str,
                           reason: str) -> None:
    """Each mistake is refused naming the key; paths must exist when the file is loaded."""
    access = {k: files["policy"] if v == "P" else files["contexts"] if v == "C" else v
              for k, v in access.items()}
    message = error_of(with_access(access))
    assert f"{SOURCE}: {path}: " in message and reason in message, message


def test_listener_label_must_look_like_a_context() -> None:
    """A listener's label is checked for the shape of a context (the policy checks the rest)."""
    message = error_of(with_access({"backend": "allow-all"}, label="wamp_client_t"))
    assert "listeners[0].label: must be an SELinux context" in message
