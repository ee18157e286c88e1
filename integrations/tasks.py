"""Celery tasks of the integrations package: thin, named, taking ids, calling the services."""

from __future__ import annotations

import logging
from functools import partial

from celery import shared_task
from django.conf import settings
from django.utils import timezone
from kombu.exceptions import OperationalError

from . import (
    backfill,
    delivery,
    delivery_fanout,
    delivery_retention,
    delivery_store,
    forwarding,
    send_threads,
)

logger = logging.getLogger(__name__)

# Activities a backlog's fan-out claims at once. Measured in bench.segment_delivery (2 worker
# processes, alternating runs): 5,000 took about 10% less CPU a delivery than 2,500 (PostgreSQL
# 11.7 against 13.0 µs, workers 10.5 against 11.6); 10,000 took more than 5,000 again (its
# insert binds about 5 MB of text; why it costs more was not pinned down).
FANOUT_CHUNK = 5000

# The tasks store no result (`ignore_result`): nobody reads one, and Redis's result backend would
# write and publish it after every task, a sizeable share of a small fan-out's cost.


def _enqueue_sends(integration_ids, parallel: int = 1) -> None:
    for integration_id in integration_ids:
        for _ in range(parallel):
            deliveries_send.delay(integration_id)


def _patiently(job, *args):
    # A task's work runs in a send thread of this process; the task waits for it at most
    # HUB_DELIVERY_PATIENCE (`send_threads`): whatever the work sends to a destination that hangs
    # (a fan-out's inline send, a sender's request, a probe) holds that thread and its
    # transaction, not this worker process. Its result, or None when it goes on in its thread.
    return send_threads.run_patiently([partial(job, *args)])[0]


