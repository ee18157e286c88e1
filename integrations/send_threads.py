"""Sends in background threads of the process: a destination that hangs holds threads, not the
worker process that serves every destination.

A task hands its sends to `run_patiently`: they run in this process's send threads, and the task
waits for them at most HUB_DELIVERY_PATIENCE seconds. A healthy destination answers well within
it, and the task ends as if it had sent itself; a send that takes longer goes on in its thread,
which holds what the task would have held (the claimed rows, the request slot, the transaction:
all on the thread's own database connection) and records the outcome itself, while the process
serves the next task. What bounds the threads is per destination: each send holds one of its
HUB_DELIVERY_MAX_IN_FLIGHT request slots, or its one probe slot, whichever process sends.

Durability is that of the send itself: an outcome is recorded in the transaction that claimed the
rows, and a process that dies rolls its threads' transactions back, so the rows are claimed again
and sent under the same message ids.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from typing import Any

from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger(__name__)

# Threads per process. Each in-flight request holds a slot of its destination, so this is reached
# only with more than about ten destinations hanging at once; past it, sends queue in the process.
MAX_THREADS = 32

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _reset() -> None:
    # A forked child (a Celery worker process) has none of its parent's threads.
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_reset)


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=MAX_THREADS, thread_name_prefix="send")
        return _pool


def _run(job: Callable[[], Any]) -> Any:
    # Each thread keeps its own connection between jobs, as a request would (CONN_MAX_AGE).
    close_old_connections()
    try:
        return job()
    finally:
        close_old_connections()


def run_patiently(jobs: list[Callable[[], Any]], *, patience: float | None = None) -> list[Any]:
    """Run each job in a send thread of this process and wait for them at most `patience` seconds
    (HUB_DELIVERY_PATIENCE); return their results, None for a job still running (it goes on in its
    thread and must do its own follow-up). A job's exception is raised here when it is done in time,
    and logged by its thread otherwise."""
    if not jobs:
        return []
    patience = settings.HUB_DELIVERY_PATIENCE if patience is None else patience
    pool = _executor()
    # Each job runs in a copy of the task's context: its log records carry the task's request id.
    futures: list[Future] = [pool.submit(contextvars.copy_context().run, _run, job) for job in jobs]
    done, _ = futures_wait(futures, timeout=patience)
    for future in futures:
        if future not in done:
            future.add_done_callback(_log_failure)
    return [future.result() if future in done else None for future in futures]


def _log_failure(future: Future) -> None:
    exc = future.exception()
    if exc is not None:
        logger.error("a send left to its thread failed", exc_info=exc)
