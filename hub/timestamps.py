"""Timestamps as the APIs and screens receive them, always turned into UTC.

Python takes UTC offsets up to ±23:59, PostgreSQL only up to ±15:59: an aware datetime with a
larger offset, passed on as it is, fails in the database. Every parsed timestamp is therefore
converted to UTC here, and one whose UTC is outside Python's years (1..9999) is refused.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.utils.dateparse import parse_datetime

# Epoch milliseconds outside years 1970..2200 are almost surely seconds or garbage.
_MS_MIN, _MS_MAX = 0, 7_258_118_400_000


def datetime_in_utc(value: datetime) -> datetime:
    """`value` as an aware UTC datetime (naive means UTC); ValueError when UTC is out of range."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once converted to UTC") from None


def parse_iso_datetime(text: str) -> datetime:
    """An ISO-8601 date and time in UTC (naive means UTC); ValueError when it is not one."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError("is not an ISO-8601 timestamp") from None
    return datetime_in_utc(parsed)


def parse_timestamp(value: object, *, now: datetime) -> datetime:
    """Epoch milliseconds (number or digits) or an ISO-8601 string, in UTC; naive means UTC."""
    if value is None:
        return now
    if isinstance(value, bool):
        raise ValueError("must be epoch milliseconds or an ISO-8601 string")
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, int | float):
        if not (_MS_MIN <= value <= _MS_MAX):
            raise ValueError("epoch milliseconds out of range")
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    if isinstance(value, str):
        try:
            return parse_iso_datetime(value)
        except ValueError:
            raise ValueError("is not epoch milliseconds or an ISO-8601 timestamp in range") from None
    raise ValueError("must be epoch milliseconds or an ISO-8601 string")


def parse_datetime_local(value: str | None) -> datetime | None:
    """A screen's datetime-local input value (or an ISO string) as an aware UTC datetime; None when
    it is empty or not a date and time in range."""
    if not value:
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:
        return None
    if parsed is None:
        return None
    try:
        return datetime_in_utc(parsed)
    except ValueError:
        return None
