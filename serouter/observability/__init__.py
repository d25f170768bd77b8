"""What an operator watches: Prometheus metrics, structured logs, the systemd status line.

The router's hot path only adds to plain ints (``Counters``, kept by the transports and the
access check); ``RouterCollector`` turns them, and the state the router keeps anyway (sessions,
connections, federation links), into metric families when a scrape asks, so no message ever
pays for a lock. ``metrics_site`` serves them on a local HTTP endpoint; ``log_observer`` writes
the log as text or as one JSON object per line. Nothing here may change what the router does.
"""

from serouter.observability._collector import (
    MetricsSource,
    RouterCollector,
    metrics_registry,
    status_line,
)
from serouter.observability._counters import (
    LATENCY_BOUNDS,
    SAMPLE_EVERY,
    Counters,
    CountingAccess,
    message_name,
)
from serouter.observability._http import metrics_site
from serouter.observability._logs import LOG_FORMATS, json_observer, log_observer

__all__ = [
    "LATENCY_BOUNDS",
    "LOG_FORMATS",
    "SAMPLE_EVERY",
    "Counters",
    "CountingAccess",
    "MetricsSource",
    "RouterCollector",
    "json_observer",
    "log_observer",
    "message_name",
    "metrics_registry",
    "metrics_site",
    "status_line",
]
