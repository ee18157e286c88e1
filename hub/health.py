"""Liveness and readiness probes."""

from __future__ import annotations

from django.db import connection
from django.http import JsonResponse


def healthz(request):
    """The process is up."""
    return JsonResponse({"status": "ok"})


def _database_ok() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure means not ready; the reason is reported
        return type(exc).__name__
    return None


def _broker_ok() -> str | None:
    from hub.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:  # any failure means not ready; the reason is reported
        return type(exc).__name__
    return None


def readyz(request):
    """Database and broker reachable: 200, else 503 naming what failed."""
    checks = {"database": _database_ok(), "broker": _broker_ok()}
    ready = all(v is None for v in checks.values())
    body = {
        "status": "ok" if ready else "unavailable",
        "checks": {k: ("ok" if v is None else f"error: {v}") for k, v in checks.items()},
    }
    return JsonResponse(body, status=200 if ready else 503)
