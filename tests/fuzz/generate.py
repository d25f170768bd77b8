"""Random client traffic for the fuzz targets: values, WAMP messages, framing and mutations.

Everything is drawn from one ``random.Random``, so a case is reproduced from its seed alone.
Messages are mostly well-formed, so the fuzzer gets past the parser into the session, realm,
dealer, broker and meta API; a field, a byte or a frame header is spoiled now and then. IDs are
drawn from what the router has sent so far (``Seen``), so UNREGISTER, YIELD or a meta call
names something real. Nothing here knows the router: it only speaks the wire.
"""

from __future__ import annotations

import base64
import json
import math
import random
from dataclasses import dataclass, field
from typing import Any

import cbor2
import msgpack
from websockets.speedups import apply_mask

ROLES: dict[str, Any] = {
    "caller": {"features": {"progressive_call_results": True, "call_canceling": True,
                            "call_timeout": True, "caller_identification": True,
                            "progressive_call_invocations": True}},
    "callee": {"features": {"progressive_call_results": True, "call_canceling": True,
                            "caller_identification": True, "progressive_call_invocations": True,
                            "shared_registration": True, "pattern_based_registration": True}},
    "publisher": {"features": {"publisher_exclusion": True, "publisher_identification": True}},
    "subscriber": {"features": {"pattern_based_subscription": True}},
}
REALMS = ("realm1", "realm1", "realm1", "tickets", "nowhere", "", "Realm 1")
URIS = (
    "a", "a.b", "a.b.c", "com.example.p", "com.example.t", "x.y", "a..b", "a b", "", ".a", "a.",
    "a.#", "wamp.x", "A-b.C", "\u00e9.\u00fc", "a." * 40 + "z",
)
META = (
    "wamp.session.count", "wamp.session.list", "wamp.session.get", "wamp.session.kill",
    "wamp.session.kill_by_authid", "wamp.session.kill_by_authrole", "wamp.session.kill_all",
    "wamp.session.add_testament", "wamp.session.flush_testaments",
    "wamp.registration.list", "wamp.registration.lookup", "wamp.registration.match",
    "wamp.registration.get", "wamp.registration.list_callees",
    "wamp.registration.count_callees", "wamp.subscription.list", "wamp.subscription.lookup",
    "wamp.subscription.match", "wamp.subscription.get", "wamp.subscription.list_subscribers",
    "wamp.subscription.count_subscribers", "wamp.subscription.get_events",
    "wamp.topic.history.last", "wamp.topic.history.since", "wamp.topic.history.after",
    "wamp.no_such_thing",
)
MATCH = ("exact", "prefix", "wildcard", "bogus", None, 7)
INVOKE = ("single", "roundrobin", "random", "first", "last", "bogus", None)
CANCEL_MODES = ("skip", "kill", "killnowait", "bogus", None)
INTS = (0, 1, 2, 3, -1, 2**31, 2**53, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30)
FLOATS = (0.0, -0.0, 1.5, 1e308, math.inf, -math.inf, math.nan)
STRINGS = ("", "x", "\x00", "\x00AAAA", "\x00!!", "\u00e9t\u00e9", "\ud7ff", "wamp.x", "a" * 300)
BYTES = (b"", b"\x00", b"\xff\xfe", bytes(range(16)))

# client -> router message codes, and a few only a router sends
HELLO, ABORT, AUTHENTICATE, GOODBYE, ERROR = 1, 3, 5, 6, 8
PUBLISH, SUBSCRIBE, UNSUBSCRIBE, CALL, CANCEL = 16, 32, 34, 48, 49
REGISTER, UNREGISTER, YIELD = 64, 66, 70
ROUTER_ONLY = (2, 4, 17, 33, 35, 36, 50, 65, 67, 68, 69, 99, 0, -1)


