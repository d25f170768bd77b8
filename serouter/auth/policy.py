"""Which authenticators a session may use: per realm, narrowed per listener.

The router holds one :class:`AuthPolicy`; a session asks it for the first method of the
client's ``authmethods`` (in the client's order of preference) that the realm offers, the
listener allows and the connection can carry. With no configuration every realm offers
``anonymous`` only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from serouter.auth.anonymous import Anonymous
from serouter.auth.base import Authenticator
from serouter.core.peer import TransportInfo

DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class ListenerAuth:
    """A listener's part: the methods it allows (None: all) and the time to answer."""

    methods: frozenset[str] | None = None
    timeout: float = DEFAULT_TIMEOUT


class AuthPolicy:
    def __init__(
        self,
        realms: Mapping[str, Iterable[Authenticator]] | None = None,
        listeners: Mapping[str, ListenerAuth] | None = None,
        default: Iterable[Authenticator] = (Anonymous(),),
    ) -> None:
        """``realms``: realm -> its authenticators; realms not named get ``default``.
        ``listeners``: keyed by the listener's endpoint string (``TransportInfo.listener``)."""
        self._realms = {realm: _by_method(auths) for realm, auths in (realms or {}).items()}
        self._default = _by_method(default)
        self._listeners = dict(listeners or {})

    def choose(
        self, realm: str, transport: TransportInfo, wanted: Sequence[str]
    ) -> Authenticator | None:
        """The authenticator for the first acceptable method in ``wanted``, or None."""
        offered = self._realms.get(realm, self._default)
        allowed = self._listeners.get(transport.listener, ListenerAuth()).methods
        for method in wanted:
            authenticator = offered.get(method)
            if authenticator is None or (allowed is not None and method not in allowed):
                continue
            if authenticator.applies(transport):
                return authenticator
        return None

    def timeout(self, listener: str) -> float:
        """Seconds a client of ``listener`` has to answer a CHALLENGE."""
        return self._listeners.get(listener, ListenerAuth()).timeout


def _by_method(authenticators: Iterable[Authenticator]) -> dict[str, Authenticator]:
    return {a.method: a for a in authenticators}
