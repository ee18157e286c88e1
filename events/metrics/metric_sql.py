"""A metric as set-based SQL over the stored events (PostgreSQL): its build and its drains.

A metric created over millions of stored events cannot be built one event at a time in Python:
here its definition becomes SQL with the same meaning as `definitions` (jsonb equality is
JSON equality, numbers only from JSON numbers, canonical JSON text for group keys and distinct
values), and PostgreSQL aggregates the events into the hour and day rows, the distinct values and
their counters in a few statements. The drains of new events use the same fragments, for every
metric of an app at once (`drain_sql`).

What SQL does not reproduce exactly stays with Python: a definition whose paths could read an
array index differently (`-1`, ` 1`, non-ASCII digits), and the events whose distinct value or
group value is an object or an array (their canonical text is Python's). Those events are
evaluated by `definitions` and merged into the same rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from psycopg import Cursor

from .definitions import Filter, canonical, filters_validate, path_parse

if TYPE_CHECKING:
    from ..models import Metric
from .rollup_sql import ROLLUP_TABLE, UNIQUE_TABLE

_E = "events_usageevent"
_T = ROLLUP_TABLE
_U = UNIQUE_TABLE
_SAFE_INDEX = re.compile(r"[0-9]{1,9}")


def _part_safe(part: str) -> bool:
    # PostgreSQL reads `-1`, `+1` or ` 1` as array indexes where Python's evaluation does not.
    if _SAFE_INDEX.fullmatch(part):
        return True
    return not any(c.isdigit() or c in "+- \t\n\r\f\v" for c in part)


def literal(value: Any) -> str:
    """A value as a quoted SQL literal (psycopg's quoting)."""
    from django.db import connection
    from psycopg import sql

    connection.ensure_connection()
    return sql.Literal(value).as_string(connection.connection)


@dataclass
class SqlMetric:
    """A metric as SQL fragments over `e` (the events table), literals quoted inline."""

    pk: int
    app_pk: int
    aggregation: str
    grouped: bool
    where: str
    value: str = "NULL::jsonb"  # the property aggregated
    group: str = "NULL::jsonb"  # the group-by property
    python_rows: str = "false"  # events whose canonical text only Python computes
    event_name: str = ""


def _at(parts: tuple[str, ...]) -> str:
    return f"(e.properties #> {literal(list(parts))}::text[])"


def canonical_sql(v: str) -> str:
    """Canonical JSON text of a scalar jsonb value `v` (missing and null: 'null')."""
    return (
        f"CASE jsonb_typeof({v}) WHEN 'string' THEN ({v})::text "
        f"WHEN 'number' THEN trim_scale(({v})::numeric)::text WHEN 'boolean' THEN ({v})::text ELSE 'null' END"
    )


def _jsonb(value: Any) -> str | None:
    text = canonical(value)
    return None if "\\u0000" in text else f"{literal(text)}::jsonb"


def _filter_sql(f: Filter) -> str | None:
    parts = path_parse(f.property)
    if not all(_part_safe(p) for p in parts):
        return None
    v = _at(parts)
    if f.op == "exists":
        return f"({v} IS NOT NULL AND jsonb_typeof({v}) <> 'null')"
    if f.op == "not_exists":
        return f"({v} IS NULL OR jsonb_typeof({v}) = 'null')"
    if f.op in ("gt", "gte", "lt", "lte"):
        sign = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[f.op]
        # CASE, not AND: PostgreSQL may evaluate the operands of AND in any order.
        limit = f"{literal(f.value)}::numeric"
        return f"(CASE WHEN jsonb_typeof({v}) = 'number' THEN ({v})::numeric {sign} {limit} ELSE false END)"
    if f.op in ("in", "not_in"):
        literals = [_jsonb(x) for x in f.value]
        if None in literals:
            return None
        listed = ", ".join(literals)  # type: ignore[arg-type]
        if f.op == "in":
            return f"({v} IN ({listed}))"
        return f"({v} IS NULL OR {v} NOT IN ({listed}))"
    target = _jsonb(f.value)
    if target is None:
        return None
    if f.op == "eq":
        return f"({v} = {target})"
    return f"({v} IS NULL OR {v} <> {target})"


def metric_sql(metric: Metric, *, app_pk: int) -> SqlMetric | None:
    """The metric as SQL, or None when only the Python evaluation gives its exact meaning."""
    conditions = [f"e.app_id = {int(app_pk)}", f"e.event_name = {literal(metric.event_name)}"]
    for f in filters_validate(metric.filters):
        compiled = _filter_sql(f)
        if compiled is None:
            return None
        conditions.append(compiled)
    out = SqlMetric(pk=metric.pk, app_pk=app_pk, aggregation=metric.aggregation,
                    grouped=bool(metric.group_by), where="", event_name=metric.event_name)  # fmt: skip
    python: list[str] = []
    for attribute, path in (("value", metric.property), ("group", metric.group_by)):
        if not path:
            continue
        parts = path_parse(path)
        if not all(_part_safe(p) for p in parts):
            return None
        v = _at(parts)
        setattr(out, attribute, v)
        if attribute == "group" or metric.aggregation == "unique_count":
            python.append(f"jsonb_typeof({v}) IN ('object', 'array')")
        if attribute == "value" and metric.aggregation == "unique_count":
            conditions.append(f"({v} IS NOT NULL AND jsonb_typeof({v}) <> 'null')")
    if python:
        out.python_rows = "(" + " OR ".join(python) + ")"
    out.where = " AND ".join(conditions)
    return out


def not_pending(pending: list[int]) -> str:
    """The events of a build: all but those in pending batches (the drain counts those)."""
    return f"NOT (e.id = ANY({literal(pending)}::bigint[]))" if pending else "true"


def _events(m: SqlMetric, scope: str) -> str:
    """The metric's events SQL evaluates: id, customer_id, ts, val (jsonb), grp (jsonb)."""
    return (
        f"SELECT e.id, e.customer_id, e.timestamp AS ts, {m.value} AS val, {m.group} AS grp "
        f"FROM {_E} e WHERE {m.where} AND {scope} AND NOT COALESCE({m.python_rows}, false)"
    )


def python_rows_select(m: SqlMetric, scope: str) -> str:
    """The events of this metric left to Python: (pk, customer pk, name, timestamp, properties text)."""
    return (
        "SELECT e.id, e.customer_id, e.event_name, e.timestamp, e.properties::text "
        f"FROM {_E} e WHERE {m.where} AND {scope} AND COALESCE({m.python_rows}, false)"
    )


def group_key_sql(m: SqlMetric) -> str:
    if not m.grouped:
        return "''"
    t = canonical_sql("e1.grp")
    return (
        "(SELECT CASE WHEN length(t) > 255 THEN left(t, 237) || '…#' || left(md5(t), 16) ELSE t END "
        f"FROM (SELECT {t} AS t) g)"
    )


def build(cursor: Cursor, m: SqlMetric, *, pending: list[int], hours_since: datetime | None) -> None:
    """Insert the metric's rows for every event SQL evaluates (the metric's rows are empty)."""
    if m.aggregation == "unique_count":
        _build_unique(cursor, m, pending=pending, hours_since=hours_since)
    else:
        _values_insert(cursor, m, scope=not_pending(pending), hours_since=hours_since)


def _since(hours_since: datetime | None, column: str = "e2.ts") -> str:
    return "true" if hours_since is None else f"{column} >= {literal(hours_since)}::timestamptz"


# The build writes its rows in the order of their buckets (`ORDER BY 5`), as drains would have
# written them: the rows drains update next (today's, this week's and month's) sit near each other,
# not spread over the tables in the aggregate's order.
def _values_insert(cursor: Cursor, m: SqlMetric, *, scope: str, hours_since: datetime | None) -> None:
    number = "CASE WHEN jsonb_typeof(e1.val) = 'number' THEN (e1.val)::numeric END"
    rows = (
        f"SELECT e1.id, e1.customer_id, e1.ts, {number} AS num, {group_key_sql(m)} AS gk "
        f"FROM ({_events(m, scope)}) e1"
    )
    if m.aggregation == "latest":
        latest = (
            "(array_agg(e2.num ORDER BY e2.ts DESC, e2.id DESC) FILTER (WHERE e2.num IS NOT NULL))[1], "
            "max(e2.ts) FILTER (WHERE e2.num IS NOT NULL), "
            "(array_agg(e2.id ORDER BY e2.ts DESC, e2.id DESC) FILTER (WHERE e2.num IS NOT NULL))[1]"
        )
    else:
        latest = "NULL::numeric, NULL::timestamptz, NULL::bigint"
    group = "COALESCE(e2.gk, '')" if m.grouped else "''"
    for gran, trunc, where in (("d", "day", "true"), ("h", "hour", _since(hours_since))):
        bucket = f"date_trunc('{trunc}', e2.ts, 'UTC')"
        customer_sets = [f"(e2.customer_id, {bucket})"] + ([f"(e2.customer_id, e2.gk, {bucket})"] * m.grouped)
        app_sets = [f"({bucket})"] + ([f"(e2.gk, {bucket})"] * m.grouped)
        # One statement for customer and app-wide rows (the metric's rows are empty: no conflict).
        cursor.execute(
            f"INSERT INTO {_T} (metric_id, customer_id, group_key, granularity, bucket, count, "
            "value_count, sum, min, max, latest_value, latest_at, latest_event_id) "
            f"SELECT {int(m.pk)}, e2.customer_id, {group}, '{gran}', {bucket}, count(*), count(e2.num), "
            f"sum(e2.num), min(e2.num), max(e2.num), {latest} FROM ({rows}) e2 WHERE {where} "
            f"GROUP BY GROUPING SETS ({', '.join(customer_sets + app_sets)}) ORDER BY 5"
        )


def _unique_rows(m: SqlMetric, scope: str) -> str:
    hashed = f"md5({canonical_sql('e1.val')})::uuid"
    return (
        f"SELECT e1.customer_id, e1.ts, {hashed} AS vh, {group_key_sql(m)} AS gk "
        f"FROM ({_events(m, scope)}) e1"
    )


def _build_unique(cursor: Cursor, m: SqlMetric, *, pending: list[int], hours_since: datetime | None) -> None:
    # The distinct values per customer, group and day first; weeks, months, all time and the
    # app-wide rows come from that much smaller set. Hours come from the recent events.
    rows = _unique_rows(m, not_pending(pending))
    cursor.execute("DROP TABLE IF EXISTS _rebuild_days")
    cursor.execute(
        "CREATE TEMP TABLE _rebuild_days ON COMMIT DROP AS SELECT DISTINCT e2.customer_id, e2.gk, "
        f"date_trunc('day', e2.ts, 'UTC') AS day, e2.vh FROM ({rows}) e2"
    )
    buckets = {
        "d": "day",
        "w": "date_trunc('week', day, 'UTC')",
        "m": "date_trunc('month', day, 'UTC')",
        "a": "'1970-01-01T00:00:00Z'::timestamptz",
    }
    groups = ["''", "gk"] if m.grouped else ["''"]
    insert = f"INSERT INTO {_U} (metric_id, customer_id, group_key, granularity, bucket, value_hash) "
    for customer in ("customer_id", "NULL::bigint"):
        for group in groups:
            for gran, bucket in buckets.items():
                cursor.execute(
                    f"{insert} SELECT DISTINCT {int(m.pk)}, {customer}, {group}, '{gran}', {bucket}, vh "
                    "FROM _rebuild_days ORDER BY 5"
                )
            cursor.execute(
                f"{insert} SELECT DISTINCT {int(m.pk)}, {customer}, {group}, 'h', "
                f"date_trunc('hour', ts, 'UTC'), vh FROM ({rows}) e2 WHERE {_since(hours_since)} ORDER BY 5"
            )
    cursor.execute("DROP TABLE _rebuild_days")