@dataclass
class Seen:
    """What the router told one client: IDs that later requests must name."""

    session: int = 0
    registrations: list[int] = field(default_factory=list)
    subscriptions: list[int] = field(default_factory=list)
    invocations: list[int] = field(default_factory=list)  # request IDs of INVOCATIONs
    sessions: list[int] = field(default_factory=list)  # any session ID heard of
    request: int = 0  # our last request ID
    challenged: bool = False

    def note(self, message: Any) -> None:
        """Learn from one message the router sent."""
        if type(message) is not list or len(message) < 2:
            return
        code, first = message[0], message[1]
        if code == 2 and type(first) is int:  # WELCOME
            self.session = first
            self.sessions.append(first)
            self.challenged = False
        elif code == 4:  # CHALLENGE
            self.challenged = True
        elif code == 65 and len(message) > 2:  # REGISTERED
            self.registrations.append(message[2])
        elif code == 33 and len(message) > 2:  # SUBSCRIBED
            self.subscriptions.append(message[2])
        elif code == 68 and type(first) is int:  # INVOCATION
            self.invocations.append(first)
        elif code == 36 and len(message) > 3 and type(message[3]) is dict:  # EVENT
            session = message[3].get("session")  # session meta events carry one
            if type(session) is int:
                self.sessions.append(session)
        for ids in (self.registrations, self.subscriptions, self.invocations, self.sessions):
            del ids[:-16]  # keep the recent ones: the pools stay small and relevant

    def next_request(self, rng: random.Random) -> int:
        if rng.random() < 0.05:
            return rng.choice((0, -1, 2**53, 2**53 + 1, self.request))  # out of range, reused
        self.request += 1
        return self.request


# -- values ---------------------------------------------------------------------------------------


def value(rng: random.Random, depth: int = 0) -> Any:
    """A random payload value: edge cases of every type, now and then nested."""
    kind = rng.random()
    if kind < 0.25:
        return rng.choice(INTS) if rng.random() < 0.5 else rng.randint(-1000, 10**6)
    if kind < 0.45:
        return rng.choice(STRINGS) if rng.random() < 0.5 else rng.choice(URIS)
    if kind < 0.5:
        return rng.choice(FLOATS)
    if kind < 0.55:
        return rng.choice(BYTES)
    if kind < 0.65:
        return rng.choice((None, True, False))
    if depth > 3:
        return None
    if kind < 0.85:
        return [value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(("a", "b", "", "\x00", "session", "match")): value(rng, depth + 1)
            for _ in range(rng.randint(0, 3))}


def args_kwargs(rng: random.Random, msg: list[Any]) -> list[Any]:
    """Append Arguments / ArgumentsKw, as the spec's optional tail (sometimes malformed)."""
    roll = rng.random()
    if roll < 0.4:
        return msg
    msg.append([value(rng) for _ in range(rng.randint(0, 3))] if rng.random() < 0.95
               else value(rng))
    if roll > 0.7:
        msg.append({"k": value(rng), "n": value(rng)} if rng.random() < 0.95 else value(rng))
    return msg


def options(rng: random.Random, keys: dict[str, tuple[Any, ...]]) -> dict[str, Any]:
    """A dict with a random subset of ``keys``, each from its plausible values or random."""
    out: dict[str, Any] = {}
    for key, choices in keys.items():
        if rng.random() < 0.3:
            out[key] = rng.choice(choices) if rng.random() < 0.85 else value(rng)
    return out


def _pick(rng: random.Random, pool: list[int]) -> Any:
    if pool and rng.random() < 0.85:
        return rng.choice(pool)
    return rng.choice(INTS)


# -- messages -------------------------------------------------------------------------------------


def hello(rng: random.Random) -> list[Any]:
    details: dict[str, Any] = {"roles": ROLES if rng.random() < 0.9 else value(rng)}
    roll = rng.random()
    if roll < 0.25:
        details.update(authmethods=["ticket"], authid=rng.choice(("alice", "mallory", "")))
    elif roll < 0.3:
        details.update(authmethods=value(rng), authid=value(rng), authextra=value(rng))
    realm = rng.choice(REALMS) if rng.random() < 0.97 else value(rng)
    return [HELLO, realm, details]


def _call(rng: random.Random, seen: Seen) -> list[Any]:
    procedure = rng.choice(URIS) if rng.random() < 0.6 else rng.choice(META)
    opts = options(rng, {"receive_progress": (True, False), "timeout": (0, 1, 50, 3000, -1),
                         "disclose_me": (True, False), "progress": (True, False),
                         "match": MATCH})
    msg = [CALL, seen.next_request(rng), opts, procedure]
    if procedure.startswith("wamp.") and rng.random() < 0.7:
        ids = seen.registrations + seen.subscriptions + seen.sessions
        msg.append([_pick(rng, ids) if rng.random() < 0.6 else rng.choice(URIS)
                    for _ in range(rng.randint(0, 3))])
        if rng.random() < 0.3:
            msg.append({"scope": rng.choice(("destroyed", "detached", "x")),
                        "reason": "wamp.close.killed", "message": "bye"})
        return msg
    return args_kwargs(rng, msg)


