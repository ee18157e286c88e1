"""Coalesced task sends (hub.task_coalescing), as the lifecycle's fan-out uses them."""

from __future__ import annotations

import contextvars
import json
import os
import select
import threading
import time

import pytest

from hub.celery import app as celery_app
from hub.services import lifecycle
from hub.task_coalescing import CoalescedTask

_CONTEXT: contextvars.ContextVar[str | None] = contextvars.ContextVar("test_context", default=None)


@pytest.fixture
def sent(monkeypatch):
    """The tasks sent to the broker, as (name, args) pairs, instead of sending them."""
    calls: list[tuple[str, list]] = []
    monkeypatch.setattr(celery_app, "send_task", lambda name, args, **_: calls.append((name, args)))
    return calls


def _wait_for(calls: list, timeout: float = 2.0, count: int = 1) -> None:
    deadline = time.monotonic() + timeout
    while len(calls) < count and time.monotonic() < deadline:
        time.sleep(0.005)


def test_asks_within_a_window_are_sent_once_with_all_their_items(sent):
    task = CoalescedTask("tests.task", seconds=0.05)
    for item in ("b", "a", "b"):
        task(item)
    _wait_for(sent)
    time.sleep(0.1)  # a second send of the same window would have come by now
    assert sent == [("tests.task", [["a", "b"]])]


def test_a_process_whose_last_send_was_busy_waits_the_longer_window_then_the_short_one_again(sent):
    task = CoalescedTask("tests.task", seconds=0.05, busy_items=3, busy_seconds=0.5)

    def window_of(*items: str) -> float:
        with task._lock:  # a window open already: no timer of its own in this test
            task._scheduled = True
        for item in items:
            task(item)
        task.send()
        return task.window()

    assert task.window() == 0.05
    assert window_of("a", "b") == 0.05  # two items: not busy
    assert window_of("a", "b", "c") == 0.5
    assert window_of("d") == 0.05
    assert [args for _, args in sent] == [[["a", "b"]], [["a", "b", "c"]], [["d"]]]


def test_a_long_window_at_a_moderate_rate_is_followed_by_the_short_one(sent):
    """Busy is a rate: 3 items in a 0.05 s window are 60/s, 3 in a 0.5 s window 6/s. A process at
    a moderate rate that had one busy window goes back to the short one (counting items kept it in
    the long window for good: at 200 activities/s, 20 in every 0.1 s window, every one of them
    waited 100 ms)."""
    task = CoalescedTask("tests.task", seconds=0.05, busy_items=3, busy_seconds=0.5)
    with task._lock:  # a window open already: no timer of its own in this test
        task._scheduled, task._window = True, 0.05
    for item in ("a", "b", "c"):
        task(item)
    task.send()
    assert task.window() == 0.5
    with task._lock:  # the next window, the long one, at a moderate rate
        task._scheduled, task._window = True, task.window()
    for item in ("d", "e", "f", "g"):
        task(item)
    task.send()
    assert task.window() == 0.05
    with task._lock:  # and a long one at a high rate stays long
        task._scheduled, task._window = True, 0.5
    for i in range(30):
        task(f"h{i:02}")
    task.send()
    assert task.window() == 0.5


def test_lifecycle_fanout_sends_at_most_a_thousand_activity_ids_per_task(sent):
    with lifecycle.fanout_soon._lock:  # a window open already: no timer of its own in this test
        lifecycle.fanout_soon._scheduled = True
    try:
        for i in range(2500):
            lifecycle.fanout_soon(f"{i:05}")
        lifecycle.fanout_soon.send()
    finally:
        lifecycle.fanout_soon._reset()
    assert [name for name, _ in sent] == [lifecycle.FANOUT_TASK] * 3
    assert [len(args[0]) for _, args in sent] == [1000, 1000, 500]
    assert sorted(i for _, args in sent for i in args[0]) == [f"{i:05}" for i in range(2500)]


def test_a_lifecycle_window_of_more_than_a_chunk_is_sent_as_one_spreading_backlog_fanout(sent, settings):
    """An import's thousands of activities in one window: one fan-out without ids that starts
    HUB_DELIVERY_PARALLEL of them (each claims the oldest chunk by chunk), not a task per 1,000
    ids; what the window gathers after it goes at the window's end, with its ids."""
    settings.HUB_DELIVERY_PARALLEL = 3
    fanout = lifecycle.fanout_soon
    try:
        with fanout._lock:  # a window open already: no timer of its own in this test
            fanout._scheduled = True
        for i in range(2501):
            fanout(f"{i:05}")
        _wait_for(sent)
        assert sent == [(lifecycle.FANOUT_TASK, [None, 3])]  # before the window's end
        fanout("later")
        fanout.send()  # the window's end
        assert sent[1:] == [(lifecycle.FANOUT_TASK, [["later"]])]
        with fanout._lock:  # the next window: nothing after its backlog, so nothing at its end
            fanout._scheduled = True
        for i in range(2501):
            fanout(f"next-{i:05}")
        _wait_for(sent, count=3)
        assert sent[2:] == [(lifecycle.FANOUT_TASK, [None, 3])]  # before the window's end
        fanout.send()
        time.sleep(0.05)
    finally:
        lifecycle.fanout_soon._reset()
    assert sent[2:] == [(lifecycle.FANOUT_TASK, [None, 3])]