def _parallel(created, integration_id: int) -> int:
    return min(settings.HUB_DELIVERY_PARALLEL, 1 + created.get(integration_id, 0) // 2500)


def _senders_for_new(created, integration_id: int) -> None:
    # A destination slow in this process (its requests outlast the patience) has its request
    # slots held, most likely, by requests that will time out: a sender per fan-out chunk would
    # only find them taken, a flood of tasks ahead of the healthy destinations'. Its new rows are
    # left to the sweep (every HUB_DELIVERY_SWEEP_SECONDS) and to its senders running already.
    if not send_threads.is_slow(integration_id):
        _enqueue_sends([integration_id], _parallel(created, integration_id))


# Seconds a fan-out's send thread goes on with the due rows earlier sends left pending.
LEFTOVER_BUDGET = 2.0


def _send_new(created, integration_id: int, ids: list) -> None:
    if delivery.deliveries_send_new(integration_id=integration_id, ids=ids):
        _senders_for_new(created, integration_id)
        return
    _send_leftovers(integration_id)


def _send_leftovers(integration_id: int) -> None:
    # Every row of this fan-out went out, so a request slot was free: take along the rows earlier
    # fan-outs left pending when both slots were taken. Their senders give up when no slot is free,
    # and under steady forwarding nothing else would send them before the sweep: each destination's
    # leftovers go with its next fan-out instead (a tail of seconds at 1,000 events/s otherwise).
    if delivery_store.integration_has_due(integration_id=integration_id):
        report = delivery.deliveries_send(integration_id=integration_id, budget_seconds=LEFTOVER_BUDGET)
        if report.more:
            deliveries_send.delay(integration_id)


def _after_fanout(created) -> None:
    # Deliveries of several integrations go now, each in a send thread of its own (a destination
    # that hangs keeps its thread, not this process); those the fan-out sent at once need no
    # sender; the integrations left with pending ones (not sent, or answered with a retry) get one.
    send_threads.run_patiently(
        [partial(_send_new, created, integration_id, ids) for integration_id, ids in created.send_now.items()]
        + [partial(_send_leftovers, integration_id) for integration_id in sorted(created.sent_inline)]
    )
    for integration_id in created.waiting - set(created.send_now):
        _senders_for_new(created, integration_id)


@shared_task(name="integrations.activities_fanout", ignore_result=True)
def activities_fanout(activity_ids: list[str] | None = None, spread: int = 1) -> int | None:
    """Create deliveries for recorded activities (the core enqueues this after commit by name).

    Without ids it takes the oldest undispatched chunk and, when the chunk was full, asks for
    another task: parallel fan-out tasks split a backlog with SKIP LOCKED. With `spread`, it first
    starts `spread - 1` more such tasks (a backlog handed over in one send: the worker sends the
    rest at once, where a busy producer's thread would send them one by one).
    """
    try:
        for _ in range(max(0, spread - 1)):
            activities_fanout.delay()
    except OperationalError as exc:  # the broker is gone: this task's own chunk still goes
        logger.warning("broker unavailable, the backlog's other fan-outs left for the sweep: %s", exc)
    return _patiently(_activities_fanout, activity_ids)


def _activities_fanout(activity_ids: list[str] | None) -> int:
    created = delivery_fanout.activities_fanout(activity_ids=activity_ids, limit=FANOUT_CHUNK)
    _after_fanout(created)
    if activity_ids is None and created.more:
        activities_fanout.delay()
    return sum(created.values())


FORWARD_CHANGES = 500


@shared_task(name="integrations.usage_events_forward", ignore_result=True)
def usage_events_forward(_ignored: list | None = None) -> int | None:
    """Fan out stored usage events to the destinations subscribed to them (the events layer asks
    for this by name after storing events of a forwarding app); goes on while batches were full."""
    return _patiently(_usage_events_forward)


def _usage_events_forward() -> int:
    created = forwarding.usage_events_forward()
    _after_fanout(created)
    if created.more:
        usage_events_forward.delay()
    return sum(created.values())


@shared_task(name="integrations.customers_forward", ignore_result=True)
def customers_forward(_ignored: list | None = None) -> int | None:
    """Fan out customer and contact changes to the destinations subscribed to them (the core asks
    for this by name after a change of a forwarding app); goes on while the chunk was full."""
    return _patiently(_customers_forward)


def _customers_forward() -> int:
    created = forwarding.customers_forward(limit=FORWARD_CHANGES)
    _after_fanout(created)
    if created.more:
        customers_forward.delay()
    return sum(created.values())


@shared_task(name=backfill.RUN_TASK, ignore_result=True)
def backfill_run(backfill_id: int) -> bool | None:
    """Run a backfill for a time budget, start senders for what it queued, and go on in a new
    task while it has more (the sweep restarts one whose task was lost)."""
    return _patiently(_backfill_run, backfill_id)


def _backfill_run(backfill_id: int) -> bool:
    more = backfill.backfill_run(backfill_id=backfill_id, on_chunk=_after_fanout)
    if more:
        backfill_run.delay(backfill_id)
    return more


@shared_task(name="integrations.deliveries_send", ignore_result=True)
def deliveries_send(integration_id: int) -> int | None:
    """Send an integration's due deliveries (in a send thread: a destination that hangs keeps the
    thread, not this worker process); enqueue more senders when a budget ran out or a probe found
    the destination back, and the next probe while it is still down."""
    return _patiently(_deliveries_send, integration_id)


def _deliveries_send(integration_id: int) -> int:
    report = delivery.deliveries_send(integration_id=integration_id)
    if report.recovered:
        _enqueue_sends([integration_id], settings.HUB_DELIVERY_PARALLEL)
    elif report.more:
        deliveries_send.delay(integration_id)
    elif report.probe_at is not None:
        wait = max(0.0, (report.probe_at - timezone.now()).total_seconds())
        # Short delays only (seconds): the sweep re-enqueues probes too, so a lost one only waits.
        deliveries_send.apply_async((integration_id,), countdown=min(wait, 60.0))
    return report.delivered


@shared_task(name="integrations.deliveries_sweep", ignore_result=True)
def deliveries_sweep() -> dict | None:
    """Periodic: dispatch activities, forward usage events and customer changes nobody took, and enqueue every
    integration with due rows or a due probe.

    This is what makes delivery independent of the broker keeping a message: a lost task, a
    restarted Redis or a killed worker only delays delivery until the next sweep.
    """
    return _patiently(_deliveries_sweep)


def _deliveries_sweep() -> dict:
    # Due before this sweep's own fan-outs: rows waiting since earlier (their senders gave up on
    # busy request slots, or were lost), not the ones these fan-outs are about to send. Leaving
    # out every integration a fan-out touched would leave such rows waiting as long as each sweep
    # forwards something to their destination, which under steady traffic is every sweep.
    due = set(delivery.integrations_send_due())
    backlog = delivery_fanout.activities_backlog(at_least=FANOUT_CHUNK)
    if backlog:
        # A backlog: fan it out in parallel, starting now rather than after this task's own chunk
        # (each task goes on while its chunks are full; HUB_DELIVERY_PARALLEL of them run at once).
        for _ in range(settings.HUB_DELIVERY_PARALLEL):
            activities_fanout.delay()
    created = delivery_fanout.activities_fanout(limit=FANOUT_CHUNK)
    dispatched = sum(created.values())
    _after_fanout(created)
    if created.more and not backlog:
        for _ in range(settings.HUB_DELIVERY_PARALLEL):
            activities_fanout.delay()
    forwarded = forwarding.usage_events_forward()
    _after_fanout(forwarded)
    if forwarded.more:
        # A backlog: forward it in parallel (each task goes on while its chunks are full).
        for _ in range(settings.HUB_DELIVERY_PARALLEL):
            usage_events_forward.delay()
    changes = forwarding.customers_forward(limit=FORWARD_CHANGES)
    _after_fanout(changes)
    if changes.more:
        customers_forward.delay()
    for backfill_id in backfill.backfills_stalled():
        backfill_run.delay(backfill_id)
    fanned = set(created) | set(forwarded) | set(changes)
    _enqueue_sends(due, settings.HUB_DELIVERY_PARALLEL)
    # One sender per due probe: only one probe is out at a time, and while it hangs every sweep
    # finds it due again (more senders would only find its slot taken).
    probes = set(delivery.probes_due()) - fanned - due
    _enqueue_sends(probes)
    return {"dispatched": dispatched, "integrations": len(due | probes)}


@shared_task(name="integrations.deliveries_prune", ignore_result=True)
def deliveries_prune() -> dict:
    """Periodic: delete deliveries and attempts past their retention (small batches)."""
    return delivery_retention.deliveries_prune()
