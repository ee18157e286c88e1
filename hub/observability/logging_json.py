"""`LOG_FORMAT=json`: one JSON object per log line, for log shippers (Loki, Elasticsearch, Cloud
Logging...).

Fields: `time` (UTC, ISO 8601 with milliseconds), `level`, `logger`, `message`, `request_id`
(null outside a request or task), `process`, and, in a Celery worker while a task runs,
`task_id` and `task_name`; `exc_info` when the record has a traceback. Nothing else of the
record is written (extras may hold request objects or customer data). The redaction filter has
rewritten message and traceback before this formatter runs; both are redacted again here, so a
handler configured without the filter still writes no credential.
"""

from __future__ import annotations

import logging
import time

import orjson

from hub.log_redaction import redact


def _current_task() -> tuple[str | None, str | None]:
    from celery._state import get_current_task

    task = get_current_task()
    if task is None or task.request.called_directly:
        return None, None
    return task.request.id, task.name


class JsonFormatter(logging.Formatter):
    """Format a record as one line of JSON (see module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = int(record.created)
        entry: dict = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": getattr(record, "request_id", None),
            "process": record.process,
        }
        task_id, task_name = _current_task()
        if task_id is not None:
            entry["task_id"], entry["task_name"] = task_id, task_name
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc_info"] = redact(record.exc_text)
        if record.stack_info:
            entry["stack_info"] = redact(record.stack_info)
        return orjson.dumps(entry, default=str).decode()
