"""The drain of an app's pending rollup batches as one statement (PostgreSQL).

One statement claims up to `%(limit)s` of the app's `RollupBatch` rows of one shard of its
customers, the one the caller holds (oldest first, `FOR UPDATE SKIP LOCKED`: several workers drain
one app at once, each its own batches), and deletes them, reads their events once, evaluates every
metric that has a SQL plan (`metric_sql`) over them, and merges the results into the rollup tables:
one `INSERT ... SELECT ... GROUP BY ... ON CONFLICT DO UPDATE` per kind of row (customer and
app-wide rows of the value metrics; distinct values and their counters of the unique counts). The
sub-statements write disjoint rows (other metrics, or customer rows against app-wide ones), and each
writes in one sorted order, so concurrent drains lock rows in the same order. It answers one row:
the batches and events taken and, when asked for, the events' ids (for metrics only Python
evaluates), the (customer, metric) pairs touched (for usage limits) and the events SQL left to
Python (values whose canonical text only Python computes).

Parameters: `app` (the app's pk), `shard`, `limit` (batches), `since` (the first hour whose hour
rows are written, or NULL: every hour).
"""

from __future__ import annotations

from .metric_sql import SqlMetric, canonical_sql, group_key_sql, literal
from .rollup_sql import (
    MERGE,
    ON_APP,
    ON_CUSTOMER,
    ROLLUP_TABLE,
    UNIQUE_ON_APP,
    UNIQUE_ON_CUSTOMER,
    UNIQUE_TABLE,
)

_T = ROLLUP_TABLE
_U = UNIQUE_TABLE
_ROLLUP_INSERT = (
    f"INSERT INTO {_T} (metric_id, customer_id, group_key, granularity, bucket, count, value_count, sum, "
    "min, max, latest_value, latest_at, latest_event_id)"
)
_COUNTER_INSERT = (
    f"INSERT INTO {_T} (metric_id, customer_id, group_key, granularity, bucket, count, value_count)"
)
_UNIQUE_INSERT = f"INSERT INTO {_U} (metric_id, customer_id, group_key, granularity, bucket, value_hash)"
_HOUR = (
    "CASE WHEN %(since)s::timestamptz IS NULL OR r.ts >= %(since)s::timestamptz "
    "THEN date_trunc('hour', r.ts, 'UTC') END"
)
# The buckets an evaluated row adds to (an hour only when recent enough), and its groups (the total,
# and its group-by value for a grouped metric).
_VALUE_BUCKETS = f"(VALUES ('d', date_trunc('day', r.ts, 'UTC')), ('h', {_HOUR})) AS b(gran, bucket)"
_UNIQUE_BUCKETS = (
    "(VALUES ('d', date_trunc('day', r.ts, 'UTC')), ('w', date_trunc('week', r.ts, 'UTC')), "
    "('m', date_trunc('month', r.ts, 'UTC')), ('a', '1970-01-01T00:00:00Z'::timestamptz), "
    f"('h', {_HOUR})) AS b(gran, bucket)"
)
_GROUPS = "(VALUES (''), (r.gk)) AS g(key)"
_LATEST = (
    "(array_agg(r.num ORDER BY r.ts DESC, r.id DESC) FILTER (WHERE r.num IS NOT NULL AND r.kind = 'l'))[1], "
    "max(r.ts) FILTER (WHERE r.num IS NOT NULL AND r.kind = 'l'), "
    "(array_agg(r.id ORDER BY r.ts DESC, r.id DESC) FILTER (WHERE r.num IS NOT NULL AND r.kind = 'l'))[1]"
)
_NO_LATEST = "NULL::numeric, NULL::timestamptz, NULL::bigint"


