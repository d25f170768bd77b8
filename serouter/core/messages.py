"""WAMP messages: parsed and validated once, at the edge, into small typed objects.

:func:`parse` turns a deserialized list into a message object or raises
:class:`ProtocolViolation`; past that point every object is well-formed (types, lengths, ID
ranges). Whether a URI is *acceptable* (well-formed, not reserved) is the realm's business,
because the spec answers that with an ERROR, not with an ABORT.

The message classes and type codes live in :mod:`serouter.core._message_types` and are
re-exported here: import them from this module. Like the rest of the core, this module does
no I/O.
"""

from collections.abc import Callable
from typing import Any

from serouter.core._message_types import (
    ABORT,
    AUTHENTICATE,
    CALL,
    CANCEL,
    CHALLENGE,
    ERROR,
    EVENT,
    GOODBYE,
    HELLO,
    INTERRUPT,
    INVOCATION,
    MAX_ID,
    PUBLISH,
    PUBLISHED,
    REGISTER,
    REGISTERED,
    RESULT,
    SUBSCRIBE,
    SUBSCRIBED,
    UNREGISTER,
    UNREGISTERED,
    UNSUBSCRIBE,
    UNSUBSCRIBED,
    WELCOME,
    YIELD,
    Abort,
    Args,
    Authenticate,
    Call,
    Cancel,
    Challenge,
    ClientAbort,
    ClientGoodbye,
    Dict,
    Error,
    Event,
    Goodbye,
    Hello,
    Incoming,
    Interrupt,
    Invocation,
    InvocationError,
    Kwargs,
    Outgoing,
    Publish,
    Published,
    Register,
    Registered,
    Result,
    Subscribe,
    Subscribed,
    Unregister,
    Unregistered,
    Unsubscribe,
    Unsubscribed,
    Welcome,
    Yield,
    error_reply,
    type_name,
    with_payload,
)

# The message objects and codes are re-exported: importers use this module alone.
__all__ = [
    "ABORT", "AUTHENTICATE", "CALL", "CANCEL", "CHALLENGE", "ERROR", "EVENT", "GOODBYE",
    "HELLO", "INTERRUPT", "INVOCATION", "MAX_ID", "PUBLISH", "PUBLISHED", "REGISTER",
    "REGISTERED", "RESULT", "SUBSCRIBE", "SUBSCRIBED", "UNREGISTER", "UNREGISTERED",
    "UNSUBSCRIBE", "UNSUBSCRIBED", "WELCOME", "YIELD", "Abort", "Args", "Authenticate", "Call",
    "Cancel", "Challenge", "ClientAbort", "ClientGoodbye", "Dict", "Error", "Event", "Goodbye",
    "Hello", "Incoming", "Interrupt", "Invocation", "InvocationError", "Kwargs", "Outgoing",
    "ProtocolViolation", "Publish", "Published", "Register", "Registered", "Result",
    "Subscribe", "Subscribed", "Unregister", "Unregistered", "Unsubscribe", "Unsubscribed",
    "Welcome", "Yield", "error_reply", "parse", "type_name", "with_payload",
]


class ProtocolViolation(Exception):
    """The peer sent something the protocol forbids; answered with ABORT and a close."""


# -- parsing ------------------------------------------------------------------------------


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
