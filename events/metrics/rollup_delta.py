"""What a set of events adds to the rollups, evaluated in Python before it is written.

Each event is evaluated against the metrics of its name (`definitions.CompiledMetric`) and added
to the cells of its hour, day (and, for unique counts, ISO week, month and all-time) buckets, for
its customer and app-wide, for the total and its group. `rollup_store` merges a delta into the
tables.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from .definitions import CompiledMetric, Evaluated, properties_load
from .periods import EPOCH, day_start, hour_start, month_start, week_start

# (metric pk, customer pk or None, group key, granularity, bucket)
CellKey = tuple[int, int | None, str, str, datetime]
# (metric pk, customer pk or None, group key, granularity, bucket, value hash)
UniqueKey = tuple[int, int | None, str, str, datetime, uuid.UUID]


@dataclass
class Cell:
    """Count, sum, min, max and latest of the events added to one bucket."""

    count: int = 0
    value_count: int = 0
    sum: Decimal | None = None
    min: Decimal | None = None
    max: Decimal | None = None
    latest_value: Decimal | None = None
    latest_at: datetime | None = None
    latest_event_id: int | None = None

    def add(self, value: Decimal | None, at: datetime, event_pk: int) -> None:
        self.count += 1
        if value is None:
            return
        self.value_count += 1
        self.sum = value if self.sum is None else self.sum + value
        self.min = value if self.min is None or value < self.min else self.min
        self.max = value if self.max is None or value > self.max else self.max
        if self.latest_at is None or (at, event_pk) > (self.latest_at, self.latest_event_id):
            self.latest_value, self.latest_at, self.latest_event_id = value, at, event_pk


_STARTS = {"d": day_start, "w": week_start, "m": month_start}


@dataclass
class RollupDelta:
    """What a set of events adds to the rollups, before it is merged into the tables.

    Hour rows older than `hours_since` are not written (only recent hours are read).
    """

    hours_since: datetime | None = None
    cells: dict[CellKey, Cell] = field(default_factory=dict)
    uniques: set[UniqueKey] = field(default_factory=set)
    touched: set[tuple[int, int]] = field(default_factory=set)  # (customer pk, metric pk)

    def _buckets(self, at: datetime, grans: str) -> list[tuple[str, datetime]]:
        out = []
        hour = hour_start(at)
        if self.hours_since is None or hour >= self.hours_since:
            out.append(("h", hour))
        out += [(g, _STARTS[g](at)) for g in grans if g in _STARTS]
        if "a" in grans:
            out.append(("a", EPOCH))
        return out

    def add(self, metric: CompiledMetric, *, event_pk: int, customer_pk: int, at: datetime,
            result: Evaluated) -> None:  # fmt: skip
        groups = ("",) if result.group is None else ("", result.group)
        self.touched.add((customer_pk, metric.pk))
        if metric.unique:
            if result.unique is None:
                return
            buckets = self._buckets(at, "dwma")
            for customer in (customer_pk, None):
                for group in groups:
                    for gran, bucket in buckets:
                        self.uniques.add((metric.pk, customer, group, gran, bucket, result.unique))
            return
        buckets = self._buckets(at, "d")
        for customer in (customer_pk, None):
            for group in groups:
                for gran, bucket in buckets:
                    key = (metric.pk, customer, group, gran, bucket)
                    cell = self.cells.get(key)
                    if cell is None:
                        cell = self.cells[key] = Cell()
                    cell.add(result.number, at, event_pk)

    def __bool__(self) -> bool:
        return bool(self.cells or self.uniques)


def delta_of(metrics: list[CompiledMetric], events: Iterable[tuple], *, hours_since: datetime | None = None,
             into: RollupDelta | None = None) -> RollupDelta:  # fmt: skip
    """Evaluate events `(pk, customer_pk, event_name, timestamp, properties)` against metrics."""
    delta = into if into is not None else RollupDelta(hours_since=hours_since)
    by_name: dict[str, list[CompiledMetric]] = {}
    for m in metrics:
        by_name.setdefault(m.event_name, []).append(m)
    if not by_name:
        return delta
    for pk, customer_pk, name, at, props in events:
        matching = by_name.get(name)
        if not matching:
            continue
        properties = properties_load(props)
        for metric in matching:
            result = metric.evaluate(properties)
            if result is not None:
                delta.add(metric, event_pk=pk, customer_pk=customer_pk, at=at, result=result)
    return delta
