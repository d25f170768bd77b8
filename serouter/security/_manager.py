"""The object manager: every WAMP action checked against the SELinux policy.

It implements the core's ``AccessCheck``: the source is the session's label, the target the
realm's or URI's context from the contexts file, the class and permission the action's
(``wamp_realm { join }``, ``wamp_uri { register call subscribe publish }``). Decisions come
from a security server through the AVC; denials and auditallow grants are audited, dontaudit
denials are not. In permissive mode (or for a permissive domain) a denial is reported once per
decision and allowed.

Fail closed: in enforcing mode a policy without the wamp_* classes refuses the start (a policy
with handle_unknown=allow would otherwise allow everything) unless the configuration says
``allow_unknown_classes``; a check that cannot be made raises ``AccessCheckFailed``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from twisted.logger import Logger

from serouter.core.access import AccessCheckFailed, Action, Subject
from serouter.security._audit import AuditSink, avc_line
from serouter.security._avc import ALL, AccessVectorCache, Decision
from serouter.security._contexts import ObjectContexts, Rule, read_rules
from serouter.security._errors import SecurityError
from serouter.security._servers import SecurityServer

log = Logger(namespace="serouter.security")

# The policy interface: class and permission of each action (the names admins write policy in).
PERMISSIONS: dict[Action, tuple[str, str]] = {
    Action.JOIN: ("wamp_realm", "join"),
    Action.REGISTER: ("wamp_uri", "register"),
    Action.CALL: ("wamp_uri", "call"),
    Action.SUBSCRIBE: ("wamp_uri", "subscribe"),
    Action.PUBLISH: ("wamp_uri", "publish"),
    Action.ANNOUNCE: ("wamp_uri", "announce"),  # the name server (federation)
    Action.LOOKUP: ("wamp_uri", "lookup"),
}
# An entry per action: (class value, permission bit, is a realm action, class, permission).
# A class value of 0 means the policy lacks the class or the permission: such decisions are
# made up (handle_unknown), with bit 1 standing for the permission.
_Perm = tuple[int, int, bool, str, str]
# Keyed by id(action): an Enum's __hash__ is Python code, too slow for the hot path.
_Perms = dict[int, _Perm]


def _unmapped() -> _Perms:
    return {id(a): (0, 1, a is Action.JOIN, cls, perm) for a, (cls, perm) in PERMISSIONS.items()}


@dataclass(frozen=True, slots=True)
class _Setup:
    """What a policy load produces, installed at once when it is all valid."""

    contexts: ObjectContexts
    perms: _Perms
    missing: list[str]


class ObjectManager:
    """``AccessCheck`` over a security server, a contexts file, an AVC and an audit sink."""

    def __init__(
        self,
        server: SecurityServer,
        contexts_path: str,
        *,
        unlabeled: str,
        audit: AuditSink,
        allow_unknown_classes: bool = False,
        labels: Iterable[tuple[str, str]] = (),
    ) -> None:
        """``labels``: (configuration key, context) of every configured session label."""
        self.server = server
        self.contexts_path = contexts_path
        self.unlabeled = unlabeled
        self.audit = audit
        self.allow_unknown_classes = allow_unknown_classes
        self.labels = list(labels)
        self.avc = AccessVectorCache(self._compute)
        self._valid: dict[str, bool] = {}
        self._contexts: ObjectContexts | None = None
        self._perms: _Perms = _unmapped()
        self._realm_context = self._not_started
        self._uri_context = self._not_started
        self._realm_memo: dict[str, str] = {}
        self._uri_memo: dict[str, str] = {}
        self._poll = server.poll

    @staticmethod
    def _not_started(name: str) -> str:
        raise AccessCheckFailed("the access control is not started")

    # -- start and reload ----------------------------------------------------------------

    def start(self) -> None:
        """Load the policy and the contexts; SecurityError says what refuses the start."""
        self.server.start()
        rules = read_rules(self.contexts_path)
        setup = self._prepare(rules, strict=True)
        self._install(setup)
        log.info("access control: {backend}, {policy}; contexts {contexts} ({rules} rules)",
                 backend=self.server.name, policy=self.server.describe(),
                 contexts=self.contexts_path, rules=len(rules))

    def reload(self) -> bool:
        """SIGHUP: read the contexts (and a policy file) again; keep the old ones on error."""
        try:
            rules = read_rules(self.contexts_path)
            self.server.stage_reload()
            try:
                setup = self._prepare(rules, strict=False)
            except SecurityError:
                self.server.rollback()
                self._valid.clear()
                raise
        except SecurityError as e:
            log.error("reload refused, the running policy and contexts stay: {error}",
                      error=str(e))
            return False
        self._install(setup)
        log.info("reloaded: {policy}; contexts {contexts} ({rules} rules)",
                 policy=self.server.describe(), contexts=self.contexts_path, rules=len(rules))
        return True

    def _refresh(self) -> None:
        """The kernel loaded a policy or changed mode: map the classes again, flush."""
        self.server.refresh()
        self._valid.clear()
        assert self._contexts is not None
        perms, missing = self._map_classes()
        self._perms = perms
        self.avc.flush()
        invalid = [r for r in self._contexts.rules if not self.valid(r.context)]
        log.info("SELinux policy or mode changed: {policy}; decisions flushed",
                 policy=self.server.describe())
        if missing:
            how = "allowed" if self.unknown_allowed else "denied"
            log.error("the new policy lacks {missing}: these actions are all {how}",
                      missing=", ".join(missing), how=how)
        for rule in invalid:
            log.error("{path}:{line}: context {context} is not valid in the new policy: "
                      "checks on it fail", path=self.contexts_path, line=rule.line,
                      context=rule.context)

    def _prepare(self, rules: list[Rule], strict: bool) -> _Setup:
        """Check everything against the (new) policy; SecurityError names what is wrong."""
        self._valid.clear()
        perms, missing = self._map_classes()
        if missing and self.server.enforcing and not self.allow_unknown_classes:
            raise SecurityError(
                f"the policy lacks {', '.join(missing)} (install policy/wamp.cil): refusing to "
                "enforce nothing; set [access] allow_unknown_classes = true to accept it"
            )
        if missing:
            how = "allowed" if self.unknown_allowed else "denied"
            log.warn("the policy lacks {missing}: these actions are all {how}",
                     missing=", ".join(missing), how=how)
        for rule in rules:
            if not self.valid(rule.context):
                raise SecurityError(f"{self.contexts_path}:{rule.line}: context "
                                    f"{rule.context} is not valid in the policy")
        if not self.valid(self.unlabeled):
            raise SecurityError(f"access.unlabeled: {self.unlabeled} is not valid in the policy")
        self._check_labels(strict)
        contexts = ObjectContexts(rules, self.unlabeled)
        for kind in ("realm", "uri"):
            if not contexts.has_default(kind):
                log.warn("{path}: no default ('{kind} *'): unmatched names get the unlabeled "
                         "context {unlabeled}", path=self.contexts_path, kind=kind,
                         unlabeled=self.unlabeled)
        return _Setup(contexts, perms, missing)

    def _check_labels(self, strict: bool) -> None:
        for key, context in self.labels:
            if self.valid(context):
                continue
            if strict:
                raise SecurityError(f"{key}: {context} is not valid in the policy")
            log.warn("{key}: {context} is not valid in the new policy: such sessions become "
                     "unlabeled", key=key, context=context)

    def _map_classes(self) -> tuple[_Perms, list[str]]:
        perms = _unmapped()
        missing: list[str] = []
        for action, (cls, perm) in PERMISSIONS.items():
            tclass = self.server.class_value(cls)
            bit = self.server.perm_bit(tclass, perm) if tclass else 0
            if bit:
                perms[id(action)] = (tclass, bit, action is Action.JOIN, cls, perm)
            else:
                missing.append(f"{cls} {{ {perm} }}")
        return perms, missing

    @property
    def unknown_allowed(self) -> bool:
        return self.allow_unknown_classes and self.server.unknown_allowed()

    def _install(self, setup: _Setup) -> None:
        self._contexts = setup.contexts
        self._perms = setup.perms
        self._realm_context = setup.contexts.realm
        self._uri_context = setup.contexts.uri
        self._realm_memo = setup.contexts.realm_memo
        self._uri_memo = setup.contexts.uri_memo
        self._poll = self.server.poll
        self.avc.flush()

    # -- decisions -----------------------------------------------------------------------

    def valid(self, context: str) -> bool:
        """The context is valid in the loaded policy (memoized until the next load)."""
        known = self._valid.get(context)
        if known is None:
            if len(self._valid) >= 10_000:
                self._valid.clear()
            known = self._valid[context] = self.server.valid(context)
        return known

    def _compute(self, scontext: str, tcontext: str, tclass: int) -> Decision:
        if not tclass:  # a class the policy does not define: its handle_unknown, if accepted
            return (ALL if self.unknown_allowed else 0), 0, ALL, False
        return self.server.compute(scontext, tcontext, tclass)

    def check(self, subject: Subject, action: Action, realm: str, uri: str) -> bool:
        # The hot path: on a cached decision, a few dict lookups and no call out of here.
        poll = self._poll
        if poll is not None and poll():
            self._refresh()
        tclass, bit, is_realm, _cls, _perm = self._perms[id(action)]
        if is_realm:
            tcontext = self._realm_memo.get(realm) or self._realm_context(realm)
        else:
            tcontext = self._uri_memo.get(uri) or self._uri_context(uri)
        scontext = subject.label or self.unlabeled
        decision = self.avc.entries.get((scontext, tcontext, tclass))
        if decision is None:
            decision = self.avc.lookup(scontext, tcontext, tclass)
        if decision[0] & bit:
            if decision[1] & bit:
                self._report(subject, action, (realm, uri, scontext, tcontext), denied=False)
            return True
        permissive = decision[3] or not self.server.enforcing
        if decision[2] & bit:
            self._report(subject, action, (realm, uri, scontext, tcontext), True, permissive)
        if permissive:
            self.avc.grant((scontext, tcontext, tclass), bit)
        return permissive

    def _report(
        self, subject: Subject, action: Action, names: tuple[str, str, str, str],
        denied: bool, permissive: bool = False,
    ) -> None:
        """Audit one decision; ``names``: realm, uri, scontext, tcontext."""
        realm, uri, scontext, tcontext = names
        tclass, bit, is_realm, cls, perm = self._perms[id(action)]
        fields = [("realm", realm)] if is_realm else [("uri", uri), ("realm", realm)]
        fields.append(("session", str(subject.session)))
        line = avc_line(denied, perm, fields, scontext=scontext, tcontext=tcontext, tclass=cls,
                        permissive=permissive)
        self.audit(line, denied)
        if denied and tclass:
            try:
                why = self.server.explain(scontext, tcontext, tclass, bit)
            except AccessCheckFailed:
                why = None
            if why:
                log.info("denied {perm} on {tcontext} to {scontext}: {why}", perm=perm,
                         tcontext=tcontext, scontext=scontext, why=why)
