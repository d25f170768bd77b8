"""The one access-check seam: the realm asks it before dispatching any action.

Dealer and broker never import this module. A backend answers True (allowed) or False
(denied, the peer learns nothing more); if the check itself cannot be made it raises
:class:`AccessCheckFailed`, which the realm answers with ``wamp.error.authorization_failed``
and logs in full on the router side only.
"""

from dataclasses import dataclass
from enum import Enum
from typing import Protocol


class Action(Enum):
    """What a session asks to do; the values are the SELinux permission names."""

    JOIN = "join"
    REGISTER = "register"
    CALL = "call"
    SUBSCRIBE = "subscribe"
    PUBLISH = "publish"
    ANNOUNCE = "announce"  # the name server: a router announces a URI it provides
    LOOKUP = "lookup"  # the name server: a router asks who provides a URI


@dataclass(frozen=True, slots=True)
class Subject:
    """Who asks: the session's identity as the router established it (never as claimed)."""

    session: int
    authid: str
    authrole: str
    label: str | None = None


class AccessCheckFailed(Exception):
    """The decision could not be made (backend error); details go to the router log only."""


class AccessCheck(Protocol):
    """A decision backend."""

    def check(self, subject: Subject, action: Action, realm: str, uri: str) -> bool:
        """May ``subject`` perform ``action`` on ``uri`` in ``realm``? For JOIN, uri == realm."""


class AllowAll:
    """Allows everything; only ever used when asked for by name, with a warning at start."""

    def check(self, subject: Subject, action: Action, realm: str, uri: str) -> bool:
        return True
