"""SIGHUP: the configuration, the contexts file and the policy read again and applied to the
running router, without dropping a session.

What a reload changes: listeners (added, removed, or reopened when their settings changed;
connections already accepted stay, whatever happens to their listener), realms (added),
authentication (methods, principals: from the next HELLO), the policy and contexts files that
``[access]`` names (from the next message), ``[metrics]``, ``log_level`` and
``shutdown_timeout``. What needs a restart, and is refused with that reason: ``[router] mode``,
the ``[access]`` table itself, ``[federation]``, ``[nameserver]``, ``[argo]``, a realm removed
or its routing settings changed, a realm added to a name server or to a router federating
every realm.

The order keeps a refused reload from changing anything: the new file is parsed and compared
with the running one first (nothing touched), then the policy and contexts are reloaded (the
security manager refuses a bad one itself), then new listeners are opened (any failure closes
them again), and only then is the new configuration committed. The one exception: when the
policy reloaded but the configuration is then refused (a new listener's label is not valid in
it, a port is taken), the new policy stays, as a SIGHUP with the old configuration would have
left it. This module must never close a session.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.logger import Logger

from serouter.auth.configure import policy_from_config
from serouter.config import DEFAULT_SOURCE, Config, ConfigError, ListenerConfig, RealmConfig
from serouter.config import load_config as _load_config
from serouter.observability import status_line

if TYPE_CHECKING:
    from serouter.service import Listening, RouterDaemon

log = Logger(namespace="serouter.reload")

# A realm's authentication settings, which a reload applies; its other keys need a restart.
_AUTH_KEYS = frozenset({"auth", "principals", "principals_file", "anonymous", "tls",
                        "transport"})
_RESTART_TABLES = ("federation", "nameserver", "argo")


class ReloadRefused(Exception):
    """The new configuration cannot be applied to the running router; the reason says why."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What a reload changes, decided before anything is touched."""

    config: Config
    added: tuple[ListenerConfig, ...] = ()
    changed: tuple[ListenerConfig, ...] = ()  # same endpoint, other settings: reopened
    removed: tuple[str, ...] = ()  # endpoints
    realms: tuple[RealmConfig, ...] = ()  # added
    metrics: bool = False  # [metrics] changed

    def summary(self) -> str:
        parts = [f"{len(self.added)} listeners added", f"{len(self.removed)} removed",
                 f"{len(self.changed)} reopened"]
        if self.realms:
            parts.append("realms added: " + ", ".join(r.name for r in self.realms))
        if self.metrics:
            parts.append("metrics endpoint changed")
        return "; ".join(parts)


def plan_reload(old: Config, new: Config) -> Plan:
    """Compare the running configuration with the new one; ReloadRefused if it needs a
    restart."""
    if new.router.mode != old.router.mode:
        raise ReloadRefused("[router] mode changed: that needs a restart")
    if new.access != old.access:
        raise ReloadRefused(
            "[access] changed: that needs a restart (SIGHUP re-reads the policy and contexts "
            "files it names)")
    for table in _RESTART_TABLES:
        if getattr(new, table) != getattr(old, table):
            raise ReloadRefused(f"[{table}] changed: that needs a restart")
    realms = _new_realms(old, new)
    running = {x.endpoint: x for x in old.listeners}
    wanted = {x.endpoint: x for x in new.listeners}
    return Plan(
        config=new,
        added=tuple(x for e, x in wanted.items() if e not in running),
        changed=tuple(x for e, x in wanted.items() if e in running and running[e] != x),
        removed=tuple(e for e in running if e not in wanted),
        realms=realms,
        metrics=new.metrics != old.metrics,
    )


def _new_realms(old: Config, new: Config) -> tuple[RealmConfig, ...]:
    running = {r.name: r for r in old.realms}
    names = {r.name for r in new.realms}
    for name in running:
        if name not in names:
            raise ReloadRefused(f"realm {name} was removed: that needs a restart")
    added: list[RealmConfig] = []
    for index, realm in enumerate(new.realms):
        before = running.get(realm.name)
        if before is None:
            added.append(realm)
            continue
        changed = [f.name for f in fields(RealmConfig) if f.name not in _AUTH_KEYS
                   and getattr(before, f.name) != getattr(realm, f.name)]
        if changed:
            raise ReloadRefused(f"realms[{index}] ({realm.name}): {', '.join(changed)} changed: "
                                "a running realm's routing settings need a restart")
    if added and old.router.mode == "nameserver":
        raise ReloadRefused("a realm was added to a name server: that needs a restart")
    if added and old.federation is not None and not old.federation.realms:
        raise ReloadRefused("a realm was added while [federation] federates every realm: "
                            "that needs a restart (or list the federated realms)")
    return tuple(added)


