"""SIGHUP: the configuration, the contexts file and the policy read again and applied without
dropping a session; what needs a restart, or does not load, is refused and the old one stays."""

from __future__ import annotations

import re
import socket
import tomllib
from pathlib import Path

import pytest

from serouter._reload import ReloadRefused, plan_reload
from serouter.config import Config, parse_config
from tests.daemon_support import HEAD, Daemon, rawsocket, realms, tcp_listener
from tests.raw_clients import RawWampClient, echo_roundtrip
from tests.router_process import Listener, RouterProcess, free_port, running
from tests.selinux_policy import A, B, PolicyBuilder, policies
from tests.test_security_e2e import joined, labeled, policy_router

__all__ = ["policies"]

pytestmark = pytest.mark.timeout(90)

ERROR, SUBSCRIBE, REGISTER = 8, 32, 64

TCP = "tcp:{}:interface=127.0.0.1"


def config(text: str) -> Config:
    return parse_config(tomllib.loads(HEAD + text), "test.toml")


BASE = realms("realm1") + rawsocket(TCP.format(9001)) + rawsocket(TCP.format(9002))


# -- the plan: what a new configuration changes, decided before anything is touched --------------


def test_plan_lists_listeners_added_removed_and_reopened() -> None:
    """Listeners are told apart by endpoint: a new one is added, a missing one removed, one
    with other settings reopened; a new realm is added."""
    new = config(realms("realm1", "realm2") + rawsocket(TCP.format(9002))
                 + "max_message_size = 4096\n" + rawsocket(TCP.format(9003)))
    plan = plan_reload(config(BASE), new)
    assert [x.endpoint for x in plan.added] == [TCP.format(9003)]
    assert plan.removed == (TCP.format(9001),)
    assert [x.endpoint for x in plan.changed] == [TCP.format(9002)]
    assert [r.name for r in plan.realms] == ["realm2"]
    assert not plan.metrics


def test_plan_applies_authentication_changes() -> None:
    """A realm's principals and methods may change: they apply from the next HELLO."""
    ticket = '[realms.principals.alice]\nrole = "user"\nticket = "s3cret"\n'
    new = config('[[realms]]\nname = "realm1"\nauth = ["ticket"]\n' + ticket
                 + rawsocket(TCP.format(9001)) + rawsocket(TCP.format(9002)))
    plan = plan_reload(config(BASE), new)
    assert plan.added == plan.changed == plan.removed == plan.realms == ()


@pytest.mark.parametrize(("text", "reason"), [
    (BASE.replace('"realm1"', '"realm2"'), "realm realm1 was removed"),
    (BASE.replace('name = "realm1"\n', 'name = "realm1"\nhistory_limit = 5\n'),
     "realms[0] (realm1): history_limit changed"),
    ('[metrics]\nendpoint = "tcp:9100"\n' + BASE, None),
])
def test_plan_refuses_what_needs_a_restart(text: str, reason: str | None) -> None:
    """Removing a realm or changing its routing settings needs a restart: refused, saying
    which; a new [metrics] table is fine."""
    if reason is None:
        assert plan_reload(config(BASE), config(text)).metrics
        return
    with pytest.raises(ReloadRefused, match=re.escape(reason)):
        plan_reload(config(BASE), config(text))


@pytest.mark.parametrize(("head", "reason"), [
    ('[access]\nbackend = "allow-all"\nunlabeled = "u:r:t:s0"\n', r"\[access\] changed"),
    ('[router]\nmode = "nameserver"\n[access]\nbackend = "allow-all"\n', "mode changed"),
    ('[access]\nbackend = "allow-all"\n[federation]\ndiscovery = "static"\n'
     'nameserver = "tcp:127.0.0.1:9000"\nadvertise = "tcp:127.0.0.1:9001"\n',
     r"\[federation\] changed"),
])
def test_plan_refuses_new_access_mode_or_federation(head: str, reason: str) -> None:
    """[access], [router] mode and [federation] are fixed for the life of the process."""
    new = parse_config(tomllib.loads(head + BASE), "test.toml")
    with pytest.raises(ReloadRefused, match=reason):
        plan_reload(config(BASE), new)


# -- a running router ------------------------------------------------------------------------------


def write(daemon: Daemon, text: str) -> None:
    daemon.config.write_text(text)


def test_reload_adds_and_removes_listeners_and_realms_keeping_sessions(tmp_path: Path) -> None:
    """A new listener and a new realm serve at once; a removed listener accepts nobody new, but
    the sessions that came through it keep working; nothing is dropped at any step."""
    first, second = free_port(), free_port()
    base = HEAD + realms("realm1") + rawsocket(TCP.format(first))
    with Daemon(tmp_path, base) as daemon:
        daemon.start()
        callee = RawWampClient.connect(tcp_listener(first))
        caller = RawWampClient.connect(tcp_listener(first))
        callee.register("com.example.kept")

        daemon.reload(HEAD + realms("realm1", "realm2") + rawsocket(TCP.format(first))
                      + rawsocket(TCP.format(second)))
        assert "reloaded" in daemon.output and "realms added: realm2" in daemon.output
        newcomer = RawWampClient.connect(tcp_listener(second), realm="realm2")
        assert newcomer.session_id
        echo_roundtrip(caller, callee, "com.example.kept")

        daemon.reload(HEAD + realms("realm1", "realm2") + rawsocket(TCP.format(second)))
        with pytest.raises(OSError):
            tcp_listener(first).connect(timeout=1.0)
        echo_roundtrip(caller, callee, "com.example.kept")  # came through the removed listener
        late = RawWampClient.connect(tcp_listener(second))
        echo_roundtrip(late, callee, "com.example.kept")
        assert daemon.stop() == 0, daemon.output
    assert "Traceback" not in daemon.output


