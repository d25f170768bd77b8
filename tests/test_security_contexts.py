"""The object contexts file: its format, every precedence rule, and the lines it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from serouter.security._contexts import ObjectContexts, parse_rules, read_rules
from serouter.security._errors import SecurityError

FALLBACK = "system_u:object_r:unlabeled_t:s0"

TEXT = """\
# kind   pattern          context
realm    realm1           system_u:object_r:realm1_t:s0
realm    *                system_u:object_r:wamp_realm_t:s0

uri      com.example.add  system_u:object_r:example_add_t:s0   # exact
uri      com.example.*    system_u:object_r:example_uri_t:s0
uri      com.*            system_u:object_r:com_t:s0
uri      com.example.add.*  system_u:object_r:below_add_t:s0
uri      *                system_u:object_r:wamp_uri_t:s0
"""


def contexts(text: str = TEXT) -> ObjectContexts:
    return ObjectContexts(parse_rules(text, "wamp_contexts"), FALLBACK)


def ctype(context: str) -> str:
    return context.split(":")[2]


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("com.example.add", "example_add_t"),  # exact beats every prefix
        ("com.example.sub", "example_uri_t"),  # the longer prefix beats com.*
        ("com.example.add.more", "below_add_t"),  # longest prefix
        ("com.examplex", "com_t"),  # "com.example.*" needs the dot
        ("com.other", "com_t"),
        ("org.example", "wamp_uri_t"),  # "*" alone is the default
        ("com.example.", "example_uri_t"),  # a prefix pattern as written
    ],
)
def test_uri_precedence(uri: str, expected: str) -> None:
    """An exact name beats a prefix, a longer prefix beats a shorter one, '*' is the default."""
    assert ctype(contexts().uri(uri)) == expected


def test_realm_rules_are_apart_from_uri_rules() -> None:
    """Realm names are matched against realm rules only."""
    table = contexts()
    assert ctype(table.realm("realm1")) == "realm1_t"
    assert ctype(table.realm("realm2")) == "wamp_realm_t"
    assert ctype(table.uri("realm1")) == "wamp_uri_t"
    assert ctype(table.realm("com.example.add")) == "wamp_realm_t"


def test_no_default_gives_the_fallback() -> None:
    """A name no rule matches in a file without '*' gets the fallback (unlabeled) context."""
    table = contexts("uri com.example.* system_u:object_r:example_uri_t:s0\n")
    assert table.uri("org.x") == FALLBACK
    assert table.realm("realm1") == FALLBACK
    assert not table.has_default("uri")
    assert contexts().has_default("uri") and contexts().has_default("realm")


def test_lookups_are_memoized_and_bounded() -> None:
    """Each name is matched once; the memo is cleared in place when it reaches its bound."""
    table = contexts()
    assert table.uri("com.example.x") == table.uri_memo["com.example.x"]
    memo = table.uri_memo
    for n in range(10_001):
        table.uri(f"org.n{n}")
    assert table.uri_memo is memo and len(memo) <= 10_000


def test_comments_blank_lines_and_spacing() -> None:
    """'#' starts a comment anywhere; blank lines and runs of blanks or tabs are fine."""
    rules = parse_rules("\n  # only a comment\nuri\t*\t system_u:object_r:t:s0 # why\n\n", "f")
    assert [(r.kind, r.pattern, r.context, r.line) for r in rules] == [
        ("uri", "*", "system_u:object_r:t:s0", 3)
    ]


def test_context_without_level_is_accepted() -> None:
    """A non-MLS policy's context has three fields."""
    assert parse_rules("uri * system_u:object_r:t\n", "f")[0].context == "system_u:object_r:t"


def test_mls_range_with_categories_is_one_field() -> None:
    """A level range with categories keeps its colons and commas."""
    rule = parse_rules("uri * system_u:object_r:t:s0-s1:c0,c1\n", "f")[0]
    assert rule.context == "system_u:object_r:t:s0-s1:c0,c1"


@pytest.mark.parametrize(
    ("line", "fault"),
    [
        ("uri com.example.add", "expected 'kind pattern context'"),
        ("uri a b system_u:object_r:t:s0", "expected 'kind pattern context'"),
        ("topic com.x system_u:object_r:t:s0", "unknown kind 'topic'"),
        ("uri com.*.add system_u:object_r:t:s0", "'*' may only end a prefix"),
        ("uri ** system_u:object_r:t:s0", "'*' may only end a prefix"),
        ("uri com.x object_r:t", "is not a context"),
        ("uri com.x system_u::t:s0", "is not a context"),
    ],
)
def test_malformed_line_is_named(line: str, fault: str) -> None:
    """A malformed line refuses the whole file, naming the file, the line number and why."""
    text = "# header\nuri * system_u:object_r:wamp_uri_t:s0\n" + line + "\n"
    with pytest.raises(SecurityError) as caught:
        parse_rules(text, "/etc/serouter/wamp_contexts")
    assert str(caught.value).startswith("/etc/serouter/wamp_contexts:3: ")
    assert fault in str(caught.value)


def test_duplicate_pattern_is_refused() -> None:
    """The same kind and pattern twice is an error naming both lines."""
    text = "uri * system_u:object_r:a_t:s0\nrealm * system_u:object_r:b_t:s0\n"
    text += "uri * system_u:object_r:c_t:s0\n"
    with pytest.raises(SecurityError, match=r"f:3: uri '\*' is already given on line 1"):
        parse_rules(text, "f")


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    """A missing or non-UTF-8 file is refused with its path."""
    with pytest.raises(SecurityError, match="missing: cannot read"):
        read_rules(str(tmp_path / "missing"))
    bad = tmp_path / "bad"
    bad.write_bytes(b"uri * \xff\n")
    with pytest.raises(SecurityError, match="bad: cannot read"):
        read_rules(str(bad))


def test_shipped_default_contexts_file_parses() -> None:
    """policy/wamp_contexts parses and has a default for both kinds."""
    path = Path(__file__).resolve().parent.parent / "policy" / "wamp_contexts"
    table = ObjectContexts(read_rules(str(path)), FALLBACK)
    assert table.has_default("realm") and table.has_default("uri")
    assert ctype(table.uri("wamp.session.count")) == "wamp_meta_uri_t"
    assert ctype(table.uri("com.example.add")) == "wamp_uri_t"
    assert ctype(table.realm("realm1")) == "wamp_realm_t"
