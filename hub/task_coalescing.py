"""Coalesced task sends: a hot path asks for a Celery task after each commit, and the process sends
it at most once per short window, with the union of what was asked for meanwhile.

Sending a task costs a broker round trip and kombu's bookkeeping (a sizeable share of a request
that stores a batch); the work itself is found in PostgreSQL, so one send covers every commit of
the window. A process that dies inside the window loses its send: each such task has a periodic
sweep as the backstop.

The sends of a process run on one thread of its own, started on the first ask and kept: a thread
per window cost the web process about 1.7 ms of CPU per send (the thread, and Celery's result
backend and producer, which are made once per thread), against about 0.4 ms on a thread that has
them already. It sends one task at a time: a broker that hangs (rather than refusing connections)
holds the process's later sends for its connection timeout each, and the sweeps stay the backstop.
"""

from __future__ import annotations

import contextvars
import functools
import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

# What a task is asked for: ids or keys, sent sorted, so of one comparable kind per task.
Item = TypeVar("Item", int, str)


class _Sender:
    """The thread of a process that runs each coalesced send when its window ends."""

    def __init__(self) -> None:
        self._reset()
        # A forked child has no thread of its parent's, nor its parent's pending sends.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._ready = threading.Condition()
        self._due: list[tuple[float, int, Callable[[], object]]] = []
        self._order = itertools.count()  # equal times: first asked, first sent
        self._thread: threading.Thread | None = None

    def after(self, seconds: float, send: Callable[[], object]) -> None:
        """Run `send` on the thread in `seconds`."""
        with self._ready:
            heapq.heappush(self._due, (time.monotonic() + seconds, next(self._order), send))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="coalesced-sends", daemon=True)
                self._thread.start()
            self._ready.notify()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._ready.wait(self._due[0][0] - time.monotonic() if self._due else None)
                _, _, send = heapq.heappop(self._due)
            try:
                send()
            except Exception:  # the thread serves every task of the process: it must go on
                logger.exception("a coalesced task send failed")


_sender = _Sender()


class CoalescedTask(Generic[Item]):
    """Call it (after commit) to have `task_name` sent within `seconds`; with `item`s, the task gets
    their sorted list as its one argument (one task per `chunk` items, when `chunk` is given).

    With `busy_items`, a process whose last window gathered items at the rate of at least
    `busy_items` per `seconds` waits `busy_seconds` instead: under a high rate, fewer and larger
    tasks (a task costs the workers some milliseconds whatever it carries), for a longer wait that
    only such a rate pays. The rate, not the count: a longer window gathers more at the same rate,
    and counting would keep a process in the long window at any rate above `busy_items` per
    `busy_seconds` once one short window had been busy.

    With `backlog_above`, a window that gathers more items than that is a backlog: one task with
    `backlog_args()` as its arguments, which finds its work itself (oldest first) and spreads it
    over the workers, instead of one task per `chunk` of ids. It is sent as soon as the window has
    that many, not at the window's end: a transaction that recorded thousands (an import) has its
    fan-out started while its on-commit hooks are still asking, and one send rather than one per
    worker, because a process busy in such a loop gives the sending thread the GIL back only
    every switch interval (5 ms) after each of its broker round trips (bench.segment_delivery:
    the fourth of four sends went out 0.22 s after the first). The window's end then sends only
    what came after the backlog, if anything.
    """

    def __init__(
        self,
        task_name: str,
        *,
        seconds: float = 0.05,
        chunk: int | None = None,
        busy_items: int | None = None,
        busy_seconds: float | None = None,
        backlog_above: int | None = None,
        backlog_args: Callable[[], list] = list,
    ) -> None:
        self.task_name = task_name
        self.seconds = seconds
        self.chunk = chunk
        self.busy_items = busy_items
        self.busy_seconds = busy_seconds if busy_seconds is not None else seconds
        self.backlog_above = backlog_above
        self.backlog_args = backlog_args
        self._reset()
        # A forked child (a web or Celery worker process) has no window open of its parent's.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._items: set[Item] = set()
        self._scheduled = False
        self._backlog_sent = 0  # items of the open window that went early, as a backlog
        self._not_kept = 0  # items of the open window past a second backlog's worth
        self._last_sent = 0
        self._window = self._last_window = self.seconds
        self._lock = threading.Lock()

    def window(self) -> float:
        """Seconds the next window waits: longer after a busy one (`busy_items`)."""
        # items / last window >= busy_items / seconds, without a division
        if self.busy_items is not None and (
            self._last_sent * self.seconds >= self.busy_items * self._last_window
        ):
            return self.busy_seconds
        return self.seconds

    def __call__(self, item: Item | None = None) -> None:
        with self._lock:
            # After a backlog went early, once more than `backlog_above` gathered again the
            # window's end sends another backlog, whose tasks find their items themselves: those
            # are not kept (an import of millions in one window holds a few thousand ids, not all).
            if item is not None:
                above = self.backlog_above
                if self._backlog_sent and above is not None and len(self._items) > above:
                    self._not_kept += 1  # counted for the busy window
                else:
                    self._items.add(item)
            if self._scheduled:
                if self.backlog_above is None or self._backlog_sent or len(self._items) <= self.backlog_above:
                    return
                self._backlog_sent = len(self._items)
                self._items.clear()  # the backlog's task finds them in the database
                window = None
            else:
                self._scheduled = True
                window = self._window = self.window()
        if window is None:  # this window's backlog, now (its end sends what comes after it)
            send = functools.partial(self._send_all, [self.backlog_args()])
            _sender.after(0, functools.partial(contextvars.copy_context().run, send))
            return
        # The send runs in the context of the first ask of its window: the task carries that
        # request's id (hub.observability.request_id).
        _sender.after(window, functools.partial(contextvars.copy_context().run, self.send))

    def send(self) -> None:
        """Send the task now with what was asked for (the sender's thread calls it)."""
        with self._lock:
            if not self._scheduled:  # sent already (a window's timer after an early `send()`)
                return
            gathered, self._items = self._items, set()
            self._scheduled = False
            early, self._backlog_sent = self._backlog_sent, 0
            not_kept, self._not_kept = self._not_kept, 0
            self._last_sent, self._last_window = early + len(gathered) + not_kept, self._window
        if early and not gathered:
            return  # everything went with the backlog
        if self.backlog_above is not None and len(gathered) > self.backlog_above:
            self._send_all([self.backlog_args()])  # its tasks find the items: not sorted here
            return
        items = sorted(gathered)
        size = self.chunk or len(items) or 1
        self._send_all([[items[i : i + size]] for i in range(0, len(items), size)] or [[]])

    def _send_all(self, sends: list[list]) -> None:
        from kombu.exceptions import OperationalError

        from hub.celery import app as celery_app

        for args in sends:
            try:
                # No result is wanted: Redis's result backend would subscribe to one on every send.
                celery_app.send_task(self.task_name, args=args, retry=False, ignore_result=True)
            except OperationalError as exc:
                logger.warning("broker unavailable, %s left for the sweep: %s", self.task_name, exc)
