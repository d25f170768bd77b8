"""Prometheus metrics: plain counters on the hot path, families built at scrape time, served
on the configured local endpoint in the text format Prometheus parses."""

from __future__ import annotations

import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgpack
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from serouter.config import parse_config
from serouter.core.access import AccessCheckFailed, Action, Subject
from serouter.core.messages import Call, Error, InvocationError, Result, Yield
from serouter.observability import (
    LATENCY_BOUNDS,
    Counters,
    CountingAccess,
    message_name,
    metrics_registry,
    status_line,
)
from serouter.service import RouterDaemon, make_factory
from tests.daemon_support import HEAD, Daemon, rawsocket, realms, tcp_listener
from tests.raw_clients import RawWampClient, echo_roundtrip
from tests.router_process import free_port

pytestmark = pytest.mark.timeout(60)

SUBJECT = Subject(1, "alice", "user")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by name and sorted labels (parsed by prometheus_client)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


# -- counters -----------------------------------------------------------------------------------


class Verdicts:
    """An access check answering from a list: True, False, or an exception to raise."""

    def __init__(self, answers: Iterable[bool | Exception]) -> None:
        self.answers = list(answers)

    def check(self, subject: Subject, action: Action, realm: str, uri: str) -> bool:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_counting_access_counts_refusals_and_failures_only() -> None:
    """Allowed checks pass through untouched; a denial and a failed check are counted by
    action, and the failure still reaches the realm."""
    counters = Counters()
    access = CountingAccess(Verdicts([True, False, AccessCheckFailed("x")]), counters)
    assert access.check(SUBJECT, Action.CALL, "realm1", "a.b") is True
    assert access.check(SUBJECT, Action.CALL, "realm1", "a.b") is False
    with pytest.raises(AccessCheckFailed):
        access.check(SUBJECT, Action.JOIN, "realm1", "realm1")
    assert counters.denied[Action.CALL] == 1 and sum(counters.denied.values()) == 1
    assert counters.failed[Action.JOIN] == 1 and sum(counters.failed.values()) == 1


def test_latency_buckets_are_upper_bounds() -> None:
    """A call lands in the first bucket whose bound it does not exceed; past the last, +Inf."""
    counters = Counters()
    for seconds in (0.0001, 0.0003, 31.0):
        counters.observe_call(seconds)
    assert counters.latency[0] == 1 and counters.latency[2] == 1
    assert counters.latency[len(LATENCY_BOUNDS)] == 1
    assert counters.latency_sum == pytest.approx(31.0004)


def test_message_names_are_wamp_names() -> None:
    """The type label is the WAMP name of the message's code."""
    codes = (Call.TYPE, Result.TYPE, Yield.TYPE, InvocationError.TYPE, Error.TYPE)
    assert [message_name(c) for c in codes] == ["CALL", "RESULT", "YIELD", "ERROR", "ERROR"]


def frame(message: list[Any]) -> bytes:
    payload = msgpack.packb(message)
    return b"\x00" + len(payload).to_bytes(3, "big") + payload


def test_transport_counts_messages_and_times_sampled_calls() -> None:
    """Through a real RawSocket protocol: every message in and out is counted by type, and
    one CALL in SAMPLE_EVERY (request ids 64, 128, ...) is timed until its RESULT."""
    config = parse_config({"realms": [{"name": "realm1"}], "listeners": [
        {"transport": "rawsocket", "endpoint": "tcp:0", "serializers": ["msgpack"]}]}, "t")
    clock = Clock()
    daemon = RouterDaemon(config, clock)
    factory = make_factory(daemon.router, clock, config.listeners[0], daemon.batcher,
                           counters=daemon.counters)

    def connect() -> tuple[Any, StringTransport]:
        protocol, transport = factory.buildProtocol(None), StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(bytes((0x7F, 0xF2, 0, 0)))
        protocol.dataReceived(frame([1, "realm1", {"roles": {"caller": {}, "callee": {}}}]))
        return protocol, transport

    (callee, _), (caller, _) = connect(), connect()
    callee.dataReceived(frame([64, 1, {}, "com.example.f"]))
    for request in range(1, 129):
        caller.dataReceived(frame([48, request, {}, "com.example.f", []]))
        callee.dataReceived(frame([70, request, {}, [request]]))
    received = {message_name(c): n for c, n in enumerate(daemon.counters.received) if n}
    sent = {message_name(c): n for c, n in enumerate(daemon.counters.sent) if n}
    assert received == {"HELLO": 2, "REGISTER": 1, "CALL": 128, "YIELD": 128}
    assert sent == {"WELCOME": 2, "REGISTERED": 1, "INVOCATION": 128, "RESULT": 128}
    assert sum(daemon.counters.latency) == 2  # requests 64 and 128
    text = generate_latest(metrics_registry(daemon)).decode()
    found = samples(text)
    assert value(found, "serouter_sessions", realm="realm1") == 2
    assert value(found, "serouter_messages_received_total", type="CALL") == 128
    assert value(found, "serouter_call_latency_seconds_count") == 2
    assert status_line(daemon) == "2 sessions in 1 realms, 0 listeners"


