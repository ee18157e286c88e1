"""Metric definitions: validation, and how one event is matched, valued and grouped.

A metric counts the events of one name whose properties pass every filter, aggregated over a
property (count, sum, min, max, average, unique count, latest), optionally per value of a
group-by property. Properties are addressed with dot notation (`plan`, `usage.units`, `items.0`).

Values follow JSON's equality (as PostgreSQL's jsonb does): `1` and `1.0` are the same number,
`"1"` is a string, `true` is no number. Numeric aggregations and comparisons only use JSON numbers;
events whose property is missing or not a number still count for `count` but add no value.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from hub.errors import HubError

if TYPE_CHECKING:
    from ..models import Metric

AGGREGATIONS = ("count", "sum", "min", "max", "average", "unique_count", "latest")
VALUE_AGGREGATIONS = ("sum", "min", "max", "average", "latest")

FILTER_OPS = {
    "eq": "equals",
    "neq": "does not equal",
    "in": "is one of",
    "not_in": "is none of",
    "exists": "exists",
    "not_exists": "does not exist",
    "gt": ">",
    "gte": "≥",
    "lt": "<",
    "lte": "≤",
}
_NUMERIC_OPS = ("gt", "gte", "lt", "lte")
_LIST_OPS = ("in", "not_in")
_NO_VALUE_OPS = ("exists", "not_exists")
_MISSING = object()
MAX_FILTERS = 20
MAX_PATH = 255
_GROUP_KEY_MAX = 255


class MetricDefinitionError(HubError):
    """A metric definition is invalid; `field` names the offending part."""

    def __init__(self, message: str, *, field: str = ""):
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


# --- Values -----------------------------------------------------------------------------------


def properties_load(text: str | bytes | dict | None) -> dict:
    """Parse stored properties keeping decimals exact (JSON numbers as int or Decimal)."""
    if text is None:
        return {}
    if isinstance(text, dict):
        return text
    value = json.loads(text, parse_float=Decimal)
    return value if isinstance(value, dict) else {}


def path_parse(path: str) -> tuple[str, ...]:
    """`usage.units` → ("usage", "units"); a leading `properties.` is accepted and dropped."""
    parts = tuple(path.split("."))
    if parts and parts[0] == "properties" and len(parts) > 1:
        parts = parts[1:]
    return parts


def extract(properties: Any, path: tuple[str, ...]) -> Any:
    """The value at `path`, or _MISSING."""
    value = properties
    for part in path:
        if isinstance(value, dict):
            if part not in value:
                return _MISSING
            value = value[part]
        elif isinstance(value, list) and part.isascii() and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def number(value: Any) -> Decimal | None:
    """A JSON number as an exact Decimal; anything else (strings, booleans, null) is None."""
    if not is_number(value):
        return None
    d = value if isinstance(value, Decimal) else Decimal(str(value))
    return d if d.is_finite() else None


def _number_text(d: Decimal) -> str:
    if d == 0:
        return "0"
    return format(d.normalize(), "f")


def canonical(value: Any) -> str:
    """JSON text of `value` equal for equal JSON values (`1.0` and `1` alike, keys sorted)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if is_number(value):
        d = number(value)
        return _number_text(d) if d is not None else "null"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    if isinstance(value, dict):
        items = sorted(value.items())
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + canonical(v) for k, v in items) + "}"
    return json.dumps(str(value))


def value_hash(value: Any) -> uuid.UUID:
    """A fixed-size key of a JSON value for unique counts."""
    return uuid.UUID(bytes=hashlib.md5(canonical(value).encode(), usedforsecurity=False).digest())


def group_key(value: Any) -> str:
    """The rollup key of a group-by value: its canonical JSON (`null` when missing), at most 255 chars."""
    text = "null" if value is _MISSING else canonical(value)
    if len(text) > _GROUP_KEY_MAX:
        digest = hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()[:16]
        text = text[: _GROUP_KEY_MAX - 18] + "…#" + digest
    return text


