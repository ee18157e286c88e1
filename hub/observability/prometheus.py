"""The Prometheus endpoint `GET /metrics` (prometheus-client's text format) and the request figures.

Off unless HUB_METRICS_TOKEN is set (404, and no request is measured); then it answers only
`Authorization: Bearer <HUB_METRICS_TOKEN>` (401 without credentials, 403 with others).

Two kinds of figures, each correct with any number of gunicorn workers and Celery machines:
- Requests (`hub_http_request_duration_seconds`, a histogram by route pattern, method and status;
  its `_count` is the request count): each web process observes its own requests. With
  PROMETHEUS_MULTIPROC_DIR set (a directory shared by the web processes of one machine, emptied
  before they start) prometheus-client's multiprocess mode keeps them in files there and the
  scrape adds them up; without it, a scrape sees only the process that answered it.
- Everything else (inboxes, deliveries, integrations, rollups, Celery queues) is read from
  PostgreSQL and the broker when scraped (`figures.HubCollector`): the same answer from any
  process, nothing kept in memory.
"""

from __future__ import annotations

import hmac
import os
import time

from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
from django.http import HttpRequest, HttpResponse

# Methods a client may send are unbounded; anything else is counted as "other".
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED_ROUTE = "(unmatched)"

# prometheus-client turns multiprocess mode on when the variable exists, even empty (files in the
# working directory): an empty value (as in .env.example) means off.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR") == "":
    del os.environ["PROMETHEUS_MULTIPROC_DIR"]

_request_seconds = None


def request_histogram():
    """The request histogram of this process (made on first use, registered nowhere by default)."""
    global _request_seconds
    if _request_seconds is None:
        from prometheus_client import Histogram

        _request_seconds = Histogram(
            "hub_http_request_duration_seconds",
            "Requests by route pattern, method and status: time from the first middleware to the "
            "response (_count is the number of requests).",
            ["route", "method", "status"],
            buckets=_BUCKETS,
            registry=None,
        )
    return _request_seconds


def metrics_enabled() -> bool:
    return bool(settings.HUB_METRICS_TOKEN)


class RequestMetricsMiddleware:
    """Observe each request's duration under its route pattern (never its path), method and status.

    One histogram observation per request (two value increments); nothing at all when metrics are
    off. The route is the URL pattern that matched (`v1/usage_events`, `hooks/<str:token>`), so
    ids and tokens in paths never become labels.
    """

    def __init__(self, get_response) -> None:
        if not metrics_enabled():
            raise MiddlewareNotUsed
        self.get_response = get_response
        self.histogram = request_histogram()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        start = time.perf_counter()
        response = self.get_response(request)
        match = request.resolver_match
        method = request.method if request.method in _METHODS else "other"
        self.histogram.labels(
            match.route if match is not None else UNMATCHED_ROUTE, method, str(response.status_code)
        ).observe(time.perf_counter() - start)
        return response


def _registry():
    from prometheus_client import CollectorRegistry

    from .figures import HubCollector

    registry = CollectorRegistry(auto_describe=False)
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry, path=directory)
    else:
        from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR

        registry.register(request_histogram())
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            registry.register(collector)
    registry.register(HubCollector())
    return registry


def _auth_failure(request: HttpRequest) -> HttpResponse | None:
    token = settings.HUB_METRICS_TOKEN
    scheme, _, credentials = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        response = HttpResponse("Bearer token required.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if not hmac.compare_digest(credentials.strip().encode(), token.encode()):
        return HttpResponse("Forbidden.\n", status=403, content_type="text/plain")
    return None


def metrics_view(request: HttpRequest) -> HttpResponse:
    """The figures in Prometheus' text format; 404 when off, 401/403 without the right token."""
    if not metrics_enabled():
        return HttpResponse("Not found.\n", status=404, content_type="text/plain")
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405, headers={"Allow": "GET, HEAD"})
    failure = _auth_failure(request)
    if failure is not None:
        return failure
    from prometheus_client.exposition import choose_encoder

    encoder, content_type = choose_encoder(request.META.get("HTTP_ACCEPT", ""))
    response = HttpResponse(encoder(_registry()), content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response
