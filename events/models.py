"""The usage-event store."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from hub.models import App, Customer, Plan


class UsageEvent(models.Model):
    """One usage event, stored once per (app, event_id) within the dedupe window.

    On PostgreSQL the table is partitioned by month of reception through its ids (the month in
    their high bits, `events.partitions`); on SQLite it is a plain table (which keeps the unique
    `(app_id, event_id)` migration 0001 made). `UsageEventKey` keeps the dedupe on both.
    """

    id = models.BigAutoField(primary_key=True)
    # No index of their own: the composite indexes below lead with them (every index slows ingest).
    # No foreign-key constraint on the app: the customer's holds the row to an existing customer,
    # and so to its app (deleting an app deletes its customers and their events, in Django's
    # cascade). The app's was a second check at every commit, each a FOR KEY SHARE lock of the
    # one hub_app row that every concurrent insert of the app shares (a new MultiXact each time):
    # 0.04-0.06 ms of PostgreSQL's CPU of a one-event request's 0.43-0.52 ms in bench.ingest.
    app = models.ForeignKey(
        App, on_delete=models.CASCADE, related_name="usage_events", db_index=False, db_constraint=False
    )
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="usage_events", db_index=False
    )
    event_id = models.CharField(max_length=255)
    event_name = models.CharField(max_length=255)
    timestamp = models.DateTimeField()
    properties = models.JSONField(default=dict, blank=True)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        # No unique (app, event_id) here: a unique index of a partitioned table must hold its
        # partition key. UsageEventKey holds it (SQLite's plain table keeps its own too, see 0008).
        indexes = [
            # Keyset pagination of the Usage events screen, newest first, with and without filters.
            models.Index(fields=["app", "-timestamp", "-id"], name="usage_event_app_time"),
            models.Index(fields=["customer", "-timestamp", "-id"], name="usage_event_customer_time"),
            models.Index(fields=["app", "event_name", "-timestamp", "-id"], name="usage_event_name_time"),
        ]

    def __str__(self) -> str:
        return f"{self.event_name} ({self.event_id})"


class UsageEventKey(models.Model):
    """The dedupe key of a usage event stored in the last HUB_USAGE_EVENT_DEDUPE_DAYS days.

    A narrow unpartitioned table whose unique (app, event_id) makes dedupe exact across the
    events' partitions; written in the statement that stores the events (PostgreSQL; SQLite just
    before them, in their transaction) and pruned
    in small batches once older than the dedupe window (BRIN index on `received_at`).
    """

    id = models.BigAutoField(primary_key=True)
    # No foreign-key constraint: the events' own constraint already checks the app on every insert;
    # deleting an app deletes its keys through Django's cascade.
    app = models.ForeignKey(
        App, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    event_id = models.CharField(max_length=255)
    received_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["app", "event_id"], name="usage_event_key_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} of app {self.app_id}"


class UsageEventRetention(models.Model):
    """How long an app's raw usage events are kept (no row: forever).

    Partitions are dropped whole (`events.partitions`): one goes once every app with events in it
    allows it, so an app's events may be kept longer than its retention, never shorter. Rollups,
    reports and billing signals keep their figures.
    """

    app = models.OneToOneField(App, on_delete=models.CASCADE, primary_key=True, related_name="+")
    days = models.PositiveIntegerField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "usage event retention"
        constraints = [
            models.CheckConstraint(condition=models.Q(days__gte=1), name="usage_event_retention_days"),
        ]

    def __str__(self) -> str:
        return f"app {self.app_id}: {self.days} days"


# Customers' shards of the rollup batches (customer pk modulo this): one batch of stored events is
# one `RollupBatch` per shard of their customers.
ROLLUP_SHARDS = 4


class RollupBatch(models.Model):
    """Ids of usage events stored together and not yet counted into the metrics' rollups.

    Written in the same statement as the events (so a batch and its events commit together) and
    deleted in the transaction that adds them to the rollups: each event is counted exactly once.
    The events of one batch belong to customers of one `shard`: drains of one app at once take
    different shards (`rollup_store`), so they never merge into the same customer's rows, where
    the second would wait for the first's whole transaction.
    """

    id = models.BigAutoField(primary_key=True)
    # No foreign-key constraint, as UsageEventKey's: a batch is written only with its events, whose
    # own constraint checks the app; a one-event request paid a second check (a row lock on the
    # app) for nothing. No index of its own: `rollup_batch_shard` begins with it.
    app = models.ForeignKey(
        App, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    shard = models.SmallIntegerField(default=0)  # the events' customer pk % ROLLUP_SHARDS
    event_ids = models.JSONField()  # a bigint[] in PostgreSQL (see migration); a JSON list elsewhere
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "rollup batches"
        indexes = [models.Index(fields=["app", "shard", "id"], name="rollup_batch_shard")]

    def __str__(self) -> str:
        return f"{len(self.event_ids)} event(s) of app {self.app_id}"


class ForwardBatch(models.Model):
    """Ids of usage events stored together that the destinations have not taken yet.

    Written in the statement that stores the events, only for apps whose `forward_usage_events`
    is set, and deleted in the transaction that creates the events' deliveries (the integrations'
    forwarder): each event is fanned out exactly once, and a lost task only delays it.
    """

    id = models.BigAutoField(primary_key=True)
    # No foreign-key constraint, as RollupBatch's: written only with its events.
    app = models.ForeignKey(
        App, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    event_ids = models.JSONField()  # a JSON list of UsageEvent ids
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "forward batches"
        indexes = [models.Index(fields=["app", "id"], name="forward_batch_app")]

    def __str__(self) -> str:
        return f"{len(self.event_ids)} event(s) of app {self.app_id} to forward"


class Metric(models.Model):
    """A usage metric of an app: which events count, how they aggregate, optionally per group."""

    class Aggregation(models.TextChoices):
        COUNT = "count", "Count of events"
        SUM = "sum", "Sum of a property"
        MIN = "min", "Minimum of a property"
        MAX = "max", "Maximum of a property"
        AVERAGE = "average", "Average of a property"
        UNIQUE = "unique_count", "Unique values of a property"
        LATEST = "latest", "Latest value of a property"

    class Status(models.TextChoices):
        BUILDING = "building", "Computing from stored events"
        READY = "ready", "Up to date"

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="metrics")
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100)
    event_name = models.CharField(max_length=255)
    # [{"property": "plan", "op": "eq", "value": "pro"}, ...]; every filter must hold.
    filters = models.JSONField(default=list, blank=True)
    aggregation = models.CharField(max_length=20, choices=Aggregation.choices, default=Aggregation.COUNT)
    property = models.CharField(max_length=255, blank=True, default="")
    group_by = models.CharField(max_length=255, blank=True, default="")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.BUILDING)
    # Bumped whenever the definition changes: a rebuild only completes for the version it read.
    version = models.PositiveIntegerField(default=1)
    built_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["app", "name"], name="metric_unique_name"),
            models.CheckConstraint(
                condition=models.Q(
                    aggregation__in=["count", "sum", "min", "max", "average", "unique_count", "latest"]
                ),
                name="metric_aggregation_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(aggregation="count") | ~models.Q(property=""),
                name="metric_property_required",
            ),
        ]
        indexes = [models.Index(fields=["app", "event_name"], name="metric_app_event")]

    def __str__(self) -> str:
        return self.name


class Granularity(models.TextChoices):
    """The span of a rollup row's or distinct value's bucket (`events.metrics.periods`)."""

    HOUR = "h", "Hour"
    DAY = "d", "Day"
    WEEK = "w", "Week"
    MONTH = "m", "Month"
    ALL = "a", "All time"


class MetricRollup(models.Model):
    """Count, sum, min, max and latest of a metric's matching events in one hour or day.

    `customer` NULL is the app-wide row. `group_key` "" is the total over every group; a grouped
    metric also has one row per value of its group-by property (canonical JSON text, `null` when
    missing). Rows merge: counts and sums add, min and max combine, the latest wins. Hour rows are
    kept for the recent hours only (HUB_METRICS_HOUR_ROWS_HOURS), enough for "last 24 hours".

    A unique-count metric's rows are counters instead: `count` is the number of distinct values in
    the day, ISO week, month or ever ("a"), kept as `MetricUniqueValue` rows are first inserted.
    """

    id = models.BigAutoField(primary_key=True)
    # No foreign-key constraints: checking two per written row cost a third of a drain's time. Rows
    # are written only by drains and builds, from metrics and customers read under the app's usage
    # lock, which deleting a metric, a customer (merge) or a workspace takes exclusive: no row
    # outlives its metric or customer. Nor an index of either alone (below).
    metric = models.ForeignKey(
        Metric, on_delete=models.DO_NOTHING, related_name="+", db_constraint=False, db_index=False
    )
    customer = models.ForeignKey(
        Customer, null=True, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False
    )
    group_key = models.CharField(max_length=255, default="")
    granularity = models.CharField(max_length=1, choices=Granularity.choices)
    bucket = models.DateTimeField()
    count = models.BigIntegerField(default=0)
    value_count = models.BigIntegerField(default=0)
    sum = models.DecimalField(max_digits=40, decimal_places=12, null=True)
    min = models.DecimalField(max_digits=40, decimal_places=12, null=True)
    max = models.DecimalField(max_digits=40, decimal_places=12, null=True)
    latest_value = models.DecimalField(max_digits=40, decimal_places=12, null=True)
    latest_at = models.DateTimeField(null=True)
    latest_event_id = models.BigIntegerField(null=True)

    class Meta:
        # The two unique indexes are the only ones by metric or customer: a customer's rows by the
        # customer's (customer first: a merge or a deleted customer finds them there), the app-wide
        # rows by the metric's. Separate metric_id and customer_id indexes cost every insert and
        # every update that is not HOT two more index entries (`rollup_store.metric_rows_delete`
        # deletes a metric's rows without them). The table is left a fifth of each page free
        # (migration 0013) so that a bucket's updates stay HOT.
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "metric", "group_key", "granularity", "bucket"],
                condition=models.Q(customer__isnull=False),
                name="metric_rollup_customer_unique",
            ),
            models.UniqueConstraint(
                fields=["metric", "group_key", "granularity", "bucket"],
                condition=models.Q(customer__isnull=True),
                name="metric_rollup_app_unique",
            ),
        ]
        # The sweep prunes old hour rows.
        indexes = [
            models.Index(fields=["bucket"], condition=models.Q(granularity="h"), name="metric_rollup_hours")
        ]

    def __str__(self) -> str:
        return f"{self.metric_id} {self.granularity} {self.bucket:%Y-%m-%d %H:00}: {self.count}"


class MetricUniqueValue(models.Model):
    """A distinct value of a unique-count metric seen in one hour, day, ISO week, month or ever ("a")."""

    id = models.BigAutoField(primary_key=True)
    # No foreign-key constraints and no index of either alone, as MetricRollup's.
    metric = models.ForeignKey(
        Metric, on_delete=models.DO_NOTHING, related_name="+", db_constraint=False, db_index=False
    )
    customer = models.ForeignKey(
        Customer, null=True, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False
    )
    group_key = models.CharField(max_length=255, default="")
    granularity = models.CharField(max_length=1, choices=Granularity.choices)
    bucket = models.DateTimeField()
    value_hash = models.UUIDField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "metric", "group_key", "granularity", "bucket", "value_hash"],
                condition=models.Q(customer__isnull=False),
                name="metric_unique_customer_unique",
            ),
            models.UniqueConstraint(
                fields=["metric", "group_key", "granularity", "bucket", "value_hash"],
                condition=models.Q(customer__isnull=True),
                name="metric_unique_app_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["bucket"], condition=models.Q(granularity="h"), name="metric_unique_hours")
        ]

    def __str__(self) -> str:
        return f"{self.metric_id} {self.granularity} {self.bucket:%Y-%m-%d}: {self.value_hash}"


class PlanUsageLimit(models.Model):
    """A plan's limit for one metric per billing period, and the percentages that raise signals."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="usage_limits")
    metric = models.ForeignKey(Metric, on_delete=models.CASCADE, related_name="plan_limits")
    limit = models.DecimalField(max_digits=20, decimal_places=4)
    thresholds = models.JSONField(default=list)  # percentages, e.g. [80, 100]
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["plan__amount", "metric__name"]
        constraints = [
            models.UniqueConstraint(fields=["plan", "metric"], name="plan_usage_limit_unique"),
            models.CheckConstraint(condition=models.Q(limit__gt=0), name="plan_usage_limit_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.plan.name}: {self.metric.name} ≤ {self.limit}"


class UsageSignal(models.Model):
    """A threshold crossed by a customer in one billing period: recorded once, with its activity."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="usage_signals")
    metric = models.ForeignKey(Metric, on_delete=models.CASCADE, related_name="+")
    threshold = models.PositiveIntegerField()
    period_start = models.DateTimeField()
    value = models.DecimalField(max_digits=40, decimal_places=12)
    limit = models.DecimalField(max_digits=20, decimal_places=4)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "metric", "threshold", "period_start"], name="usage_signal_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.threshold}% of {self.metric_id} from {self.period_start:%Y-%m-%d}"
