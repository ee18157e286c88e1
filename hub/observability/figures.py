"""The figures read at scrape time from PostgreSQL and the broker (`HubCollector`).

Computed by whichever process answers the scrape, from the rows every process shares: correct
with any number of web and worker processes, nothing kept in memory. Each is a handful of
indexed queries whose cost grows with the number of sources and integrations and with what is
waiting, not with the history kept. Labels are ids, kinds and states only: `source` is the
source's public id, `integration` the integration's id; no names, keys or customer data.

This module is wiring: like `hub/urls.py` it knows every package (through the app registry),
so the packages themselves stay ignorant of Prometheus.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

from django.apps import apps
from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, IntegerField, Min, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

logger = logging.getLogger(__name__)

# Windows of the "recent" figures (seconds): attempts, and deliveries given up.
ATTEMPTS_WINDOW = 300
GIVEN_UP_WINDOW = 3600


def _age(now, then) -> float:
    return max(0.0, (now - then).total_seconds()) if then is not None else 0.0


def _count(queryset, group: str) -> Coalesce:
    """A correlated `COUNT(*)` of `queryset` (filtered by OuterRef on `group`), 0 when empty."""
    return Coalesce(
        Subquery(queryset.order_by().values(group).annotate(n=Count("*")).values("n")[:1]),
        0,
        output_field=IntegerField(),
    )


def inbox_figures(now) -> Iterator[tuple[str, str, int, float]]:
    """(source public id, kind, pending messages, age of the oldest pending batch) per source.

    One pass over the waiting batches (a table that holds only what waits) and one over sources.
    """
    Source = apps.get_model("sources", "Source")
    InboxBatch = apps.get_model("sources", "InboxBatch")
    waiting = {
        row["source_id"]: (row["messages"], row["oldest"])
        for row in InboxBatch.objects.order_by()
        .values("source_id")
        .annotate(messages=Sum("size"), oldest=Min("created_at"))
    }
    for pk, public_id, kind in Source.objects.order_by().values_list("pk", "public_id", "kind"):
        messages, oldest = waiting.get(pk, (0, None))
        yield str(public_id), kind, messages, _age(now, oldest)


def integration_figures(now) -> list[dict]:
    """Per integration: its backlog (due, retrying), lag (oldest pending), recent attempts by outcome,
    deliveries given up recently (failed, dead), needs attention, and how long its circuit is open.

    The backlog is one pass over the pending deliveries (their partial index, and their rows for
    the creation time): its cost grows with what waits. The rest reads index ranges per integration.
    """
    Integration = apps.get_model("integrations", "Integration")
    Delivery = apps.get_model("integrations", "Delivery")
    Attempt = apps.get_model("integrations", "Attempt")
    backlog = {
        row["integration_id"]: row
        for row in Delivery.objects.filter(status="pending")
        .order_by()
        .values("integration_id")
        .annotate(
            due=Count("next_attempt_at", filter=Q(next_attempt_at__lte=now)),
            total=Count("*"),
            oldest=Min("created_at"),
        )
    }
    attempts = Attempt.objects.filter(
        integration=OuterRef("pk"), created_at__gte=now - timedelta(seconds=ATTEMPTS_WINDOW)
    )
    # A delivery is given up at most the retry window after its creation (unless retried by hand
    # since): the bound lets the query read only the recent part of the problems index.
    given_up = Delivery.objects.filter(
        integration=OuterRef("pk"),
        created_at__gte=now - timedelta(seconds=settings.HUB_DELIVERY_RETRY_WINDOW + GIVEN_UP_WINDOW),
        updated_at__gte=now - timedelta(seconds=GIVEN_UP_WINDOW),
    )
    rows = Integration.objects.order_by().annotate(
        attempts_delivered=_count(attempts.filter(outcome="delivered"), "integration"),
        attempts_retry=_count(attempts.filter(outcome="retry"), "integration"),
        attempts_failed=_count(attempts.filter(outcome="failed"), "integration"),
        given_up_failed=_count(given_up.filter(status="failed"), "integration"),
        given_up_dead=_count(given_up.filter(status="dead"), "integration"),
    )
    figures = []
    for row in rows.values(
        "pk",
        "kind",
        "enabled",
        "needs_attention",
        "outage_since",
        "attempts_delivered",
        "attempts_retry",
        "attempts_failed",
        "given_up_failed",
        "given_up_dead",
    ):
        waiting = backlog.get(row["pk"], {"due": 0, "total": 0, "oldest": None})
        figures.append(
            {
                "labels": [str(row["pk"]), row["kind"]],
                "due": waiting["due"],
                "retrying": waiting["total"] - waiting["due"],
                "lag": _age(now, waiting["oldest"]),
                "attempts": {o: row[f"attempts_{o}"] for o in ("delivered", "retry", "failed")},
                "given_up": {s: row[f"given_up_{s}"] for s in ("failed", "dead")},
                "needs_attention": 1.0 if row["needs_attention"] else 0.0,
                "enabled": 1.0 if row["enabled"] else 0.0,
                "outage": _age(now, row["outage_since"]),
            }
        )
    return figures


def rollup_figures(now) -> tuple[int, float, int]:
    """(pending rollup batches, age of the oldest, metrics being built)."""
    RollupBatch = apps.get_model("events", "RollupBatch")
    Metric = apps.get_model("events", "Metric")
    batches = RollupBatch.objects.order_by().aggregate(n=Count("pk"), oldest=Min("created_at"))
    building = Metric.objects.filter(status="building").count()
    return batches["n"], _age(now, batches["oldest"]), building


def celery_queue_figures() -> tuple[dict[str, int], int | None]:
    """(messages waiting per configured Celery queue, tasks taken by workers and not yet acknowledged
    (Redis only, else None)), through kombu's own client."""
    from kombu.exceptions import ChannelError

    from hub.celery import app

    lengths: dict[str, int] = {}
    unacked = None
    with app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        channel = conn.default_channel
        for name in sorted(app.amqp.queues.keys()):
            try:
                lengths[name] = channel.queue_declare(queue=name, passive=True).message_count
            except ChannelError:  # no worker has declared it yet: nothing waits in it
                lengths[name] = 0
        client = getattr(channel, "client", None)
        if client is not None and hasattr(channel, "unacked_key"):
            unacked = int(client.hlen(channel.unacked_key))
    return lengths, unacked


