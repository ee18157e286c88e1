"""Send threads: a task waits for its sends at most the patience, at most a few times a destination's
usual answer time for a request to it, and not at all for a request to a destination known to be
slow (its circuit open, or slow in this process lately)."""

import threading
import time

import pytest

from integrations import send_threads

PATIENCE = 1.0


@pytest.fixture(autouse=True)
def _fresh(settings):
    settings.HUB_DELIVERY_PATIENCE = PATIENCE
    send_threads._slow.clear()
    send_threads._answer_time.clear()
    yield
    send_threads._slow.clear()
    send_threads._answer_time.clear()


def _request_job(integration_id: int, seconds: float, done: threading.Event, *, probe: bool = False):
    """A job that makes one 'request' of `seconds` to the integration."""

    def job():
        with send_threads.request_watch(integration_id, probe=probe):
            time.sleep(seconds)
        done.set()
        return "sent"

    return job


def _timed(jobs):
    started = time.monotonic()
    results = send_threads.run_patiently(jobs)
    return results, time.monotonic() - started


def test_a_quick_send_is_waited_for_and_returns_its_result():
    done = threading.Event()
    results, _ = _timed([_request_job(1, 0.05, done)])
    assert results == ["sent"] and done.is_set()
    assert not send_threads.is_slow(1)


def test_a_send_past_the_patience_goes_on_in_its_thread_and_marks_its_destination_slow():
    done = threading.Event()
    results, waited = _timed([_request_job(2, 2.0, done)])
    assert results == [None]
    assert PATIENCE - 0.05 <= waited < PATIENCE + 0.5, waited
    # Marked when the task ran out of patience, before the request even ended.
    assert send_threads.is_slow(2) and not done.is_set()
    assert done.wait(5)
    assert send_threads.is_slow(2)  # the request itself outlasted the patience


def test_a_request_to_a_destination_known_slow_does_not_keep_its_task_waiting():
    send_threads._mark_slow(3)
    done = threading.Event()
    results, waited = _timed([_request_job(3, 1.0, done)])
    assert results == [None]
    assert waited < 0.3, waited  # not the 1 s patience
    assert done.wait(5)  # the send went on in its thread


def test_a_probe_does_not_keep_its_task_waiting():
    done = threading.Event()
    results, waited = _timed([_request_job(4, 1.0, done, probe=True)])
    assert results == [None] and waited < 0.3, waited
    assert done.wait(5)


def test_a_destination_that_answered_quickly_and_starts_to_hang_holds_its_task_briefly():
    for _ in range(3):
        done = threading.Event()
        assert _timed([_request_job(9, 0.005, done)])[0] == ["sent"]
    assert send_threads.patience_for(9) < 0.1
    done = threading.Event()
    results, waited = _timed([_request_job(9, 1.5, done)])
    assert results == [None]
    assert waited < 0.3, waited  # a few times its usual answer, not the 1 s patience
    assert send_threads.is_slow(9)
    # Another destination with no history still gets the whole patience.
    assert send_threads.patience_for(10) == PATIENCE
    assert done.wait(5)


def test_a_slow_destination_does_not_hold_up_the_wait_for_a_quick_one():
    """Two jobs of one task: the quick one's result is there; the slow one is left to its thread."""
    send_threads._mark_slow(5)
    slow_done, quick_done = threading.Event(), threading.Event()
    results, waited = _timed([_request_job(5, 1.0, slow_done), _request_job(6, 0.1, quick_done)])
    assert results == [None, "sent"]
    assert waited < 0.6, waited
    assert slow_done.wait(5)


def test_a_quick_answer_clears_the_slow_mark():
    send_threads._mark_slow(7)
    done = threading.Event()
    send_threads.run_patiently([_request_job(7, 0.01, done)])
    assert done.wait(5)
    time.sleep(0.05)
    assert not send_threads.is_slow(7)


def test_the_slow_mark_is_forgotten_after_a_while(monkeypatch):
    monkeypatch.setattr(send_threads, "SLOW_MEMORY", 0.1)
    send_threads._mark_slow(8)
    assert send_threads.is_slow(8)
    time.sleep(0.15)
    assert not send_threads.is_slow(8)


def test_an_error_of_a_job_done_in_time_is_raised_to_its_task():
    def job():
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        send_threads.run_patiently([job])
