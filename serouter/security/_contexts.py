"""The object contexts file: the context of each realm and URI (like ``x_contexts``).

One rule per line, ``#`` starts a comment::

    # kind   pattern          context
    realm    realm1           system_u:object_r:wamp_realm_t:s0
    uri      com.example.add  system_u:object_r:example_add_t:s0
    uri      com.example.*    system_u:object_r:example_uri_t:s0
    uri      *                system_u:object_r:wamp_uri_t:s0

An exact name beats every prefix (a pattern ending in ``*``), a longer prefix beats a shorter
one, and ``*`` alone is the default. The parser knows nothing of policies: whether a context is
valid is asked of the loaded policy by the caller, which gets each rule's line for its message.
"""

from __future__ import annotations

from dataclasses import dataclass

from serouter.security._errors import SecurityError

KINDS = ("realm", "uri")
_CACHE_LIMIT = 10_000  # clients choose the URIs looked up: keep the memo bounded


@dataclass(frozen=True, slots=True)
class Rule:
    kind: str
    pattern: str
    context: str
    line: int


def _context_shape(context: str) -> bool:
    """user:role:type[:range] with non-empty parts (the policy checks the rest)."""
    parts = context.split(":", 3)
    return len(parts) >= 3 and all(parts) and context.isprintable()


def parse_rules(text: str, source: str) -> list[Rule]:
    """Every rule of a contexts file; SecurityError names ``source``, the line and the fault."""
    rules: list[Rule] = []
    seen: dict[tuple[str, str], int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}:{number}"
        fields = line.split()
        if len(fields) != 3:
            raise SecurityError(f"{where}: expected 'kind pattern context', got {line!r}")
        kind, pattern, context = fields
        if kind not in KINDS:
            raise SecurityError(f"{where}: unknown kind {kind!r} (expected realm or uri)")
        if "*" in pattern[:-1]:
            raise SecurityError(
                f"{where}: {pattern!r}: '*' may only end a prefix, or stand alone as the default"
            )
        if not _context_shape(context):
            raise SecurityError(f"{where}: {context!r} is not a context (user:role:type[:range])")
        if (kind, pattern) in seen:
            raise SecurityError(
                f"{where}: {kind} {pattern!r} is already given on line {seen[kind, pattern]}"
            )
        seen[kind, pattern] = number
        rules.append(Rule(kind, pattern, context, number))
    return rules


def read_rules(path: str) -> list[Rule]:
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as e:
        raise SecurityError(f"{path}: cannot read the contexts file: {e}") from None
    return parse_rules(text, path)


class _Table:
    """The rules of one kind: exact names, prefixes (longest first), the default."""

    __slots__ = ("default", "exact", "memo", "prefixes")

    def __init__(self, rules: list[Rule], fallback: str) -> None:
        self.exact = {r.pattern: r.context for r in rules if not r.pattern.endswith("*")}
        prefixes = [(r.pattern[:-1], r.context) for r in rules if r.pattern.endswith("*")]
        # "*" alone is the empty prefix: it matches everything, so it sorts last
        prefixes.sort(key=lambda item: len(item[0]), reverse=True)
        self.prefixes = prefixes
        self.default = fallback
        self.memo: dict[str, str] = {}

    def lookup(self, name: str) -> str:
        context = self.memo.get(name)
        if context is None:
            context = self.exact.get(name)
            if context is None:
                context = next((c for p, c in self.prefixes if name.startswith(p)), self.default)
            if len(self.memo) >= _CACHE_LIMIT:
                self.memo.clear()  # in place: callers hold this dict
            self.memo[name] = context
        return context


class ObjectContexts:
    """Realm and URI name -> context, most specific rule first; memoized."""

    def __init__(self, rules: list[Rule], fallback: str) -> None:
        """``fallback``: the context of a name no rule matches (a file without ``*``)."""
        self.rules = rules
        self._realms = _Table([r for r in rules if r.kind == "realm"], fallback)
        self._uris = _Table([r for r in rules if r.kind == "uri"], fallback)
        self.realm = self._realms.lookup
        self.uri = self._uris.lookup
        # the memos, for callers that try a plain dict lookup first (the check's hot path)
        self.realm_memo = self._realms.memo
        self.uri_memo = self._uris.memo

    def has_default(self, kind: str) -> bool:
        return any(r.kind == kind and r.pattern == "*" for r in self.rules)
