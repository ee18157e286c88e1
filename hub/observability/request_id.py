"""A request id per request, carried into the Celery tasks it enqueues and into every log record.

The web side: `RequestIdMiddleware` honours a sane incoming `X-Request-ID` (else makes one),
keeps it in a context variable for the request and echoes it in the response. Publishing a task
copies the current id into the message's headers (`hub_request_id`); a worker sets it while the
task runs, so the task's records and the tasks it enqueues in turn carry it too.
`RequestIdLogFilter` puts it on every record as `request_id`.
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid

from django.http import HttpRequest, HttpResponse

HEADER = "X-Request-ID"
TASK_HEADER = "hub_request_id"

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("hub_request_id", default=None)
# What a proxy or client may pass on: ids (UUIDs, hex, ULIDs, "Root=1-..." trace ids) of modest
# length and a quiet alphabet, so a header can neither forge log lines nor bloat every record.
_SANE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:=+/-]{0,127}")
# Pasted credentials are not ids (they would reach every log line): the hub's API keys and
# customer tokens (`hub_...`, or another HUB_API_KEY_PREFIX), sources' write keys and webhook tokens.
_CREDENTIAL = re.compile(r"hub_|(?<![A-Za-z0-9])w[kh]_")


def request_id_from_header(value: str | None) -> str:
    """The incoming id when it is sane and carries no credential, else a new random one."""
    if value and _SANE.fullmatch(value) and not _CREDENTIAL.search(value):
        from django.conf import settings

        if settings.HUB_API_KEY_PREFIX not in value:
            return value
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Give each request an id (see module docstring) and echo it as `X-Request-ID`.

    The id stays current until the response is closed (Django's `request_finished`), so Django's
    own request log lines, written after the middleware returns, carry it too.
    """

    def __init__(self, get_response) -> None:
        from django.core.signals import request_finished

        self.get_response = get_response
        request_finished.connect(_request_id_clear, dispatch_uid="hub_request_id_clear")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_from_header(request.META.get("HTTP_X_REQUEST_ID"))
        request.request_id = request_id
        _current.set(request_id)
        response = self.get_response(request)
        response[HEADER] = request_id
        return response


def _request_id_clear(**kwargs) -> None:
    _current.set(None)


class RequestIdLogFilter(logging.Filter):
    """Set `record.request_id` to the current id (None outside a request or task); drops nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _current.get()
        return True


# --- Celery ---------------------------------------------------------------------------------------
# Signal receivers, not domain flow: they move an id between a publisher and a worker.

_task_tokens: dict[str, contextvars.Token] = {}


def _on_publish(headers: dict | None = None, **kwargs) -> None:
    request_id = _current.get()
    if request_id is not None and headers is not None and TASK_HEADER not in headers:
        headers[TASK_HEADER] = request_id


def _on_task_start(task_id: str | None = None, task=None, **kwargs) -> None:
    request_id = getattr(task.request, TASK_HEADER, None) if task is not None else None
    if not (isinstance(request_id, str) and _SANE.fullmatch(request_id)):
        request_id = _current.get()  # run eagerly, inside the request: keep its id
    _task_tokens[task_id] = _current.set(request_id)


def _on_task_end(task_id: str | None = None, **kwargs) -> None:
    token = _task_tokens.pop(task_id, None)
    if token is not None:
        try:
            _current.reset(token)
        except ValueError:  # set in another context (a thread pool's other thread): just clear
            _current.set(None)


def celery_signals_connect() -> None:
    """Carry request ids through Celery: in the publishing process and in the worker."""
    from celery import signals

    signals.before_task_publish.connect(_on_publish, weak=False, dispatch_uid="hub_request_id_publish")
    signals.task_prerun.connect(_on_task_start, weak=False, dispatch_uid="hub_request_id_prerun")
    signals.task_postrun.connect(_on_task_end, weak=False, dispatch_uid="hub_request_id_postrun")
