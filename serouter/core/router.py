"""The router: realms and live sessions. Transports ask it for a new session per connection."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from serouter.auth import AuthPolicy
from serouter.core import uris
from serouter.core.access import AccessCheck
from serouter.core.clock import Clock
from serouter.core.ids import IdGenerator
from serouter.core.peer import Peer, TransportInfo
from serouter.core.realm import Realm, RealmOptions
from serouter.core.session import Session

# Computes a session's security label from what the transport vouches for and the identity
# the router itself established (authid, authrole, and the authmethod that established them:
# "anonymous" vouches for nothing); None means unlabeled.
Labeler = Callable[[TransportInfo, str, str, str], str | None]


def listener_label(
    transport: TransportInfo, authid: str, authrole: str, authmethod: str
) -> str | None:
    """The default labeler: the listener's configured label, if any."""
    return transport.listener_label


class Router:
    """Owns realms, ID generation and the set of connected sessions."""

    def __init__(
        self,
        realm_names: Iterable[str],
        access: AccessCheck,
        clock: Clock,
        *,
        ids: IdGenerator | None = None,
        labeler: Labeler = listener_label,
        auth: AuthPolicy | None = None,
        realm_options: dict[str, RealmOptions] | None = None,
    ) -> None:
        self.ids = ids or IdGenerator()
        self.access = access
        self.clock = clock
        self.labeler = labeler
        self.auth = auth or AuthPolicy()  # default: every realm admits anonymous sessions
        self.realms: dict[str, Realm] = {
            name: Realm(name, access, self.ids, clock, (realm_options or {}).get(name))
            for name in realm_names
        }
        self.sessions: set[Session] = set()  # every connection, joined or not
        self._session_ids: set[int] = set()

    def open_session(self, peer: Peer, transport: TransportInfo) -> Session:
        """A new connection finished its transport handshake."""
        session = Session(self, peer, transport)
        self.sessions.add(session)
        return session

    def close_session(self, session: Session) -> None:
        """The connection is gone."""
        session.connection_lost()
        self.sessions.discard(session)

    def new_session_id(self) -> int:
        """A random session ID, unique among live sessions."""
        while True:
            sid = self.ids.random_id()
            if sid not in self._session_ids:
                self._session_ids.add(sid)
                return sid

    def release_session_id(self, sid: int) -> None:
        self._session_ids.discard(sid)

    def shutdown(self, reason: str = uris.SYSTEM_SHUTDOWN) -> None:
        """GOODBYE to every session; transports close as the replies arrive."""
        for session in list(self.sessions):
            session.shutdown(reason)
