"""The proxy's pool of connections to other routers (serouter/federation/_remote.py): which
endpoints it accepts, and idle connections closed on a test clock."""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.task import Clock

from serouter.federation._remote import RemotePool, _Remote


class IdleClient:
    def __init__(self) -> None:
        self.open = True
        self.pending_calls = 0
        self.left = False
        self.on_close: list[object] = []

    def leave(self) -> defer.Deferred[None]:
        self.left, self.open = True, False
        return defer.succeed(None)


def pool_with(clock: Clock, *endpoints: str) -> tuple[RemotePool, dict[str, IdleClient]]:
    pool = RemotePool(clock, "realm1", idle_timeout=10.0, own=("tcp:127.0.0.1:1",))
    clients = {e: IdleClient() for e in endpoints}
    for endpoint, client in clients.items():
        pool._remotes[endpoint] = _Remote(client)  # type: ignore[arg-type]
    pool.start()
    return pool, clients


def test_acceptable_endpoints() -> None:
    """Only the configured endpoint types, and never this router's own endpoint."""
    pool = RemotePool(Clock(), "realm1", endpoint_types=("tcp", "argo"),
                      own=("tcp:127.0.0.1:1",))
    assert pool.acceptable("tcp:127.0.0.1:2") and pool.acceptable("argo:domain=3:port=5555")
    assert pool.acceptable("TCP:127.0.0.1:2")
    assert not pool.acceptable("tcp:127.0.0.1:1")
    assert not pool.acceptable("unix:/run/xenstored/socket")
    assert not pool.acceptable("ssl:host=x:port=1:privateKey=/etc/shadow")


def test_idle_connections_close_busy_ones_stay() -> None:
    """A connection that carried nothing for idle_timeout is closed; one with a pending call,
    a remote subscription, or recent use stays."""
    clock = Clock()
    pool, clients = pool_with(clock, "tcp:h:1", "tcp:h:2", "tcp:h:3", "tcp:h:4")
    clients["tcp:h:2"].pending_calls = 1
    pool.hold("tcp:h:3")
    clock.advance(5)  # first sweep: everything counts as used since it was opened
    assert not any(c.left for c in clients.values())
    assert pool.ready("tcp:h:4") is clients["tcp:h:4"]  # used again
    clock.advance(5)
    assert [e for e, c in clients.items() if c.left] == ["tcp:h:1"]
    assert pool.ready("tcp:h:1") is None
    clock.advance(5)
    assert [e for e, c in clients.items() if c.left] == ["tcp:h:1", "tcp:h:4"]
    pool.release("tcp:h:3")
    clients["tcp:h:2"].pending_calls = 0
    clock.pump([5, 5])
    assert all(c.left for c in clients.values())
    assert pool.endpoints == []


def test_close_says_goodbye_to_all() -> None:
    clock = Clock()
    pool, clients = pool_with(clock, "tcp:h:1", "tcp:h:2")
    pool.close()
    assert all(c.left for c in clients.values())
    failure = pool.connect("tcp:h:9")
    errors: list[object] = []
    failure.addErrback(errors.append)
    assert errors