def _evaluated(m: SqlMetric) -> str:
    """The metric's events among `ev`: metric, kind, event, customer, time, number, group key,
    distinct-value hash, and whether Python evaluates it instead (then its properties as text)."""
    unique = m.aggregation == "unique_count"
    kind = "u" if unique else ("l" if m.aggregation == "latest" else "v")
    num = "CASE WHEN jsonb_typeof(e1.val) = 'number' THEN (e1.val)::numeric END"
    if unique:
        num = "NULL::numeric"
    vh = f"md5({canonical_sql('e1.val')})::uuid" if unique else "NULL::uuid"
    gk = group_key_sql(m) if m.grouped else "NULL::text"
    value, group, python_rows, where = (_escaped(f) for f in (m.value, m.group, m.python_rows, m.where))
    return (
        f"SELECT {int(m.pk)}::bigint AS metric_id, '{kind}'::text AS kind, e1.id, e1.customer_id, e1.ts, "
        f"{num} AS num, {gk} AS gk, {vh} AS vh, e1.py, CASE WHEN e1.py THEN e1.properties::text END AS props "
        f"FROM (SELECT e.id, e.customer_id, e.timestamp AS ts, {value} AS val, {group} AS grp, "
        f"COALESCE({python_rows}, false) AS py, e.properties FROM ev e WHERE {where}) e1"
    )


def _escaped(fragment: str) -> str:
    """A fragment with quoted literals (a filter's value, an event name: any text) made safe in a
    statement that also takes parameters: its `%` doubled, so psycopg reads none as a placeholder."""
    return fragment.replace("%", "%%")


