"""The statements that write the rollup tables (`MetricRollup`, `MetricUniqueValue`).

An upsert merges a row into the one of its bucket: counts and sums add, min and max combine, the
latest wins. A distinct value first seen in a bucket adds one to that bucket's counter.
`rollup_store` runs them with rows from Python; `metric_sql` builds set-based statements that
merge the same way.
"""

from __future__ import annotations

ROLLUP_TABLE = "events_metricrollup"
UNIQUE_TABLE = "events_metricuniquevalue"

_T = ROLLUP_TABLE
_U = UNIQUE_TABLE
ROLLUP_COLUMNS = (
    "metric_id, customer_id, group_key, granularity, bucket, count, value_count, sum, min, max, "
    "latest_value, latest_at, latest_event_id"
)
_LATER = (
    f"(excluded.latest_at IS NOT NULL AND ({_T}.latest_at IS NULL OR excluded.latest_at > {_T}.latest_at"
    f" OR (excluded.latest_at = {_T}.latest_at AND excluded.latest_event_id > {_T}.latest_event_id)))"
)
# The SET clause of an upsert whose new row is `excluded`.
MERGE = f"""
    count = {_T}.count + excluded.count,
    value_count = {_T}.value_count + excluded.value_count,
    sum = CASE WHEN excluded.sum IS NULL THEN {_T}.sum WHEN {_T}.sum IS NULL THEN excluded.sum
               ELSE {_T}.sum + excluded.sum END,
    min = CASE WHEN excluded.min IS NULL THEN {_T}.min
               WHEN {_T}.min IS NULL OR excluded.min < {_T}.min THEN excluded.min ELSE {_T}.min END,
    max = CASE WHEN excluded.max IS NULL THEN {_T}.max
               WHEN {_T}.max IS NULL OR excluded.max > {_T}.max THEN excluded.max ELSE {_T}.max END,
    latest_value = CASE WHEN {_LATER} THEN excluded.latest_value ELSE {_T}.latest_value END,
    latest_at = CASE WHEN {_LATER} THEN excluded.latest_at ELSE {_T}.latest_at END,
    latest_event_id = CASE WHEN {_LATER} THEN excluded.latest_event_id ELSE {_T}.latest_event_id END
"""
_VALUES13 = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
# The conflict targets: customer rows and app-wide rows have unique indexes of their own.
ON_CUSTOMER = "(metric_id, customer_id, group_key, granularity, bucket) WHERE customer_id IS NOT NULL"
ON_APP = "(metric_id, group_key, granularity, bucket) WHERE customer_id IS NULL"
UPSERT_CUSTOMER = (
    f"INSERT INTO {_T} ({ROLLUP_COLUMNS}) VALUES {_VALUES13} "  # noqa: S608 (constants)
    f"ON CONFLICT {ON_CUSTOMER} DO UPDATE SET {MERGE}"
)
UPSERT_APP = (
    f"INSERT INTO {_T} ({ROLLUP_COLUMNS}) VALUES {_VALUES13} "  # noqa: S608 (constants)
    f"ON CONFLICT {ON_APP} DO UPDATE SET {MERGE}"
)
UNIQUE_COLUMNS = "metric_id, customer_id, group_key, granularity, bucket, value_hash"
UNIQUE_ON_CUSTOMER = (
    "(metric_id, customer_id, group_key, granularity, bucket, value_hash) WHERE customer_id IS NOT NULL"
)
UNIQUE_ON_APP = "(metric_id, group_key, granularity, bucket, value_hash) WHERE customer_id IS NULL"
INSERT_UNIQUE_CUSTOMER = (
    f"INSERT INTO {_U} ({UNIQUE_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s) "  # noqa: S608
    f"ON CONFLICT {UNIQUE_ON_CUSTOMER} DO NOTHING"
)
INSERT_UNIQUE_APP = (
    f"INSERT INTO {_U} ({UNIQUE_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s) "  # noqa: S608
    f"ON CONFLICT {UNIQUE_ON_APP} DO NOTHING"
)


def unique_counted_insert(values_select: str, *, app_wide: bool) -> str:
    """Insert the distinct values `values_select` yields and count the new ones in their counters.

    `values_select` gives (metric_id, customer_id, group_key, granularity, bucket, value_hash).
    A value first seen in a bucket adds one to that bucket's counter (not for hours: the last 24
    hours are counted from the hour rows themselves). PostgreSQL (a data-modifying CTE).
    """
    on_unique, on_rollup = (UNIQUE_ON_APP, ON_APP) if app_wide else (UNIQUE_ON_CUSTOMER, ON_CUSTOMER)
    return f"""
    WITH new AS (
        INSERT INTO {_U} ({UNIQUE_COLUMNS})
        {values_select}
        ON CONFLICT {on_unique} DO NOTHING
        RETURNING metric_id, customer_id, group_key, granularity, bucket
    )
    INSERT INTO {_T} (metric_id, customer_id, group_key, granularity, bucket, count, value_count)
    SELECT metric_id, customer_id, group_key, granularity, bucket, count(*), count(*)
    FROM new WHERE granularity <> 'h' GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT {on_rollup} DO UPDATE SET count = {_T}.count + excluded.count,
        value_count = {_T}.value_count + excluded.value_count
    """  # noqa: S608 (constants and the caller's SQL)


def unique_counters_insert(where: str) -> str:
    """Insert the distinct-value counters of the values `where` selects (no counters there yet)."""
    return (
        f"INSERT INTO {_T} (metric_id, customer_id, group_key, granularity, bucket, count, value_count) "  # noqa: S608
        f"SELECT metric_id, customer_id, group_key, granularity, bucket, count(*), count(*) FROM {_U} "
        f"WHERE {where} GROUP BY metric_id, customer_id, group_key, granularity, bucket ORDER BY bucket"
    )