def _publish(rng: random.Random, seen: Seen) -> list[Any]:
    ids = seen.sessions
    opts = options(rng, {
        "acknowledge": (True, False), "exclude_me": (True, False), "retain": (True, False),
        "disclose_me": (True, False), "exclude": ([_pick(rng, ids)], [], ["x"]),
        "eligible": ([_pick(rng, ids)], []), "exclude_authid": (["a"], []),
        "eligible_authrole": (["anonymous"], [1]),
    })
    return args_kwargs(rng, [PUBLISH, seen.next_request(rng), opts, rng.choice(URIS)])


def _register(rng: random.Random, seen: Seen) -> list[Any]:
    opts = options(rng, {"match": MATCH, "invoke": INVOKE, "disclose_caller": (True, False)})
    return [REGISTER, seen.next_request(rng), opts, rng.choice(URIS)]


def _subscribe(rng: random.Random, seen: Seen) -> list[Any]:
    opts = options(rng, {"match": MATCH, "get_retained": (True, False)})
    return [SUBSCRIBE, seen.next_request(rng), opts, rng.choice(URIS)]


def _yield(rng: random.Random, seen: Seen) -> list[Any]:
    opts = options(rng, {"progress": (True, False)})
    return args_kwargs(rng, [YIELD, _pick(rng, seen.invocations), opts])


def _error(rng: random.Random, seen: Seen) -> list[Any]:
    code = INVOCATION if rng.random() < 0.9 else rng.choice((CALL, PUBLISH, 0))
    msg = [ERROR, code, _pick(rng, seen.invocations), {}, rng.choice(URIS)]
    return args_kwargs(rng, msg)


INVOCATION = 68


def _cancel(rng: random.Random, seen: Seen) -> list[Any]:
    request = seen.request if rng.random() < 0.7 else rng.choice(INTS)
    return [CANCEL, request, options(rng, {"mode": CANCEL_MODES})]


def _unregister(rng: random.Random, seen: Seen) -> list[Any]:
    return [UNREGISTER, seen.next_request(rng), _pick(rng, seen.registrations)]


def _unsubscribe(rng: random.Random, seen: Seen) -> list[Any]:
    return [UNSUBSCRIBE, seen.next_request(rng), _pick(rng, seen.subscriptions)]


def _goodbye(rng: random.Random, seen: Seen) -> list[Any]:
    return [GOODBYE, {}, rng.choice(("wamp.close.close_realm", "wamp.close.goodbye_and_out"))]


def _abort(rng: random.Random, seen: Seen) -> list[Any]:
    return [ABORT, {"message": "bye"}, "wamp.error.x"]


def _authenticate(rng: random.Random, seen: Seen) -> list[Any]:
    return [AUTHENTICATE, rng.choice(("alice-ticket", "wrong", "")), {}]


def _junk(rng: random.Random, seen: Seen) -> Any:
    if rng.random() < 0.5:
        return [rng.choice(ROUTER_ONLY), *[value(rng) for _ in range(rng.randint(0, 5))]]
    return value(rng)


_ESTABLISHED = (
    (_call, 20), (_publish, 15), (_register, 8), (_subscribe, 8), (_yield, 10), (_error, 3),
    (_cancel, 4), (_unregister, 4), (_unsubscribe, 4), (_goodbye, 2), (_abort, 1),
    (_authenticate, 1), (_junk, 3),
)
_MAKERS = tuple(m for m, _ in _ESTABLISHED)
_WEIGHTS = tuple(w for _, w in _ESTABLISHED)


def message(rng: random.Random, seen: Seen) -> Any:
    """The next message a client in the state ``seen`` suggests might send (or might not)."""
    if seen.challenged and rng.random() < 0.8:
        msg = _authenticate(rng, seen)
    elif not seen.session and rng.random() < 0.85:
        msg = hello(rng)
    else:
        msg = rng.choices(_MAKERS, _WEIGHTS)[0](rng, seen)
    if rng.random() < 0.08:
        msg = spoil(rng, msg)
    return msg