def test_the_backlog_goes_at_once_not_at_the_windows_end(sent):
    """A backlog is sent as soon as the window has one: with a 10 s window, the task is out
    within moments of the ask that made the backlog, and the window's own end sends nothing more."""
    task = CoalescedTask("tests.task", seconds=10, backlog_above=3, backlog_args=lambda: ["spread"])
    started = time.monotonic()
    for item in ("a", "b", "c", "d"):
        task(item)
    _wait_for(sent)
    assert sent == [("tests.task", ["spread"])]
    assert time.monotonic() - started < 2
    task.send()  # the window's end: everything went with the backlog
    assert sent == [("tests.task", ["spread"])]


def test_a_window_past_its_second_backlog_keeps_no_more_ids_and_its_end_sends_a_backlog(sent):
    """An import recording hundreds of thousands in one window: after the early backlog, the ids
    gathered past another backlog's worth are not kept (its tasks find them in the database), the
    window's end sends one more backlog, and the busy window still counts every item."""
    task = CoalescedTask(
        "tests.task",
        seconds=10,
        backlog_above=3,
        backlog_args=lambda: ["spread"],
        busy_items=50,
        busy_seconds=20,
    )
    for i in range(4):  # the early backlog
        task(f"a{i}")
    _wait_for(sent)
    assert sent == [("tests.task", ["spread"])]
    for i in range(100):
        task(f"b{i}")
    with task._lock:
        assert len(task._items) == 4  # a backlog's worth and one, not 100
    task.send()  # the window's end
    assert sent == [("tests.task", ["spread"])] * 2
    assert task._last_sent == 104
    assert task.window() == 20  # 104 items in a window: busy


def test_a_windows_timer_that_fires_after_its_window_was_sent_sends_nothing(sent):
    """A window sent early (a test's own `send()`) leaves its timer queued on the process's send
    thread: when it fires, there is no window open, and it must not send an empty task."""
    task = CoalescedTask("tests.task", seconds=0.05)
    task("a")
    task.send()
    assert sent == [("tests.task", [["a"]])]
    time.sleep(0.2)  # the window's own timer has fired
    assert sent == [("tests.task", [["a"]])]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_worker_sends_the_lifecycle_fanout_its_parent_had_pending(sent):
    """A web or Celery worker forked while its parent had a fan-out pending (asked for, its timer
    thread not yet fired) still sends its own activities: the child has no timer of its parent's."""
    fanout = lifecycle.fanout_soon
    with fanout._lock:  # the parent mid-window: one activity asked for, the timer not fired yet
        fanout._items.add("parent-activity")
        fanout._scheduled = True
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: ask for its own activity's fan-out and report what it sent
        try:
            os.close(read_end)
            fanout("child-activity")
            _wait_for(sent)
            os.write(write_end, json.dumps(sent).encode())
        finally:
            os._exit(0)
    try:
        os.close(write_end)
        ready, _, _ = select.select([read_end], [], [], 5)
        child_sent = json.loads(os.read(read_end, 65536) or b"null") if ready else None
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
        fanout._reset()
    assert child_sent == [[lifecycle.FANOUT_TASK, [["child-activity"]]]]
    assert sent == []  # the parent's pending send is its own timer's business


def test_the_sends_of_a_process_run_on_one_thread_kept_between_windows(monkeypatch):
    """A thread per window cost about 1.7 ms of CPU per send (Celery's backend and producer are
    made once per thread): successive windows are sent from the same thread."""
    threads: list[threading.Thread] = []
    monkeypatch.setattr(celery_app, "send_task", lambda *_, **__: threads.append(threading.current_thread()))
    task = CoalescedTask("tests.task", seconds=0.01)
    for _ in range(3):
        task("a")
        _wait_for(threads)
        deadline = time.monotonic() + 2
        while task._scheduled and time.monotonic() < deadline:
            time.sleep(0.005)
        count = len(threads)
        task("b")
        deadline = time.monotonic() + 2
        while len(threads) == count and time.monotonic() < deadline:
            time.sleep(0.005)
    assert len(threads) == 6
    assert len(set(threads)) == 1
    assert threads[0] is not threading.current_thread()


def test_a_send_that_fails_does_not_stop_the_sends_after_it(monkeypatch, caplog):
    sent: list[str] = []

    def send_task(name, args, **_):
        if name == "tests.broken":
            raise RuntimeError("boom")
        sent.append(name)

    monkeypatch.setattr(celery_app, "send_task", send_task)
    broken, fine = CoalescedTask("tests.broken", seconds=0.01), CoalescedTask("tests.fine", seconds=0.03)
    broken("a")
    fine("b")
    _wait_for(sent)
    assert sent == ["tests.fine"]
    assert "a coalesced task send failed" in caplog.text


def test_the_send_runs_in_the_context_of_the_first_ask_of_its_window(monkeypatch):
    seen: list[str | None] = []
    monkeypatch.setattr(celery_app, "send_task", lambda *_, **__: seen.append(_CONTEXT.get()))
    task = CoalescedTask("tests.task", seconds=0.02)
    token = _CONTEXT.set("first request")
    try:
        task("a")
    finally:
        _CONTEXT.reset(token)
    token = _CONTEXT.set("second request")
    try:
        task("b")
    finally:
        _CONTEXT.reset(token)
    _wait_for(seen)
    time.sleep(0.05)
    assert seen == ["first request"]
