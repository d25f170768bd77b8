"""Who a peer domain is, and what follows from it: names from XenStore (trusted only where
dom0 alone could write them), keys of the configured maps, labels, transport-derived authids,
and the configuration that carries the maps."""

from __future__ import annotations

import os
import shutil
import tempfile
import tomllib
from typing import Any

import pytest
from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.trial import unittest

from serouter.argo import DomainNaming, PeerDomain, XenStoreDomains, domain_key, domain_keys
from serouter.argo._domains import domid_only
from serouter.auth.base import Accept, Deny, Request
from serouter.auth.transport import PeerCredentials
from serouter.config import ConfigError, parse_config
from serouter.core.peer import TransportInfo
from serouter.security._labeler import SessionLabeler
from serouter.xenstore import DomainInfo, XenStoreClient, XenStoreEndpoint, XenStoreError
from tests.xenstore_server import Perm, Store, XenStoreServer

UUID1 = "6c4a8f5e-3b1d-4d8e-9a7b-2f1e0c9d8b7a"
A, B, C, D = (f"system_u:system_r:{t}_t:s0" for t in "abcd")
UNLABELED = "system_u:object_r:unlabeled_t:s0"


# -- keys ------------------------------------------------------------------------------------------


def test_domain_keys_normalize_and_refuse() -> None:
    assert domain_key(f"uuid:{UUID1.upper()}") == f"uuid:{UUID1}"
    assert domain_key("name:guest 1") == "name:guest 1"
    assert domain_key("domid:007") == "domid:7"
    for bad in ("guest1", "uuid:nope", "name:", "name:a\nb", "domid:-1", "domid:32752",
                "domid:x", "vm:1"):
        with pytest.raises(ValueError):
            domain_key(bad)


def test_most_specific_key_first() -> None:
    assert domain_keys(3, "g", UUID1) == [f"uuid:{UUID1}", "name:g", "domid:3"]
    assert domain_keys(3, None, None) == ["domid:3"]


# -- the resolver ----------------------------------------------------------------------------------


def test_concurrent_lookups_of_a_domain_share_one() -> None:
    """Two connections from domain 1 while its lookup runs: one XenStore lookup, both get it;
    the next connection asks again (no cache)."""
    asked: list[defer.Deferred[Any]] = []

    def lookup(domid: int) -> defer.Deferred[Any]:
        asked.append(defer.Deferred())
        return asked[-1]

    clock = Clock()
    resolve = XenStoreDomains(lookup, clock, timeout=5)
    first, second = resolve(1), resolve(1)
    assert len(asked) == 1
    asked[0].callback(DomainInfo("guest1", UUID1))
    assert first.result == second.result == PeerDomain(1, "guest1", UUID1)
    resolve(1)
    assert len(asked) == 2 and len(clock.getDelayedCalls()) == 1


def test_failed_or_slow_lookups_give_the_domain_id_alone() -> None:
    """A refusal (ENOENT, a name the guest could write...) or no answer within the timeout:
    the domain id alone; an answer after the timeout is dropped."""
    asked: list[defer.Deferred[Any]] = []

    def lookup(domid: int) -> defer.Deferred[Any]:
        asked.append(defer.Deferred())
        return asked[-1]

    clock = Clock()
    resolve = XenStoreDomains(lookup, clock, timeout=5)
    refused = resolve(2)
    asked[0].errback(XenStoreError("ENOENT", "/local/domain/2/name"))
    assert refused.result == PeerDomain(2)
    slow = resolve(3)
    clock.advance(5)
    assert slow.result == PeerDomain(3)
    asked[1].callback(DomainInfo("late", None))  # nobody waits any more
    assert slow.result == PeerDomain(3)
    broken = XenStoreDomains(lambda domid: 1 / 0, clock, timeout=5)  # type: ignore[arg-type,return-value]
    assert broken(4).result == PeerDomain(4)
    assert domid_only(5).result == PeerDomain(5)  # type: ignore[attr-defined]