def test_a_bad_configuration_is_refused_and_the_old_one_keeps_running(tmp_path: Path) -> None:
    """A file that does not load, or asks for a restart, or a port that is taken: each is
    refused with the reason in the log, and the running configuration keeps serving."""
    port, taken = free_port(), free_port()
    good = HEAD + realms("realm1") + rawsocket(TCP.format(port))
    with Daemon(tmp_path, good) as daemon:
        daemon.start()
        callee = RawWampClient.connect(tcp_listener(port))
        caller = RawWampClient.connect(tcp_listener(port))
        callee.register("com.example.stays")
        attempts = [
            (good + "max_message_size = 1\n", "listeners[0].max_message_size: must be"),
            (good.replace("[access]", "[acces]"), "unknown key"),
            (HEAD + realms("realm2") + rawsocket(TCP.format(port)), "realm realm1 was removed"),
        ]
        squatter = socket.socket()
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        attempts.append((good + rawsocket(TCP.format(taken)), "cannot listen"))
        for text, reason in attempts:
            daemon.reload(text)
            assert "reload refused, the running configuration stays: " in daemon.output
            assert reason in daemon.output.rsplit("reload refused", 1)[1], daemon.output
            echo_roundtrip(caller, callee, "com.example.stays")
        squatter.close()
        assert daemon.output.count("reload refused") == len(attempts)
        assert daemon.stop() == 0, daemon.output


def test_log_level_follows_the_configuration(tmp_path: Path) -> None:
    """[router] log_level applies at reload: debug lines appear after it, not before; with
    --log-level on the command line the configuration's level is ignored."""
    port = free_port()
    base = HEAD + realms("realm1") + rawsocket(TCP.format(port))
    debug = base.replace("[router]", '[router]\nlog_level = "debug"')
    with Daemon(tmp_path, base) as daemon:
        daemon.start()
        daemon.reload(debug)
        assert "#debug] reload: reading" not in daemon.output  # read while still at info
        daemon.reload()
        assert "[serouter.reload#debug] reload: reading" in daemon.output, daemon.output
        assert daemon.stop() == 0
    with Daemon(tmp_path, base, args=["--log-level", "info"]) as daemon:
        daemon.start()
        daemon.reload(debug)
        daemon.reload()
        assert "#debug]" not in daemon.output, daemon.output
        assert daemon.stop() == 0


# -- the policy and the contexts, with the policy-file backend -------------------------------------


def test_sighup_applies_new_contexts_and_a_new_labeled_listener(policies: PolicyBuilder) -> None:
    """B may not subscribe to com.other.news (no context names it); a contexts file mapping
    com.other.* to example_uri_t and SIGHUP let B's live session subscribe on its next message;
    a listener labeled A added in the same reload serves A sessions."""
    router = policy_router(policies)
    router.listeners = [labeled("a", A), labeled("b", B)]
    with running(router):
        b = joined(router, "b")
        b.subscribe("com.example.news")  # asserts SUBSCRIBED
        assert b.ask(SUBSCRIBE, {}, "com.other.news")[:2] == [ERROR, SUBSCRIBE]
        contexts = Path(router.access["contexts"])
        contexts.write_text(contexts.read_text()
                            + "uri com.other.* system_u:object_r:example_uri_t:s0\n")
        add_listener(router, labeled("a2", A))
        router.sighup("reloaded " + str(router.config_path))
        assert "1 listeners added" in router.output
        b.subscribe("com.other.news")  # SUBSCRIBED: the same session, next message
        joined(router, "a2").register("com.example.add")  # REGISTERED: labeled A
        assert b.ask(REGISTER, {}, "com.example.other")[:2] == [ERROR, REGISTER]  # B may not


def test_sighup_with_a_corrupt_policy_keeps_config_and_policy(policies: PolicyBuilder) -> None:
    """A corrupt policy file refuses the whole reload: a listener added in the same file is
    not opened, and decisions stay as they were."""
    router = policy_router(policies)
    router.listeners = [labeled("a", A), labeled("b", B)]
    with running(router):
        b = joined(router, "b")
        Path(router.access["policy"]).write_bytes(b"\x8c\xff\x7c\xf9garbage")
        added = add_listener(router, labeled("a2", A))
        router.sighup("reload refused, the running configuration stays")
        assert "the policy or the contexts file was refused" in router.output
        with pytest.raises(OSError):
            added.connect()
        b.subscribe("com.example.news")  # asserts SUBSCRIBED


def add_listener(router: RouterProcess, listener: Listener) -> Listener:
    """Append one listener to the router's configuration file (the others keep their ports)."""
    listener.assign_address()
    router.listeners.append(listener)
    router.config_path.write_text(router.config_path.read_text() + listener.toml())
    return listener
