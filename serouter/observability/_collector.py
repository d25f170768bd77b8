"""Metric families built at scrape time from the counters and the router's own state.

Nothing here runs per message: a scrape walks realms, listeners and federation links once.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import accumulate
from typing import Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import CollectorRegistry
from prometheus_client.utils import floatToGoString

from serouter import __version__
from serouter.config import Config
from serouter.core.access import Action
from serouter.core.router import Router
from serouter.federation import Federation, NameServerService
from serouter.observability._counters import LATENCY_BOUNDS, SAMPLE_EVERY, Counters, message_name


class MetricsSource(Protocol):
    """What the collector reads: the daemon (serouter.service.RouterDaemon)."""

    config: Config
    router: Router
    counters: Counters
    federation: Federation | NameServerService | None

    def listener_connections(self) -> dict[str, int]:
        """Open connections per listening endpoint."""


def _permission(action: Action) -> tuple[str, str]:
    """The SELinux class and permission of an action (docs/selinux.md)."""
    return ("wamp_realm" if action is Action.JOIN else "wamp_uri"), action.value


class RouterCollector:
    """A prometheus_client collector over one daemon."""

    def __init__(self, source: MetricsSource) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        source = self.source
        yield InfoMetricFamily("serouter", "the router's version and mode",
                               value={"version": __version__, "mode": source.config.router.mode})
        yield from self._sessions(source)
        yield from self._messages(source.counters)
        yield from self._access(source.counters)
        yield self._latency(source.counters)
        reloads = CounterMetricFamily("serouter_reloads", "SIGHUP reloads, by outcome",
                                      labels=["result"])
        for result, count in source.counters.reloads.items():
            reloads.add_metric([result], count)
        yield reloads
        yield from _federation(source.federation)

    @staticmethod
    def _sessions(source: MetricsSource) -> Iterator[Metric]:
        sessions = GaugeMetricFamily("serouter_sessions", "sessions joined, per realm",
                                     labels=["realm"])
        for name, realm in sorted(source.router.realms.items()):
            sessions.add_metric([name], len(realm.sessions))
        yield sessions
        connections = GaugeMetricFamily("serouter_connections", "open connections, per listener",
                                        labels=["listener"])
        for endpoint, count in sorted(source.listener_connections().items()):
            connections.add_metric([endpoint], count)
        yield connections

    @staticmethod
    def _messages(counters: Counters) -> Iterator[Metric]:
        for direction, counts in (("received", counters.received), ("sent", counters.sent)):
            family = CounterMetricFamily(f"serouter_messages_{direction}",
                                         f"WAMP messages {direction}, by type", labels=["type"])
            for code, count in enumerate(counts):
                if count:
                    family.add_metric([message_name(code)], count)
            yield family

    @staticmethod
    def _access(counters: Counters) -> Iterator[Metric]:
        for name, text, counts in (
            ("serouter_access_denials", "actions the access control refused", counters.denied),
            ("serouter_access_check_failures", "access checks that could not be made "
             "(answered wamp.error.authorization_failed)", counters.failed),
        ):
            family = CounterMetricFamily(name, text, labels=["class", "perm"])
            for action, count in counts.items():
                family.add_metric(list(_permission(action)), count)
            yield family

    @staticmethod
    def _latency(counters: Counters) -> Metric:
        cumulative = list(accumulate(counters.latency))
        buckets = [(_bound(b), float(n)) for b, n in zip(LATENCY_BOUNDS, cumulative, strict=False)]
        buckets.append(("+Inf", float(cumulative[-1])))
        return HistogramMetricFamily(
            "serouter_call_latency_seconds",
            f"time from a CALL received to its first RESULT or ERROR sent (one call in "
            f"{SAMPLE_EVERY} is timed)",
            buckets=buckets, sum_value=counters.latency_sum,
        )


def _bound(seconds: float) -> str:
    # the form prometheus_client gives its own "le" labels
    return str(floatToGoString(seconds))  # type: ignore[no-untyped-call]


def _federation(federation: Federation | NameServerService | None) -> Iterator[Metric]:
    if isinstance(federation, Federation):
        connected = GaugeMetricFamily(
            "serouter_federation_nameserver_connected",
            "1 while this realm's proxy has a session with the name server", labels=["realm"])
        remotes = GaugeMetricFamily(
            "serouter_federation_remote_routers",
            "connections to other routers, per realm", labels=["realm"])
        lookups = CounterMetricFamily(
            "serouter_federation_lookups", "lookups sent to the name server, per realm",
            labels=["realm"])
        for realm, link in sorted(federation.links.items()):
            connected.add_metric([realm], 1 if link.connected else 0)
            count = getattr(link, "lookups", None)  # counted where the link exposes it
            if isinstance(count, int):
                lookups.add_metric([realm], count)
        for realm, pool in sorted(federation.pools.items()):
            remotes.add_metric([realm], len(pool.endpoints))
        yield from (connected, remotes, lookups)
    elif isinstance(federation, NameServerService) and federation.nameserver is not None:
        routers = GaugeMetricFamily(
            "serouter_nameserver_routers", "routers with a session, per realm", labels=["realm"])
        entries = GaugeMetricFamily(
            "serouter_nameserver_entries", "announced procedures and topics, per realm",
            labels=["realm"])
        for realm, service in sorted(federation.nameserver.services.items()):
            routers.add_metric([realm], len(service.index.providers))
            entries.add_metric([realm], sum(1 for _ in service.index.entries()))
        yield from (routers, entries)


def metrics_registry(source: MetricsSource) -> CollectorRegistry:
    """A registry of its own (no global state): the router's metrics and the process's."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RouterCollector(source))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def status_line(source: MetricsSource) -> str:
    """The one line systemd shows in ``systemctl status`` (STATUS=)."""
    realms = source.router.realms
    sessions = sum(len(realm.sessions) for realm in realms.values())
    listeners = len(source.listener_connections())
    line = f"{sessions} sessions in {len(realms)} realms, {listeners} listeners"
    federation = source.federation
    if isinstance(federation, Federation) and federation.links:
        up = sum(1 for link in federation.links.values() if link.connected)
        remotes = sum(len(pool.endpoints) for pool in federation.pools.values())
        line += (f"; name server connected in {up} of {len(federation.links)} realms, "
                 f"{remotes} remote routers")
    elif isinstance(federation, NameServerService) and federation.nameserver is not None:
        routers = sum(len(s.index.providers) for s in federation.nameserver.services.values())
        line += f"; name server for {routers} routers"
    return line
