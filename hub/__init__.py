"""The hub's project package: wiring (settings, urls, Celery) and the core domain."""

from .celery import app as celery_app

__all__ = ["celery_app"]
