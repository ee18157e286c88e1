"""One request of the delivery engine: posted through the SSRF guard (`integrations.outbound`),
and its answer turned into an `Attempt` as the delivery log shows it (credentials masked, request
and response excerpts, the connector's verdict: delivered, retry or failed, and whether the
destination needs attention)."""

from __future__ import annotations

import email.utils
from dataclasses import dataclass

import requests
from django.conf import settings
from django.utils import timezone

from . import outbound, send_threads
from .connectors import connector_for
from .models import Attempt, Integration

REQUEST_EXCERPT_BYTES = 4096


RESPONSE_EXCERPT_BYTES = 2048


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - timezone.now()).total_seconds())


def excerpt(raw: bytes, limit: int) -> str:
    text = raw[:limit].decode("utf-8", errors="replace")
    return text + ("…" if len(raw) > limit else "")


_SECRET_HEADERS = {"authorization", "x-mantle-app-api-key", "kable-client-secret", "x-api-key"}


def shown_headers(request) -> dict[str, str]:
    """The request's headers as the log shows them: credentials masked."""
    shown = {k: ("••••" if k.lower() in _SECRET_HEADERS else v) for k, v in request.headers.items()}
    if request.auth is not None:
        shown["Authorization"] = "Basic •••• (the write key)"
    return shown


@dataclass
class Outcome:
    attempt: Attempt
    retry_after: float | None = None
    attention: str = ""


def request_post(integration: Integration, request) -> Outcome:
    connector = connector_for(integration.kind)
    attempt = Attempt(
        integration_id=integration.pk,
        created_at=timezone.now(),
        url=connector.redact(integration, request.url)[:300],
        request_bytes=len(request.body),
        request_headers=shown_headers(request),
        request_excerpt=excerpt(request.body, REQUEST_EXCERPT_BYTES),
    )
    out = Outcome(attempt)
    # A request to a destination whose circuit is open (a probe), or that was slow in this process
    # lately, does not keep its worker task waiting (`send_threads`).
    watch = send_threads.request_watch(integration.pk, probe=integration.outage_since is not None)
    try:
        with watch:
            response = outbound.post(
                request.url,
                data=request.body,
                headers=request.headers,
                auth=request.auth,
                timeout=settings.HUB_DELIVERY_TIMEOUT,
            )
    except outbound.OutboundRefused as exc:
        attempt.outcome, attempt.error = (
            Attempt.Outcome.FAILED,
            connector.redact(integration, f"refused: {exc}"),
        )
        out.attention = connector.redact(integration, f"The destination was refused: {exc}")
        return out
    except requests.Timeout as exc:
        attempt.outcome, attempt.error = (
            Attempt.Outcome.RETRY,
            connector.redact(integration, f"timeout: {exc}"),
        )
        return out
    except requests.RequestException as exc:
        attempt.outcome, attempt.error = (
            Attempt.Outcome.RETRY,
            connector.redact(integration, f"connection error: {exc}"),
        )
        return out
    attempt.status_code = response.status_code
    attempt.latency_ms = response.latency_ms
    attempt.response_excerpt = excerpt(response.body, RESPONSE_EXCERPT_BYTES)
    attempt.outcome = connector.classify(response.status_code, response.body)
    if 300 <= response.status_code < 400:
        attempt.error = f"redirect to {response.headers.get('Location', '?')} not followed"
    elif response.status_code == 429:
        out.retry_after = retry_after_seconds(response.headers.get("Retry-After"))
    if connector.needs_attention(response.status_code):
        out.attention = f"The destination answered {response.status_code}: check the credentials."
    return out


def error_text(attempt: Attempt) -> str:
    return attempt.error or f"HTTP {attempt.status_code}: {attempt.response_excerpt[:200]}"
