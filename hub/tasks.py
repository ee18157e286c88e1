"""Core tasks."""

from celery import shared_task


@shared_task(name="hub.ping")
def ping(value: str) -> str:
    """Echo `value`: proves a worker is consuming the broker (used by tests and readiness)."""
    return f"pong:{value}"
