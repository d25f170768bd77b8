"""The reactor the daemon runs on: Twisted's epoll reactor without a wrapper per event.

Twisted's epoll reactor hands each ready descriptor to its handler through
``log.callWithLogger``, which builds a logging context (a dict copy and five Python calls) so
that legacy ``twisted.python.log`` messages name the connection. serouter logs through
``twisted.logger`` with its own fields and never reads that context, but paid for it twice per
call on an idle router: with one call outstanding it was a sixth of the router's instructions
(185,209 -> 154,431 instructions per local call, callgrind; bench/README.md, "The reactor").

:class:`LeanEPollReactor` dispatches straight to ``_doReadOrWrite``. What the wrapper also did,
it keeps: an exception escaping a handler is logged and the loop goes on with the next
descriptor, so one broken connection never stalls the others.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet.epollreactor import EPollReactor
from twisted.logger import Logger

log = Logger(namespace="serouter.reactor")


class LeanEPollReactor(EPollReactor):
    """``EPollReactor`` without the per-event logging context."""

    def doPoll(self, timeout: float | None) -> None:
        try:
            ready = self._poller.poll(-1 if timeout is None else timeout, len(self._selectables))
        except InterruptedError:
            return
        dispatch, selectables = self._doReadOrWrite, self._selectables
        for fd, event in ready:
            selectable = selectables.get(fd)
            if selectable is None:  # removed by an earlier handler of this batch
                continue
            try:
                dispatch(selectable, fd, event)  # type: ignore[no-untyped-call]
            except Exception:
                log.failure("Unhandled error from {selectable!r}", selectable=selectable)

    doIteration = doPoll


def install_reactor() -> Any:
    """Install :class:`LeanEPollReactor` unless a reactor is installed already; return the one
    installed. Call it before anything imports ``twisted.internet.reactor``."""
    if "twisted.internet.reactor" not in sys.modules:
        from twisted.internet.main import installReactor  # noqa: PLC0415

        installReactor(LeanEPollReactor())  # type: ignore[no-untyped-call]
    from twisted.internet import reactor  # noqa: PLC0415

    return reactor
