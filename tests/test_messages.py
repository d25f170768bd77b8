"""Parsing client messages: valid ones become objects, malformed ones are violations."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serouter.core.messages import (
    MAX_ID,
    Call,
    Error,
    Event,
    Hello,
    InvocationError,
    ProtocolViolation,
    Publish,
    Result,
    Yield,
    _call_checked,
    _publish_checked,
    _yield_checked,
    parse,
)


def test_call_with_args_and_kwargs_parses() -> None:
    """A CALL with payload becomes a Call carrying it unchanged."""
    msg = parse([48, 7, {}, "com.example.add", [1, 2], {"x": 1}])
    assert msg == Call(7, {}, "com.example.add", [1, 2], {"x": 1})


def test_optional_payload_absent() -> None:
    """Arguments and ArgumentsKw are optional."""
    assert parse([48, 1, {}, "a.b"]) == Call(1, {}, "a.b", None, None)
    assert parse([70, 1, {}]) == Yield(1, {}, None, None)
    assert parse([16, 1, {}, "t"]) == Publish(1, {}, "t", None, None)


def test_hello_parses() -> None:
    """HELLO carries realm and details."""
    assert parse([1, "realm1", {"roles": {}}]) == Hello("realm1", {"roles": {}})


def test_error_for_invocation_parses() -> None:
    """A callee's ERROR for an INVOCATION is accepted with its payload."""
    msg = parse([8, 68, 3, {}, "com.example.oops", ["a"], {"k": 1}])
    assert msg == InvocationError(3, {}, "com.example.oops", ["a"], {"k": 1})


@pytest.mark.parametrize(
    "raw",
    [
        [],
        "not a list",
        {"a": 1},
        [None],
        ["48"],
        [2, 1, {}],  # WELCOME is for clients, not the router
        [36, 1, 1, {}],  # EVENT, likewise
        [999, 1],
        [True, 1, {}, "a"],  # bool is not a message type
        [48, 0, {}, "a"],  # request IDs start at 1
        [48, MAX_ID + 1, {}, "a"],
        [48, 1.0, {}, "a"],
        [48, True, {}, "a"],
        [48, 1, [], "a"],
        [48, 1, {}, 5],
        [48, 1, {}, "a", {}],  # Arguments must be a list
        [48, 1, {}, "a", [], []],  # ArgumentsKw must be a dict
        [48, 1, {}, "a", [], {}, "extra"],
        [48, 1, {}],
        [1, "realm1"],
        [1, "realm1", {}, "extra"],
        [8, 48, 1, {}, "x"],  # ERROR for a CALL can't come from a client
        [8, 68, 1, {}],
        [32, 1, {}, "t", "extra"],
        [34, 1, 0],
        [66, 1, -3],
        [6, {}, None],
    ],
)
def test_malformed_messages_are_violations(raw: object) -> None:
    """Every malformed or router-bound message raises ProtocolViolation."""
    with pytest.raises(ProtocolViolation):
        parse(raw)


def test_marshal_omits_empty_trailing_payload() -> None:
    """Outgoing messages leave out empty Arguments/ArgumentsKw as the spec asks."""
    assert Result(1, {}).marshal() == [50, 1, {}]
    assert Result(1, {}, [1]).marshal() == [50, 1, {}, [1]]
    assert Result(1, {}, None, {"a": 1}).marshal() == [50, 1, {}, [], {"a": 1}]
    assert Error(48, 2, {}, "x.y", [], {}).marshal() == [8, 48, 2, {}, "x.y"]
    assert Event(5, 6, {}, ["a"]).marshal() == [36, 5, 6, {}, ["a"]]


_values = st.one_of(
    st.none(), st.booleans(), st.integers(-2, 2**54), st.floats(allow_nan=False),
    st.text(max_size=5), st.just([]), st.just({}), st.just([1]), st.just({"k": 1}),
)


@settings(max_examples=300, deadline=None)
@given(code=st.sampled_from([16, 48, 70]), rest=st.lists(_values, max_size=6))
def test_fast_paths_accept_exactly_what_the_checked_paths_accept(code: int, rest: list) -> None:
    """CALL, YIELD and PUBLISH parse the same through the fast and the checked path."""
    checked = {16: _publish_checked, 48: _call_checked, 70: _yield_checked}[code]
    raw = [code, *rest]
    try:
        expected = checked(raw)
    except ProtocolViolation:
        with pytest.raises(ProtocolViolation):
            parse(raw)
    else:
        assert parse(raw) == expected