def drain_statement(plans: list[SqlMetric], *, want_ids: bool, want_touched: bool) -> str:
    """The statement that claims, deletes and counts up to `limit` of the app's batches.

    Its one row: batches, events, then the events' ids (`want_ids`), the touched customers and
    metrics as two arrays (`want_touched`), and the events left to Python as five arrays (metric,
    event id, customer, timestamp, properties text) when some plan leaves any.
    """
    ctes = [
        # Oldest first; batches another drain holds are skipped, not waited for.
        "claimed AS (DELETE FROM events_rollupbatch WHERE id IN (SELECT id FROM events_rollupbatch "
        "WHERE app_id = %(app)s AND shard = %(shard)s ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
        "RETURNING event_ids)",
        "ids AS MATERIALIZED (SELECT x::bigint AS id "
        "FROM claimed, jsonb_array_elements_text(claimed.event_ids) x)",
    ]
    out = ["(SELECT count(*) FROM claimed)", "(SELECT count(*) FROM ids)"]
    if want_ids:
        out.append("(SELECT array_agg(id) FROM ids)")
    if plans:
        names = _escaped(", ".join(sorted({literal(m.event_name) for m in plans})))
        # The events the metrics may count, read once, by primary key: the ids as one array
        # (OFFSET 0 keeps the app and names out of the scan, so that no other index of the table
        # can look cheaper), and between the lowest and highest of them, which PostgreSQL prunes
        # partitions of a table partitioned by ranges of ids with (an array parameter it
        # cannot): only the partitions of the claimed events are read.
        ctes.append(
            "ev AS MATERIALIZED (SELECT * FROM (SELECT e.id, e.app_id, e.customer_id, e.event_name, "
            "e.timestamp, e.properties FROM events_usageevent e "
            "WHERE e.id = ANY((SELECT array_agg(id) FROM ids)::bigint[]) "
            "AND e.id >= (SELECT min(id) FROM ids) AND e.id <= (SELECT max(id) FROM ids) OFFSET 0) e "
            f"WHERE e.app_id = %(app)s AND e.event_name IN ({names}))"
        )
        ctes.append("r AS MATERIALIZED (" + " UNION ALL ".join(_evaluated(m) for m in plans) + ")")
        customer_writes: list[str] = []
        app_writes: list[str] = []
        values = [m for m in plans if m.aggregation != "unique_count"]
        if values:
            latest = _LATEST if any(m.aggregation == "latest" for m in values) else _NO_LATEST
            aggregates = f"count(*), count(r.num), sum(r.num), min(r.num), max(r.num), {latest}"
            expanded = (
                f"FROM r CROSS JOIN LATERAL {_VALUE_BUCKETS} CROSS JOIN LATERAL {_GROUPS} "
                "WHERE r.kind <> 'u' AND NOT r.py AND b.bucket IS NOT NULL AND g.key IS NOT NULL"
            )
            customer_writes.append(
                f"vc AS ({_ROLLUP_INSERT} SELECT r.metric_id, r.customer_id, g.key, b.gran, b.bucket, "
                f"{aggregates} {expanded} GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5 "
                f"ON CONFLICT {ON_CUSTOMER} DO UPDATE SET {MERGE})"
            )
            app_writes.append(
                f"va AS ({_ROLLUP_INSERT} SELECT r.metric_id, NULL::bigint, g.key, b.gran, b.bucket, "
                f"{aggregates} {expanded} GROUP BY 1, 3, 4, 5 ORDER BY 1, 3, 4, 5 "
                f"ON CONFLICT {ON_APP} DO UPDATE SET {MERGE})"
            )
        if any(m.aggregation == "unique_count" for m in plans):
            ctes.append(
                "uv AS MATERIALIZED (SELECT DISTINCT r.metric_id, r.customer_id, g.key, b.gran, b.bucket, "
                f"r.vh FROM r CROSS JOIN LATERAL {_UNIQUE_BUCKETS} CROSS JOIN LATERAL {_GROUPS} "
                "WHERE r.kind = 'u' AND NOT r.py AND b.bucket IS NOT NULL AND g.key IS NOT NULL)"
            )
            returning = "RETURNING metric_id, customer_id, group_key, granularity, bucket"
            # Defined first (the app-wide values read it), run with the customer rows.
            ctes.append(
                f"uc AS ({_UNIQUE_INSERT} SELECT * FROM uv ORDER BY 1, 2, 3, 4, 5, 6 "
                f"ON CONFLICT {UNIQUE_ON_CUSTOMER} DO NOTHING {returning}, value_hash)"
            )
            # A value a customer had already is one the app has (both are always written
            # together): only the customers' new values can be new app-wide.
            app_writes.insert(
                0,
                f"ua AS ({_UNIQUE_INSERT} SELECT DISTINCT metric_id, NULL::bigint, group_key, granularity, "
                f"bucket, value_hash FROM uc ORDER BY 1, 3, 4, 5, 6 "
                f"ON CONFLICT {UNIQUE_ON_APP} DO NOTHING {returning})",
            )
            # A value first seen in a bucket adds one to its counter (hours are counted from the
            # hour rows themselves).
            for writes, at, name, source, target in (
                (customer_writes, 0, "cc", "uc", ON_CUSTOMER),
                (app_writes, 1, "ca", "ua", ON_APP),
            ):
                writes.insert(
                    at,
                    f"{name} AS ({_COUNTER_INSERT} SELECT metric_id, customer_id, group_key, granularity, "
                    f"bucket, count(*), count(*) FROM {source} WHERE granularity <> 'h' "
                    f"GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5 ON CONFLICT {target} DO UPDATE SET "
                    f"count = {_T}.count + excluded.count, "
                    f"value_count = {_T}.value_count + excluded.value_count)",
                )
        # PostgreSQL runs the data-modifying sub-statements that the query does not read in the
        # reverse order of the WITH list (a sub-statement another one reads runs when that one
        # does): the customer rows first, the app-wide rows last. Two drains of one app meet on
        # the app-wide rows (today's above all) and the second waits there for the first to
        # commit: it does everything else meanwhile. Every drain writes in this one order.
        ctes += app_writes + customer_writes
        if want_touched:
            ctes.append("touched AS (SELECT DISTINCT customer_id, metric_id FROM r)")
            out += [f"(SELECT array_agg({column}) FROM touched)" for column in ("customer_id", "metric_id")]
        if any(m.python_rows != "false" for m in plans):
            ctes.append("py AS (SELECT metric_id, id, customer_id, ts, props FROM r WHERE r.py)")
            out += [
                f"(SELECT array_agg({column}) FROM py)"
                for column in ("metric_id", "id", "customer_id", "ts", "props")
            ]
    return "WITH " + ", ".join(ctes) + " SELECT " + ", ".join(out)
