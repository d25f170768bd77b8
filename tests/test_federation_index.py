"""The name service's index (serouter/federation/_index.py): entries, lookups, watches. No I/O."""

from __future__ import annotations

from serouter.federation._index import NameIndex
from serouter.federation._protocol import PROCEDURE, TOPIC, Entry, Key

A, B, C = 1, 2, 3
EA, EB, EC = "tcp:127.0.0.1:1", "tcp:127.0.0.1:2", "tcp:127.0.0.1:3"


def proc(uri: str, match: str = "exact", invoke: str = "single") -> Entry:
    return Entry(Key(PROCEDURE, uri, match), invoke)


def topic(uri: str) -> Entry:
    return Entry(Key(TOPIC, uri))


def endpoints(found: list[dict[str, object]]) -> list[object]:
    return [item["endpoint"] for item in found]


def test_exact_procedure_lookup_names_the_provider_and_its_policy() -> None:
    """A lookup of an announced procedure gives the providing router's endpoint and entry."""
    index = NameIndex()
    index.announce(B, EB, [proc("com.example.add", invoke="roundrobin")])
    assert index.lookup(A, Key(PROCEDURE, "com.example.add")) == [
        {"endpoint": EB, "uri": "com.example.add", "match": "exact", "invoke": "roundrobin"}]
    assert index.lookup(A, Key(PROCEDURE, "com.example.sub")) == []


def test_lookup_follows_the_dealers_rule() -> None:
    """Exact beats the longest prefix, which beats any wildcard."""
    index = NameIndex()
    index.announce(A, EA, [proc("com.example.", "prefix")])
    index.announce(B, EB, [proc("com.example.add.", "prefix")])
    index.announce(C, EC, [proc("com..add.x", "wildcard"), proc("com.example.add.y")])
    assert endpoints(index.lookup(9, Key(PROCEDURE, "com.example.add.y"))) == [EC]
    assert endpoints(index.lookup(9, Key(PROCEDURE, "com.example.add.x"))) == [EB]
    assert endpoints(index.lookup(9, Key(PROCEDURE, "com.example.sub"))) == [EA]
    assert endpoints(index.lookup(9, Key(PROCEDURE, "com.other.add.x"))) == [EC]


def test_a_router_never_finds_itself() -> None:
    """Its own (stale) entry is skipped, and the next best entry of another router answers."""
    index = NameIndex()
    index.announce(A, EA, [proc("com.example.add")])
    index.announce(B, EB, [proc("com.example.", "prefix")])
    assert endpoints(index.lookup(A, Key(PROCEDURE, "com.example.add"))) == [EB]
    assert endpoints(index.lookup(C, Key(PROCEDURE, "com.example.add"))) == [EA]
    assert index.lookup(B, Key(PROCEDURE, "com.example.zzz")) == []


def test_several_providers_in_announce_order() -> None:
    """Routers providing the same entry are all named, first announcer first."""
    index = NameIndex()
    index.announce(C, EC, [proc("svc.echo", invoke="roundrobin")])
    index.announce(B, EB, [proc("svc.echo", invoke="roundrobin")])
    assert endpoints(index.lookup(A, Key(PROCEDURE, "svc.echo"))) == [EC, EB]


def test_withdraw_and_session_end_remove_entries() -> None:
    """Entries go when withdrawn, and all of a router's when its session ends."""
    index = NameIndex()
    index.announce(B, EB, [proc("a.b"), proc("a.c"), topic("t.1")])
    out = index.withdraw(B, [Key(PROCEDURE, "a.b"), Key(PROCEDURE, "nothing")])
    assert [(op, e.key.uri) for op, e in out.changes] == [("withdraw", "a.b")]
    out = index.drop(B)
    assert sorted((op, e.key.uri) for op, e in out.changes) == [
        ("withdraw", "a.c"), ("withdraw", "t.1")]
    assert index.lookup(A, Key(PROCEDURE, "a.c")) == []
    assert index.lookup(A, Key(TOPIC, "t.1")) == []
    assert not index.providers


def test_announce_is_idempotent() -> None:
    """Announcing again changes nothing, unless the invocation policy changed."""
    index = NameIndex()
    _held, out = index.announce(B, EB, [proc("a.b")])
    assert len(out.changes) == 1
    _held, out = index.announce(B, EB, [proc("a.b"), topic("t")])
    assert [e.key.uri for _op, e in out.changes] == ["t"]
    _held, out = index.announce(B, EB, [proc("a.b", invoke="random")])
    assert [e.invoke for _op, e in out.changes] == ["random"]


