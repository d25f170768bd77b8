"""WAMP messages: parsed and validated once, at the edge, into small typed objects.

:func:`parse` turns a deserialized list into a message object or raises
:class:`ProtocolViolation`; past that point every object is well-formed (types, lengths, ID
ranges). Whether a URI is *acceptable* (well-formed, not reserved) is the realm's business,
because the spec answers that with an ERROR, not with an ABORT.

Message objects are plain slotted dataclasses, treated as immutable: frozen dataclasses cost
five times as much to build, and these are built on every hop.
"""

from collections.abc import Callable
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


class ProtocolViolation(Exception):
    """The peer sent something the protocol forbids; answered with ABORT and a close."""


def _payload(msg: list[Any], args: Args, kwargs: Kwargs) -> list[Any]:
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
        return _payload(
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
        return _payload(
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
        return _payload([RESULT, self.request, self.details], self.args, self.kwargs)


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
        return _payload(
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

# -- parsing ------------------------------------------------------------------------------

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


def _id(value: object, what: str) -> int:
    if type(value) is not int or not 1 <= value <= MAX_ID:
        raise ProtocolViolation(f"{what} must be an integer in [1, 2^53], got {value!r}")
    return value


def _dict(value: object, what: str) -> Dict:
    if type(value) is not dict:
        raise ProtocolViolation(f"{what} must be a dict, got {type(value).__name__}")
    return value


def _str(value: object, what: str) -> str:
    if type(value) is not str:
        raise ProtocolViolation(f"{what} must be a string, got {type(value).__name__}")
    return value


def _args_kwargs(msg: list[Any], start: int, name: str) -> tuple[Args, Kwargs]:
    """Validate the optional Arguments|list and ArgumentsKw|dict tail starting at ``start``."""
    n = len(msg)
    if n > start + 2:
        raise ProtocolViolation(f"{name} has {n} elements, at most {start + 2} allowed")
    args = msg[start] if n > start else None
    kwargs = msg[start + 1] if n > start + 1 else None
    if args is not None and type(args) is not list:
        raise ProtocolViolation(f"{name}.Arguments must be a list")
    if kwargs is not None and type(kwargs) is not dict:
        raise ProtocolViolation(f"{name}.ArgumentsKw must be a dict")
    return args, kwargs


def _length(msg: list[Any], n: int, name: str) -> None:
    if len(msg) != n:
        raise ProtocolViolation(f"{name} must have {n} elements, got {len(msg)}")


def _hello(m: list[Any]) -> Hello:
    _length(m, 3, "HELLO")
    return Hello(_str(m[1], "HELLO.Realm"), _dict(m[2], "HELLO.Details"))


def _authenticate(m: list[Any]) -> Authenticate:
    _length(m, 3, "AUTHENTICATE")
    return Authenticate(_str(m[1], "AUTHENTICATE.Signature"), _dict(m[2], "AUTHENTICATE.Extra"))


def _goodbye(m: list[Any]) -> ClientGoodbye:
    _length(m, 3, "GOODBYE")
    return ClientGoodbye(_dict(m[1], "GOODBYE.Details"), _str(m[2], "GOODBYE.Reason"))


def _abort(m: list[Any]) -> ClientAbort:
    _length(m, 3, "ABORT")
    return ClientAbort(_dict(m[1], "ABORT.Details"), _str(m[2], "ABORT.Reason"))


def _error(m: list[Any]) -> InvocationError:
    if len(m) < 5:
        raise ProtocolViolation(f"ERROR must have at least 5 elements, got {len(m)}")
    if m[1] != INVOCATION or type(m[1]) is not int:
        raise ProtocolViolation(f"a client may only send ERROR for INVOCATION, not {m[1]!r}")
    args, kwargs = _args_kwargs(m, 5, "ERROR")
    return InvocationError(
        _id(m[2], "ERROR.Request"), _dict(m[3], "ERROR.Details"), _str(m[4], "ERROR.Error"),
        args, kwargs,
    )


def _publish(m: list[Any]) -> Publish:
    n = len(m)
    if 4 <= n <= 6:
        request, options, topic = m[1], m[2], m[3]
        ok, args, kwargs = _fast_payload(m, n, 4)
        if (ok and type(request) is int and 0 < request <= MAX_ID and type(options) is dict
                and type(topic) is str):
            return Publish(request, options, topic, args, kwargs)
    return _publish_checked(m)


def _publish_checked(m: list[Any]) -> Publish:
    if len(m) < 4:
        raise ProtocolViolation(f"PUBLISH must have at least 4 elements, got {len(m)}")
    args, kwargs = _args_kwargs(m, 4, "PUBLISH")
    return Publish(
        _id(m[1], "PUBLISH.Request"), _dict(m[2], "PUBLISH.Options"),
        _str(m[3], "PUBLISH.Topic"), args, kwargs,
    )


def _subscribe(m: list[Any]) -> Subscribe:
    _length(m, 4, "SUBSCRIBE")
    return Subscribe(
        _id(m[1], "SUBSCRIBE.Request"), _dict(m[2], "SUBSCRIBE.Options"),
        _str(m[3], "SUBSCRIBE.Topic"),
    )


def _unsubscribe(m: list[Any]) -> Unsubscribe:
    _length(m, 3, "UNSUBSCRIBE")
    return Unsubscribe(_id(m[1], "UNSUBSCRIBE.Request"), _id(m[2], "UNSUBSCRIBE.Subscription"))


# The hot messages (CALL, YIELD, PUBLISH) get a straight-line check of the common, valid case;
# anything else falls through to the step-by-step validation, which explains the fault.
# Both accept exactly the same messages.


def _fast_payload(m: list[Any], n: int, start: int) -> tuple[bool, Args, Kwargs]:
    args = m[start] if n > start else None
    kwargs = m[start + 1] if n > start + 1 else None
    ok = (args is None or type(args) is list) and (kwargs is None or type(kwargs) is dict)
    return ok, args, kwargs


def _call(m: list[Any]) -> Call:
    n = len(m)
    if 4 <= n <= 6:
        request, options, procedure = m[1], m[2], m[3]
        ok, args, kwargs = _fast_payload(m, n, 4)
        if (ok and type(request) is int and 0 < request <= MAX_ID and type(options) is dict
                and type(procedure) is str):
            return Call(request, options, procedure, args, kwargs)
    return _call_checked(m)


def _call_checked(m: list[Any]) -> Call:
    if len(m) < 4:
        raise ProtocolViolation(f"CALL must have at least 4 elements, got {len(m)}")
    args, kwargs = _args_kwargs(m, 4, "CALL")
    return Call(
        _id(m[1], "CALL.Request"), _dict(m[2], "CALL.Options"), _str(m[3], "CALL.Procedure"),
        args, kwargs,
    )


def _cancel(m: list[Any]) -> Cancel:
    _length(m, 3, "CANCEL")
    return Cancel(_id(m[1], "CANCEL.Request"), _dict(m[2], "CANCEL.Options"))


def _register(m: list[Any]) -> Register:
    _length(m, 4, "REGISTER")
    return Register(
        _id(m[1], "REGISTER.Request"), _dict(m[2], "REGISTER.Options"),
        _str(m[3], "REGISTER.Procedure"),
    )


def _unregister(m: list[Any]) -> Unregister:
    _length(m, 3, "UNREGISTER")
    return Unregister(_id(m[1], "UNREGISTER.Request"), _id(m[2], "UNREGISTER.Registration"))


def _yield(m: list[Any]) -> Yield:
    n = len(m)
    if 3 <= n <= 5:
        request, options = m[1], m[2]
        ok, args, kwargs = _fast_payload(m, n, 3)
        if ok and type(request) is int and 0 < request <= MAX_ID and type(options) is dict:
            return Yield(request, options, args, kwargs)
    return _yield_checked(m)


def _yield_checked(m: list[Any]) -> Yield:
    if len(m) < 3:
        raise ProtocolViolation(f"YIELD must have at least 3 elements, got {len(m)}")
    args, kwargs = _args_kwargs(m, 3, "YIELD")
    return Yield(_id(m[1], "YIELD.Request"), _dict(m[2], "YIELD.Options"), args, kwargs)


_PARSERS: dict[int, Callable[[list[Any]], Incoming]] = {
    HELLO: _hello,
    AUTHENTICATE: _authenticate,
    GOODBYE: _goodbye,
    ABORT: _abort,
    ERROR: _error,
    PUBLISH: _publish,
    SUBSCRIBE: _subscribe,
    UNSUBSCRIBE: _unsubscribe,
    CALL: _call,
    CANCEL: _cancel,
    REGISTER: _register,
    UNREGISTER: _unregister,
    YIELD: _yield,
}


def parse(raw: object) -> Incoming:
    """Validate a deserialized message from a client; raise ProtocolViolation if malformed."""
    if type(raw) is not list or not raw:
        raise ProtocolViolation("a WAMP message must be a non-empty list")
    code = raw[0]
    parser = _PARSERS.get(code) if type(code) is int else None
    if parser is None:
        what = type_name(code) if type(code) is int else repr(code)
        raise ProtocolViolation(f"message type {what} is not one a router accepts")
    return parser(raw)
