"""The WAMP message objects and type codes, re-exported by :mod:`serouter.core.messages`.

Import them from there; this module exists so that the objects and the validation that builds
them (``messages.parse``) each fit in one readable file. It validates nothing: a message object
is only ever built by ``parse`` (from a client's list) or by the router itself.

Message objects are plain slotted dataclasses, treated as immutable: frozen dataclasses cost
five times as much to build, and these are built on every hop.
"""

from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeAlias

Dict: TypeAlias = dict[str, Any]
Args: TypeAlias = list[Any] | None
Kwargs: TypeAlias = dict[str, Any] | None

MAX_ID = 2**53

# Message type codes (Basic and Advanced Profile).
HELLO = 1
WELCOME = 2
ABORT = 3
CHALLENGE = 4
AUTHENTICATE = 5
GOODBYE = 6
ERROR = 8
PUBLISH = 16
PUBLISHED = 17
SUBSCRIBE = 32
SUBSCRIBED = 33
UNSUBSCRIBE = 34
UNSUBSCRIBED = 35
EVENT = 36
CALL = 48
CANCEL = 49
RESULT = 50
REGISTER = 64
REGISTERED = 65
UNREGISTER = 66
UNREGISTERED = 67
INVOCATION = 68
INTERRUPT = 69
YIELD = 70

def with_payload(msg: list[Any], args: Args, kwargs: Kwargs) -> list[Any]:
    """Append Arguments/ArgumentsKw, leaving out trailing empty ones as the spec asks."""
    if kwargs:
        msg.append(args if args is not None else [])
        msg.append(kwargs)
    elif args:
        msg.append(args)
    return msg


# -- messages a router sends --------------------------------------------------------------


@dataclass(slots=True)
class Welcome:
    TYPE: ClassVar[int] = WELCOME
    session: int
    details: Dict

    def marshal(self) -> list[Any]:
        return [WELCOME, self.session, self.details]


@dataclass(slots=True)
class Abort:
    TYPE: ClassVar[int] = ABORT
    details: Dict
    reason: str

    def marshal(self) -> list[Any]:
        return [ABORT, self.details, self.reason]


@dataclass(slots=True)
class Challenge:
    TYPE: ClassVar[int] = CHALLENGE
    method: str
    extra: Dict

    def marshal(self) -> list[Any]:
        return [CHALLENGE, self.method, self.extra]


@dataclass(slots=True)
class Goodbye:
    TYPE: ClassVar[int] = GOODBYE
    details: Dict
    reason: str

    def marshal(self) -> list[Any]:
        return [GOODBYE, self.details, self.reason]


@dataclass(slots=True)
class Error:
    TYPE: ClassVar[int] = ERROR
    request_type: int
    request: int
    details: Dict
    error: str
    args: Args = None
    kwargs: Kwargs = None

    def marshal(self) -> list[Any]:
        return with_payload(
            [ERROR, self.request_type, self.request, self.details, self.error],
            self.args,
            self.kwargs,
        )


def error_reply(request_type: int, request: int, error: str, message: str | None = None) -> Error:
    """The one builder of ERROR replies: an optional human-readable message as Arguments[0]."""
    return Error(request_type, request, {}, error, [message] if message else None)


@dataclass(slots=True)
class Published:
    TYPE: ClassVar[int] = PUBLISHED
    request: int
    publication: int

    def marshal(self) -> list[Any]:
        return [PUBLISHED, self.request, self.publication]


@dataclass(slots=True)
class Subscribed:
    TYPE: ClassVar[int] = SUBSCRIBED
    request: int
    subscription: int

    def marshal(self) -> list[Any]:
        return [SUBSCRIBED, self.request, self.subscription]


@dataclass(slots=True)
class Unsubscribed:
    TYPE: ClassVar[int] = UNSUBSCRIBED
    request: int

    def marshal(self) -> list[Any]:
        return [UNSUBSCRIBED, self.request]


@dataclass(slots=True)
class Event:
    """One EVENT for every subscriber of a subscription: serialized once per serializer.

    ``serialized`` caches the encoded bytes by serializer name; senders fill it on first use.
    """

    TYPE: ClassVar[int] = EVENT
    subscription: int
    publication: int
    details: Dict
    args: Args = None
    kwargs: Kwargs = None
    serialized: dict[str, bytes] = field(default_factory=dict)

    def marshal(self) -> list[Any]:
        return with_payload(
            [EVENT, self.subscription, self.publication, self.details], self.args, self.kwargs
        )


@dataclass(slots=True)
class Result:
    TYPE: ClassVar[int] = RESULT
    request: int
    details: Dict
    args: Args = None
    kwargs: Kwargs = None

    def marshal(self) -> list[Any]:
        return with_payload([RESULT, self.request, self.details], self.args, self.kwargs)