class HubCollector:
    """A prometheus-client collector yielding the figures above (see docs/operations.md)."""

    def describe(self):
        return []

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        now = timezone.now()
        up = GaugeMetricFamily(
            "hub_figures_up",
            "1 when the part's figures were read at this scrape, 0 on error.",
            labels=["part"],
        )
        try:
            families = list(self._database_families(now))
        except DatabaseError:
            logger.exception("metrics: the database figures could not be read")
            up.add_metric(["database"], 0)
        else:
            up.add_metric(["database"], 1)
            yield from families
        try:
            families = list(self._broker_families())
        except Exception:  # kombu and redis raise many kinds; the scrape still answers
            logger.exception("metrics: the broker figures could not be read")
            up.add_metric(["broker"], 0)
        else:
            up.add_metric(["broker"], 1)
            yield from families
        yield up

    def _database_families(self, now):
        from prometheus_client.core import GaugeMetricFamily

        pending = GaugeMetricFamily(
            "hub_inbox_pending_messages",
            "Inbox messages received and not processed yet, per source.",
            labels=["source", "kind"],
        )
        oldest = GaugeMetricFamily(
            "hub_inbox_oldest_pending_age_seconds",
            "Age of the oldest unprocessed inbox message per source (0 when none waits).",
            labels=["source", "kind"],
        )
        for source, kind, count, age in inbox_figures(now):
            pending.add_metric([source, kind], count)
            oldest.add_metric([source, kind], age)
        yield pending
        yield oldest

        labels = ["integration", "kind"]
        backlog = GaugeMetricFamily(
            "hub_delivery_backlog",
            "Pending deliveries per integration: due now, or retrying (waiting for their next try).",
            labels=[*labels, "state"],
        )
        lag = GaugeMetricFamily(
            "hub_delivery_lag_seconds",
            "Age of the integration's oldest pending delivery (0 when none waits).",
            labels=labels,
        )
        attempts = GaugeMetricFamily(
            "hub_delivery_attempts_recent",
            f"Requests to the integration in the last {ATTEMPTS_WINDOW} s by outcome "
            "(delivered, retry, failed).",
            labels=[*labels, "outcome"],
        )
        given_up = GaugeMetricFamily(
            "hub_deliveries_given_up_recent",
            f"Deliveries that became failed or dead in the last {GIVEN_UP_WINDOW} s.",
            labels=[*labels, "status"],
        )
        attention = GaugeMetricFamily(
            "hub_integration_needs_attention",
            "1 when the destination refused the integration's credentials (401/403) until fixed.",
            labels=labels,
        )
        outage = GaugeMetricFamily(
            "hub_integration_outage_seconds",
            "How long the integration's circuit has been open (its destination failing), 0 when closed.",
            labels=labels,
        )
        enabled = GaugeMetricFamily(
            "hub_integration_enabled", "1 when the integration is enabled.", labels=labels
        )
        for row in integration_figures(now):
            backlog.add_metric([*row["labels"], "due"], row["due"])
            backlog.add_metric([*row["labels"], "retrying"], row["retrying"])
            lag.add_metric(row["labels"], row["lag"])
            for outcome, count in row["attempts"].items():
                attempts.add_metric([*row["labels"], outcome], count)
            for status, count in row["given_up"].items():
                given_up.add_metric([*row["labels"], status], count)
            attention.add_metric(row["labels"], row["needs_attention"])
            outage.add_metric(row["labels"], row["outage"])
            enabled.add_metric(row["labels"], row["enabled"])
        yield from (backlog, lag, attempts, given_up, attention, outage, enabled)

        batches, age, building = rollup_figures(now)
        yield GaugeMetricFamily(
            "hub_rollup_pending_batches",
            "Stored usage-event batches not yet counted into metrics.",
            value=batches,
        )
        yield GaugeMetricFamily(
            "hub_rollup_lag_seconds",
            "Age of the oldest usage-event batch not yet counted into metrics (0 when none waits).",
            value=age,
        )
        yield GaugeMetricFamily(
            "hub_metrics_building", "Metrics being built from stored events.", value=building
        )

    def _broker_families(self):
        from prometheus_client.core import GaugeMetricFamily

        lengths, unacked = celery_queue_figures()
        queue = GaugeMetricFamily(
            "hub_celery_queue_length", "Tasks waiting in the broker per Celery queue.", labels=["queue"]
        )
        for name, length in lengths.items():
            queue.add_metric([name], length)
        yield queue
        if unacked is not None:
            yield GaugeMetricFamily(
                "hub_celery_unacked_tasks",
                "Tasks taken by workers and not acknowledged yet (running or prefetched).",
                value=unacked,
            )