class XenStoreNames(unittest.TestCase):
    """Against the test xenstored: what the toolstack wrote is read; what a guest could have
    written is not believed."""

    timeout = 20

    def setUp(self) -> Any:
        self.dir = tempfile.mkdtemp(prefix="xs", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.dir, True)
        store = Store()
        store.seed_domain(0, "Domain-0", None)
        store.seed_domain(1, "guest1", UUID1)
        store.seed_domain(2, "guest2", None)
        store.seed_domain(6, "liar", None)
        store.write("/local/domain/6/name", "dom0-impostor", (Perm(6, 0),))  # the guest's own
        self.server = XenStoreServer(reactor, store)
        self.socket = os.path.join(self.dir, "socket")
        self.server.listen(self.socket, 0)
        self.addCleanup(self.server.stop)
        self.client = XenStoreClient(reactor, XenStoreEndpoint(reactor, {"XENSTORED_PATH":
                                                                         self.socket}))
        self.client.startService()
        self.addCleanup(self.client.stopService)

    @defer.inlineCallbacks
    def test_names_uuids_and_refusals(self) -> Any:
        resolve = XenStoreDomains(self.client.domain_info, reactor, timeout=5)
        results = yield defer.gatherResults([resolve(d) for d in (0, 1, 2, 5, 6)])
        assert results == [PeerDomain(0, "Domain-0", None), PeerDomain(1, "guest1", UUID1),
                           PeerDomain(2, "guest2", None), PeerDomain(5), PeerDomain(6)]

    @defer.inlineCallbacks
    def test_domain_naming_service(self) -> Any:
        """The daemon's DomainNaming: one client made on first use, stopped with the daemon;
        with xenstore off, domain ids alone and no connection at all."""
        os.environ["XENSTORED_PATH"] = self.socket
        try:
            naming = DomainNaming(reactor, xenstore=True, timeout=5)
            resolve = naming.resolver()
            client = naming._client
            naming.resolver()
            assert naming._client is client  # one XenStore connection for every listener
        finally:
            del os.environ["XENSTORED_PATH"]
        assert (yield resolve(1)) == PeerDomain(1, "guest1", UUID1)
        yield naming.stop()
        off = DomainNaming(reactor, xenstore=False)
        assert off.resolver() is domid_only
        yield off.stop()


# -- labels ----------------------------------------------------------------------------------------


def argo(domid: int, name: str | None = None, uuid: str | None = None,
         **more: Any) -> TransportInfo:
    return TransportInfo("rawsocket", "json", f"argo:{domid}:1", listener="argo:port=5555",
                         peer_domain=domid, peer_domain_name=name, peer_domain_uuid=uuid,
                         **more)


def labeler(**options: Any) -> SessionLabeler:
    valid = options.pop("valid", lambda context: True)
    return SessionLabeler(unlabeled=UNLABELED, valid=valid, trust_peer_context=False,
                          **options)


def test_domain_labels_most_specific_match_wins() -> None:
    """uuid before name before domain id; a domain no key names is unlabeled, or gets the
    listener's label if it has one."""
    label = labeler(domain_labels={f"uuid:{UUID1}": A, "name:guest1": B, "name:guest2": C,
                                   "domid:3": D})
    assert label(argo(1, "guest1", UUID1), "anonymous", "anonymous") == A
    assert label(argo(1, "guest1"), "anonymous", "anonymous") == B
    assert label(argo(2, "guest2", "00000000-0000-0000-0000-000000000002"), "a", "a") == C
    assert label(argo(3), "anonymous", "anonymous") == D
    assert label(argo(3, "renamed"), "anonymous", "anonymous") == D
    assert label(argo(4, "guest4"), "anonymous", "anonymous") == UNLABELED
    assert label(argo(4, "guest4", listener_label=B), "anonymous", "anonymous") == B


def test_domain_label_rules() -> None:
    """A label invalid in the policy makes the session unlabeled (no fall-through); a label
    the router established from an authentication comes first; a client's claimed authid
    alone changes nothing; sessions that are not Argo are not looked up."""
    label = labeler(domain_labels={"name:guest1": B}, valid=lambda c: c != B,
                    authid_labels={"domain:guest2": C})
    assert label(argo(1, "guest1", listener_label=A), "anonymous", "anonymous") == UNLABELED
    assert label(argo(2, "guest2"), "domain:guest2", "r", "transport") == C
    assert label(argo(2, "guest2"), "domain:guest2", "anonymous", "anonymous") == UNLABELED
    plain = TransportInfo("rawsocket", "json", "unix", peer_uid=0)
    assert labeler(domain_labels={"domid:0": A})(plain, "x", "y") == UNLABELED


# -- transport-derived authentication --------------------------------------------------------------


def request(transport: TransportInfo, authid: str | None = None) -> Request:
    details = {"authid": authid} if authid else {}
    return Request("realm1", 1, details, transport)