def spoil(rng: random.Random, msg: Any) -> Any:
    """Break one element of a message: replaced, dropped, or one added."""
    if type(msg) is not list or not msg:
        return value(rng)
    msg = list(msg)
    roll, i = rng.random(), rng.randrange(len(msg))
    if roll < 0.6:
        msg[i] = value(rng)
    elif roll < 0.8:
        del msg[i]
    else:
        msg.insert(i, value(rng))
    return msg


# -- serialization --------------------------------------------------------------------------------


def _json_default(o: object) -> str:
    if isinstance(o, bytes):
        return "\x00" + base64.b64encode(o).decode()
    raise TypeError(type(o).__name__)


def encode(serializer: str, msg: Any) -> bytes:
    """``msg`` as a client using ``serializer`` would send it (or garbage if it has no form)."""
    try:
        if serializer == "json":
            return json.dumps(msg, default=_json_default, ensure_ascii=False).encode(
                "utf-8", "surrogatepass")
        if serializer == "msgpack":
            return msgpack.packb(msg, use_bin_type=True)  # type: ignore[no-any-return]
        return cbor2.dumps(msg)
    except (TypeError, ValueError, OverflowError):
        return b"\xc1\x00\xff\xfe not encodable"  # the client's encoder refused it


def mutate(rng: random.Random, data: bytes) -> bytes:
    """A byte-level mutation: a flipped bit, an interesting byte, an insert, a cut, a copy."""
    if not data:
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    buf = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        roll, i = rng.random(), rng.randrange(len(buf) or 1)
        if not buf:
            buf.append(rng.randrange(256))
        elif roll < 0.3:
            buf[i] ^= 1 << rng.randrange(8)
        elif roll < 0.5:
            buf[i] = rng.choice((0x00, 0xFF, 0x7F, 0x80, 0xC0, 0xC1, 0x9F, 0xBF, 0xDF, 0xFB,
                                 0x5B, 0x7B, 0xD8, 0x22, 0x5C))
        elif roll < 0.65:
            buf[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        elif roll < 0.8:
            del buf[i : i + rng.randint(1, 8)]
        elif roll < 0.9:
            del buf[i:]
        else:
            j = rng.randrange(len(buf))
            buf[i:i] = buf[j : j + rng.randint(1, 16)]
    return bytes(buf)


def payload(rng: random.Random, serializer: str, seen: Seen) -> bytes:
    """One serialized message, byte-mutated now and then; CBOR sometimes with semantic tags."""
    msg = message(rng, seen)
    if serializer == "cbor" and rng.random() < 0.05 and type(msg) is list and len(msg) > 1:
        data = cbor_tagged(rng, msg)
    else:
        data = encode(serializer, msg)
    if rng.random() < 0.05:
        data = mutate(rng, data)
    return data


# CBOR tags a client may send: dates, bignums, decimal fractions and bigfloats, rationals,
# regular expressions, MIME, UUIDs, IP addresses, sets, self-describe, and the references
# (value sharing 28/29, string references 25/256) that let a few bytes name a value many times.
CBOR_TAGS = (0, 1, 2, 3, 4, 5, 21, 22, 23, 24, 25, 28, 29, 30, 32, 35, 36, 37, 256, 258, 260,
             261, 55799)


def _tag(number: int) -> bytes:
    if number < 24:
        return bytes((0xC0 | number,))
    if number < 256:
        return bytes((0xD8, number))
    if number < 65536:
        return bytes((0xD9,)) + number.to_bytes(2, "big")
    return bytes((0xDA,)) + number.to_bytes(4, "big")


def cbor_tagged(rng: random.Random, msg: list[Any]) -> bytes:
    """``msg`` with its last element replaced by tagged CBOR: random semantic tags around a
    random value, or a DAG of shared values (each level names the one below twice)."""
    if len(msg) > 23:
        return encode("cbor", msg)
    try:
        elements = [cbor2.dumps(v) for v in msg[:-1]]
    except (TypeError, ValueError):
        return encode("cbor", msg)
    if rng.random() < 0.5:
        shared: Any = "x" * rng.randint(1, 64)
        for _ in range(rng.randint(1, 24)):
            shared = [shared, shared]
        last = cbor2.dumps([shared], value_sharing=True)  # tags 28 and 29
    else:
        last = encode("cbor", value(rng))
        for _ in range(rng.randint(1, 3)):
            last = _tag(rng.choice(CBOR_TAGS)) + last
    return bytes((0x80 | len(msg),)) + b"".join(elements) + last


def chunks(rng: random.Random, data: bytes) -> list[bytes]:
    """``data`` cut at random places (TCP may deliver any split), usually whole."""
    if len(data) < 2 or rng.random() < 0.6:
        return [data]
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 4))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


