"""The Celery app `hub` (`celery -A hub worker`, `celery -A hub beat`)."""

import os

from celery import Celery

from hub.observability.request_id import celery_signals_connect

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")

app = Celery("hub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Request ids travel in task headers, from the publishing process into the worker's log records.
celery_signals_connect()
