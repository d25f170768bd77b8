"""Autobahn|Python on Twisted for trial end-to-end tests: a session whose steps are Deferreds.

Importing this module points txaio (and so Autobahn) at Twisted; modules that also run asyncio
clients choose again with ``use_txaio`` before each test.
"""

from __future__ import annotations

from typing import Any

from tests.router_process import use_txaio

use_txaio("twisted")

from autobahn.twisted.wamp import ApplicationSession  # noqa: E402
from autobahn.wamp.types import ComponentConfig  # noqa: E402
from twisted.internet import defer  # noqa: E402


class Client(ApplicationSession):
    """A session whose join and disconnect are Deferreds."""

    def __init__(self, config: ComponentConfig) -> None:
        super().__init__(config)
        self.joined: defer.Deferred[Any] = defer.Deferred()
        self.disconnected: defer.Deferred[None] = defer.Deferred()

    def onJoin(self, details: Any) -> None:
        self.joined.callback(details)

    def onLeave(self, details: Any) -> Any:
        if not self.joined.called:
            self.joined.errback(AssertionError(f"join refused: {details}"))
        return super().onLeave(details)

    def onDisconnect(self) -> None:
        if not self.joined.called:
            self.joined.errback(AssertionError("disconnected before joining"))
        if not self.disconnected.called:
            self.disconnected.callback(None)
        super().onDisconnect()

    def abort_transport(self) -> None:
        """Drop the TCP connection at once: no GOODBYE, no WebSocket close."""
        self._transport.transport.abortConnection()