# -- the endpoint -------------------------------------------------------------------------------


def fetch(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.headers["content-type"], reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["content-type"], error.read().decode()


def test_metrics_endpoint_serves_what_operators_expect(tmp_path: Path) -> None:
    """GET /metrics on the configured endpoint: sessions per realm, messages by type, denials
    by class and permission, call latency, process figures; in Prometheus' text format."""
    port, metrics = free_port(), free_port()
    config = (HEAD + f'[metrics]\nendpoint = "tcp:{metrics}:interface=127.0.0.1"\n'
              + realms("realm1", "realm2") + rawsocket(f"tcp:{port}:interface=127.0.0.1"))
    with Daemon(tmp_path, config) as daemon:
        daemon.start()
        listener = tcp_listener(port)
        callee, caller = RawWampClient.connect(listener), RawWampClient.connect(listener)
        callee.register("com.example.m")
        for _ in range(64):  # caller's request ids 1..64: the 64th is timed
            echo_roundtrip(caller, callee, "com.example.m")
        other = RawWampClient.connect(listener, realm="realm2")
        assert other.session_id
        status, content_type, text = fetch(f"http://127.0.0.1:{metrics}/metrics")
        assert status == 200 and content_type.startswith("text/plain; version="), content_type
        found = samples(text)
        assert value(found, "serouter_sessions", realm="realm1") == 2
        assert value(found, "serouter_sessions", realm="realm2") == 1
        assert value(found, "serouter_connections",
                     listener=f"tcp:{port}:interface=127.0.0.1") == 3
        assert value(found, "serouter_messages_received_total", type="CALL") == 64
        assert value(found, "serouter_messages_sent_total", type="RESULT") == 64
        assert value(found, "serouter_messages_received_total", type="HELLO") == 3
        assert value(found, "serouter_access_denials_total", **{"class": "wamp_uri",
                                                                "perm": "call"}) == 0
        assert value(found, "serouter_call_latency_seconds_count") == 1
        assert value(found, "serouter_call_latency_seconds_bucket", le="+Inf") == 1
        assert value(found, "serouter_info", mode="router", version=daemon_version()) == 1
        assert value(found, "process_open_fds") > 0
        assert fetch(f"http://127.0.0.1:{metrics}/other")[0] == 404
        assert daemon.stop() == 0
    assert "GET /metrics" not in daemon.output  # no access log line per scrape


def daemon_version() -> str:
    from serouter import __version__

    return __version__


def test_reload_moves_the_metrics_endpoint(tmp_path: Path) -> None:
    """A reload with another [metrics] endpoint serves there and no longer on the old one;
    the reload itself is counted."""
    port, first, second = free_port(), free_port(), free_port()
    base = HEAD + realms("realm1") + rawsocket(f"tcp:{port}:interface=127.0.0.1")
    with Daemon(tmp_path, base + f'[metrics]\nendpoint = "tcp:{first}:interface=127.0.0.1"\n'
                ) as daemon:
        daemon.start()
        assert fetch(f"http://127.0.0.1:{first}/metrics")[0] == 200
        daemon.reload(base + f'[metrics]\nendpoint = "tcp:{second}:interface=127.0.0.1"\n'
                      'path = "/m"\n')
        found = samples(fetch(f"http://127.0.0.1:{second}/m")[2])
        assert value(found, "serouter_reloads_total", result="applied") == 1
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"http://127.0.0.1:{first}/metrics", timeout=2)
        assert daemon.stop() == 0


@pytest.mark.parametrize(("table", "key", "reason"), [
    ('[metrics]\npath = "/m"\n', "metrics.endpoint", "required"),
    ('[metrics]\nendpoint = "tcp:9100"\nport = 1\n', "metrics.port", "unknown key"),
    ('[metrics]\nendpoint = "tcp:9001:interface=127.0.0.1"\n', "metrics.endpoint",
     "is also listeners[0].endpoint"),
])
def test_metrics_configuration_is_checked(table: str, key: str, reason: str) -> None:
    from serouter.config import ConfigError

    text = HEAD + table + realms("realm1") + rawsocket("tcp:9001:interface=127.0.0.1")
    with pytest.raises(ConfigError) as refused:
        parse_config(tomllib.loads(text), "t.toml")
    assert refused.value.path == key and reason in refused.value.reason