class Reloader:
    """Runs reloads one at a time; SIGHUPs during a reload are served by one more after it
    (the file may have changed again since the one under way read it)."""

    def __init__(self, daemon: RouterDaemon) -> None:
        self.daemon = daemon
        self._busy = False
        self._waiting: list[defer.Deferred[bool]] = []

    def reload(self) -> defer.Deferred[bool]:
        """Reload now, or after the one under way; fires with True if applied."""
        d: defer.Deferred[bool] = defer.Deferred()
        if self._busy:
            self._waiting.append(d)
        else:
            self._run([d])
        return d

    def _run(self, waiters: list[defer.Deferred[bool]]) -> None:
        self._busy = True

        def done(applied: bool) -> None:
            for waiter in waiters:
                waiter.callback(applied)
            self._busy = False
            if self._waiting:
                more, self._waiting = self._waiting, []
                self._run(more)

        self._reload().addCallback(done)

    @defer.inlineCallbacks
    def _reload(self) -> Any:
        daemon = self.daemon
        if not daemon.running:
            log.info("reload ignored: the router is starting or stopping")
            return False
        daemon.notifier.reloading()
        source = daemon.config.source
        log.debug("reload: reading {source}", source=source)
        applied = False
        try:
            plan = plan_reload(daemon.config, _load(source))
            self._reload_policy()
            self._check_labels(plan)
            yield self._apply(plan)
        except ReloadRefused as e:
            log.error("reload refused, the running configuration stays: {reason}",
                      reason=str(e))
        except Exception:
            log.failure("reload failed; the running configuration stays")
        else:
            applied = True
            log.info("reloaded {source}: {summary}", source=source, summary=plan.summary())
        # the outcome is logged before systemd (and whoever waits on it) hears READY=1
        daemon.counters.reloads["applied" if applied else "refused"] += 1
        daemon.notifier.ready(status_line(daemon))
        return applied

    def _reload_policy(self) -> None:
        security = self.daemon.security
        if security is not None and not security.reload():
            raise ReloadRefused("the policy or the contexts file was refused (see above)")

    def _check_labels(self, plan: Plan) -> None:
        """New listeners' labels must be valid in the (re)loaded policy, as at start."""
        security = self.daemon.security
        manager = security.manager if security is not None else None
        if manager is None:
            return
        for listener in plan.added + plan.changed:
            if listener.label is not None and not manager.valid(listener.label):
                raise ReloadRefused(f"listener {listener.endpoint}: label {listener.label} is "
                                    "not valid in the policy")

    @defer.inlineCallbacks
    def _apply(self, plan: Plan) -> Any:
        daemon = self.daemon
        router = daemon.router
        previous_auth, router.auth = router.auth, policy_from_config(plan.config)
        opened: dict[str, Listening] = {}
        metrics_port = None
        try:
            for listener in plan.added:
                opened[listener.endpoint] = yield daemon.listen(listener)
            if plan.metrics:
                metrics_port = yield daemon.listen_metrics(plan.config)
        except Exception as e:
            router.auth = previous_auth
            yield _close([x.port for x in opened.values()])
            raise ReloadRefused(f"cannot listen: {e}") from e
        # committed from here on: nothing below refuses
        for realm in plan.realms:
            daemon.add_realm(realm)
        daemon.ports.update(opened)
        if plan.metrics:
            old_metrics, daemon.metrics_port = daemon.metrics_port, metrics_port
            yield _close([old_metrics] if old_metrics is not None else [])
        yield _close([daemon.ports.pop(endpoint).port for endpoint in plan.removed])
        for listener in plan.changed:
            yield self._reopen(listener)
        if daemon.set_log_level is not None and (
                plan.config.router.log_level != daemon.config.router.log_level):
            daemon.set_log_level(plan.config.router.log_level)
        daemon.config = plan.config

    @defer.inlineCallbacks
    def _reopen(self, listener: ListenerConfig) -> Any:
        """Close a listener and open it with its new settings (its connections stay)."""
        daemon = self.daemon
        old = daemon.ports.pop(listener.endpoint)
        yield _close([old.port])
        try:
            daemon.ports[listener.endpoint] = yield daemon.listen(listener)
        except Exception as e:
            log.error("listener {endpoint}: cannot reopen it with its new settings ({error}); "
                      "reopening it as it was", endpoint=listener.endpoint, error=str(e))
            try:
                daemon.ports[listener.endpoint] = yield daemon.listen(old.config)
            except Exception as again:
                log.error("listener {endpoint} stays closed: {error}",
                          endpoint=listener.endpoint, error=str(again))


def _load(source: str) -> Config:
    try:
        return _load_config(None if source == DEFAULT_SOURCE else source)
    except ConfigError as e:
        raise ReloadRefused(str(e)) from None


def _close(ports: list[Any]) -> defer.Deferred[Any]:
    return defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in ports],
                               consumeErrors=True)

