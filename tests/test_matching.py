"""URI matching: exact, prefix and wildcard, with the spec's precedence."""

from serouter.core.matching import EXACT, PREFIX, WILDCARD, UriMap, wildcard_rank


def spec_map() -> UriMap[int]:
    """The registrations of the spec's pattern-based registration example."""
    m: UriMap[int] = UriMap()
    m.add("a1.b2.c3.d4.e55", EXACT, 1)
    m.add("a1.b2.c3", PREFIX, 2)
    m.add("a1.b2.c3.d4", PREFIX, 3)
    m.add("a1.b2..d4.e5", WILDCARD, 4)
    m.add("a1.b2.c3..e5", WILDCARD, 5)
    m.add("a1.b2..d4.e5..g7", WILDCARD, 6)
    m.add("a1.b2..d4..f6.g7", WILDCARD, 7)
    return m


def test_spec_examples_for_best_match() -> None:
    """Every example call of the spec picks the registration the spec names."""
    m = spec_map()
    assert m.best("a1.b2.c3.d4.e55") == 1
    assert m.best("a1.b2.c3.d98.e74") == 2
    assert m.best("a1.b2.c3.d4.e325") == 3
    assert m.best("a1.b2.c55.d4.e5") == 4
    assert m.best("a1.b2.c3.d4.e5") == 3  # a prefix match beats any wildcard
    assert m.best("a2.b2.c2.d2.e2") is None


def test_wildcard_precedence_without_prefixes() -> None:
    """Among wildcards, longer concrete runs before each wildcard win, run by run."""
    m = spec_map()
    m.remove("a1.b2.c3", PREFIX)
    m.remove("a1.b2.c3.d4", PREFIX)
    assert m.best("a1.b2.c3.d4.e5") == 5
    assert m.best("a1.b2.c88.d4.e5.f6.g7") == 6


def test_prefix_is_a_plain_string_prefix() -> None:
    """The spec's prefix example: the pattern itself and any string extending it match."""
    m: UriMap[str] = UriMap()
    m.add("com.myapp.myobject1", PREFIX, "p")
    for uri in ("com.myapp.myobject1.myprocedure1", "com.myapp.myobject1-mysubobject1",
                "com.myapp.myobject1.mysubobject1.myprocedure1", "com.myapp.myobject1"):
        assert m.best(uri) == "p", uri
    assert m.best("com.myapp.myobject2") is None
    assert m.best("com.myapp.myobject") is None


def test_wildcard_matches_whole_components_only() -> None:
    """A wildcard stands for one whole component; the component count must agree."""
    m: UriMap[str] = UriMap()
    m.add("com.myapp..myprocedure1", WILDCARD, "w")
    assert m.best("com.myapp.myobject1.myprocedure1") == "w"
    assert m.best("com.myapp.myobject2.myprocedure1") == "w"
    assert m.best("com.myapp.myobject1.myprocedure1.mysubprocedure1") is None
    assert m.best("com.myapp.myobject1.myprocedure2") is None
    assert m.best("com.myapp2.myobject1.myprocedure1") is None


def test_matching_returns_every_match() -> None:
    """The broker's lookup returns exact, all prefix and all wildcard matches."""
    m = spec_map()
    assert sorted(m.matching("a1.b2.c3.d4.e5")) == [2, 3, 4, 5]
    assert m.matching("zz") == []


def test_get_add_remove_by_policy() -> None:
    """The same string under different policies is three different entries."""
    m: UriMap[str] = UriMap()
    for policy in (EXACT, PREFIX, WILDCARD):
        m.add("a.b", policy, policy)
    assert [m.get("a.b", p) for p in (EXACT, PREFIX, WILDCARD)] == [EXACT, PREFIX, WILDCARD]
    assert len(m) == 3 and sorted(m.values()) == sorted([EXACT, PREFIX, WILDCARD])
    for policy in (EXACT, PREFIX, WILDCARD):
        m.remove("a.b", policy)
    assert len(m) == 0 and m.best("a.b") is None and list(m.values(PREFIX)) == []


def test_wildcard_rank() -> None:
    """Runs of concrete components, split at each wildcard."""
    assert wildcard_rank("a1.b2..d4.e5") == (2, 2)
    assert wildcard_rank("a1...d4") == (1, 0, 1)
    assert wildcard_rank(".a") == (0, 1)
