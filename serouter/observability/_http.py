"""The metrics page: Prometheus' text format over plain HTTP, rendered on the reactor thread.

A scrape reads counters the reactor thread writes, so it runs on that thread too: no WSGI
thread pool, no lock. Bind it to loopback (or a Unix socket): it names realms and listeners.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry
from twisted.web.http import Request as HttpRequest
from twisted.web.resource import Resource
from twisted.web.server import Request, Site


class MetricsResource(Resource):
    """``GET <path>``: every metric of ``registry``; any other path: 404."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry, path: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.registry = registry
        self.path = path.encode()

    def render_GET(self, request: Request) -> bytes:
        if request.path != self.path:
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")  # type: ignore[no-untyped-call]
            return b"not found: metrics are at " + self.path + b"\n"
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())  # type: ignore[no-untyped-call]
        return generate_latest(self.registry)


class _QuietSite(Site):
    """A Site that writes no access log: a line per scrape would drown the router's log."""

    noisy = False

    def log(self, request: HttpRequest) -> None:
        pass


def metrics_site(registry: CollectorRegistry, path: str = "/metrics") -> Site:
    """The protocol factory to listen with on the configured metrics endpoint."""
    return _QuietSite(MetricsResource(registry, path))  # type: ignore[no-untyped-call]
