"""``--log-format json``: one JSON object per line with the event's fields (session and realm
ids among them), and no credential in the log whatever the client sends."""

from __future__ import annotations

import json
from pathlib import Path

from twisted.logger import LogLevel
from twisted.python.failure import Failure

from serouter.observability._logs import json_record
from tests.daemon_support import HEAD, Daemon, rawsocket, tcp_listener
from tests.raw_clients import RawWampClient
from tests.router_process import free_port

TICKET = "correct-horse-battery-staple"
WRONG = "wrong-horse-battery-staple"


def test_a_record_holds_the_events_fields() -> None:
    """Fields become JSON members; what JSON cannot hold becomes text; credentials never."""
    record = json.loads(json_record({
        "log_format": "session {session} joined {realm}", "log_level": LogLevel.info,
        "log_namespace": "serouter.session", "log_time": 0.0, "session": 42,
        "realm": "realm1", "peer": ("127.0.0.1", 5), "ticket": TICKET,
        "extra": {1: object, "secret": TICKET},
    }))
    assert record["message"] == "session 42 joined realm1"
    assert record["level"] == "info" and record["namespace"] == "serouter.session"
    assert record["time"] == "1970-01-01T00:00:00.000+00:00"
    assert record["session"] == 42 and record["realm"] == "realm1"
    assert record["peer"] == ["127.0.0.1", 5]
    assert record["ticket"] == "<redacted>" and record["extra"]["secret"] == "<redacted>"
    assert record["extra"]["1"] == str(object)
    assert TICKET not in json_record({"log_level": LogLevel.info, "password": TICKET})


def test_a_failure_carries_its_traceback() -> None:
    """A logged failure adds its message and traceback."""
    failure = Failure(ValueError("boom"))
    record = json.loads(json_record({"log_level": LogLevel.critical, "log_failure": failure,
                                     "log_format": "internal error", "log_time": 1.0}))
    assert record["error"] == "boom" and "ValueError" in record["traceback"]


def test_json_log_of_a_running_router_without_credentials(tmp_path: Path) -> None:
    """A router run with --log-format json writes only JSON lines; the join names session,
    realm and authid in fields; neither a right nor a wrong ticket appears anywhere."""
    port = free_port()
    config = (HEAD + '[[realms]]\nname = "realm1"\nauth = ["ticket"]\n'
              f'[realms.principals.alice]\nrole = "user"\nticket = "{TICKET}"\n'
              + rawsocket(f"tcp:{port}:interface=127.0.0.1"))
    with Daemon(tmp_path, config, args=["--log-format", "json"]) as daemon:
        daemon.start()
        for ticket, expected in ((WRONG, 3), (TICKET, 2)):
            client = RawWampClient.connect(tcp_listener(port), realm=None)
            client.send([1, "realm1", {"roles": {"caller": {}}, "authmethods": ["ticket"],
                                       "authid": "alice"}])
            assert client.recv()[0] == 4  # CHALLENGE
            client.send([5, ticket, {}])
            reply = client.recv()
            assert reply[0] == expected, reply
        session = reply[1]
        assert daemon.stop() == 0
    lines = daemon.output.splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "namespace", "message"} <= r.keys() for r in records)
    joined = [r for r in records if r.get("session") == session and "joined" in r["message"]]
    assert joined and joined[0]["realm"] == "realm1" and joined[0]["authid"] == "alice"
    assert any(r["namespace"] == "serouter.session" and r.get("authid") == "alice"
               and "failed" in r["message"] for r in records)
    assert TICKET not in daemon.output and WRONG not in daemon.output