def test_domain_authid_and_role() -> None:
    """authid domain:<name> (domid:<n> without a trustworthy name); the role by uuid, name or
    domain id, else the default; a client asking for another authid is refused."""
    method = PeerCredentials(role="guest", domain_roles={"name:guest1": "service",
                                                         f"uuid:{UUID1}": "trusted",
                                                         "domid:5": "five"})
    assert method.applies(argo(1)) and not method.applies(TransportInfo("w", "json", "tcp"))
    by_uuid = method.start(request(argo(1, "guest1", UUID1))).first
    assert by_uuid == Accept("domain:guest1", "trusted", "transport", "xen",
                             {"domid": 1, "domain": "guest1", "uuid": UUID1})
    assert method.start(request(argo(1, "guest1"))).first.authrole == "service"  # type: ignore[union-attr]
    nameless = method.start(request(argo(5))).first
    assert isinstance(nameless, Accept) and (nameless.authid, nameless.authrole) == (
        "domid:5", "five")
    assert method.start(request(argo(7, "x"))).first.authrole == "guest"  # type: ignore[union-attr]
    assert method.start(request(argo(1, "guest1"), authid="domain:guest1")).first.authid == (  # type: ignore[union-attr]
        "domain:guest1")
    claimed = method.start(request(argo(2, "guest2"), authid="domain:guest1")).first
    assert isinstance(claimed, Deny) and "domain:guest1" in claimed.detail
    strict = PeerCredentials(domain_roles={"name:guest1": "service"})
    refused = strict.start(request(argo(2, "guest2"))).first
    assert isinstance(refused, Deny) and "has no role" in refused.detail


# -- configuration ---------------------------------------------------------------------------------

BASE = """
[access]
backend = "allow-all"
[[realms]]
name = "realm1"
[[listeners]]
transport = "rawsocket"
endpoint = "argo:port=5555"
"""


def parse(extra: str) -> Any:
    return parse_config(tomllib.loads(BASE + extra), "serouter.toml")


def test_configuration_of_domain_maps_and_argo() -> None:
    config = parse(f"""
[argo]
resolve_timeout = 2.5
[access.domain_labels]
"uuid:{UUID1.upper()}" = "{A}"
"name:guest2" = "{B}"
"domid:0" = "{C}"
""")
    assert config.argo.resolve_timeout == 2.5 and config.argo.xenstore
    assert config.access.domain_labels == {f"uuid:{UUID1}": A, "name:guest2": B, "domid:0": C}
    realm = parse_config(tomllib.loads(BASE.replace('name = "realm1"', '''name = "realm1"
auth = ["transport"]
transport.domain_roles = {"name:guest1" = "service"}''')), "x").realms[0]
    assert realm.transport.domain_roles == {"name:guest1": "service"}


@pytest.mark.parametrize("extra,message", [
    ('[access.domain_labels]\n"guest1" = "a:b:c"\n',
     'access.domain_labels."guest1": \'guest1\': write "uuid:<uuid>"'),
    ('[access.domain_labels]\n"name:guest1" = "not a context"\n',
     "must be an SELinux context"),
    ('[argo]\nxenstore = false\n[access.domain_labels]\n"name:g" = "a:b:c"\n',
     "needs domain names from XenStore"),
    ("[argo]\nresolve_timeout = 0\n", "argo.resolve_timeout: must be a number of seconds"),
    ("[argo]\nresolve = 1\n", "argo.resolve: unknown key"),
])
def test_configuration_refused(extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse(extra)


def test_transport_auth_admits_by_domain_roles_alone() -> None:
    """A realm offering transport authentication with only domain_roles is complete; with no
    roles at all it is refused, naming domain_roles among the ways out."""
    text = BASE.replace('name = "realm1"', 'name = "realm1"\nauth = ["transport"]')
    with pytest.raises(ConfigError, match="domain_roles"):
        parse_config(tomllib.loads(text), "x")
    roles = text.replace('auth = ["transport"]',
                         'auth = ["transport"]\ntransport.domain_roles = {"domid:3" = "r"}')
    realm = parse_config(tomllib.loads(roles), "x").realms[0]
    assert realm.transport.domain_roles == {"domid:3": "r"}


def test_without_xenstored_connections_do_not_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """xenstored unreachable: during the start-up grace a lookup waits (up to the timeout);
    after it, connections go on at once with their domain id alone."""
    monkeypatch.setenv("XENSTORED_PATH", "/nonexistent/xenstored/socket")
    clock = Clock()
    naming = DomainNaming(clock, xenstore=True, timeout=2)
    resolve = naming.resolver()
    early = resolve(1)
    assert not early.called
    clock.advance(2)
    assert early.result == PeerDomain(1)
    later = resolve(2)
    assert later.called and later.result == PeerDomain(2)
    naming.stop()
    assert resolve(3).result == PeerDomain(3)