@dataclass(slots=True)
class Registered:
    TYPE: ClassVar[int] = REGISTERED
    request: int
    registration: int

    def marshal(self) -> list[Any]:
        return [REGISTERED, self.request, self.registration]


@dataclass(slots=True)
class Unregistered:
    TYPE: ClassVar[int] = UNREGISTERED
    request: int

    def marshal(self) -> list[Any]:
        return [UNREGISTERED, self.request]


@dataclass(slots=True)
class Invocation:
    TYPE: ClassVar[int] = INVOCATION
    request: int
    registration: int
    details: Dict
    args: Args = None
    kwargs: Kwargs = None

    def marshal(self) -> list[Any]:
        return with_payload(
            [INVOCATION, self.request, self.registration, self.details], self.args, self.kwargs
        )


@dataclass(slots=True)
class Interrupt:
    TYPE: ClassVar[int] = INTERRUPT
    request: int
    options: Dict

    def marshal(self) -> list[Any]:
        return [INTERRUPT, self.request, self.options]


# -- messages a router receives -----------------------------------------------------------


@dataclass(slots=True)
class Hello:
    TYPE: ClassVar[int] = HELLO
    realm: str
    details: Dict


@dataclass(slots=True)
class Authenticate:
    TYPE: ClassVar[int] = AUTHENTICATE
    signature: str
    extra: Dict


@dataclass(slots=True)
class ClientGoodbye:
    TYPE: ClassVar[int] = GOODBYE
    details: Dict
    reason: str


@dataclass(slots=True)
class ClientAbort:
    TYPE: ClassVar[int] = ABORT
    details: Dict
    reason: str


@dataclass(slots=True)
class InvocationError:
    """ERROR from a callee, answering an INVOCATION."""

    TYPE: ClassVar[int] = ERROR
    request: int
    details: Dict
    error: str
    args: Args
    kwargs: Kwargs


@dataclass(slots=True)
class Publish:
    TYPE: ClassVar[int] = PUBLISH
    request: int
    options: Dict
    topic: str
    args: Args
    kwargs: Kwargs


@dataclass(slots=True)
class Subscribe:
    TYPE: ClassVar[int] = SUBSCRIBE
    request: int
    options: Dict
    topic: str


@dataclass(slots=True)
class Unsubscribe:
    TYPE: ClassVar[int] = UNSUBSCRIBE
    request: int
    subscription: int


@dataclass(slots=True)
class Call:
    TYPE: ClassVar[int] = CALL
    request: int
    options: Dict
    procedure: str
    args: Args
    kwargs: Kwargs


@dataclass(slots=True)
class Cancel:
    TYPE: ClassVar[int] = CANCEL
    request: int
    options: Dict


@dataclass(slots=True)
class Register:
    TYPE: ClassVar[int] = REGISTER
    request: int
    options: Dict
    procedure: str


@dataclass(slots=True)
class Unregister:
    TYPE: ClassVar[int] = UNREGISTER
    request: int
    registration: int


@dataclass(slots=True)
class Yield:
    TYPE: ClassVar[int] = YIELD
    request: int
    options: Dict
    args: Args
    kwargs: Kwargs


Outgoing: TypeAlias = (
    Welcome | Abort | Challenge | Goodbye | Error | Published | Subscribed | Unsubscribed
    | Event | Result | Registered | Unregistered | Invocation | Interrupt
)
Incoming: TypeAlias = (
    Hello | Authenticate | ClientGoodbye | ClientAbort | InvocationError | Publish | Subscribe
    | Unsubscribe | Call | Cancel | Register | Unregister | Yield
)

# -- names --------------------------------------------------------------------------------

_NAMES = {
    HELLO: "HELLO", WELCOME: "WELCOME", ABORT: "ABORT", CHALLENGE: "CHALLENGE",
    AUTHENTICATE: "AUTHENTICATE", GOODBYE: "GOODBYE", ERROR: "ERROR", PUBLISH: "PUBLISH",
    PUBLISHED: "PUBLISHED", SUBSCRIBE: "SUBSCRIBE", SUBSCRIBED: "SUBSCRIBED",
    UNSUBSCRIBE: "UNSUBSCRIBE", UNSUBSCRIBED: "UNSUBSCRIBED", EVENT: "EVENT", CALL: "CALL",
    CANCEL: "CANCEL", RESULT: "RESULT", REGISTER: "REGISTER", REGISTERED: "REGISTERED",
    UNREGISTER: "UNREGISTER", UNREGISTERED: "UNREGISTERED", INVOCATION: "INVOCATION",
    INTERRUPT: "INTERRUPT", YIELD: "YIELD",
}


def type_name(code: int) -> str:
    """The spec's name of a message type code, for logs and ABORT messages."""
    return _NAMES.get(code, str(code))