def group_label(key: str) -> str:
    """How a group key reads on a screen or in a report: strings unquoted, `(none)` for null."""
    if key == "null":
        return "(none)"
    try:
        value = json.loads(key)
    except ValueError:
        return key
    if not isinstance(value, str):
        return key
    # A string that reads like another JSON value (`"1"`, `"true"`) or like the null label keeps
    # its quotes, so that no two groups share a label.
    if value == "(none)":
        return key
    try:
        json.loads(value)
    except ValueError:
        return value
    return key


# --- Definitions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filter:
    property: str
    op: str
    value: Any = None

    def as_dict(self) -> dict:
        out = {"property": self.property, "op": self.op}
        if self.op not in _NO_VALUE_OPS:
            out["value"] = _plain(self.value)
        return out


def _plain(value: Any) -> Any:
    """Decimals back to int or float for JSON output."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _path_check(value: Any, field: str, *, required: bool) -> str:
    if value in (None, "") and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise MetricDefinitionError(
            "is required (a property path such as `units` or `usage.units`)", field=field
        )
    value = value.strip()
    if len(value) > MAX_PATH:
        raise MetricDefinitionError(f"has at most {MAX_PATH} characters", field=field)
    if any(not part for part in value.split(".")):
        raise MetricDefinitionError("has an empty part (two dots, or a dot at an end)", field=field)
    return value


def filters_validate(raw: Any) -> list[Filter]:
    """Validate a list of filters `[{"property", "op", "value"}]`; raise MetricDefinitionError."""
    if raw in (None, ""):
        return []
    if not isinstance(raw, list):
        raise MetricDefinitionError("must be a list of filters", field="filters")
    if len(raw) > MAX_FILTERS:
        raise MetricDefinitionError(f"at most {MAX_FILTERS} filters", field="filters")
    out = []
    for i, item in enumerate(raw):
        where = f"filters[{i}]"
        if not isinstance(item, dict):
            raise MetricDefinitionError("must be an object with property, op and value", field=where)
        extra = set(item) - {"property", "op", "value"}
        if extra:
            raise MetricDefinitionError(f"unknown key(s) {', '.join(sorted(extra))}", field=where)
        prop = _path_check(item.get("property"), f"{where}.property", required=True)
        op = item.get("op")
        if not isinstance(op, str) or op not in FILTER_OPS:
            raise MetricDefinitionError(f"must be one of {', '.join(FILTER_OPS)}", field=f"{where}.op")
        value = item.get("value")
        if op in _NO_VALUE_OPS:
            value = None
        elif op in _NUMERIC_OPS:
            if not is_number(value) or number(value) is None:
                raise MetricDefinitionError("must be a number", field=f"{where}.value")
            value = number(value)
        elif op in _LIST_OPS:
            if not isinstance(value, list) or not value or len(value) > 100:
                raise MetricDefinitionError("must be a list of 1 to 100 values", field=f"{where}.value")
        elif "value" not in item:
            raise MetricDefinitionError("is required", field=f"{where}.value")
        out.append(Filter(property=prop, op=op, value=value))
    return out


@dataclass(frozen=True)
class Definition:
    """A validated metric definition."""

    name: str
    event_name: str
    aggregation: str
    property: str
    group_by: str
    filters: tuple[Filter, ...]

    def filters_json(self) -> list[dict]:
        return [f.as_dict() for f in self.filters]


def definition_validate(
    *,
    name: Any,
    event_name: Any,
    aggregation: Any = "count",
    property: Any = "",
    group_by: Any = "",
    filters: Any = None,
) -> Definition:
    """Check a metric definition; raise MetricDefinitionError naming the field."""
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > 100:
        raise MetricDefinitionError("is required (at most 100 characters)", field="name")
    if not isinstance(event_name, str) or not event_name.strip() or len(event_name.strip()) > 255:
        raise MetricDefinitionError("is required (at most 255 characters)", field="eventName")
    if not isinstance(aggregation, str) or aggregation not in AGGREGATIONS:
        raise MetricDefinitionError(f"must be one of {', '.join(AGGREGATIONS)}", field="aggregation")
    prop = _path_check(property, "property", required=aggregation != "count")
    if aggregation == "count":
        prop = ""
    group = _path_check(group_by, "groupBy", required=False)
    return Definition(
        name=name.strip(),
        event_name=event_name.strip(),
        aggregation=aggregation,
        property=prop,
        group_by=group,
        filters=tuple(filters_validate(filters)),
    )


# --- Evaluation -------------------------------------------------------------------------------


def _json_equal(a: Any, b: Any) -> bool:
    return canonical(a) == canonical(b)


def _filter_predicate(f: Filter) -> Callable[[dict], bool]:
    path = path_parse(f.property)
    op = f.op
    if op == "exists":
        return lambda p: extract(p, path) not in (_MISSING, None)
    if op == "not_exists":
        return lambda p: extract(p, path) in (_MISSING, None)
    if op in _NUMERIC_OPS:
        limit = f.value
        compare = {
            "gt": lambda x: x > limit,
            "gte": lambda x: x >= limit,
            "lt": lambda x: x < limit,
            "lte": lambda x: x <= limit,
        }[op]

        def numeric(p: dict) -> bool:
            x = number(extract(p, path))
            return x is not None and compare(x)

        return numeric
    if op in _LIST_OPS:
        allowed = {canonical(v) for v in f.value}
        if op == "in":
            return lambda p: (v := extract(p, path)) is not _MISSING and canonical(v) in allowed
        return lambda p: (v := extract(p, path)) is _MISSING or canonical(v) not in allowed
    target = canonical(f.value)
    if op == "eq":
        return lambda p: (v := extract(p, path)) is not _MISSING and canonical(v) == target
    return lambda p: (v := extract(p, path)) is _MISSING or canonical(v) != target  # neq


@dataclass(frozen=True)
class Evaluated:
    """What one event contributes: its value (numeric, or a unique key) and its group key."""

    number: Decimal | None
    unique: uuid.UUID | None
    group: str | None


class CompiledMetric:
    """A metric ready to evaluate events quickly (paths parsed, filters as predicates)."""

    def __init__(self, *, pk: int, event_name: str, aggregation: str, property: str, group_by: str,
                 filters: list[dict] | tuple[Filter, ...]):  # fmt: skip
        self.pk = pk
        self.event_name = event_name
        self.aggregation = aggregation
        self.unique = aggregation == "unique_count"
        self._value_path = path_parse(property) if property else None
        self._group_path = path_parse(group_by) if group_by else None
        parsed = filters if isinstance(filters, tuple) else tuple(filters_validate(filters))
        self._predicates = [_filter_predicate(f) for f in parsed]

    @classmethod
    def of(cls, metric: Metric) -> CompiledMetric:
        return cls(pk=metric.pk, event_name=metric.event_name, aggregation=metric.aggregation,
                   property=metric.property, group_by=metric.group_by, filters=metric.filters)  # fmt: skip

    def evaluate(self, properties: dict) -> Evaluated | None:
        """None when the event does not match the filters (the event name is checked by the caller)."""
        for predicate in self._predicates:
            if not predicate(properties):
                return None
        num = uniq = None
        if self._value_path is not None:
            raw = extract(properties, self._value_path)
            if self.unique:
                if raw is not _MISSING and raw is not None:
                    uniq = value_hash(raw)
            else:
                num = number(raw)
        group = group_key(extract(properties, self._group_path)) if self._group_path else None
        return Evaluated(number=num, unique=uniq, group=group)


def decimal_or_none(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value is not None else None
    except InvalidOperation:
        return None
