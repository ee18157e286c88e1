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

Patience is per destination. A request to a destination known to be slow (its circuit is open, so
the request is a probe; or a request to it outlasted its patience in this process within the
last SLOW_MEMORY seconds) lets its task go the moment it starts (`request_watch`); any other
request keeps its task at most a few times the destination's usual answer time
(`patience_for`). A destination that starts to hang therefore holds a worker process for tens of
milliseconds, once per process, and never again while it stays slow.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger(__name__)

# Threads per process. Each in-flight request holds a slot of its destination, so this is reached
# only with more than about ten destinations hanging at once; past it, sends queue in the process.
MAX_THREADS = 32

# Seconds a destination stays "slow" in a process after a request to it outlasted its patience
# (a timeout does); a quicker answer clears it at once.
SLOW_MEMORY = 60.0
# A destination's own patience: this many times its usual answer time (a moving average of this
# process's requests to it), at least MIN_PATIENCE, at most HUB_DELIVERY_PATIENCE (also the
# patience for one not asked yet). A destination that answers in 5 ms and starts to hang holds
# a task 50 ms, not half a second.
PATIENCE_FACTOR = 4.0
MIN_PATIENCE = 0.05
# How often a waiting task looks whether its job's request has outlasted its destination's patience.
_POLL = 0.01

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
# integration id -> time.monotonic() until which its requests do not keep their task waiting
_slow: dict[int, float] = {}
# integration id -> moving average of its answer time in this process (seconds)
_answer_time: dict[int, float] = {}
_local = threading.local()


class _Job:
    """One job handed to a send thread: `released` lets its task go; `requesting` is the
    integration its thread is waiting on right now, if any, and `impatient_at` when its task stops
    waiting for that request."""

    __slots__ = ("impatient_at", "released", "requesting")

    def __init__(self) -> None:
        self.released = threading.Event()
        self.requesting: int | None = None
        self.impatient_at: float | None = None


def _reset() -> None:
    # A forked child (a Celery worker process) has none of its parent's threads.
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()
    _slow.clear()
    _answer_time.clear()


os.register_at_fork(after_in_child=_reset)


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=MAX_THREADS, thread_name_prefix="send")
        return _pool


def _run(job: Callable[[], Any], handle: _Job) -> Any:
    # Each thread keeps its own connection between jobs, as a request would (CONN_MAX_AGE).
    _local.job = handle
    close_old_connections()
    try:
        return job()
    finally:
        _local.job = None
        close_old_connections()


def is_slow(integration_id: int) -> bool:
    """Whether a request to this integration outlasted its patience (a timeout does) in this
    process within the last SLOW_MEMORY seconds."""
    until = _slow.get(integration_id)
    return until is not None and until > time.monotonic()


def _mark_slow(integration_id: int) -> None:
    _slow[integration_id] = time.monotonic() + SLOW_MEMORY


def patience_for(integration_id: int) -> float:
    """How long a task waits for a request to this integration (see PATIENCE_FACTOR)."""
    most = settings.HUB_DELIVERY_PATIENCE
    usual = _answer_time.get(integration_id)
    if usual is None:
        return most
    return min(most, max(MIN_PATIENCE, PATIENCE_FACTOR * usual))


@contextmanager
def request_watch(integration_id: int, *, probe: bool = False) -> Iterator[None]:
    """Wrap one request to an integration: when it is known to be slow (or `probe`: its circuit
    is open), the task waiting for this send thread's job stops waiting now, and otherwise once the
    request outlasts the integration's patience (`patience_for`); the job goes on either way.
    A request that outlasts it marks the integration slow in this process; a quicker one clears
    the mark. Outside a send thread it only keeps the record."""
    handle: _Job | None = getattr(_local, "job", None)
    if handle is not None and (probe or is_slow(integration_id)):
        handle.released.set()
    patience = patience_for(integration_id)
    started = time.monotonic()
    if handle is not None:
        handle.impatient_at = started + patience
        handle.requesting = integration_id
    try:
        yield
    finally:
        if handle is not None:
            handle.requesting = handle.impatient_at = None
        took = time.monotonic() - started
        usual = _answer_time.get(integration_id)
        _answer_time[integration_id] = took if usual is None else 0.8 * usual + 0.2 * took
        if took > patience:
            _mark_slow(integration_id)
        else:
            _slow.pop(integration_id, None)


def _wait(handle: _Job, deadline: float) -> None:
    # Until the job is done or lets its task go, the task's patience is over, or the request the
    # job is waiting on has outlasted its destination's patience.
    while not handle.released.is_set():
        until = deadline
        impatient_at = handle.impatient_at
        if impatient_at is not None:
            until = min(until, impatient_at)
        left = until - time.monotonic()
        if left <= 0:
            return
        # A request may start while the task waits: look again every _POLL seconds.
        handle.released.wait(min(left, _POLL))


def run_patiently(jobs: list[Callable[[], Any]], *, patience: float | None = None) -> list[Any]:
    """Run each job in a send thread of this process and wait for them at most `patience` seconds
    (HUB_DELIVERY_PATIENCE), no longer than its destination's own patience for a request a job is
    making, and not at all once a job sends to a destination known to be slow (`request_watch`);
    return their results, None for a job still running (it goes on in its thread and must do its
    own follow-up). A job's exception is raised here when it is done in time, and logged by its
    thread otherwise."""
    if not jobs:
        return []
    patience = settings.HUB_DELIVERY_PATIENCE if patience is None else patience
    pool = _executor()
    handles = [_Job() for _ in jobs]
    # Each job runs in a copy of the task's context: its log records carry the task's request id.
    futures: list[Future] = []
    for job, handle in zip(jobs, handles, strict=True):
        future = pool.submit(contextvars.copy_context().run, _run, job, handle)
        future.add_done_callback(lambda _f, event=handle.released: event.set())
        futures.append(future)
    deadline = time.monotonic() + patience
    for handle in handles:
        _wait(handle, deadline)
    results = []
    for future, handle in zip(futures, handles, strict=True):
        if future.done():
            results.append(future.result())
            continue
        requesting = handle.requesting
        if requesting is not None and not handle.released.is_set():
            # Out of patience with a request in flight: the next request to this destination
            # in this process lets its task go at once.
            _mark_slow(requesting)
        future.add_done_callback(_log_failure)
        results.append(None)
    return results


def _log_failure(future: Future) -> None:
    exc = future.exception()
    if exc is not None:
        logger.error("a send left to its thread failed", exc_info=exc)
