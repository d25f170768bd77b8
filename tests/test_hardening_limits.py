"""Variable-sized state a client can make the router keep, that no limit bounds yet.

Each test states the bound the issue asks for ("limit every variable-sized thing") and is
marked as a strict expected failure: when the limit is built, the test passes, strict xfail
turns that into a failure, and the marker must go. docs/reliability.md, "Known gaps".
"""

from __future__ import annotations

import pytest

from tests.fakes import connect, make_router, send


@pytest.mark.xfail(strict=True, reason="no limit on retained events per realm yet")
def test_retained_events_do_not_grow_with_the_number_of_topics() -> None:
    """A realm keeps one retained event per topic, for ever, whoever published it: 20,000
    distinct topics must not mean 20,000 kept events (each may be a whole message)."""
    router = make_router()
    publisher, _ = connect(router)
    for n in range(20_000):
        send(publisher, 16, n + 1, {"retain": True}, f"com.example.retained.t{n}", ["x" * 100])
    router.close_session(publisher)
    reader, peer = connect(router)
    send(reader, 32, 1, {"match": "prefix", "get_retained": True}, "com.example.retained.")
    retained = [m for m in peer.wire() if m[0] == 36]
    assert len(retained) < 20_000


@pytest.mark.xfail(strict=True, reason="no limit on testaments per session yet")
def test_testaments_per_session_are_bounded() -> None:
    """wamp.session.add_testament keeps whatever it is given until the session ends: 10,000
    testaments from one session must meet serouter.error.limit_exceeded."""
    router = make_router()
    session, peer = connect(router)
    for n in range(10_000):
        send(session, 48, n + 1, {}, "wamp.session.add_testament",
             [f"com.example.testament.t{n}", ["x" * 100]])
    replies = peer.wire()
    assert any(m[0] == 8 and m[4] == "serouter.error.limit_exceeded" for m in replies)