# -- RawSocket framing ----------------------------------------------------------------------------

RAWSOCKET_IDS = {"json": 1, "msgpack": 2, "cbor": 3}


def rawsocket_handshake(rng: random.Random, serializer: str) -> bytes:
    """The 4-byte opening, valid most of the time."""
    exponent = 15 if rng.random() < 0.8 else rng.randrange(16)
    good = bytes((0x7F, exponent << 4 | RAWSOCKET_IDS[serializer], 0, 0))
    return good if rng.random() < 0.95 else mutate(rng, good)


def rawsocket_frame(rng: random.Random, data: bytes) -> bytes:
    """A message frame; sometimes a ping, a pong, or a lying header."""
    roll = rng.random()
    if roll < 0.9:
        return len(data).to_bytes(4, "big") + data
    if roll < 0.96:
        control = data[: rng.randint(0, 64)]
        return bytes((rng.choice((1, 2)),)) + len(control).to_bytes(3, "big") + control
    header = bytes((rng.randrange(256),)) + rng.randrange(1 << 24).to_bytes(3, "big")
    return header + data


# -- WebSocket framing ----------------------------------------------------------------------------


def upgrade_request(rng: random.Random, serializer: str) -> bytes:
    """An opening handshake asking for ``wamp.2.<serializer>``; sometimes broken."""
    key = base64.b64encode(rng.randbytes(16)).decode()
    lines = ["GET /ws HTTP/1.1", "Host: router", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
             f"Sec-WebSocket-Protocol: wamp.2.{serializer}"]
    roll = rng.random()
    if roll < 0.05:
        del lines[rng.randrange(1, len(lines))]
    elif roll < 0.08:
        lines[0] = rng.choice(("POST /ws HTTP/1.1", "GET /nope HTTP/1.1", "GET /ws HTTP/1.0"))
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return request if rng.random() < 0.97 else mutate(rng, request)


def _ws_frame(rng: random.Random, opcode: int, data: bytes, fin: bool = True) -> bytes:
    size = len(data)
    head = bytes(((0x80 if fin else 0) | opcode,))
    if size < 126:
        head += bytes((0x80 | size,))
    elif size < 1 << 16:
        head += bytes((0x80 | 126,)) + size.to_bytes(2, "big")
    else:
        head += bytes((0x80 | 127,)) + size.to_bytes(8, "big")
    key = rng.randbytes(4)
    return head + key + apply_mask(data, key)


def websocket_frames(rng: random.Random, serializer: str, data: bytes) -> bytes:
    """``data`` as one message: usually one masked frame, sometimes fragments with control
    frames between them, sometimes a broken header."""
    opcode = 0x1 if serializer == "json" else 0x2
    roll = rng.random()
    if roll < 0.85 or len(data) < 2:
        frame = _ws_frame(rng, opcode, data)
    elif roll < 0.95:
        cut = rng.randrange(1, len(data))
        middle = _ws_frame(rng, rng.choice((0x9, 0xA)), rng.randbytes(rng.randint(0, 8)))
        frame = (_ws_frame(rng, opcode, data[:cut], fin=False) + middle
                 + _ws_frame(rng, 0x0, data[cut:]))
    else:
        frame = mutate(rng, _ws_frame(rng, opcode, data)[:14]) + data
    if rng.random() < 0.03:
        close = rng.choice((b"", b"\x03\xe8", b"\x03\xe8bye", b"\x00", b"\x0b\xb8\xff"))
        frame += _ws_frame(rng, 0x8, close)
    return frame