def test_topic_lookups_by_pattern() -> None:
    """Topic patterns find every router that published a matching topic, each once."""
    index = NameIndex()
    index.announce(B, EB, [topic("com.a.x"), topic("com.a.y"), topic("com.b.x")])
    index.announce(C, EC, [topic("com.a.z"), topic("org.a.x")])
    assert endpoints(index.lookup(A, Key(TOPIC, "com.a.x"))) == [EB]
    assert sorted(map(str, endpoints(index.lookup(A, Key(TOPIC, "com.a.", "prefix"))))) == [
        EB, EC]
    assert sorted(map(str, endpoints(index.lookup(A, Key(TOPIC, ".a.x", "wildcard"))))) == [
        EB, EC]
    assert endpoints(index.lookup(A, Key(TOPIC, "com.c.", "prefix"))) == []
    assert endpoints(index.lookup(B, Key(TOPIC, "com.b.", "prefix"))) == []  # only B's own


def test_procedure_watch_fires_once_for_the_watcher_only() -> None:
    """A change to an entry matching a watched URI notifies its watchers, once, not the actor."""
    index = NameIndex()
    index.announce(B, EB, [proc("com.example.add")])
    index.lookup(A, Key(PROCEDURE, "com.example.add"), watch=True)
    index.lookup(C, Key(PROCEDURE, "com.example.add"), watch=True)
    _held, out = index.announce(C, EC, [proc("com.example.", "prefix")])
    assert out.notices == {A: {Key(PROCEDURE, "com.example.add")}}
    out = index.withdraw(B, [Key(PROCEDURE, "com.example.add")])
    assert out.notices == {C: {Key(PROCEDURE, "com.example.add")}}  # A's watch fired already
    out = index.withdraw(C, [Key(PROCEDURE, "com.example.", "prefix")])
    assert out.notices == {}


def test_wildcard_entries_notify_matching_watches() -> None:
    index = NameIndex()
    index.lookup(A, Key(PROCEDURE, "com.x.add"), watch=True)
    index.lookup(A, Key(PROCEDURE, "com.x.sub"), watch=True)
    _held, out = index.announce(B, EB, [proc("com..add", "wildcard")])
    assert out.notices == {A: {Key(PROCEDURE, "com.x.add")}}


def test_topic_watch_on_a_pattern() -> None:
    """A new publisher of a topic a pattern covers notifies the pattern's watchers."""
    index = NameIndex()
    watch = Key(TOPIC, "com.a.", "prefix")
    index.lookup(A, watch, watch=True)
    index.lookup(C, Key(TOPIC, "com.b.x"), watch=True)
    _held, out = index.announce(B, EB, [topic("com.a.q")])
    assert out.notices == {A: {watch}}
    _held, out = index.announce(B, EB, [topic("com.b.x")])
    assert out.notices == {C: {Key(TOPIC, "com.b.x")}}


def test_a_dropped_router_notifies_and_loses_its_watches() -> None:
    index = NameIndex()
    index.announce(B, EB, [proc("x.y")])
    index.lookup(A, Key(PROCEDURE, "x.y"), watch=True)
    index.lookup(B, Key(TOPIC, "t"), watch=True)
    out = index.drop(B)
    assert out.notices == {A: {Key(PROCEDURE, "x.y")}}
    _held, out = index.announce(C, EC, [topic("t")])
    assert out.notices == {}


def test_unwatch() -> None:
    index = NameIndex()
    index.lookup(A, Key(PROCEDURE, "x.y"), watch=True)
    index.unwatch(A, Key(PROCEDURE, "x.y"))
    _held, out = index.announce(B, EB, [proc("x.y")])
    assert out.notices == {}


def test_limits_per_router() -> None:
    """Past max_entries a router's new entries (and watches) are refused, others unaffected."""
    index = NameIndex(max_entries=2)
    held, _out = index.announce(B, EB, [proc("a.1"), proc("a.2"), proc("a.3"), proc("a.1")])
    assert held == [True, True, False, True]
    held, _out = index.announce(C, EC, [proc("a.3")])
    assert held == [True]
    assert index.watch(A, Key(PROCEDURE, "w.1")) and index.watch(A, Key(PROCEDURE, "w.2"))
    assert not index.watch(A, Key(PROCEDURE, "w.3"))
